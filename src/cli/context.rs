//! What every command shares, built once by `cli::run`: the home, its config (read on first use,
//! then kept) and the one tokio runtime (started on first use: `init` never needs one).

use std::sync::OnceLock;

use anyhow::Context as _;

use crate::config::{Config, Home};

/// The home, its `config.toml` and the async runtime of one command.
pub struct Context {
    pub home: Home,
    config: OnceLock<Config>,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl Context {
    pub fn new(home: Home) -> Context {
        Context {
            home,
            config: OnceLock::new(),
            runtime: OnceLock::new(),
        }
    }

    /// `config.toml`, parsed the first time a command asks (a command that does not read it
    /// does not fail on a broken one), then the same value for the rest of the command.
    pub fn config(&self) -> anyhow::Result<&Config> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let config = Config::load(&self.home.config_file())?;
        Ok(self.config.get_or_init(|| config))
    }

    /// The command's runtime, started the first time it is needed.
    pub fn runtime(&self) -> anyhow::Result<&tokio::runtime::Runtime> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// Run `future` to completion on the command's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> anyhow::Result<F::Output> {
        Ok(self.runtime()?.block_on(future))
    }
}

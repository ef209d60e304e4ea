//! The end of a long-running command (daemon, relay): SIGINT or SIGTERM. Watched from before the
//! ready line, so a signal sent as soon as it is read still stops the command gracefully.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, caught from [`Signals::watch`] on (no longer the default "terminate").
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Start catching both signals; call it before announcing readiness.
    pub fn watch() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    /// Resolves at the first SIGINT or SIGTERM since [`Signals::watch`].
    pub async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

//! `constellation relay`: flags and entry point.

use std::process::ExitCode;

use crate::config::Home;

/// Flags of `constellation relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {}

pub fn run(_home: &Home, _args: RelayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the embedded relay is not built yet")
}

//! Command line: clap definitions (the doc comments are the `--help` text) and dispatch.
//! Each subcommand's flags live in the module that owns the feature; this file only composes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Home;

/// One binary for an Astroport / UPlanet station: Kubo-compatible `/x/` tunnels over libp2p,
/// an embedded Nostr relay, and the hourly constellation sync.
#[derive(Debug, Parser)]
#[command(name = "constellation", version, propagate_version = true)]
pub struct Cli {
    /// Home folder: identity, config.toml, database, control socket, logs.
    #[arg(long, global = true, env = "CONSTELLATION_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// More logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn verbosity(&self) -> u8 {
        self.verbose
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded Nostr relay on its own, or show its statistics.
    Relay(crate::relay::cli::RelayArgs),
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(cli.home);
    match cli.command {
        Command::Relay(args) => crate::relay::cli::run(&home, args),
    }
}

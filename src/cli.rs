//! Command line: clap definitions (the doc comments are the `--help` text) and dispatch.
//! Each subcommand's flags live next to the code that owns the feature; this file composes them.

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

    /// More logs (--verbose: debug, twice: trace). RUST_LOG overrides.
    #[arg(long = "verbose", global = true, action = clap::ArgAction::Count)]
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
    /// Create the home folder, the node key and a commented config.toml.
    Init(crate::client::InitArgs),
    /// Print this node's PeerID (and addresses with --json); works with or without a daemon.
    Id(crate::client::IdArgs),
    /// Run the node: libp2p swarm, tunnels, control API (and the local relay).
    Daemon(crate::daemon::DaemonArgs),
    /// Peers of the running daemon.
    #[command(subcommand)]
    Swarm(crate::client::SwarmCommand),
    /// Kubo-style tunnels: `ipfs p2p` with the same names and output.
    #[command(subcommand)]
    P2p(crate::client::P2pCommand),
    /// Sync the local relay with every station of the constellation (NIP-77, else REQ paging).
    Backfill(crate::backfill::BackfillArgs),
    /// Run the embedded Nostr relay on its own, or show its statistics.
    Relay(crate::relay::cli::RelayArgs),
    /// What this station publishes (and skips, and why), and the services it reaches.
    Services(crate::dragon::cli::ServicesArgs),
    /// Reach another station's service: forward a local port to its /x/<slug>-<PEERID>.
    Connect(crate::dragon::cli::ConnectArgs),
    /// Close the forwards opened by `connect`.
    Disconnect(crate::dragon::cli::DisconnectArgs),
    /// Start a small constellation on loopback, sync it once, and show the before/after table.
    Demo(crate::demo::DemoArgs),
    /// The hourly job (for cron): checks, lock, backfill, report, mail. Exit 0 OK, 2 partial,
    /// 3 skipped, 4 cannot run.
    Trigger(crate::trigger::TriggerArgs),
    /// Re-render (or re-send) the report of a past sync run.
    Report(crate::trigger::ReportArgs),
    /// Print (or write) systemd units and the cron line.
    InstallService(crate::trigger::InstallArgs),
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(cli.home);
    match cli.command {
        Command::Init(args) => crate::client::init(&home, args),
        Command::Id(args) => crate::client::id(&home, args),
        Command::Daemon(args) => crate::daemon::run(&home, args).map(|()| ExitCode::SUCCESS),
        Command::Swarm(command) => crate::client::swarm(&home, command),
        Command::P2p(command) => crate::client::p2p(&home, command),
        Command::Backfill(args) => crate::backfill::run(&home, args),
        Command::Relay(args) => crate::relay::cli::run(&home, args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Trigger(args) => crate::trigger::run(&home, args),
        Command::Report(args) => crate::trigger::report_command(&home, args),
        Command::InstallService(args) => crate::trigger::install(&home, args),
        Command::Services(args) => crate::dragon::cli::services(&home, args),
        Command::Connect(args) => crate::dragon::cli::connect(&home, args),
        Command::Disconnect(args) => crate::dragon::cli::disconnect(&home, args),
    }
}

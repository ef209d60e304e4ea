//! Command line: clap definitions (the doc comments are the `--help` text) and dispatch to one
//! file per command family under `cli/`; the work itself lives in the modules below.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod backfill;
pub mod context;
pub mod daemon_cmds;
pub mod dragon;
pub mod install;
pub mod migrate;
pub mod relay;
pub mod report;
pub mod ssh_keys;
pub mod swarm_map;
pub mod trigger;

use crate::config::Home;
use context::Context;

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
    Init(daemon_cmds::InitArgs),
    /// Print this node's PeerID (and addresses with --json); works with or without a daemon.
    Id(daemon_cmds::IdArgs),
    /// Run the node: libp2p swarm, tunnels, control API (and the local relay).
    Daemon(crate::daemon::DaemonArgs),
    /// Peers of the running daemon.
    #[command(subcommand)]
    Swarm(daemon_cmds::SwarmCommand),
    /// Ping a peer (`/ipfs/ping/1.0.0`, as `ipfs ping`), connecting first if needed.
    Ping(daemon_cmds::PingArgs),
    /// Kubo-style tunnels: `ipfs p2p` with the same names and output.
    #[command(subcommand)]
    P2p(daemon_cmds::P2pCommand),
    /// Sync the local relay with every station of the constellation (NIP-77, else REQ paging).
    Backfill(crate::trigger::flags::BackfillArgs),
    /// Run the embedded Nostr relay on its own, or show its statistics.
    Relay(relay::RelayArgs),
    /// What this station publishes (and skips, and why), and the services it reaches.
    Services(dragon::ServicesArgs),
    /// Reach another station's service: forward a local port to its /x/<slug>-<PEERID>.
    Connect(dragon::ConnectArgs),
    /// Close the forwards opened by `connect`.
    Disconnect(dragon::DisconnectArgs),
    /// Start a small constellation on loopback, sync it once, and show the before/after table.
    Demo(crate::demo::DemoArgs),
    /// The hourly job (for cron): checks, lock, backfill, report, mail. Exit 0 OK, 2 partial,
    /// 3 skipped, 4 cannot run.
    Trigger(trigger::TriggerArgs),
    /// Re-render (or re-send) the report of a past sync run.
    Report(report::ReportArgs),
    /// Refresh the SSH trust once (authorized_keys block, x/y/z_ssh.pub): dry run unless --write.
    SshKeys(ssh_keys::SshKeysArgs),
    /// Take over from Kubo on an Astroport station: checks, then (with --apply) stop and mask
    /// Kubo, link its repo, write config.toml, install and start our service.
    Migrate(migrate::MigrateArgs),
    /// Print (or write) systemd units and the cron line.
    InstallService(install::InstallArgs),
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(Home::resolve(cli.home));
    match cli.command {
        Command::Init(args) => daemon_cmds::init(&ctx.home, args),
        Command::Id(args) => daemon_cmds::id(&ctx, args),
        Command::Daemon(args) => ctx
            .block_on(crate::daemon::run(&ctx.home, ctx.config()?, args))?
            .map(|()| ExitCode::SUCCESS),
        Command::Swarm(command) => daemon_cmds::swarm(&ctx, command),
        Command::Ping(args) => daemon_cmds::ping(&ctx, args),
        Command::P2p(command) => daemon_cmds::p2p(&ctx, command),
        Command::Backfill(args) => backfill::run(&ctx, args),
        Command::Relay(args) => relay::run(&ctx, args),
        Command::Demo(args) => crate::demo::run(ctx.runtime()?, args),
        Command::Trigger(args) => trigger::run(&ctx, args),
        Command::Report(args) => report::report_command(&ctx, args),
        Command::InstallService(args) => install::install(&ctx.home, args),
        Command::SshKeys(args) => ssh_keys::ssh_keys(&ctx, args),
        Command::Migrate(args) => migrate::migrate(&ctx, args),
        Command::Services(args) => dragon::services(&ctx, args),
        Command::Connect(args) => dragon::connect(&ctx, args),
        Command::Disconnect(args) => dragon::disconnect(&ctx, args),
    }
}

//! The CLI side of DRAGON: `services`, `connect`, `disconnect`. Each sends one control request
//! to the daemon and prints the answer (text for people, `--json` for scripts).

use std::process::ExitCode;

use super::context::Context;
use crate::cli::daemon_cmds::call;
use crate::control::Request;
use crate::dragon::connect::{Connection, Station};
use crate::dragon::{ServicesReport, Slug};
use crate::tunnel::TunnelInfo;

/// Flags of `constellation services`.
#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    /// Run a publishing cycle first (as SIGHUP does) and show its result.
    #[arg(long)]
    pub refresh: bool,
    #[arg(long)]
    pub json: bool,
}

/// Flags of `constellation connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The service's slug (ssh, strfry, ollama, …).
    pub slug: String,
    /// The station: its PeerID, or a multiaddr ending in /p2p/<PeerID>.
    pub peer: String,
    /// Local port to use (default: existing tunnel, native port if free, else the alternative).
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub json: bool,
}

/// Flags of `constellation disconnect`.
#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    pub slug: String,
    pub peer: String,
}

/// `constellation services`.
pub fn services(ctx: &Context, args: ServicesArgs) -> anyhow::Result<ExitCode> {
    let result = call(
        ctx,
        Request::Services {
            refresh: args.refresh,
        },
    )?;
    if args.json {
        println!("{result}");
    } else {
        let report: ServicesReport = serde_json::from_value(result)?;
        print!("{}", format_report(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `constellation services`: one line per service, forward and warning.
pub fn format_report(report: &ServicesReport) -> String {
    let mut out = String::new();
    if !report.publishing {
        out.push_str("publishing is off (--no-dragon or [dragon] enabled = false)\n");
    }
    for p in &report.published {
        let script = p
            .script
            .as_ref()
            .map(|s| format!(" {}", s.display()))
            .unwrap_or_default();
        let manual = if p.managed { "" } else { " (manual)" };
        out.push_str(&format!(
            "published  {:<14} {:<6} {} -> {}{manual}{script}\n",
            p.slug, p.port, p.protocol, p.target
        ));
    }
    for s in &report.skipped {
        let port = s.port.map_or_else(|| "-".to_owned(), |p| p.to_string());
        out.push_str(&format!(
            "skipped    {:<14} {:<6} {}\n",
            s.slug, port, s.reason
        ));
    }
    for r in &report.remote {
        out.push_str(&format!(
            "remote     {:<14} {} {} <- {}\n",
            r.slug, r.peer, r.listen, r.protocol
        ));
    }
    for w in &report.warnings {
        out.push_str(&format!("warning    {w}\n"));
    }
    out
}

/// `constellation connect`.
pub fn connect(ctx: &Context, args: ConnectArgs) -> anyhow::Result<ExitCode> {
    Slug::parse(&args.slug)?;
    let result = call(
        ctx,
        Request::Connect {
            slug: args.slug,
            peer: Station::parse(&args.peer)?,
            port: args.port,
        },
    )?;
    if args.json {
        println!("{result}");
        return Ok(ExitCode::SUCCESS);
    }
    let c: Connection = serde_json::from_value(result)?;
    for note in &c.notes {
        println!("note: {note}");
    }
    let how = if c.reused { "already open" } else { "opened" };
    println!(
        "{} of {} is at {} ({how}: {})",
        c.slug, c.peer, c.address, c.protocol
    );
    if c.slug.as_str() == "ssh" {
        println!("ssh -p {} USER@127.0.0.1", c.port);
    }
    Ok(ExitCode::SUCCESS)
}

/// `constellation disconnect`.
pub fn disconnect(ctx: &Context, args: DisconnectArgs) -> anyhow::Result<ExitCode> {
    Slug::parse(&args.slug)?;
    let closed: Vec<TunnelInfo> = serde_json::from_value(call(
        ctx,
        Request::Disconnect {
            slug: args.slug,
            peer: Station::parse(&args.peer)?,
        },
    )?)?;
    for t in &closed {
        println!("closed {} {}", t.protocol, t.listen_address);
    }
    Ok(ExitCode::SUCCESS)
}

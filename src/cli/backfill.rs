//! `constellation backfill`: one sync run now (in the daemon when one runs), printed for people
//! (or as JSON), with the script's exit codes.

use std::process::ExitCode;

use super::context::Context;
use crate::sync::backfill::RunLock;
use crate::sync::history::History;
use crate::sync::stats::{RunStats, RunStatus};
use crate::trigger::flags::BackfillArgs;
use crate::trigger::{EXIT_PARTIAL, EXIT_SKIPPED};

/// Run a backfill: in the running daemon (its libp2p node) when there is one, else here.
pub fn run(ctx: &Context, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let Some(_lock) = RunLock::try_acquire(&ctx.home)? else {
        eprintln!("skipped: a backfill is already running");
        return Ok(ExitCode::from(EXIT_SKIPPED));
    };
    let mut history = History::open(&ctx.home.history())?;
    let stats = ctx.block_on(crate::trigger::run_locked(
        (&ctx.home, ctx.config()?),
        &mut history,
        &args.options(),
    ))??;
    print(&args, &stats);
    Ok(match stats.status() {
        RunStatus::Ok => ExitCode::SUCCESS,
        RunStatus::Partial | RunStatus::Failure => ExitCode::from(EXIT_PARTIAL),
    })
}

fn print(args: &BackfillArgs, stats: &RunStats) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(stats).unwrap_or_default()
        );
        return;
    }
    println!(
        "{} — run {} in {:.1} s{}",
        stats.status(),
        stats.run_id,
        stats.duration_ms as f64 / 1000.0,
        if stats.dry_run { " (dry run)" } else { "" }
    );
    println!(
        "peers: {} contacted, {} ok, {} failed",
        stats.peers_contacted, stats.peers_ok, stats.peers_failed
    );
    println!(
        "events: {} collected, {} imported, {} duplicate, {} rejected, {} uploaded",
        stats.collected,
        stats.imported,
        stats.duplicate,
        stats.rejected.values().sum::<u64>(),
        stats.uploaded
    );
    println!(
        "authors: {} ({} discovered by N²), {} unique pubkeys imported, profiles {} found / {} missing",
        stats.authors,
        stats.discovered,
        stats.unique_pubkeys,
        stats.profiles_found,
        stats.profiles_missing
    );
    for p in &stats.peers {
        let state = p
            .error
            .as_deref()
            .map_or("ok".to_string(), |e| format!("FAILED: {e}"));
        println!(
            "  {} [{}] in {} out {} — {}",
            p.name, p.mode, p.events_in, p.events_out, state
        );
    }
    if args.stats {
        println!("sources: {:?}", stats.sources);
        println!("kinds: {:?}", stats.kinds);
        println!("rejected: {:?}", stats.rejected);
        println!(
            "bytes: {} in, {} out, {} round trips",
            stats.bytes_in, stats.bytes_out, stats.round_trips
        );
    }
}

//! `constellation relay`: run the embedded relay alone, print the statistics of its database, or
//! move its events in and out as JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::context::Context;
use crate::store::{Store, StoreStats};

/// Flags of `constellation relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    #[command(subcommand)]
    pub command: Option<RelayCommand>,
    /// Address to listen on. Default: `[relay] listen` of config.toml, else 127.0.0.1:7777.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Event database. Default: relay.sqlite in the home folder.
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RelayCommand {
    /// Event count, database size, and counts per kind.
    Stats {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Store events read as JSON lines on stdin (the `strfry import` format; `strfry export |
    /// constellation relay import` moves a strfry station to the embedded relay). Every event is
    /// checked as the relay checks it; bad lines are counted and skipped. Ends with strfry's
    /// `Done. Processed N lines. A added, R rejected, D dups` on stderr.
    Import {
        /// Also print the counts, with the reasons of rejections, as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print every stored event as a JSON line, oldest first (the `strfry export` format).
    Export,
}

pub fn run(ctx: &Context, args: RelayArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.clone().unwrap_or_else(|| ctx.home.database());
    match args.command {
        Some(RelayCommand::Stats { json }) => stats(&db, json),
        Some(RelayCommand::Import { json }) => import(ctx, &db, json),
        Some(RelayCommand::Export) => export(&db),
        None => serve(ctx, db, args.listen),
    }
}

fn stats(db: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    if !db.exists() {
        anyhow::bail!("no event database at {}", db.display());
    }
    let stats = StoreStats::read(db)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

fn import(ctx: &Context, db: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let limits = ctx.config()?.relay.event_limits();
    // stdin is read inside `block_on`, on this thread: a blocking read holds up no runtime
    // worker (the store's checker and writer threads are its own).
    let summary = ctx.block_on(async {
        let store = Store::open(db, limits)
            .with_context(|| format!("cannot open the event store {}", db.display()))?;
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(|| indicatif::ProgressBar::new_spinner().with_message("importing"));
        anyhow::Ok(crate::relay::jsonl::import(&store, std::io::stdin().lock(), progress).await?)
    })??;
    eprintln!("{}", summary.done_line());
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn export(db: &std::path::Path) -> anyhow::Result<ExitCode> {
    if !db.exists() {
        anyhow::bail!("no event database at {}", db.display());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::store::export_jsonl(db, &mut out) {
        Ok(n) => tracing::info!(events = n, "exported"),
        // `relay export | head -1`: the reader had enough; that is not a failure.
        Err(crate::store::StoreError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // Drop the buffered rest without flushing into the closed pipe again.
            let _ = out.into_parts();
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `relay stats`.
pub fn render(stats: &StoreStats) -> String {
    let mut out = format!(
        "database  {}\nsize      {}\nevents    {}\npubkeys   {}\n",
        stats.path.display(),
        crate::report::human_bytes(stats.bytes),
        stats.events,
        stats.pubkeys
    );
    if let (Some(oldest), Some(newest)) = (stats.oldest, stats.newest) {
        out.push_str(&format!("span      {oldest} .. {newest} (unix time)\n"));
    }
    if !stats.kinds.is_empty() {
        out.push_str("\nkind      events\n");
        for (kind, n) in &stats.kinds {
            out.push_str(&format!("{kind:<9} {n}\n"));
        }
    }
    out
}

fn serve(ctx: &Context, db: PathBuf, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let mut config = ctx.config()?.relay.clone();
    if let Some(listen) = listen {
        config.listen = listen;
    }
    ctx.block_on(async move {
        let store = Store::open(&db, config.event_limits())?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let listen = config.listen.clone();
        let served = crate::relay::Served {
            store,
            config,
            origin: None,
            fanout: None,
        };
        let addr = crate::relay::start(served, shutdown.clone(), &tracker)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let signals = crate::signal::Signals::watch()?;
        println!(
            "{}",
            serde_json::json!({"event": "ready", "relay": format!("ws://{addr}"), "db": db})
        );
        tracing::info!(%addr, db = %db.display(), "relay ready");
        signals.received().await;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        Ok(ExitCode::SUCCESS)
    })?
}

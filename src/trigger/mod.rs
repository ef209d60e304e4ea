//! The hourly job (cron, a systemd timer, or the daemon's own schedule): checks the station, takes
//! the run lock, skips a run that is too recent, runs the backfill, saves and mails the report,
//! and writes the operators' logs. Its outcomes have distinct exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod announce;
pub mod flags;
pub mod original;

pub use crate::config::TriggerConfig;
use crate::config::{Config, Home, SyncFiles};
use crate::ipfs::store::BlockStore;
use crate::node::Node;
use crate::report::{self, Report};
use crate::runlog::{Level, RunLog};
use crate::sync::backfill::{self, BackfillOptions, RunLock};
use crate::sync::history::History;
use crate::sync::local::Station;
use crate::sync::stats::{RunStats, RunStatus};
use original::OriginalLock;

/// Exit code: the run finished but some peers failed.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit code: skipped (another run holds the lock, or the last run is too recent).
pub const EXIT_SKIPPED: u8 = 3;
/// Exit code: a check failed, nothing ran (the reason is printed).
pub const EXIT_CANNOT_RUN: u8 = 4;

/// What a trigger did.
#[derive(Debug)]
pub enum Outcome {
    Ran {
        stats: Box<RunStats>,
        report: Option<PathBuf>,
        /// Recipient, or why no mail went out.
        mail: Result<String, String>,
        /// With `[report] note`: where the note went, or why it was not sent.
        note: Option<Result<String, String>>,
    },
    Skipped(String),
    CannotRun(String),
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ran { stats, .. } if stats.status() == RunStatus::Ok => 0,
            Outcome::Ran { .. } => EXIT_PARTIAL,
            Outcome::Skipped(_) => EXIT_SKIPPED,
            Outcome::CannotRun(_) => EXIT_CANNOT_RUN,
        }
    }

    /// The one line an operator reads.
    pub fn line(&self) -> String {
        match self {
            Outcome::Ran {
                stats,
                report,
                mail,
                note,
            } => format!(
                "ran: {} run {}: {} peers ok, {} failed, {} imported, {} uploaded; report {}; mail {}{}",
                stats.status(),
                stats.run_id,
                stats.peers_ok,
                stats.peers_failed,
                stats.imported,
                stats.uploaded,
                report
                    .as_ref()
                    .map_or("not saved".into(), |p| p.display().to_string()),
                match mail {
                    Ok(to) => format!("sent to {to}"),
                    Err(why) => format!("not sent ({why})"),
                },
                match note {
                    None => String::new(),
                    Some(Ok(what)) => format!("; note {what}"),
                    Some(Err(why)) => format!("; note not sent ({why})"),
                }
            ),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::CannotRun(why) => format!("cannot run: {why}"),
        }
    }
}

/// The two operator logs, under the original's names: the latest run, and the errors.
struct Logs {
    run: RunLog,
    errors: RunLog,
}

/// The original's log names, in `~/.zen/strfry` (`20h12.process.sh` mails the error log's tail).
const RUN_LOG: &str = "constellation-backfill.log";
const ERROR_LOG: &str = "constellation-backfill.error.log";
/// Our earlier names, kept as symbolic links when `[trigger] old_log_names`.
const OLD_NAMES: [(&str, &str); 2] = [
    ("constellation_sync.log", RUN_LOG),
    ("constellation_sync.error.log", ERROR_LOG),
];

impl Logs {
    fn new(config: &TriggerConfig, files: &SyncFiles) -> Logs {
        let dir = config.log_dir.clone().unwrap_or_else(|| files.strfry_dir());
        let (max_bytes, keep) = crate::runlog::default_limits();
        let max_bytes = config.log_max_bytes.unwrap_or(max_bytes);
        let keep = config.log_keep.unwrap_or(keep);
        Logs {
            // The run log is reset by each run, so its own bound only guards one long run.
            run: RunLog::new(dir.join(RUN_LOG), max_bytes, keep),
            errors: RunLog::new(dir.join(ERROR_LOG), max_bytes, keep),
        }
    }

    /// A run starts: the run log begins again, the error log is rotated if full (as the
    /// original does), and the old names point at the new files.
    fn start(&self, config: &TriggerConfig) {
        if let Err(e) = self
            .run
            .reset("Constellation Backfill Log (constellation trigger)")
        {
            tracing::warn!("cannot write {}: {e}", self.run.path().display());
        }
        match self.errors.rotate_if_full() {
            Ok(true) => self.run(&format!("rotated {}", self.errors.path().display())),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot rotate {}: {e}", self.errors.path().display()),
        }
        if config.old_log_names
            && let Some(dir) = self.run.path().parent()
        {
            for (old, new) in OLD_NAMES {
                link_old_name(&dir.join(old), Path::new(new));
            }
        }
    }

    fn run(&self, line: &str) {
        if let Err(e) = self.run.append(Level::Info, line) {
            tracing::warn!("cannot write {}: {e}", self.run.path().display());
        }
    }

    fn error(&self, line: &str) {
        tracing::warn!("{line}");
        for log in [&self.run, &self.errors] {
            if let Err(e) = log.append(Level::Error, line) {
                tracing::warn!("cannot write {}: {e}", log.path().display());
            }
        }
    }
}

/// `old` becomes a symbolic link to `target` (a name in the same folder), unless a regular file
/// of an earlier release is there: that one is left to the operator.
fn link_old_name(old: &Path, target: &Path) {
    match std::fs::symlink_metadata(old) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(old).is_ok_and(|t| t == target) {
                return;
            }
            let _ = std::fs::remove_file(old);
        }
        Ok(_) => return,
        Err(_) => {}
    }
    if let Err(e) = std::os::unix::fs::symlink(target, old) {
        tracing::debug!("cannot link {}: {e}", old.display());
    }
}

fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".constellation-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// `host:port` of a `ws://` / `wss://` URL.
fn host_port(url: &str) -> Option<String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        (false, url.strip_prefix("ws://")?)
    };
    let authority = rest.split('/').next()?;
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some(authority.to_owned())
    } else {
        Some(format!("{authority}:{}", if tls { 443 } else { 80 }))
    }
}

/// The checks before a run; `Err` is the one-line reason.
async fn checks(
    (home, config): (&Home, &Config),
    args: &BackfillOptions,
    logs: &Logs,
) -> Result<(), String> {
    if config.trigger.astroport {
        let zen = args.zen_root();
        for sub in ["tmp", "game"] {
            if !zen.join(sub).is_dir() {
                return Err(format!(
                    "no Astroport environment: {} is missing ([trigger] astroport = true)",
                    zen.join(sub).display()
                ));
            }
        }
    }
    writable(home.root())?;
    writable(&report::report_dir(home, &config.report))?;
    if let Some(dir) = logs.run.path().parent() {
        writable(dir)?;
    }
    if let Some(url) = &args.local_relay {
        let addr =
            host_port(url).ok_or_else(|| format!("--local-relay {url:?} is not a ws:// URL"))?;
        if !crate::sync::local::probe(&addr).await {
            return Err(format!("the local relay {url} is not reachable"));
        }
    }
    Ok(())
}

/// Seconds since the last run started, if any.
fn since_last_run(history: &History) -> Option<u64> {
    let last = history.last_run_at().ok()??;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(now.saturating_sub(last))
}

/// What a run holds while it runs: our lock, the original's, and the history.
struct Admitted {
    ours: RunLock,
    theirs: OriginalLock,
    history: History,
}

/// Take both locks and open the history, unless another sync runs or the last one is too
/// recent (`_12345.sh`'s stamp, or our own history), which `force` overrides.
fn admit(
    (home, config): (&Home, &Config),
    force: bool,
    files: &SyncFiles,
    logs: &Logs,
) -> Result<Admitted, Outcome> {
    let skip = |why: String| {
        logs.run(&format!("skipped: {why}"));
        Outcome::Skipped(why)
    };
    let fail = |why: String| {
        logs.error(&format!("cannot run: {why}"));
        Outcome::CannotRun(why)
    };
    let ours = match RunLock::try_acquire(home) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(skip("running".into())),
        Err(e) => return Err(fail(crate::logging::error_line(&e))),
    };
    let lock_path = files.backfill_lock();
    let theirs = match OriginalLock::try_acquire(&lock_path) {
        Ok(Ok(lock)) => lock,
        Ok(Err(why)) => return Err(skip(why)),
        Err(e) => return Err(fail(format!("cannot lock {}: {e}", lock_path.display()))),
    };
    let history =
        History::open(&home.history()).map_err(|e| fail(crate::logging::error_line(&e.into())))?;
    if force {
        return Ok(Admitted {
            ours,
            theirs,
            history,
        });
    }
    let stamp = files.last_run();
    if let Some(ago) = original::last_run_age(&stamp)
        && ago < original::LAST_RUN_MIN_SECS
    {
        return Err(skip(format!(
            "a sync started {ago} s ago ({}, less than {} s); --force runs anyway",
            stamp.display(),
            original::LAST_RUN_MIN_SECS
        )));
    }
    let min = config.trigger.min_interval_mins * 60;
    if let Some(ago) = since_last_run(&history)
        && ago < min
    {
        return Err(skip(format!(
            "last run {} min ago (less than {}); --force runs anyway",
            ago / 60,
            config.trigger.min_interval_mins
        )));
    }
    Ok(Admitted {
        ours,
        theirs,
        history,
    })
}

/// What the daemon lends a trigger it runs itself.
pub struct InDaemon {
    pub node: Node,
    /// Its local relay, as found at start.
    pub station: Option<Station>,
    /// Its block store, where the report is added for the note's `/ipfs/<CID>` link.
    pub blocks: Option<Arc<BlockStore>>,
    /// Its local relay's URL, where the note goes unless `[report] note_relay` says otherwise.
    pub relay_url: Option<String>,
}

/// One trigger. `daemon`: the node, local relay and blocks when the daemon runs it itself.
pub async fn trigger(
    home: &Home,
    config: &Config,
    force: bool,
    mail: bool,
    args: &BackfillOptions,
    daemon: Option<InDaemon>,
) -> Outcome {
    let files = SyncFiles::new(args.zen_root());
    let logs = Logs::new(&config.trigger, &files);
    if let Err(why) = checks((home, config), args, &logs).await {
        logs.error(&format!("cannot run: {why}"));
        return Outcome::CannotRun(why);
    }
    let Admitted {
        ours,
        theirs,
        mut history,
    } = match admit((home, config), force, &files, &logs) {
        Ok(admitted) => admitted,
        Err(outcome) => return outcome,
    };
    logs.start(&config.trigger);
    if !args.dry_run
        && let Err(e) = original::stamp_last_run(&files.last_run())
    {
        logs.error(&format!("cannot write {}: {e}", files.last_run().display()));
    }
    // The original's words too: its sync_report.sh takes the run's start and end from them.
    logs.run("run started: Starting Astroport constellation backfill process");
    let blocks = daemon.as_ref().and_then(|d| d.blocks.clone());
    let relay_url = daemon.as_ref().and_then(|d| d.relay_url.clone());
    let result = match daemon {
        Some(InDaemon { node, station, .. }) => {
            let context = (home, config);
            backfill::execute(context, &mut history, args, Some(node), station).await
        }
        None => run_locked((home, config), &mut history, args).await,
    };
    drop((ours, theirs));
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            let why = crate::logging::error_line(&e);
            logs.error(&format!("cannot run: {why}"));
            return Outcome::CannotRun(why);
        }
    };
    log_run(&stats, &logs);
    if stats.run_id == 0 {
        return Outcome::Ran {
            stats: Box::new(stats),
            report: None,
            mail: Err("dry run: nothing recorded".to_owned()),
            note: None,
        };
    }
    let station = report::station_name(&config.report);
    let loaded = Report::of(&history, Some(stats.run_id), station);
    let (report, mail) = deliver((home, config), loaded, stats.run_id, mail, &logs).await;
    let note = if config.report.note {
        let lent = (blocks.as_deref(), relay_url.as_deref());
        let sent = announce::publish(config, &stats, report.as_deref(), lent).await;
        match &sent {
            Ok(what) => logs.run(&format!("run {}: note {what}", stats.run_id)),
            Err(why) => logs.run(&format!("run {}: no note: {why}", stats.run_id)),
        }
        Some(sent)
    } else {
        None
    };
    Outcome::Ran {
        stats: Box::new(stats),
        report,
        mail,
        note,
    }
}

/// The run's lines in the run log, with the original's `SYNC_*` markers (which its
/// `sync_report.sh` reads), and each failed peer in the error log.
fn log_run(stats: &RunStats, logs: &Logs) {
    for p in stats.peers.iter().filter(|p| !p.ok) {
        logs.error(&format!(
            "run {}: peer {} failed: {}",
            stats.run_id,
            p.name,
            p.error.as_deref().unwrap_or("?")
        ));
    }
    logs.run(&format!(
        "run {} {}: {} contacted, {} ok, {} failed, {} collected, {} imported, {} uploaded, {} ms",
        stats.run_id,
        stats.status(),
        stats.peers_contacted,
        stats.peers_ok,
        stats.peers_failed,
        stats.collected,
        stats.imported,
        stats.uploaded,
        stats.duration_ms
    ));
    for line in original::report_markers(stats) {
        logs.run(&line);
    }
    logs.run("Backfill process completed");
}

/// Save the report of `run_id` and mail it; failures are logged, never fatal.
async fn deliver(
    (home, config): (&Home, &Config),
    loaded: Result<Report, report::ReportError>,
    run_id: i64,
    mail: bool,
    logs: &Logs,
) -> (Option<PathBuf>, Result<String, String>) {
    let report = match loaded {
        Ok(r) => r,
        Err(e) => {
            logs.error(&format!("run {run_id}: no report: {e}"));
            return (None, Err(e.to_string()));
        }
    };
    let saved = match report.save(&report::report_dir(home, &config.report)) {
        Ok(path) => Some(path),
        Err(e) => {
            logs.error(&format!("run {run_id}: {e}"));
            None
        }
    };
    let sent = if !mail {
        Err("--no-mail".into())
    } else if config.mail.recipient().is_none() {
        Err("no CAPTAINEMAIL".into())
    } else {
        match report::mail::send(
            &config.mail,
            &report.subject(),
            report.text(),
            report.html(),
        )
        .await
        {
            Ok(to) => {
                logs.run(&format!("run {run_id}: report mailed to {to}"));
                Ok(to)
            }
            Err(e) => {
                logs.error(&format!("run {run_id}: mail failed: {e}"));
                Err(e.to_string())
            }
        }
    };
    (saved, sent)
}

/// One run for a caller that holds the [`RunLock`]: in the running daemon (its node and local
/// relay, its own history) when there is one, else here, recorded in `history`.
pub async fn run_locked(
    (home, config): (&Home, &Config),
    history: &mut History,
    args: &BackfillOptions,
) -> anyhow::Result<RunStats> {
    let socket = home.control_socket();
    if crate::control::is_running(&socket).await {
        let value = crate::control::call(
            &socket,
            &crate::control::Request::Backfill { args: args.clone() },
        )
        .await?;
        Ok(serde_json::from_value(value)?)
    } else {
        backfill::execute((home, config), history, args, None, None).await
    }
}

/// The daemon's own schedule: a trigger every period (plus jitter) until `shutdown`.
pub async fn schedule(
    home: Home,
    config: Config,
    daemon: InDaemon,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let args = match flags::parse_args(&config.trigger.backfill) {
        Ok(a) => a.options(),
        Err(e) => {
            tracing::warn!("[trigger] backfill flags are invalid, no scheduled sync: {e}");
            return;
        }
    };
    loop {
        let jitter = if config.trigger.jitter_secs > 0 {
            use rand::Rng;
            rand::thread_rng().gen_range(0..=config.trigger.jitter_secs)
        } else {
            0
        };
        let wait = Duration::from_secs(config.trigger.period_secs.max(1) + jitter);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let outcome = trigger(
            &home,
            &config,
            false,
            true,
            &args,
            Some(InDaemon {
                node: daemon.node.clone(),
                station: daemon.station.clone(),
                blocks: daemon.blocks.clone(),
                relay_url: daemon.relay_url.clone(),
            }),
        )
        .await;
        tracing::info!("scheduled sync {}", outcome.line());
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn relay_urls_give_host_and_port() {
        assert_eq!(
            host_port("ws://127.0.0.1:7777").as_deref(),
            Some("127.0.0.1:7777")
        );
        assert_eq!(
            host_port("wss://relay.example/x").as_deref(),
            Some("relay.example:443")
        );
        assert_eq!(host_port("ws://[::1]:9/").as_deref(), Some("[::1]:9"));
        assert_eq!(host_port("http://x"), None);
    }
}

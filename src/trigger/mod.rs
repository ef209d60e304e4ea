//! The hourly job (cron, a systemd timer, or the daemon's own schedule): checks the station, takes
//! the run lock, skips a run that is too recent, runs the backfill, saves and mails the report,
//! and writes the operators' logs. Its outcomes have distinct exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod flags;

pub use crate::config::TriggerConfig;
use crate::config::{Config, Home, home_dir};
use crate::node::Node;
use crate::report::{self, Report};
use crate::runlog::RunLog;
use crate::sync::backfill::{self, BackfillOptions, RunLock};
use crate::sync::history::History;
use crate::sync::local::Station;
use crate::sync::stats::{RunStats, RunStatus};

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
            } => format!(
                "ran: {} run {}: {} peers ok, {} failed, {} imported, {} uploaded; report {}; mail {}",
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
                }
            ),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::CannotRun(why) => format!("cannot run: {why}"),
        }
    }
}

/// The two operator logs of a home.
struct Logs {
    run: RunLog,
    errors: RunLog,
}

impl Logs {
    fn new(config: &TriggerConfig) -> Logs {
        let dir = config
            .log_dir
            .clone()
            .unwrap_or_else(|| home_dir().join(".zen/strfry"));
        Logs {
            run: RunLog::new(
                dir.join("constellation_sync.log"),
                config.log_max_bytes,
                config.log_keep,
            ),
            errors: RunLog::new(
                dir.join("constellation_sync.error.log"),
                config.log_max_bytes,
                config.log_keep,
            ),
        }
    }

    fn run(&self, line: &str) {
        if let Err(e) = self.run.append(line) {
            tracing::warn!("cannot write {}: {e}", self.run.path().display());
        }
    }

    fn error(&self, line: &str) {
        tracing::warn!("{line}");
        self.run(line);
        if let Err(e) = self.errors.append(line) {
            tracing::warn!("cannot write {}: {e}", self.errors.path().display());
        }
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
async fn checks(home: &Home, config: &Config, args: &BackfillOptions) -> Result<(), String> {
    if config.trigger.astroport {
        let zen = args.zen.clone().unwrap_or_else(|| home_dir().join(".zen"));
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
    let logs = Logs::new(&config.trigger);
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

/// One trigger. `daemon`: the node and local relay when the daemon runs it itself.
pub async fn trigger(
    home: &Home,
    config: &Config,
    force: bool,
    mail: bool,
    args: &BackfillOptions,
    daemon: Option<(Node, Option<Station>)>,
) -> Outcome {
    let logs = Logs::new(&config.trigger);
    if let Err(why) = checks(home, config, args).await {
        logs.error(&format!("cannot run: {why}"));
        return Outcome::CannotRun(why);
    }
    let lock = match RunLock::try_acquire(home) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            logs.run("skipped: running");
            return Outcome::Skipped("running".into());
        }
        Err(e) => return Outcome::CannotRun(crate::logging::error_line(&e)),
    };
    // Opened once for the run: its age, the run's record, the report.
    let mut history = match History::open(&home.history()) {
        Ok(history) => history,
        Err(e) => {
            let why = crate::logging::error_line(&e.into());
            logs.error(&format!("cannot run: {why}"));
            return Outcome::CannotRun(why);
        }
    };
    let min = config.trigger.min_interval_mins * 60;
    if !force
        && let Some(ago) = since_last_run(&history)
        && ago < min
    {
        let why = format!(
            "last run {} min ago (less than {}); --force runs anyway",
            ago / 60,
            config.trigger.min_interval_mins
        );
        logs.run(&format!("skipped: {why}"));
        return Outcome::Skipped(why);
    }
    logs.run("run started");
    let result = match daemon {
        Some((node, station)) => {
            let context = (home, config);
            backfill::execute(context, &mut history, args, Some(node), station).await
        }
        None => run_locked((home, config), &mut history, args).await,
    };
    drop(lock);
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            let why = crate::logging::error_line(&e);
            logs.error(&format!("cannot run: {why}"));
            return Outcome::CannotRun(why);
        }
    };
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
    let (report, mail) = if stats.run_id == 0 {
        (None, Err("dry run: nothing recorded".to_owned()))
    } else {
        let station = report::station_name(&config.report);
        let loaded = Report::of(&history, Some(stats.run_id), station);
        deliver((home, config), loaded, stats.run_id, mail, &logs).await
    };
    Outcome::Ran {
        stats: Box::new(stats),
        report,
        mail,
    }
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
    node: Node,
    station: Option<Station>,
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
            Some((node.clone(), station.clone())),
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

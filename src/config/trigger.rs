//! `[trigger]`: the hourly job's schedule, checks and operator logs, with their defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[trigger]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriggerConfig {
    /// The daemon runs the trigger by itself every `period_secs` (cron then becomes optional).
    pub enabled: bool,
    pub period_secs: u64,
    /// Random delay added to each period, so stations do not all sync at the same second.
    pub jitter_secs: u64,
    /// A run is skipped when the last one started less than this ago (unless `--force`).
    pub min_interval_mins: u64,
    /// Require the Astroport folders (`~/.zen/tmp`, `~/.zen/game`); off: standalone station.
    pub astroport: bool,
    /// Folder of `constellation-backfill.log` (the latest run) and
    /// `constellation-backfill.error.log` (warnings and errors, rotated), the original's names
    /// (default: `strfry/` of the Astroport root, `~/.zen/strfry`).
    pub log_dir: Option<PathBuf>,
    /// The error log is rotated past this size; default the original's: 10 MiB, or 5 MiB on
    /// an aarch64 box with less than 1 GiB of RAM.
    pub log_max_bytes: Option<u64>,
    /// Rotated error logs kept; default the original's: 3, or 2 on that small box.
    pub log_keep: Option<usize>,
    /// Also name the logs `constellation_sync.log` / `.error.log` (symbolic links), the names
    /// of our earlier releases.
    pub old_log_names: bool,
    /// Backfill flags of the daemon's scheduled runs, e.g. `["--days", "1"]`.
    pub backfill: Vec<String>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            enabled: true,
            period_secs: 3_600,
            jitter_secs: 300,
            min_interval_mins: 50,
            astroport: false,
            log_dir: None,
            log_max_bytes: None,
            log_keep: None,
            old_log_names: true,
            backfill: Vec::new(),
        }
    }
}

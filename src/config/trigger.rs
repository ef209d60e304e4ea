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
    /// Folder of `constellation_sync.log` and `constellation_sync.error.log`
    /// (default `~/.zen/strfry`).
    pub log_dir: Option<PathBuf>,
    pub log_max_bytes: u64,
    pub log_keep: usize,
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
            log_max_bytes: 1 << 20,
            log_keep: 3,
            backfill: Vec::new(),
        }
    }
}

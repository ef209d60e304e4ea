//! `[live]`: the live links between stations (issue 20): on or off, which directions, and the
//! bounds of each link's queue, reconnection backoff and refresh, with their defaults.

use serde::{Deserialize, Serialize};

/// Which way events flow live on this station's links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveDir {
    /// Pull only: subscribe to every link, push to none.
    Down,
    /// Push only: push new local events to plain relays, subscribe to nobody (constellation
    /// stations still pull from us: our relay serves them).
    Up,
    /// Both (strfry router's default).
    #[default]
    Both,
}

impl LiveDir {
    pub fn pulls(self) -> bool {
        matches!(self, LiveDir::Down | LiveDir::Both)
    }

    pub fn pushes(self) -> bool {
        matches!(self, LiveDir::Up | LiveDir::Both)
    }
}

/// `[live]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Keep a live link to every station of the swarm map (or every explicit peer).
    pub enabled: bool,
    pub dir: LiveDir,
    /// Links besides the `--peer`s of `[trigger] backfill` (PeerID or ws(s):// URL). When this
    /// and those are both empty, the links are the stations of the swarm folder.
    pub peers: Vec<String>,
    /// Events waiting to be pushed to one link. A link that falls this far behind drops to
    /// "catching up" (the next reconciliation repairs it) instead of growing memory: 1,024
    /// events are ~1 MiB at worst, and a burst of a thousand events still fits.
    pub queue: usize,
    /// First reconnection delay after a link fails, doubled on each failure.
    pub backoff_min_ms: u64,
    /// Longest reconnection delay: what a dead station costs is one timer this often.
    pub backoff_max_secs: u64,
    /// A new subscription asks for events this many seconds old (clock skew, the last
    /// moments before a reconnection); older ones are the backfill's.
    pub overlap_secs: u64,
    /// How often the links (swarm folder, peers) and the authors (the backfill's N² file) are
    /// read again.
    pub refresh_secs: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            enabled: true,
            dir: LiveDir::Both,
            peers: Vec::new(),
            queue: 1_024,
            backoff_min_ms: 500,
            backoff_max_secs: 60,
            overlap_secs: 10,
            refresh_secs: 300,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_is_on_both_ways_by_default_and_dir_parses() {
        let config = LiveConfig::default();
        assert!(config.enabled && config.dir.pulls() && config.dir.pushes());
        let config: LiveConfig = toml::from_str("dir = \"down\"\nqueue = 8\n").unwrap();
        assert_eq!(config.dir, LiveDir::Down);
        assert!(!config.dir.pushes());
        assert_eq!(config.queue, 8);
        assert!(toml::from_str::<LiveConfig>("dir = \"sideways\"").is_err());
    }
}

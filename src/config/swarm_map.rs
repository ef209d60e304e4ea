//! `[swarm_map]`: the map cycle that fills `~/.zen/tmp/swarm/` (as Astroport's `_12345.sh` does
//! with Kubo) and the publication of the station's own folder; its period and bounds.

use serde::{Deserialize, Serialize};

pub use crate::config::kubo_api::KuboApiEnabled as SwarmMapEnabled;

/// `[swarm_map]` of config.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmMapConfig {
    /// `"auto"`: on unless a Kubo daemon serves the station's repo (its `api` file answers), so the
    /// two never fight over the folder; `true`/`false` force it.
    pub enabled: SwarmMapEnabled,
    /// Seconds between cycles (`_12345.sh` runs hourly); a cycle also runs at start when the map
    /// is empty.
    pub interval_secs: u64,
    /// Probe of `/ipns/<ID>/_MySwarm.moats` (`_12345.sh`: 20 s, 60 s when the map is empty).
    pub probe_timeout_secs: u64,
    pub probe_timeout_empty_secs: u64,
    /// A station whose `_MySwarm.moats` is older than this is dropped (`_12345.sh`: 12 h).
    pub max_age_secs: u64,
    /// Time for one station's whole mirror (resolve + fetch); past it the station is skipped.
    pub station_timeout_secs: u64,
    /// Bounds on one station's folder: bytes, files (entries of all folders), depth.
    pub max_station_bytes: u64,
    pub max_station_files: u64,
    pub max_station_depth: u32,
    /// Bound on the whole map (every station folder together).
    pub max_map_bytes: u64,
    /// Publish our own folder `~/.zen/tmp/<ID>/` under `/ipns/<ID>` (and the map under
    /// `MySwarm_<ID>` when that key exists).
    pub publish: bool,
    /// Lifetime and TTL of the records we publish (`ipfs name publish --lifetime 24h --ttl 30m`).
    pub record_lifetime_secs: u64,
    pub record_ttl_secs: u64,
    /// Seconds between checks of our own folder between cycles: a change (DRAGON wrote a
    /// script) or a record near expiry is published at the next check.
    pub own_check_secs: u64,
    /// `myRELAY` of the `12345.json` we write when no Astroport does; default: the embedded
    /// relay's URL (a loopback one is reached by others through `/x/strfry-<ID>`).
    pub my_relay: Option<String>,
    /// `captainHEX` / `NODEHEX` of that file (64-hex Nostr pubkeys), left out when unset.
    pub captain_hex: Option<String>,
    pub node_hex: Option<String>,
}

impl Default for SwarmMapConfig {
    fn default() -> Self {
        SwarmMapConfig {
            enabled: SwarmMapEnabled::Auto,
            interval_secs: 3600,
            probe_timeout_secs: 20,
            probe_timeout_empty_secs: 60,
            max_age_secs: 12 * 3600,
            station_timeout_secs: 120,
            max_station_bytes: 64 << 20,
            max_station_files: 2_000,
            max_station_depth: 8,
            max_map_bytes: 1 << 30,
            publish: true,
            record_lifetime_secs: 24 * 3600,
            record_ttl_secs: 30 * 60,
            own_check_secs: 60,
            my_relay: None,
            captain_hex: None,
            node_hex: None,
        }
    }
}

impl SwarmMapConfig {
    /// Does the daemon run the map cycle, given whether a Kubo daemon serves the repo?
    pub fn is_enabled(&self, kubo_daemon_running: bool) -> bool {
        match self.enabled {
            SwarmMapEnabled::Auto => !kubo_daemon_running,
            SwarmMapEnabled::Set(on) => on,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_stays_off_next_to_a_kubo_daemon() {
        let auto = SwarmMapConfig::default();
        assert!(auto.is_enabled(false) && !auto.is_enabled(true));
        let on: SwarmMapConfig = toml::from_str("enabled = true").unwrap();
        assert!(on.is_enabled(true));
        let bad = toml::from_str::<SwarmMapConfig>("interval = 5");
        assert!(bad.is_err(), "unknown keys are refused");
    }
}

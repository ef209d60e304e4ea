//! `[dragon]`: which services DRAGON publishes, where its scripts go, and who may reach them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[dragon]` of config.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DragonConfig {
    /// Publish the station's services (the daemon's `--no-dragon` turns it off).
    pub enabled: bool,
    /// Seconds between publishing cycles (also at start and on SIGHUP).
    pub interval_secs: u64,
    /// Astroport's `IA/modules.list`. Default: `~/.zen/Astroport.ONE/IA/modules.list` if present.
    pub modules_list: Option<PathBuf>,
    /// The station's `.env` (for `DRAGON_PRIVATE_SERVICES`). Default: `~/.zen/Astroport.ONE/.env`.
    pub env_file: Option<PathBuf>,
    /// Where `x_<slug>.sh` are written. Default: `~/.zen/tmp/<PEERID>/`.
    pub scripts_dir: Option<PathBuf>,
    /// Other stations' folders (`<swarm_dir>/<PEERID>/x_<slug>.sh`). Default: `~/.zen/tmp/swarm`.
    pub swarm_dir: Option<PathBuf>,
    /// Where sshd's port is read.
    pub sshd_config: PathBuf,
    /// Slugs never published, besides `DRAGON_PRIVATE_SERVICES`.
    pub private: Vec<String>,
    /// Port of a slug on this station, overriding the catalog and modules.list.
    pub ports: BTreeMap<String, u16>,
    /// Only these peers may open a slug's tunnel (e.g. `ssh = ["12D3…"]`). Default: every peer.
    pub allow_peers: BTreeMap<String, Vec<String>>,
}

impl Default for DragonConfig {
    fn default() -> Self {
        DragonConfig {
            enabled: true,
            interval_secs: 300,
            modules_list: None,
            env_file: None,
            scripts_dir: None,
            swarm_dir: None,
            sshd_config: PathBuf::from("/etc/ssh/sshd_config"),
            private: Vec::new(),
            ports: BTreeMap::new(),
            allow_peers: BTreeMap::new(),
        }
    }
}

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
    /// Keep a managed block of `~/.ssh/authorized_keys` (bootstrap keys, players' ssh.pub,
    /// same-UPlanet captains' ssh_pub) and the station's x/y/z_ssh.pub, as DRAGON_p2p_ssh.sh does
    /// every hour. Off unless set (`constellation migrate` sets it on an Astroport station).
    pub manage_ssh_keys: bool,
    /// Seconds between two refreshes of the SSH trust (the original: hourly).
    pub ssh_keys_interval_secs: u64,
    /// Default: `~/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    /// The bootstrap keys. Default: `~/.zen/Astroport.ONE/A_boostrap_ssh.txt`.
    pub ssh_bootstrap: Option<PathBuf>,
    /// UPLANETG1PUB, the UPlanet whose captains are trusted. Default: `$UPLANETG1PUB`, else
    /// `~/.zen/game/uplanet.ss58`, else `~/.zen/tmp/UPLANETG1PUB` (as Astroport's my.sh caches it).
    pub uplanet_g1pub: Option<String>,
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
            manage_ssh_keys: false,
            ssh_keys_interval_secs: 3600,
            authorized_keys: None,
            ssh_bootstrap: None,
            uplanet_g1pub: None,
        }
    }
}

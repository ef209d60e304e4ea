//! `[ipfs]`: the daemon's block store (UnixFS blocks it serves and fetches over bitswap).

use serde::{Deserialize, Serialize};

/// `[ipfs]` of config.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpfsConfig {
    /// Bound on the block store (`<home>/blocks`): the swarm map's mirrors and our own folder
    /// fit many times over (1,000 stations × a few hundred KiB), and a station's disk is kept
    /// safe from a peer that offers endless blocks.
    pub blocks_max_bytes: u64,
}

impl Default for IpfsConfig {
    fn default() -> Self {
        IpfsConfig {
            blocks_max_bytes: 2 << 30,
        }
    }
}

//! `[[tunnels]]`: declared tunnels, as `p2p listen` or `p2p forward` would create them (also the
//! records of `tunnels.json` and the control API's tunnel requests).

use serde::{Deserialize, Serialize};

/// One declared tunnel, as `p2p listen` or `p2p forward` would create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TunnelSpec {
    Listen(ListenSpec),
    Forward(ForwardSpec),
}

/// `p2p listen` arguments: inbound streams of `protocol` are piped to the TCP `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    pub protocol: String,
    pub target: String,
    /// Write the remote's PeerID and `\n` to the target first (`-r`).
    #[serde(default)]
    pub report_peer_id: bool,
    #[serde(default)]
    pub allow_custom_protocol: bool,
    /// Empty: every peer of the swarm may connect (Kubo's behaviour).
    #[serde(default)]
    pub allow_peers: Vec<String>,
}

/// `p2p forward` arguments: TCP connections to `listen` are carried to `target` (a peer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    pub protocol: String,
    pub listen: String,
    pub target: String,
    #[serde(default)]
    pub allow_custom_protocol: bool,
}

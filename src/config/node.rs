//! `[node]` and `[node.limits]`: the libp2p side's addresses, peers, identity source and caps.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[node]`: the libp2p side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Multiaddrs to listen on (TCP; QUIC too when there is no swarm key).
    pub listen: Vec<String>,
    /// Peers dialled once at start (`/ip4/…/tcp/…/p2p/…`).
    pub bootstrap: Vec<String>,
    /// Peers kept connected: re-dialled when the connection drops (Kubo's `Peering.Peers`).
    pub peering: Vec<String>,
    /// Import the identity from this Kubo repo instead of the node's own key.
    pub kubo_repo: Option<PathBuf>,
    /// Swarm key file (`/key/swarm/psk/1.0.0/`); default: `<kubo repo>/swarm.key` when importing.
    pub swarm_key: Option<PathBuf>,
    pub limits: NodeLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            peering: Vec::new(),
            kubo_repo: None,
            swarm_key: None,
            limits: NodeLimits::default(),
        }
    }
}

/// `[node.limits]`: resource caps, so that one peer cannot exhaust the station.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// All established connections (a Pi serves a few dozen stations).
    pub max_connections: u32,
    /// Connections to one peer (Kubo keeps 1–2; more is a misbehaving peer).
    pub max_connections_per_peer: u32,
    /// Connections still in the handshake.
    pub max_pending: u32,
    /// Concurrent tunnel streams from one peer; more are reset.
    pub max_streams_per_peer: usize,
    /// Seconds an open stream may keep running after SIGTERM before it is cut.
    pub shutdown_grace_secs: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_connections: 512,
            max_connections_per_peer: 4,
            max_pending: 64,
            max_streams_per_peer: 256,
            shutdown_grace_secs: 5,
        }
    }
}

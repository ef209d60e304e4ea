//! `[node]` and `[node.limits]`: the libp2p side's addresses, peers, routing, identity source
//! and caps.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[node]`: the libp2p side. The first-peer keys (`listen` … `no_announce`) are `None` when
/// config.toml does not set them, so that a Kubo repo's values can fill them (config wins).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Multiaddrs to listen on (TCP; QUIC too when there is no swarm key). Default
    /// [`DEFAULT_LISTEN`], or the Kubo repo's `Addresses.Swarm`.
    pub listen: Option<Vec<String>>,
    /// Peers dialled at start (`/ip4/…/tcp/…/p2p/…`, `/dnsaddr/…`); Kubo's `Bootstrap`.
    pub bootstrap: Option<Vec<String>>,
    /// Peers kept connected: re-dialled when the connection drops (Kubo's `Peering.Peers`).
    /// `/p2p/<id>` alone is looked up in the DHT.
    pub peering: Option<Vec<String>>,
    /// `"dht"` (default), `"dhtclient"`, `"dhtserver"` or `"none"`: Kubo's `Routing.Type`.
    pub routing: Option<RoutingMode>,
    /// Addresses announced instead of the listen addresses (Kubo's `Addresses.Announce`).
    pub announce: Option<Vec<String>>,
    /// Addresses announced besides them (`Addresses.AppendAnnounce`).
    pub append_announce: Option<Vec<String>>,
    /// Addresses never announced (`Addresses.NoAnnounce`).
    pub no_announce: Option<Vec<String>>,
    /// DNS server for `/dns4`, `/dns6`, `/dnsaddr` ("IP:PORT"); default: the system's.
    pub dns: Option<String>,
    /// Import the identity from this Kubo repo instead of the node's own key.
    pub kubo_repo: Option<PathBuf>,
    /// Swarm key file (`/key/swarm/psk/1.0.0/`); default: `<kubo repo>/swarm.key` when importing.
    pub swarm_key: Option<PathBuf>,
    /// Circuit relays (`…/p2p/<id>`) to reserve a slot on while behind NAT; kept connected.
    pub relays: Vec<String>,
    /// Serve relay v2 slots to others: unset = while AutoNAT says we are public.
    pub relay_service: Option<bool>,
    /// AutoNAT also for private addresses (a LAN or VPN constellation); off, as Kubo.
    pub autonat_private_addresses: bool,
    /// Threads of the runtime that carries the swarm, its connections and the tunnels: unset
    /// = one (`node::net`: fewer cross-thread wake-ups per frame, measured); 0 = share the
    /// daemon's runtime with the relay.
    pub net_workers: Option<usize>,
    pub limits: NodeLimits,
}

/// Listen addresses when neither config.toml nor a Kubo repo gives them (Kubo's defaults).
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];

/// `[node] routing`, as Kubo's `Routing.Type` (the DHT itself lives in `node::routing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// A DHT client until the node is known to be publicly reachable, then a server.
    #[default]
    Dht,
    /// Always a client: asks the DHT, never answers (home boxes behind NAT).
    DhtClient,
    /// Always a server: answers DHT queries (public boxes).
    DhtServer,
    /// No DHT: peers are reached only at addresses someone gave.
    None,
}

/// A `Routing.Type` we cannot map.
#[derive(Debug, thiserror::Error)]
#[error("unknown routing type {0:?} (expected dht, dhtclient, dhtserver or none)")]
pub struct UnknownRouting(pub String);

impl std::str::FromStr for RoutingMode {
    type Err = UnknownRouting;
    /// Kubo's names; its "auto"/"autoclient" (DHT plus HTTP routers) map to the DHT part.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dht" | "auto" | "" => Ok(RoutingMode::Dht),
            "dhtclient" | "autoclient" => Ok(RoutingMode::DhtClient),
            "dhtserver" => Ok(RoutingMode::DhtServer),
            "none" => Ok(RoutingMode::None),
            _ => Err(UnknownRouting(s.to_owned())),
        }
    }
}

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingMode::Dht => "dht",
            RoutingMode::DhtClient => "dhtclient",
            RoutingMode::DhtServer => "dhtserver",
            RoutingMode::None => "none",
        })
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
    /// Connection manager: above `conn_high` connections, idle ones (no tunnel, not a peering
    /// peer) are closed down to `conn_low` (Kubo's `Swarm.ConnMgr` 40/200).
    pub conn_low: u32,
    pub conn_high: u32,
    /// A connection younger than this is never trimmed (Kubo's `Swarm.ConnMgr.GracePeriod`,
    /// 20 s: time for a new peer to open the stream it connected for).
    pub conn_grace_secs: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_connections: 512,
            max_connections_per_peer: 4,
            max_pending: 64,
            max_streams_per_peer: 256,
            shutdown_grace_secs: 5,
            conn_low: 40,
            conn_high: 200,
            conn_grace_secs: 20,
        }
    }
}

//! The libp2p node: one task owns the `Swarm` and serves a cloneable [`Node`] handle through a
//! bounded command channel (rust-libp2p's file-sharing pattern). Streams are opened through
//! `libp2p-stream`'s `Control`, which needs no round trip through the event loop.

mod address_book;
pub mod bitswap;
pub mod bootstrap;
mod hold;
pub mod inbound;
pub mod muxer;
pub mod names;
pub mod nat;
pub mod net;
pub mod options;
pub mod pinger;
pub mod pnet;
pub mod providers;
pub mod read_ahead;
pub mod records;
pub mod routing;
pub mod security;
pub mod swarm;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, ping};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{NodeLimits, RoutingMode};
use crate::ipfs::ipns::{self, IpnsRecord};
use bootstrap::{FirstPeers, Keeper};
pub use hold::{Hold, Holds};
use nat::{ConnectionKind, Nat, NatOutcome, Reachability, ReservationInfo};
use routing::{Lookups, Table};
use swarm::{Behaviour, BehaviourEvent};

/// Commands queued to the event loop; a full queue makes callers wait (back-pressure).
const COMMAND_QUEUE: usize = 64;
/// How long a dial (TCP connect + handshakes) may take before we give up.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a dial: a little longer than the swarm's own 10 s handshake
/// timeout, so its error (which says why, e.g. a swarm key mismatch) arrives before ours.
const DIAL_WAIT: Duration = Duration::from_secs(12);
/// How long opening a stream on an established connection may take (multistream-select).
const OPEN_STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits for every listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The keeper looks at the kept peers (peering peers, static relays, the swarm map) and the
/// watermarks this often (each peer's own backoff decides whether it is dialled); relay
/// reservations are checked on the same tick.
const KEEPER_TICK: Duration = Duration::from_secs(5);
/// Listen addresses of one peer fed from identify into the DHT (a station has a handful).
const MAX_IDENTIFY_ADDRS: usize = 16;
/// How-found hints kept for peers we dialled but are not connected to yet.
const MAX_ORIGIN_HINTS: usize = 4096;
/// A stream to a peer reached only through a relay first waits this long for DCUtR to open a
/// direct connection (Kubo waits for one too, see `protocols/compat-kubo.md`); hole punching
/// takes one round trip and a simultaneous dial, a few hundred ms on real links.
const DIRECT_UPGRADE_WAIT: Duration = Duration::from_secs(5);

/// Errors of the node; the messages are written for an operator.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the network runtime stopped while the node started: {0}")]
    Runtime(String),
    #[error(transparent)]
    Build(#[from] swarm::BuildError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("{0} has no /p2p/<peer id> part")]
    NoPeerId(Multiaddr),
    #[error("no known address for peer {0} (give a full multiaddr, or `swarm connect` first)")]
    NoAddress(PeerId),
    #[error("peer {peer} not found in the DHT after {secs} s")]
    NotInDht { peer: PeerId, secs: u64 },
    #[error("cannot look peer {peer} up: {source}")]
    Lookup {
        peer: PeerId,
        #[source]
        source: routing::LookupError,
    },
    #[error("cannot connect to {peer}: {reason}")]
    Dial { peer: String, reason: String },
    #[error("cannot open {protocol} to {peer}: {reason}")]
    OpenStream {
        peer: String,
        protocol: String,
        reason: String,
    },
    #[error("DHT record: {0}")]
    Dht(String),
    #[error("no valid IPNS record for {name} in the DHT ({answers} answers)")]
    NoRecord { name: PeerId, answers: usize },
    #[error("IPNS record refused: {0}")]
    Ipns(#[from] crate::ipfs::ipns::IpnsError),
    #[error("the node is shutting down")]
    Stopped,
}

/// Everything the node needs to start.
pub struct NodeOptions {
    pub keypair: Keypair,
    pub psk: Option<PreSharedKey>,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// Kept connected; `/p2p/<id>` alone is looked up in the DHT.
    pub peering: Vec<Multiaddr>,
    pub limits: NodeLimits,
    pub routing: RoutingMode,
    /// `[node] dns`: the resolver of `/dns*` and `/dnsaddr`; `None`: the system's.
    pub dns: Option<SocketAddr>,
    /// Announced instead of the listen addresses when non-empty (`Addresses.Announce`).
    pub announce: Vec<Multiaddr>,
    pub append_announce: Vec<Multiaddr>,
    pub no_announce: Vec<Multiaddr>,
    /// The swarm map folder (`~/.zen/tmp/swarm`): its stations are kept connected.
    pub swarm_dir: Option<PathBuf>,
    /// The resolved first-peer settings and their sources, shown by `id --json`.
    pub first_peers: Option<FirstPeers>,
    pub nat: nat::NatOptions,
    /// The runtime of the swarm, its connections and the tunnels ([`net`]); `None`: the
    /// caller's.
    pub net: Option<tokio::runtime::Handle>,
}

/// How a connected peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Bootstrap,
    Peering,
    Dht,
    /// A station of the swarm map folder.
    SwarmMap,
    /// Dialled at an address someone gave (`swarm connect`, a tunnel target).
    Dialed,
    /// It connected to us.
    Inbound,
}

/// A connected peer as `swarm peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub address: String,
    pub agent: Option<String>,
    pub found: Origin,
    /// How the best connection to the peer goes: direct, relayed or hole-punched.
    pub connection: ConnectionKind,
    /// Last ping round trip.
    pub latency_ms: Option<f64>,
    /// Tunnel streams open on it.
    pub tunnels: usize,
}

/// A snapshot of the node for `id`, the status page and the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub peers: Vec<PeerInfo>,
    pub private_network: bool,
    pub agent: String,
    pub routing: RoutingMode,
    /// The WAN DHT's mode now ("client", "server"), or none.
    pub dht_mode: Option<String>,
    /// Whether peers can dial us (AutoNAT): public, private or unknown.
    #[serde(default)]
    pub reachability: Reachability,
    /// The addresses identify announces: listen addresses (`/p2p-circuit` ones included) and
    /// confirmed external ones.
    #[serde(default)]
    pub announced: Vec<String>,
    /// Peers in the WAN and LAN routing tables.
    pub dht_peers: usize,
    pub first_peers: Option<FirstPeers>,
    /// Our relay reservations (while private).
    #[serde(default)]
    pub relay_reservations: Vec<ReservationInfo>,
    /// Whether we serve relay slots to others now.
    #[serde(default)]
    pub relay_service: bool,
    /// The public key, base64 of its libp2p protobuf (Kubo's `ipfs id` `PublicKey`).
    #[serde(default)]
    pub public_key: String,
    /// Protocols we answer on inbound streams, sorted.
    #[serde(default)]
    pub protocols: Vec<String>,
}

enum Command {
    Connect {
        addr: Multiaddr,
        peer: PeerId,
        reply: oneshot::Sender<Result<(), String>>,
    },
    EnsureConnected {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Each answer on `reply` as it comes; closed when the query is done.
    GetRecords {
        key: Vec<u8>,
        reply: mpsc::Sender<Vec<u8>>,
    },
    /// Answer once `peer` has a direct connection, or cannot get one soon.
    WaitDirect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    KnownAddrs {
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    /// Close every connection to `peer` (`ipfs swarm disconnect`); false if there was none.
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    /// GET_PROVIDERS of a multihash (`providers`).
    FindProviders {
        key: Vec<u8>,
        limit: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// ADD_PROVIDER of a multihash (`providers`).
    Provide {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Cheap, cloneable handle to the running node.
#[derive(Clone)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    streams: libp2p_stream::Control,
    inbound: inbound::InboundControl,
    holds: Holds,
    reachability: watch::Receiver<Reachability>,
    net: tokio::runtime::Handle,
}

impl Node {
    /// Build the swarm, open every listener, and spawn the event loop on `tracker`, all on the
    /// network runtime (`options.net`), so that the listeners, the connections and the swarm's
    /// own tasks live there. Returns once all listeners have their addresses (port 0 resolved).
    pub async fn start(
        options: NodeOptions,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(Node, Vec<Multiaddr>), NodeError> {
        let net = options
            .net
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let start = Node::start_here(options, shutdown, tracker.clone(), net.clone());
        net.spawn(start)
            .await
            .map_err(|e| NodeError::Runtime(e.to_string()))?
    }

    /// [`Node::start`]'s work, on the network runtime `net`.
    async fn start_here(
        options: NodeOptions,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        net: tokio::runtime::Handle,
    ) -> Result<(Node, Vec<Multiaddr>), NodeError> {
        if let Some(psk) = &options.psk {
            tracing::info!("Swarm is limited to private network of peers with the swarm key");
            tracing::info!("Swarm key fingerprint: {}", psk.fingerprint());
        }
        let peer_id = options.keypair.public().to_peer_id();
        let swarm_options = swarm::SwarmOptions {
            psk: options.psk,
            limits: &options.limits,
            routing: options.routing,
            dns: options.dns,
            hide_listen_addrs: hides_listen_addrs(&options),
            nat: &options.nat,
        };
        let mut swarm = swarm::build(options.keypair.clone(), swarm_options)?;
        let listen = open_listeners(&mut swarm, &options.listen).await?;
        announce(&mut swarm, &options, &listen);
        let streams = swarm.behaviour().stream.new_control();
        let inbound = swarm.behaviour().inbound.control();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let holds = Holds::default();
        let peering = bootstrap::targets(&options.peering);
        let relays = bootstrap::targets(&options.nat.relays);
        let nat = Nat::new(&options.nat);
        let reachability = nat.watch();
        let mut event_loop = EventLoop {
            swarm,
            commands: receiver,
            private_network: options.psk.is_some(),
            hide_listen_addrs: hides_listen_addrs(&options),
            keeper: Keeper::new(
                peering.iter().chain(&relays).map(|t| t.peer),
                options.swarm_dir.clone(),
            ),
            connected: HashMap::new(),
            origins: HashMap::new(),
            lookups: Lookups::default(),
            records: records::Records::default(),
            holds: holds.clone(),
            routing: options.routing,
            first_peers: options.first_peers.clone(),
            public_key: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                options.keypair.public().encode_protobuf(),
            ),
            watermarks: bootstrap::Watermarks {
                low: options.limits.conn_low as usize,
                high: options.limits.conn_high as usize,
                grace: Duration::from_secs(options.limits.conn_grace_secs),
            },
            pending_connects: HashMap::new(),
            pending_peers: HashMap::new(),
            nat,
            direct_waiters: HashMap::new(),
        };
        for target in peering.into_iter().chain(relays) {
            for addr in target.addrs {
                event_loop.swarm.add_peer_address(target.peer, addr);
            }
        }
        for addr in &options.bootstrap {
            if let Err(e) = event_loop.dial_addr(addr.clone(), Origin::Bootstrap) {
                tracing::warn!(%addr, "cannot dial bootstrap address: {e}");
            }
        }
        tracker.spawn(event_loop.run(shutdown));
        Ok((
            Node {
                peer_id,
                commands,
                streams,
                inbound,
                holds,
                reachability,
                net,
            },
            listen,
        ))
    }

    /// Hold `peer` while a tunnel stream to it is open: its connection is never trimmed.
    pub fn hold(&self, peer: PeerId) -> Hold {
        self.holds.hold(peer)
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The network runtime: where the tunnels run their accept loops and pipes ([`net`]).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.net
    }

    /// Reachability as AutoNAT finds it; `changed()` wakes on every change.
    pub fn reachability(&self) -> watch::Receiver<Reachability> {
        self.reachability.clone()
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, receive) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        receive.await.map_err(|_| NodeError::Stopped)
    }

    /// Dial `addr` (which must end in `/p2p/<id>`), remember it, and wait for the connection.
    /// `/p2p/<id>` alone dials the peer's known addresses, or looks it up in the DHT.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let peer = peer_of(&addr).ok_or_else(|| NodeError::NoPeerId(addr.clone()))?;
        if addr.iter().count() == 1 {
            self.ensure_connected(peer).await?;
            return Ok(peer);
        }
        let dial = self.send(|reply| Command::Connect { addr, peer, reply });
        match tokio::time::timeout(DIAL_WAIT, dial).await {
            Ok(result) => result?.map_err(|reason| NodeError::Dial {
                peer: peer.to_string(),
                reason,
            })?,
            Err(_) => {
                return Err(NodeError::Dial {
                    peer: peer.to_string(),
                    reason: format!("timed out after {DIAL_WAIT:?}"),
                });
            }
        }
        Ok(peer)
    }

    /// Make sure a connection to `peer` exists, dialling its known addresses if needed, else
    /// the addresses a DHT lookup finds.
    pub async fn ensure_connected(&self, peer: PeerId) -> Result<(), NodeError> {
        let wait = self.send(|reply| Command::EnsureConnected { peer, reply });
        let limit = DIAL_WAIT + routing::FIND_PEER_TIMEOUT;
        match tokio::time::timeout(limit, wait).await {
            Ok(result) => result?,
            Err(_) => Err(NodeError::Dial {
                peer: peer.to_string(),
                reason: format!("timed out after {limit:?}"),
            }),
        }
    }

    /// Open a raw stream for `protocol` to `peer`, connecting first if needed.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<libp2p::Stream, NodeError> {
        self.ensure_connected(peer).await?;
        // As Kubo: not on a relayed (limited) connection while hole punching may still open a
        // direct one. Unlike Kubo, which then fails, we fall back to the relay (its limits apply).
        let wait = self.send(|reply| Command::WaitDirect { peer, reply });
        if tokio::time::timeout(DIRECT_UPGRADE_WAIT, wait)
            .await
            .is_err()
        {
            tracing::debug!(%peer, "no direct connection after {DIRECT_UPGRADE_WAIT:?}: using the relay");
        }
        let mut control = self.streams.clone();
        let err = |reason: String| NodeError::OpenStream {
            peer: peer.to_string(),
            protocol: protocol.to_string(),
            reason,
        };
        match tokio::time::timeout(
            OPEN_STREAM_TIMEOUT,
            control.open_stream(peer, protocol.clone()),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(err(e.to_string())),
            Err(_) => Err(err(format!("timed out after {OPEN_STREAM_TIMEOUT:?}"))),
        }
    }

    /// Register `protocol` for inbound streams.
    pub fn accept(
        &self,
        protocol: StreamProtocol,
    ) -> Result<mpsc::Receiver<(PeerId, libp2p::Stream)>, inbound::AlreadyRegistered> {
        self.inbound.accept(protocol)
    }

    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        self.send(|reply| Command::Info { reply }).await
    }

    /// Every peer we know addresses for (the address book and the live connections).
    pub async fn known_addrs(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NodeError> {
        self.send(|reply| Command::KnownAddrs { reply }).await
    }

    /// Close every connection to `peer` (`ipfs swarm disconnect /p2p/<peer>`); false when none
    /// was open. The peer may dial back; the swarm map logs it again if it is still no station.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.send(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Kubo's `routing findpeer`: the addresses of `peer`, looked up in the DHT when none is
    /// known (a connection is made on the way, as `ensure_connected` does).
    pub async fn find_peer(&self, peer: PeerId) -> Result<Vec<Multiaddr>, NodeError> {
        self.ensure_connected(peer).await?;
        let known = self.known_addrs().await?;
        Ok(known
            .into_iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, addrs)| addrs)
            .unwrap_or_default())
    }

    /// Publish `record` for our own name: PUT_VALUE under `/ipns/<our id>` to the closest
    /// peers of both tables. It is checked first, as every peer will check it.
    pub async fn put_ipns(&self, record: &IpnsRecord) -> Result<(), NodeError> {
        self.put_ipns_for(self.peer_id, record).await
    }

    /// Publish `record` under `/ipns/<name>` (a name of ours other than the node key, e.g.
    /// `MySwarm_<ID>`); see [`names::Names`] for sequence numbers that survive restarts.
    pub async fn put_ipns_for(&self, name: PeerId, record: &IpnsRecord) -> Result<(), NodeError> {
        record.validate(&name, chrono::Utc::now())?;
        let key = ipns::routing_key(&name);
        let value = record.marshal();
        let put = self.send(|reply| Command::PutRecord { key, value, reply });
        let limit = records::RESOLVE_TIMEOUT + DIAL_WAIT;
        match tokio::time::timeout(limit, put).await {
            Ok(result) => result?.map_err(NodeError::Dht),
            Err(_) => Err(NodeError::Dht(format!("no answer after {limit:?}"))),
        }
    }

    /// Resolve `/ipns/<name>` through the DHT: the answers are validated for `name` and the
    /// best valid one returned. Answers are taken until the query ends, or until
    /// [`records::RESOLVE_SETTLE`] after the first valid one, within
    /// [`records::RESOLVE_TIMEOUT`] in all.
    pub async fn resolve_ipns(&self, name: PeerId) -> Result<IpnsRecord, NodeError> {
        let key = ipns::routing_key(&name);
        let (reply, mut answers) = mpsc::channel(records::MAX_ANSWERS);
        (self.commands.send(Command::GetRecords { key, reply }).await)
            .map_err(|_| NodeError::Stopped)?;
        let deadline = tokio::time::Instant::now() + records::RESOLVE_TIMEOUT + DIAL_WAIT;
        let (mut values, mut until) = (Vec::new(), deadline);
        while let Ok(Some(value)) = tokio::time::timeout_at(until, answers.recv()).await {
            let valid = records::best_valid(&name, std::slice::from_ref(&value)).0;
            if valid.is_some() && until == deadline {
                until = deadline.min(tokio::time::Instant::now() + records::RESOLVE_SETTLE);
            }
            values.push(value);
        }
        let (best, refused) = records::best_valid(&name, &values);
        for e in &refused {
            tracing::warn!(%name, "IPNS record from the DHT refused: {e}");
        }
        best.ok_or(NodeError::NoRecord {
            name,
            answers: values.len(),
        })
    }
}

pub use address_book::peer_of;

/// Call `listen_on` for each address and drive the swarm until each one has an address.
async fn open_listeners(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, NodeError> {
    let mut waiting: HashMap<ListenerId, Multiaddr> = HashMap::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Listen {
                addr: addr.clone(),
                reason: transport_error_text(&e),
            })?;
        waiting.insert(id, addr.clone());
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
    tokio::pin!(deadline);
    while !waiting.is_empty() {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            () = &mut deadline => {
                let addr = waiting.into_values().next().expect("non-empty");
                return Err(NodeError::Listen { addr, reason: "no address after 5 s".into() });
            }
        };
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                waiting.remove(&listener_id);
                bound.push(address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = waiting.remove(&listener_id) {
                    let reason = match reason {
                        Err(e) => e.to_string(),
                        Ok(()) => "listener closed".into(),
                    };
                    return Err(NodeError::Listen { addr, reason });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(addr) = waiting.remove(&listener_id) {
                    return Err(NodeError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    // A wildcard listener reports one address per interface; give them all a moment.
    while let Ok(Some(SwarmEvent::NewListenAddr { address, .. })) =
        tokio::time::timeout(Duration::from_millis(20), swarm.next()).await
    {
        bound.push(address);
    }
    Ok(bound)
}

/// Whether identify announces only the external addresses: `Addresses.Announce` or
/// `NoAnnounce` is set, so the listen addresses are not announced as such.
fn hides_listen_addrs(options: &NodeOptions) -> bool {
    !options.announce.is_empty() || !options.no_announce.is_empty()
}

/// Announce `Addresses.Announce` (instead of the listen addresses), `AppendAnnounce`, and
/// the listen addresses minus `NoAnnounce` when only that is set.
fn announce(swarm: &mut Swarm<Behaviour>, options: &NodeOptions, listen: &[Multiaddr]) {
    let mut addrs: Vec<Multiaddr> = if !options.announce.is_empty() {
        options.announce.clone()
    } else if !options.no_announce.is_empty() {
        listen.to_vec()
    } else {
        Vec::new()
    };
    addrs.extend(options.append_announce.iter().cloned());
    addrs.retain(|a| !options.no_announce.iter().any(|f| hides(f, a)));
    for addr in addrs {
        swarm.add_external_address(addr);
    }
}

/// Does `NoAnnounce` entry `filter` hide `addr`? As Kubo reads it: `/ip4/A/ipcidr/N` (or `/ip6`)
/// hides every address whose IP is in that network; any other entry hides itself exactly.
fn hides(filter: &Multiaddr, addr: &Multiaddr) -> bool {
    let mut parts = filter.iter();
    let (Some(net), Some(Protocol::Ipcidr(bits)), None) =
        (parts.next(), parts.next(), parts.next())
    else {
        return filter == addr;
    };
    let in_net = |ip: u128, net: u128, width: u32| {
        let bits = u32::from(bits).min(width);
        // A /0 covers everything; shifting by the whole width would overflow.
        bits == 0 || (ip ^ net) >> (width - bits) == 0
    };
    match (net, addr.iter().next()) {
        (Protocol::Ip4(net), Some(Protocol::Ip4(ip))) => {
            in_net(u32::from(ip).into(), u32::from(net).into(), 32)
        }
        (Protocol::Ip6(net), Some(Protocol::Ip6(ip))) => in_net(ip.into(), net.into(), 128),
        _ => false,
    }
}

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

fn transport_error_text<E: std::fmt::Display>(e: &libp2p::TransportError<E>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!("unsupported address {a}"),
        libp2p::TransportError::Other(e) => e.to_string(),
    }
}

/// A connected peer and when its first connection was established (for trimming).
struct Connected {
    info: PeerInfo,
    since: Instant,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    private_network: bool,
    /// Identify announces only the external addresses (see [`hides_listen_addrs`]).
    hide_listen_addrs: bool,
    keeper: Keeper,
    connected: HashMap<PeerId, Connected>,
    /// How peers we are dialling were found, until they connect (bounded).
    origins: HashMap<PeerId, Origin>,
    lookups: Lookups,
    /// DHT record puts and gets in flight (IPNS).
    records: records::Records,
    holds: Holds,
    routing: RoutingMode,
    first_peers: Option<FirstPeers>,
    /// Our public key as `id` shows it (base64 protobuf).
    public_key: String,
    /// The connection manager's watermarks and grace.
    watermarks: bootstrap::Watermarks,
    pending_connects: HashMap<ConnectionId, oneshot::Sender<Result<(), String>>>,
    pending_peers: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NodeError>>>>,
    nat: Nat,
    /// Streams waiting for a direct connection to a peer reached only through a relay.
    direct_waiters: HashMap<PeerId, Vec<oneshot::Sender<()>>>,
}

impl EventLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut keeper = tokio::time::interval(KEEPER_TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(command) = self.commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = keeper.tick() => {
                    self.keep();
                    self.nat.ensure_reservations(&mut self.swarm);
                }
            }
        }
        // Dropping the swarm closes its listeners and connections.
        tracing::debug!("node event loop stopped");
    }

    /// Remember how `peer` was found, unless something said so first (bounded).
    fn hint(&mut self, peer: PeerId, origin: Origin) {
        if self.origins.len() < MAX_ORIGIN_HINTS || self.origins.contains_key(&peer) {
            self.origins.entry(peer).or_insert(origin);
        }
    }

    fn dial_addr(&mut self, addr: Multiaddr, origin: Origin) -> Result<ConnectionId, String> {
        if let Some(peer) = peer_of(&addr) {
            self.swarm.add_peer_address(peer, addr.clone());
            self.hint(peer, origin);
        }
        let opts = DialOpts::from(addr);
        let id = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Dial `peer` at its known addresses; false if the swarm refused to start the dial.
    fn dial_peer(&mut self, peer: PeerId) -> Result<(), NodeError> {
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
            Err(e) => Err(NodeError::Dial {
                peer: peer.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect { addr, peer, reply } => {
                self.swarm.add_peer_address(peer, addr.clone());
                match self.dial_addr(addr, Origin::Dialed) {
                    Ok(id) => {
                        self.pending_connects.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::EnsureConnected { peer, reply } => self.ensure_connected(peer, reply),
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::PutRecord { key, value, reply } => self.put_record(key, value, reply),
            Command::GetRecords { key, reply } => self.get_records(key, reply),
            Command::WaitDirect { peer, reply } => {
                if self.nat.only_relayed(&peer) {
                    self.direct_waiters.entry(peer).or_default().push(reply);
                } else {
                    let _ = reply.send(());
                }
            }
            Command::KnownAddrs { reply } => {
                let _ = reply.send(self.known_addrs());
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::FindProviders { key, limit, reply } => self.find_providers(key, limit, reply),
            Command::Provide { key, reply } => self.provide(key, reply),
        }
    }

    fn ensure_connected(&mut self, peer: PeerId, reply: oneshot::Sender<Result<(), NodeError>>) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        let result = if self.swarm.behaviour().addresses.get(&peer).is_empty() {
            self.look_up(peer)
        } else {
            self.hint(peer, Origin::Dialed);
            self.dial_peer(peer)
        };
        match result {
            Ok(()) => self.pending_peers.entry(peer).or_default().push(reply),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The reachability hook: AutoNAT changed its mind, so the DHT switches client/server.
    fn on_reachability(&mut self, reachability: Reachability) {
        tracing::debug!("reachability is now {reachability:?}");
        self.set_reachability(reachability);
    }

    fn on_nat_event(&mut self, event: nat::BehaviourEvent) {
        match self.nat.on_event(&mut self.swarm, event) {
            NatOutcome::None => {}
            NatOutcome::Reachability(r) => self.on_reachability(r),
            NatOutcome::Close(relayed) => self.retire_relayed(relayed),
            NatOutcome::HolePunchFailed(peer) => self.wake_direct_waiters(&peer),
        }
    }

    /// A direct connection now exists: close the relayed ones, so that streams use it.
    fn retire_relayed(&mut self, relayed: Vec<ConnectionId>) {
        for id in relayed {
            tracing::debug!(connection = ?id, "closing a relayed connection: a direct one exists");
            self.swarm.close_connection(id);
        }
    }

    fn wake_direct_waiters(&mut self, peer: &PeerId) {
        for reply in self.direct_waiters.remove(peer).unwrap_or_default() {
            let _ = reply.send(());
        }
    }

    /// What identify announces: the external addresses, and the listen addresses (ours and the
    /// `/p2p-circuit` ones) unless `announce`/`no_announce` hides them.
    fn announced(&self) -> Vec<String> {
        let mut announced: Vec<String> = Vec::new();
        let listen = self.swarm.listeners().filter(|_| !self.hide_listen_addrs);
        for addr in listen.chain(self.swarm.external_addresses()) {
            let addr = addr.to_string();
            if !announced.contains(&addr) {
                announced.push(addr);
            }
        }
        announced
    }

    fn info(&mut self) -> NodeInfo {
        let behaviour = self.swarm.behaviour_mut();
        let dht_peers =
            routing::table_size(&mut behaviour.kad) + routing::table_size(&mut behaviour.lan_kad);
        let behaviour = self.swarm.behaviour();
        NodeInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers: (self.connected.iter())
                .map(|(peer, c)| {
                    let mut info = c.info.clone();
                    info.tunnels = self.holds.count(peer);
                    if let Some((kind, addr)) = self.nat.best_connection(peer) {
                        info.connection = kind;
                        info.address = addr.to_string();
                    }
                    info
                })
                .collect(),
            private_network: self.private_network,
            agent: swarm::AGENT_VERSION.into(),
            routing: self.routing,
            dht_mode: behaviour.kad.as_ref().map(|k| k.mode().to_string()),
            reachability: self.nat.reachability(),
            announced: self.announced(),
            dht_peers,
            first_peers: self.first_peers.clone(),
            relay_reservations: self.nat.reservations(),
            relay_service: self.nat.serving(),
            public_key: self.public_key.clone(),
            protocols: self.protocols(),
        }
    }

    /// Protocols answered on inbound streams: identify, ping, the DHT tables, the `/x/` ones.
    fn protocols(&self) -> Vec<String> {
        let behaviour = self.swarm.behaviour();
        let mut out: Vec<String> = ["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0"]
            .into_iter()
            .map(String::from)
            .chain([pinger::PING_PROTOCOL.to_string()])
            .collect();
        if behaviour.kad.is_enabled() {
            out.push(routing::WAN_PROTOCOL.to_string());
        }
        if behaviour.lan_kad.is_enabled() {
            out.push(routing::LAN_PROTOCOL.to_string());
        }
        out.extend(behaviour.inbound.control().protocols());
        out.sort();
        out
    }

    /// The address book joined with the live connections' remote addresses.
    fn known_addrs(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut known: HashMap<PeerId, Vec<Multiaddr>> =
            self.swarm.behaviour().addresses.all().collect();
        for (peer, connected) in &self.connected {
            if let Ok(addr) = connected.info.address.parse::<Multiaddr>() {
                let list = known.entry(*peer).or_default();
                if !list.contains(&addr) {
                    list.push(addr);
                }
            }
        }
        known.into_iter().collect()
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "connection closed: {cause:?}");
                self.nat.on_connection_closed(&peer_id, connection_id);
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.wake_direct_waiters(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => self.on_dial_error(peer_id, connection_id, &error.to_string()),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                let reason = self.explain(&error.to_string());
                tracing::warn!(from = %send_back_addr, "incoming connection failed: {reason}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identify(peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(entry) = self.connected.get_mut(&peer) {
                    entry.info.latency_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(Table::Wan, event),
            SwarmEvent::Behaviour(BehaviourEvent::LanKad(event)) => self.on_kad(Table::Lan, event),
            SwarmEvent::Behaviour(BehaviourEvent::Nat(event)) => self.on_nat_event(event),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => self.on_listen_addr(listener_id, address),
            SwarmEvent::ExpiredListenAddr { address, .. } => self.forget_circuit(&address),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                let reason = match reason {
                    Ok(()) => "closed".to_string(),
                    // The whole chain: a refused reservation says why only in its sources.
                    Err(e) => crate::logging::error_line(&anyhow::Error::from(e)),
                };
                self.nat.on_listener_closed(listener_id, &reason);
                addresses.iter().for_each(|a| self.forget_circuit(a));
            }
            _ => {}
        }
    }

    /// A connection is up: record how it goes and how the peer was found, answer the waiters.
    fn on_connected(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
        let mut address = match endpoint {
            // An inbound circuit's remote is only `/p2p/<src>`: show the relay instead.
            ConnectedPoint::Listener { local_addr, .. } if endpoint.is_relayed() => {
                local_addr.clone()
            }
            _ => endpoint.get_remote_address().clone(),
        };
        if peer_of(&address).is_some() {
            address.pop();
        }
        let relayed = endpoint.is_relayed();
        let retired = self
            .nat
            .on_connection(peer_id, connection_id, relayed, &address);
        self.retire_relayed(retired);
        if !relayed {
            self.wake_direct_waiters(&peer_id);
        }
        // A peering peer is one whoever dialled it (the DHT re-dials its table's peers too).
        let hinted = self.origins.remove(&peer_id);
        let found = match hinted {
            _ if self.keeper.is_peering(&peer_id) => Origin::Peering,
            Some(origin) => origin,
            None if endpoint.is_dialer() => Origin::Dialed,
            None => Origin::Inbound,
        };
        self.connected.entry(peer_id).or_insert_with(|| Connected {
            info: PeerInfo {
                peer_id: peer_id.to_string(),
                address: address.to_string(),
                agent: None,
                found,
                connection: (self.nat.best_connection(&peer_id))
                    .map_or(ConnectionKind::Direct, |(kind, _)| kind),
                latency_ms: None,
                tunnels: 0,
            },
            since: Instant::now(),
        });
        if let Some(reply) = self.pending_connects.remove(&connection_id) {
            let _ = reply.send(Ok(()));
        }
        for reply in self.pending_peers.remove(&peer_id).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
    }

    /// A dial failed: tell whoever asked for it, in one line.
    fn on_dial_error(&mut self, peer_id: Option<PeerId>, connection_id: ConnectionId, error: &str) {
        let reason = self.explain(error);
        let asked = self.pending_connects.contains_key(&connection_id)
            || peer_id.is_some_and(|p| self.pending_peers.contains_key(&p));
        if asked {
            tracing::warn!(peer = ?peer_id.map(|p| p.to_string()), "outgoing connection failed: {reason}");
        } else {
            // The DHT's and the keeper's own dials: a flood of them is no news.
            tracing::debug!(peer = ?peer_id.map(|p| p.to_string()), "outgoing connection failed: {reason}");
        }
        if let Some(reply) = self.pending_connects.remove(&connection_id) {
            let _ = reply.send(Err(reason.clone()));
        }
        if let Some(peer) = peer_id
            && !self.swarm.is_connected(&peer)
        {
            self.fail_waiters(peer, || reason.clone());
        }
    }

    /// Identify told us a peer's protocols and addresses: the DHT tables and the relay
    /// candidates learn from them.
    fn on_identify(&mut self, peer_id: PeerId, info: identify::Info) {
        let listen = &info.listen_addrs[..info.listen_addrs.len().min(MAX_IDENTIFY_ADDRS)];
        let behaviour = self.swarm.behaviour_mut();
        for kad in [&mut behaviour.kad, &mut behaviour.lan_kad] {
            routing::learn(kad, &info.protocols, peer_id, listen);
        }
        self.nat
            .on_identify(&mut self.swarm, peer_id, &info.protocols);
        if let Some(entry) = self.connected.get_mut(&peer_id) {
            entry.info.agent = Some(info.agent_version);
        }
    }

    /// A listener has an address. A `/p2p-circuit` one must be announced even when
    /// `announce`/`no_announce` hides the listen addresses: it is how peers reach us behind NAT.
    fn on_listen_addr(&mut self, listener: ListenerId, address: Multiaddr) {
        tracing::info!("listening on {address}");
        self.nat.on_new_listen_addr(listener, &address);
        if self.hide_listen_addrs && is_circuit(&address) {
            self.swarm.add_external_address(address);
        }
    }

    /// A `/p2p-circuit` address is gone: no longer announced.
    fn forget_circuit(&mut self, address: &Multiaddr) {
        if self.hide_listen_addrs && is_circuit(address) {
            self.swarm.remove_external_address(address);
        }
    }

    /// Tell everyone waiting for a connection to `peer` that it failed.
    fn fail_waiters(&mut self, peer: PeerId, reason: impl Fn() -> String) {
        for reply in self.pending_peers.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(NodeError::Dial {
                peer: peer.to_string(),
                reason: reason(),
            }));
        }
    }

    /// Turn a handshake failure into a sentence; in a private network the usual cause is the key.
    fn explain(&self, error: &str) -> String {
        // The DNS transport lists nested dial errors on several lines; an error is one line.
        let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
        // A key mismatch shows up as garbage after pnet: a failed noise/multistream handshake,
        // "Failed to negotiate transport protocol(s)" (inbound), or a handshake timeout.
        let lower = error.to_ascii_lowercase();
        if self.private_network
            && ["noise", "handshake", "multistream", "negotiat", "timeout"]
                .iter()
                .any(|word| lower.contains(word))
        {
            format!(
                "{error} (the peer probably uses a different swarm key, or none: private network handshake failed)"
            )
        } else {
            error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hides;

    #[test]
    fn no_announce_reads_ipcidr_as_a_network_and_anything_else_exactly() {
        let addr = |s: &str| s.parse::<libp2p::Multiaddr>().expect(s);
        let private = addr("/ip4/10.0.0.0/ipcidr/8");
        assert!(hides(&private, &addr("/ip4/10.1.2.3/tcp/4001")));
        assert!(!hides(&private, &addr("/ip4/11.1.2.3/tcp/4001")));
        assert!(!hides(&private, &addr("/ip6/::1/tcp/4001")));
        let one = addr("/ip4/192.168.1.7/ipcidr/32");
        assert!(hides(&one, &addr("/ip4/192.168.1.7/udp/4001/quic-v1")));
        assert!(!hides(&one, &addr("/ip4/192.168.1.8/tcp/4001")));
        assert!(hides(
            &addr("/ip4/0.0.0.0/ipcidr/0"),
            &addr("/ip4/1.2.3.4/tcp/1")
        ));
        let ula = addr("/ip6/fc00::/ipcidr/7");
        assert!(hides(&ula, &addr("/ip6/fd12::5/tcp/4001")));
        assert!(!hides(&ula, &addr("/ip6/2001:db8::1/tcp/4001")));
        // Over-wide masks are clamped, not a panic.
        assert!(hides(
            &addr("/ip4/10.0.0.1/ipcidr/200"),
            &addr("/ip4/10.0.0.1/tcp/1")
        ));
        let exact = addr("/ip4/1.2.3.4/tcp/4001");
        assert!(hides(&exact, &exact.clone()));
        assert!(!hides(&exact, &addr("/ip4/1.2.3.4/tcp/4002")));
    }
}

//! Kubo-style `/x/` tunnels: listeners (inbound stream → local TCP target) and forwards (local TCP
//! port → stream to a peer), their live streams, allow-lists and per-peer caps. One registry,
//! shared by the control API, DRAGON and the status page.

pub mod addr;
pub mod persist;
pub mod pipe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{ForwardSpec, ListenSpec};
use crate::node::Node;
pub use addr::AddrError;
use pipe::Counters;

/// How long a listener waits for its local target to accept before resetting the stream.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept()` (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Errors of tunnel operations, phrased for the CLI user.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Addr(#[from] AddrError),
    #[error("a listener for {0} already exists (one listener per protocol)")]
    AlreadyListening(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a peer id")]
    BadPeer(String),
    #[error("no tunnel matched")]
    NoMatch,
    #[error("no stream with id {0}")]
    NoStream(u64),
    #[error("a forward needs at least one of -a, -p, -l, -t")]
    NoFilter,
}

/// Which way a tunnel carries streams; serialized (and displayed) as `listen` / `forward`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// Inbound: peers' streams are piped to a local target.
    Listen,
    /// Outbound: a local TCP port carried to a peer.
    Forward,
}

impl std::fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TunnelKind::Listen => "listen",
            TunnelKind::Forward => "forward",
        })
    }
}

/// One row of `p2p ls`, in Kubo's columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TunnelInfo {
    pub protocol: String,
    pub listen_address: String,
    pub target_address: String,
    pub kind: TunnelKind,
    #[serde(default)]
    pub allow_peers: Vec<String>,
}

/// One row of `p2p stream ls`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamInfo {
    pub id: u64,
    pub protocol: String,
    pub origin_address: String,
    pub target_address: String,
    pub peer: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Which tunnels `p2p close` closes; every given field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloseFilter {
    pub all: bool,
    pub protocol: Option<String>,
    pub listen: Option<String>,
    pub target: Option<String>,
}

impl CloseFilter {
    pub fn matches(&self, t: &TunnelInfo) -> bool {
        self.all
            || (self.protocol.as_ref().is_none_or(|p| *p == t.protocol)
                && self.listen.as_ref().is_none_or(|l| *l == t.listen_address)
                && self.target.as_ref().is_none_or(|x| *x == t.target_address))
    }
    fn is_empty(&self) -> bool {
        !self.all && self.protocol.is_none() && self.listen.is_none() && self.target.is_none()
    }
}

struct TunnelEntry {
    info: TunnelInfo,
    stop: CancellationToken,
}

struct StreamEntry {
    info: StreamInfo,
    peer: PeerId,
    /// Our end of the connection to a loopback target (see [`Registry::origins`]).
    local: Option<SocketAddr>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    /// Keeps the connection manager off this peer's connection while the stream lives.
    _hold: crate::node::Hold,
}

#[derive(Default)]
struct Registry {
    tunnels: Vec<TunnelEntry>,
    streams: HashMap<u64, StreamEntry>,
    next_stream: u64,
    /// The local address of each loopback connection a listener opened to its target, and the
    /// peer it carries: the embedded relay reads it to tell swarm peers from local clients.
    origins: HashMap<SocketAddr, PeerId>,
}

impl Registry {
    /// Forget stream `id` (and its origin); returns its entry if it was still registered.
    fn remove_stream(&mut self, id: u64) -> Option<StreamEntry> {
        let entry = self.streams.remove(&id)?;
        if let Some(local) = entry.local {
            self.origins.remove(&local);
        }
        Some(entry)
    }
}

/// Shared handle to the tunnel registry of a running node.
#[derive(Clone)]
pub struct Tunnels {
    node: Node,
    registry: Arc<Mutex<Registry>>,
    /// Cancelled first at shutdown: listeners and forwards stop accepting.
    accepting: CancellationToken,
    /// Cancelled after the grace period: live streams are cut.
    streams: CancellationToken,
    tracker: TaskTracker,
    max_streams_per_peer: usize,
}

impl Tunnels {
    pub fn new(node: Node, max_streams_per_peer: usize) -> Tunnels {
        Tunnels {
            node,
            registry: Arc::default(),
            accepting: CancellationToken::new(),
            streams: CancellationToken::new(),
            tracker: TaskTracker::new(),
            max_streams_per_peer,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated in a way that
        // matters more than losing every tunnel, so recover the guard.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `p2p listen`: serve inbound streams of `protocol` by connecting to the TCP target.
    pub fn listen(&self, spec: &ListenSpec) -> Result<TunnelInfo, TunnelError> {
        let protocol = addr::parse_protocol(&spec.protocol, spec.allow_custom_protocol)?;
        let target = addr::tcp_socket_addr(&spec.target)?;
        let allow = spec
            .allow_peers
            .iter()
            .map(|p| {
                crate::identity::parse_peer_id(p)
                    .map_err(|_| TunnelError::BadPeer(crate::identity::shorten(p)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut registry = self.registry();
        if registry
            .tunnels
            .iter()
            .any(|t| t.info.kind == TunnelKind::Listen && t.info.protocol == spec.protocol)
        {
            return Err(TunnelError::AlreadyListening(spec.protocol.clone()));
        }
        let incoming = self
            .node
            .accept(protocol.clone())
            .map_err(|_| TunnelError::AlreadyListening(spec.protocol.clone()))?;
        let info = TunnelInfo {
            protocol: spec.protocol.clone(),
            listen_address: format!("/p2p/{}", self.node.peer_id()),
            target_address: addr::socket_multiaddr(target),
            kind: TunnelKind::Listen,
            allow_peers: spec.allow_peers.clone(),
        };
        let stop = self.accepting.child_token();
        registry.tunnels.push(TunnelEntry {
            info: info.clone(),
            stop: stop.clone(),
        });
        let listener = InboundListener {
            tunnels: self.clone(),
            protocol,
            target,
            report_peer_id: spec.report_peer_id,
            allow,
        };
        // On the network runtime, as the swarm: each stream's pipe and socket wake the
        // connection's task on the same thread (`node::net`).
        self.tracker
            .spawn_on(listener.run(incoming, stop), self.node.runtime());
        tracing::info!(protocol = %info.protocol, target = %info.target_address, "listening");
        Ok(info)
    }

    /// `p2p forward`: accept local TCP connections and carry each over a new stream to the peer.
    pub async fn forward(&self, spec: &ForwardSpec) -> Result<TunnelInfo, TunnelError> {
        let protocol = addr::parse_protocol(&spec.protocol, spec.allow_custom_protocol)?;
        let listen = addr::tcp_socket_addr(&spec.listen)?;
        let target = addr::parse_forward_target(&spec.target)?;
        if let Some(dial) = &target.dial {
            // Remember the address so the first connection can dial; failure is reported per connection.
            if let Err(e) = self.node.connect(dial.clone()).await {
                tracing::warn!(peer = %target.peer, "forward target not reachable yet: {e}");
            }
        }
        // Bound on the network runtime, whose reactor then serves its accepts (see `listen`).
        let listener = self
            .node
            .runtime()
            .spawn(TcpListener::bind(listen))
            .await
            .map_err(std::io::Error::other)
            .flatten()
            .map_err(|source| TunnelError::Bind {
                addr: spec.listen.clone(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| TunnelError::Bind {
            addr: spec.listen.clone(),
            source,
        })?;
        let info = TunnelInfo {
            protocol: spec.protocol.clone(),
            listen_address: addr::socket_multiaddr(bound),
            target_address: format!("/p2p/{}", target.peer),
            kind: TunnelKind::Forward,
            allow_peers: Vec::new(),
        };
        let stop = self.accepting.child_token();
        self.registry().tunnels.push(TunnelEntry {
            info: info.clone(),
            stop: stop.clone(),
        });
        let forward = OutboundForward {
            tunnels: self.clone(),
            protocol,
            peer: target.peer,
            listen_address: info.listen_address.clone(),
        };
        self.tracker
            .spawn_on(forward.run(listener, stop), self.node.runtime());
        tracing::info!(protocol = %info.protocol, listen = %info.listen_address, peer = %target.peer, "forwarding");
        Ok(info)
    }

    /// `p2p ls`.
    pub fn list(&self) -> Vec<TunnelInfo> {
        self.registry()
            .tunnels
            .iter()
            .map(|t| t.info.clone())
            .collect()
    }

    /// `p2p close`: stop matching listeners/forwards; their live streams keep running.
    pub fn close(&self, filter: &CloseFilter) -> Result<Vec<TunnelInfo>, TunnelError> {
        if filter.is_empty() {
            return Err(TunnelError::NoFilter);
        }
        let mut registry = self.registry();
        let (closed, kept): (Vec<_>, Vec<_>) = registry
            .tunnels
            .drain(..)
            .partition(|t| filter.matches(&t.info));
        registry.tunnels = kept;
        drop(registry);
        if closed.is_empty() && !filter.all {
            return Err(TunnelError::NoMatch);
        }
        Ok(closed
            .into_iter()
            .map(|t| {
                t.stop.cancel();
                tracing::info!(protocol = %t.info.protocol, "closed {}", t.info.kind);
                t.info
            })
            .collect())
    }

    /// `p2p stream ls`.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let registry = self.registry();
        let mut rows: Vec<StreamInfo> = registry
            .streams
            .values()
            .map(|s| StreamInfo {
                bytes_sent: s.counters.sent.load(Ordering::Relaxed),
                bytes_received: s.counters.received.load(Ordering::Relaxed),
                ..s.info.clone()
            })
            .collect();
        rows.sort_by_key(|s| s.id);
        rows
    }

    /// `p2p stream close ID` (`None`: all). Returns how many were closed.
    pub fn close_streams(&self, id: Option<u64>) -> Result<usize, TunnelError> {
        let registry = self.registry();
        match id {
            Some(id) => {
                let stream = registry.streams.get(&id).ok_or(TunnelError::NoStream(id))?;
                stream.stop.cancel();
                Ok(1)
            }
            None => {
                registry.streams.values().for_each(|s| s.stop.cancel());
                Ok(registry.streams.len())
            }
        }
    }

    /// The swarm peer behind a loopback connection one of our listeners opened from `local`.
    pub fn origin(&self, local: SocketAddr) -> Option<PeerId> {
        self.registry().origins.get(&local).copied()
    }

    /// [`Tunnels::origin`] as the relay takes it.
    pub fn origin_lookup(&self) -> Arc<dyn Fn(SocketAddr) -> Option<PeerId> + Send + Sync> {
        let tunnels = self.clone();
        Arc::new(move |local| tunnels.origin(local))
    }

    /// Local TCP ports of our forwards: DRAGON must never publish them (no tunnel → tunnel).
    pub fn forward_ports(&self) -> Vec<u16> {
        self.list()
            .iter()
            .filter(|t| t.kind == TunnelKind::Forward)
            .filter_map(|t| addr::tcp_socket_addr(&t.listen_address).ok())
            .map(|a| a.port())
            .collect()
    }

    /// Stop accepting, give live streams `grace` to finish, then cut them.
    pub async fn shutdown(&self, grace: Duration) {
        self.accepting.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                "cutting {} stream(s) still open after {grace:?}",
                self.registry().streams.len()
            );
            self.streams.cancel();
            self.tracker.wait().await;
        }
    }

    /// Register a live stream; `None` when `peer` already has the maximum.
    fn admit(
        &self,
        peer: PeerId,
        info: StreamInfo,
    ) -> Option<(u64, Arc<Counters>, CancellationToken)> {
        let mut registry = self.registry();
        let open = registry.streams.values().filter(|s| s.peer == peer).count();
        if open >= self.max_streams_per_peer {
            return None;
        }
        let id = registry.next_stream;
        registry.next_stream += 1;
        let counters = Arc::new(Counters::default());
        let stop = self.streams.child_token();
        let info = StreamInfo { id, ..info };
        registry.streams.insert(
            id,
            StreamEntry {
                info,
                peer,
                local: None,
                counters: counters.clone(),
                stop: stop.clone(),
                _hold: self.node.hold(peer),
            },
        );
        Some((id, counters, stop))
    }

    /// Pipe a registered stream and deregister it at the end.
    async fn run_stream(
        &self,
        id: u64,
        tcp: TcpStream,
        stream: libp2p::Stream,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) {
        let result = pipe::pipe(tcp, stream, &counters, &stop).await;
        if let Some(entry) = self.registry().remove_stream(id) {
            match result {
                Ok(()) => {
                    tracing::debug!(id, protocol = %entry.info.protocol, peer = %entry.peer, "stream finished")
                }
                Err(e) => {
                    tracing::debug!(id, protocol = %entry.info.protocol, peer = %entry.peer, "stream ended: {e}")
                }
            }
        }
    }
}

/// The accept loop of one `p2p listen`.
struct InboundListener {
    tunnels: Tunnels,
    protocol: StreamProtocol,
    target: SocketAddr,
    report_peer_id: bool,
    allow: Vec<PeerId>,
}

impl InboundListener {
    async fn run(
        self,
        mut incoming: tokio::sync::mpsc::Receiver<(PeerId, libp2p::Stream)>,
        stop: CancellationToken,
    ) {
        let this = Arc::new(self);
        loop {
            let (peer, stream) = tokio::select! {
                () = stop.cancelled() => break,
                next = incoming.recv() => match next { Some(s) => s, None => break },
            };
            if !this.allow.is_empty() && !this.allow.contains(&peer) {
                tracing::warn!(%peer, protocol = %this.protocol, "refused stream: peer is not in the allow-list");
                continue; // dropping the stream resets it
            }
            let info = StreamInfo {
                id: 0,
                protocol: this.protocol.to_string(),
                origin_address: format!("/p2p/{peer}"),
                target_address: addr::socket_multiaddr(this.target),
                peer: peer.to_string(),
                bytes_sent: 0,
                bytes_received: 0,
            };
            let Some((id, counters, stream_stop)) = this.tunnels.admit(peer, info) else {
                tracing::warn!(%peer, protocol = %this.protocol, "refused stream: peer has too many open streams");
                continue;
            };
            let this = this.clone();
            this.tunnels.tracker.clone().spawn(async move {
                match this.connect_target(id, peer).await {
                    Ok(tcp) => this.tunnels.run_stream(id, tcp, stream, counters, stream_stop).await,
                    Err(e) => {
                        this.tunnels.registry().remove_stream(id);
                        tracing::warn!(%peer, protocol = %this.protocol, target = %this.target, "cannot reach target, resetting stream: {e}");
                    }
                }
            });
        }
        tracing::debug!(protocol = %this.protocol, "listener stopped");
    }

    /// Connect to the target; a loopback target is dialled from an address registered first as
    /// this peer's (before the target can accept, so that it never sees an unknown origin).
    async fn connect_target(&self, id: u64, peer: PeerId) -> std::io::Result<TcpStream> {
        let socket = match self.target {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if self.target.ip().is_loopback() {
            socket.bind(SocketAddr::new(self.target.ip(), 0))?;
            let local = socket.local_addr()?;
            let mut registry = self.tunnels.registry();
            if let Some(entry) = registry.streams.get_mut(&id) {
                entry.local = Some(local);
                registry.origins.insert(local, peer);
            }
        }
        let mut tcp = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, socket.connect(self.target))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        tcp.set_nodelay(true)?;
        if self.report_peer_id {
            tcp.write_all(format!("{peer}\n").as_bytes()).await?;
        }
        Ok(tcp)
    }
}

/// The accept loop of one `p2p forward`.
struct OutboundForward {
    tunnels: Tunnels,
    protocol: StreamProtocol,
    peer: PeerId,
    listen_address: String,
}

impl OutboundForward {
    async fn run(self, listener: TcpListener, stop: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, from) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(listen = %this.listen_address, "accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let this = this.clone();
            this.tunnels
                .tracker
                .clone()
                .spawn(async move { this.carry(tcp, from).await });
        }
        tracing::debug!(listen = %this.listen_address, "forward stopped");
    }

    async fn carry(&self, tcp: TcpStream, from: SocketAddr) {
        let stream = match self
            .tunnels
            .node
            .open_stream(self.peer, self.protocol.clone())
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(peer = %self.peer, "closing local connection from {from}: {e}");
                return;
            }
        };
        let info = StreamInfo {
            id: 0,
            protocol: self.protocol.to_string(),
            origin_address: addr::socket_multiaddr(from),
            target_address: format!("/p2p/{}", self.peer),
            peer: self.peer.to_string(),
            bytes_sent: 0,
            bytes_received: 0,
        };
        match self.tunnels.admit(self.peer, info) {
            Some((id, counters, stop)) => {
                self.tunnels
                    .run_stream(id, tcp, stream, counters, stop)
                    .await
            }
            None => {
                tracing::warn!(peer = %self.peer, "too many open streams to this peer; closing {from}")
            }
        }
    }
}

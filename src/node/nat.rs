//! NAT traversal: AutoNAT (are we reachable?), circuit relay v2 (a client that reserves slots
//! while private; a service while public) and DCUtR hole punching. The behaviours live in the
//! node's swarm; [`Nat`] is their state, owned by the node's event loop like everything else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId, StreamProtocol, autonat, dcutr, relay};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::address_book::{peer_of, strip_p2p};

/// The relay v2 "hop" protocol: a peer whose identify lists it offers relay slots.
pub const HOP_PROTOCOL: StreamProtocol = relay::HOP_PROTOCOL_NAME;

/// Relays we keep a reservation on while private: go-libp2p's autorelay keeps 2 (one can
/// restart or drop us without making the station unreachable).
pub const DESIRED_RELAYS: usize = 2;
/// Relay-capable peers remembered as candidates (learned from identify); more is noise.
const MAX_RELAY_CANDIDATES: usize = 32;
/// Hole-punch reports kept until their connection shows up (it normally already has).
const MAX_EARLY_PUNCHES: usize = 64;
/// A relay that refused us or dropped the reservation is not asked again before this.
const RELAY_BACKOFF: Duration = Duration::from_secs(60);

// AutoNAT v1 timing. go-libp2p waits 15 s before its first probe; a station's first peers are
// its configured ones (bootstrap, peering, relays), connected within a second or two, so 5 s.
const AUTONAT_BOOT_DELAY: Duration = Duration::from_secs(5);
/// Re-probe while unsure (go-libp2p's and rust-libp2p's 90 s).
const AUTONAT_RETRY: Duration = Duration::from_secs(90);
/// Re-probe once sure (go-libp2p's 15 min).
const AUTONAT_REFRESH: Duration = Duration::from_secs(15 * 60);
/// One dial-back request may take this long (the server dials every address we listed).
const AUTONAT_TIMEOUT: Duration = Duration::from_secs(30);

// Relay v2 service limits: Kubo's `Swarm.RelayService` defaults (docs/config.md), which are
// go-libp2p's `relay.DefaultResources()`.
/// `Swarm.RelayService.MaxReservations` = 128 slots in all.
pub const RELAY_MAX_RESERVATIONS: usize = 128;
/// Reservations from one peer (go-libp2p's former `MaxReservationsPerPeer` = 4).
pub const RELAY_MAX_RESERVATIONS_PER_PEER: usize = 4;
/// `Swarm.RelayService.ReservationTTL` = 1 h.
pub const RELAY_RESERVATION_TTL: Duration = Duration::from_secs(60 * 60);
/// `Swarm.RelayService.MaxCircuits` = 16 open relayed connections.
pub const RELAY_MAX_CIRCUITS: usize = 16;
/// Circuits per peer: Kubo's `MaxCircuits` applies per peer; rust-libp2p also caps the total,
/// so one peer gets at most 4 of the 16 (rust-libp2p's default).
pub const RELAY_MAX_CIRCUITS_PER_PEER: usize = 4;
/// `Swarm.RelayService.ConnectionDurationLimit` = 2 min, then the relayed connection is reset.
pub const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(2 * 60);
/// `Swarm.RelayService.ConnectionDataLimit` = 128 KiB relayed in each direction, then reset.
/// rust-libp2p counts both directions together, so the cap is twice that: an exchange Kubo
/// carries (128 KiB each way) fits.
pub const RELAY_CIRCUIT_BYTES: u64 = 2 * 128 * 1024;

/// Whether other peers can dial us, as AutoNAT last found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Public,
    Private,
    #[default]
    Unknown,
}

impl From<&autonat::NatStatus> for Reachability {
    fn from(status: &autonat::NatStatus) -> Self {
        match status {
            autonat::NatStatus::Public(_) => Reachability::Public,
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        }
    }
}

/// How a connection reaches its peer (`swarm peers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionKind {
    /// Dialled or accepted directly.
    Direct,
    /// Through a circuit relay (`/p2p-circuit`): limited by the relay's duration and bytes.
    Relayed,
    /// Direct, opened by DCUtR hole punching from a relayed one.
    HolePunched,
}

impl ConnectionKind {
    /// Preference when a peer has several connections: hole-punched and direct beat relayed.
    fn rank(self) -> u8 {
        match self {
            ConnectionKind::HolePunched => 2,
            ConnectionKind::Direct => 1,
            ConnectionKind::Relayed => 0,
        }
    }
}

/// A relay reservation as `id --json` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationInfo {
    pub relay: String,
    /// `pending` until the relay accepts, then `active`.
    pub state: ReservationState,
    /// Our `/p2p-circuit` addresses through this relay, once listening.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationState {
    Pending,
    Active,
}

/// What the NAT state needs from the swarm that carries its behaviours (the node implements
/// it), so that this module does not depend on the node's whole `Behaviour`.
pub trait NatSwarm {
    fn local_peer_id(&self) -> PeerId;
    fn listen_on(&mut self, addr: Multiaddr) -> Result<ListenerId, String>;
    fn remove_listener(&mut self, id: ListenerId);
    fn nat(&mut self) -> &mut Behaviour;
}

/// NAT settings from `[node]`.
#[derive(Debug, Clone, Default)]
pub struct NatOptions {
    /// Static relays (`[node] relays`), each ending in `/p2p/<id>`.
    pub relays: Vec<Multiaddr>,
    /// `[node] relay_service`: `None` serves while AutoNAT says public; `Some` forces it.
    pub relay_service: Option<bool>,
    /// AutoNAT probes and answers for private (LAN, VPN) addresses too.
    pub private_addresses: bool,
}

/// The NAT behaviours, one field of the node's `Behaviour`.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub autonat: autonat::Behaviour,
    pub relay_client: relay::client::Behaviour,
    /// Absent when `relay_service = false`, so that the hop protocol is never advertised.
    pub relay_service: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
}

impl Behaviour {
    pub fn new(
        local: PeerId,
        relay_client: relay::client::Behaviour,
        options: &NatOptions,
    ) -> Self {
        let autonat = autonat::Config {
            timeout: AUTONAT_TIMEOUT,
            boot_delay: AUTONAT_BOOT_DELAY,
            retry_interval: AUTONAT_RETRY,
            refresh_interval: AUTONAT_REFRESH,
            only_global_ips: !options.private_addresses,
            ..Default::default()
        };
        let relay_service = (options.relay_service != Some(false)).then(|| {
            let mut service = relay::Behaviour::new(local, relay_config());
            // Auto: off until AutoNAT says public (rust-libp2p would turn it on at the first
            // external address candidate, which a node behind NAT also has).
            let forced = options.relay_service.map(|_| relay::Status::Enable);
            service.set_status(Some(forced.unwrap_or(relay::Status::Disable)));
            service
        });
        Behaviour {
            autonat: autonat::Behaviour::new(local, autonat),
            relay_client,
            relay_service: relay_service.into(),
            dcutr: dcutr::Behaviour::new(local),
        }
    }
}

fn relay_config() -> relay::Config {
    relay::Config {
        max_reservations: RELAY_MAX_RESERVATIONS,
        max_reservations_per_peer: RELAY_MAX_RESERVATIONS_PER_PEER,
        reservation_duration: RELAY_RESERVATION_TTL,
        max_circuits: RELAY_MAX_CIRCUITS,
        max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
        max_circuit_duration: RELAY_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_CIRCUIT_BYTES,
        // rust-libp2p's rate limiters (one reservation / circuit per peer every 2 min, per IP
        // every minute, bursts of 30 / 60) stand in for Kubo's per-IP and per-ASN caps.
        ..Default::default()
    }
}

struct Reservation {
    listener: ListenerId,
    state: ReservationState,
    addresses: Vec<Multiaddr>,
}

/// The NAT state: reachability, reservations, relay candidates, connection kinds.
pub struct Nat {
    reachability: watch::Sender<Reachability>,
    service: Option<bool>,
    static_relays: Vec<(PeerId, Multiaddr)>,
    candidates: VecDeque<(PeerId, Multiaddr)>,
    reservations: HashMap<PeerId, Reservation>,
    backoff: HashMap<PeerId, Instant>,
    /// Live connections per peer, with how each reaches it (bounded by the connection limits).
    connections: HashMap<PeerId, Vec<(ConnectionId, ConnectionKind, Multiaddr)>>,
    /// Direct connections DCUtR reported before the swarm's `ConnectionEstablished`.
    punched: HashSet<ConnectionId>,
}

impl Nat {
    pub fn new(options: &NatOptions) -> Nat {
        let static_relays = options
            .relays
            .iter()
            .filter_map(|a| peer_of(a).map(|p| (p, strip_p2p(a.clone()))))
            .collect();
        Nat {
            reachability: watch::Sender::new(Reachability::Unknown),
            service: options.relay_service,
            static_relays,
            candidates: VecDeque::new(),
            reservations: HashMap::new(),
            backoff: HashMap::new(),
            connections: HashMap::new(),
            punched: HashSet::new(),
        }
    }

    /// The reachability hook: a receiver that sees every change (the DHT switches mode on it).
    pub fn watch(&self) -> watch::Receiver<Reachability> {
        self.reachability.subscribe()
    }

    pub fn reachability(&self) -> Reachability {
        *self.reachability.borrow()
    }

    /// Whether we serve relay slots now.
    pub fn serving(&self) -> bool {
        match self.service {
            Some(forced) => forced,
            None => self.reachability() == Reachability::Public,
        }
    }

    /// Whether we hold (or asked for) a reservation on `relay`: its connection is not trimmed.
    pub fn has_reservation(&self, relay: &PeerId) -> bool {
        self.reservations.contains_key(relay)
    }

    pub fn reservations(&self) -> Vec<ReservationInfo> {
        let mut rows: Vec<ReservationInfo> = self
            .reservations
            .iter()
            .map(|(relay, r)| ReservationInfo {
                relay: relay.to_string(),
                state: r.state,
                addresses: r.addresses.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        rows.sort_by(|a, b| a.relay.cmp(&b.relay));
        rows
    }

    /// The best connection to `peer`: its kind and remote address.
    pub fn best_connection(&self, peer: &PeerId) -> Option<(ConnectionKind, Multiaddr)> {
        self.connections
            .get(peer)?
            .iter()
            .max_by_key(|(_, kind, _)| kind.rank())
            .map(|(_, kind, addr)| (*kind, addr.clone()))
    }

    /// Whether every connection to `peer` goes through a relay.
    pub fn only_relayed(&self, peer: &PeerId) -> bool {
        self.connections.get(peer).is_some_and(|list| {
            !list.is_empty()
                && list
                    .iter()
                    .all(|(_, kind, _)| *kind == ConnectionKind::Relayed)
        })
    }

    /// A connection is up. Returns the relayed connections to close because a direct one now
    /// exists: libp2p-stream picks a random connection per stream, and a relayed one is limited.
    pub fn on_connection(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        relayed: bool,
        remote: &Multiaddr,
    ) -> Vec<ConnectionId> {
        let kind = if relayed {
            ConnectionKind::Relayed
        } else if self.punched.remove(&id) {
            ConnectionKind::HolePunched
        } else {
            ConnectionKind::Direct
        };
        let list = self.connections.entry(peer).or_default();
        list.push((id, kind, remote.clone()));
        if kind == ConnectionKind::Relayed {
            return Vec::new();
        }
        relayed_ids(list)
    }

    pub fn on_connection_closed(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(list) = self.connections.get_mut(peer) {
            list.retain(|(c, _, _)| *c != id);
            if list.is_empty() {
                self.connections.remove(peer);
            }
        }
    }

    /// DCUtR opened a direct connection `id` to `peer`; returns relayed ones to close.
    fn on_hole_punched(&mut self, peer: PeerId, id: ConnectionId) -> Vec<ConnectionId> {
        let entry = self
            .connections
            .get_mut(&peer)
            .and_then(|list| list.iter_mut().find(|(c, _, _)| *c == id));
        match entry {
            Some(entry) => entry.1 = ConnectionKind::HolePunched,
            None => {
                if self.punched.len() >= MAX_EARLY_PUNCHES {
                    self.punched.clear();
                }
                self.punched.insert(id);
            }
        }
        self.connections
            .get(&peer)
            .map(|list| relayed_ids(list))
            .unwrap_or_default()
    }

    /// Identify told us `peer`'s protocols; a relay-capable peer becomes a candidate, dialled
    /// at `remote` (the address of our direct connection to it).
    pub fn on_identify(
        &mut self,
        swarm: &mut impl NatSwarm,
        peer: PeerId,
        protocols: &[StreamProtocol],
    ) {
        if !protocols.contains(&HOP_PROTOCOL) {
            self.candidates.retain(|(p, _)| *p != peer);
            return;
        }
        let Some((kind, remote)) = self.best_connection(&peer) else {
            return;
        };
        if kind == ConnectionKind::Relayed || self.candidates.iter().any(|(p, _)| *p == peer) {
            return;
        }
        if self.candidates.len() >= MAX_RELAY_CANDIDATES {
            self.candidates.pop_front();
        }
        tracing::debug!(%peer, "relay-capable peer (hop) at {remote}");
        self.candidates.push_back((peer, strip_p2p(remote)));
        self.ensure_reservations(swarm);
    }

    /// While private, keep [`DESIRED_RELAYS`] reservations: static relays first, then candidates.
    pub fn ensure_reservations(&mut self, swarm: &mut impl NatSwarm) {
        if self.reachability() != Reachability::Private {
            return;
        }
        let now = Instant::now();
        self.backoff.retain(|_, until| *until > now);
        let choices: Vec<(PeerId, Multiaddr)> = self
            .static_relays
            .iter()
            .chain(self.candidates.iter())
            .filter(|(p, _)| !self.backoff.contains_key(p) && *p != swarm.local_peer_id())
            .cloned()
            .collect();
        for (relay, addr) in choices {
            // A static relay may also be a candidate (identify reported it): once is enough.
            if self.reservations.len() >= DESIRED_RELAYS || self.reservations.contains_key(&relay) {
                continue;
            }
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, "asking for a relay reservation on {circuit}");
                    self.reservations.insert(
                        relay,
                        Reservation {
                            listener,
                            state: ReservationState::Pending,
                            addresses: Vec::new(),
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(%relay, "cannot listen through {circuit}: {e}");
                    self.backoff.insert(relay, now + RELAY_BACKOFF);
                }
            }
        }
    }

    /// A listener reported an address: a `/p2p-circuit` one is announced through identify.
    pub fn on_new_listen_addr(&mut self, listener: ListenerId, addr: &Multiaddr) {
        if let Some((relay, r)) = self
            .reservations
            .iter_mut()
            .find(|(_, r)| r.listener == listener)
        {
            tracing::info!(%relay, "reachable through the relay at {addr}");
            if !r.addresses.contains(addr) {
                r.addresses.push(addr.clone());
            }
        }
    }

    /// A listener closed: a lost reservation is asked again elsewhere after a back-off.
    pub fn on_listener_closed(&mut self, listener: ListenerId, reason: &str) {
        let lost = self
            .reservations
            .iter()
            .find(|(_, r)| r.listener == listener)
            .map(|(p, _)| *p);
        if let Some(relay) = lost {
            tracing::warn!(%relay, "relay reservation ended: {reason}");
            self.reservations.remove(&relay);
            self.backoff.insert(relay, Instant::now() + RELAY_BACKOFF);
        }
    }

    /// Events of the NAT behaviours. Returns the new reachability when it changed (the hook
    /// the event loop passes on) and the connections to close.
    pub fn on_event(&mut self, swarm: &mut impl NatSwarm, event: BehaviourEvent) -> NatOutcome {
        match event {
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                let reachability = Reachability::from(&new);
                tracing::info!("reachability: {reachability:?} (AutoNAT: {old:?} -> {new:?})");
                self.set_reachability(swarm, reachability);
                NatOutcome::Reachability(reachability)
            }
            BehaviourEvent::Autonat(event) => {
                tracing::debug!("autonat: {event:?}");
                NatOutcome::None
            }
            BehaviourEvent::RelayClient(event) => {
                self.on_relay_client(event);
                NatOutcome::None
            }
            BehaviourEvent::RelayService(event) => {
                tracing::debug!("relay service: {event:?}");
                NatOutcome::None
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(id) => {
                    tracing::info!(peer = %remote_peer_id, "hole punch succeeded: direct connection");
                    NatOutcome::Close(self.on_hole_punched(remote_peer_id, id))
                }
                Err(e) => {
                    tracing::info!(peer = %remote_peer_id, "hole punch failed: {e}");
                    NatOutcome::HolePunchFailed(remote_peer_id)
                }
            },
        }
    }

    fn set_reachability(&mut self, swarm: &mut impl NatSwarm, reachability: Reachability) {
        self.reachability.send_replace(reachability);
        if self.service.is_none()
            && let Some(service) = swarm.nat().relay_service.as_mut()
        {
            let status = if reachability == Reachability::Public {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            };
            tracing::info!("relay service: {status:?}");
            service.set_status(Some(status));
        }
        match reachability {
            Reachability::Private => self.ensure_reservations(swarm),
            Reachability::Public => {
                // Reachable directly: drop the reservations, as go-libp2p's autorelay does.
                for (relay, r) in self.reservations.drain() {
                    tracing::info!(%relay, "public now: releasing the relay reservation");
                    swarm.remove_listener(r.listener);
                }
            }
            Reachability::Unknown => {}
        }
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            } => {
                tracing::info!(relay = %relay_peer_id, renewal, ?limit, "relay reservation accepted");
                if let Some(r) = self.reservations.get_mut(&relay_peer_id) {
                    r.state = ReservationState::Active;
                }
            }
            other => tracing::debug!("relay client: {other:?}"),
        }
    }
}

/// What the event loop does after a NAT event.
pub enum NatOutcome {
    None,
    Reachability(Reachability),
    Close(Vec<ConnectionId>),
    HolePunchFailed(PeerId),
}

fn relayed_ids(list: &[(ConnectionId, ConnectionKind, Multiaddr)]) -> Vec<ConnectionId> {
    let has_direct = list.iter().any(|(_, k, _)| *k != ConnectionKind::Relayed);
    if !has_direct {
        return Vec::new();
    }
    list.iter()
        .filter(|(_, k, _)| *k == ConnectionKind::Relayed)
        .map(|(c, _, _)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_direct_connection_retires_the_relayed_ones() {
        let mut nat = Nat::new(&NatOptions::default());
        let peer = PeerId::random();
        let relay = PeerId::random();
        let relayed = ConnectionId::new_unchecked(1);
        let circuit = addr(&format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit"));
        assert!(nat.on_connection(peer, relayed, true, &circuit).is_empty());
        assert!(nat.only_relayed(&peer));
        let direct = ConnectionId::new_unchecked(2);
        // DCUtR reports before the swarm does: the kind is remembered.
        assert!(nat.on_hole_punched(peer, direct).is_empty());
        let close = nat.on_connection(peer, direct, false, &addr("/ip4/10.0.0.2/tcp/2"));
        assert_eq!(close, vec![relayed]);
        assert_eq!(
            nat.best_connection(&peer).map(|(k, _)| k),
            Some(ConnectionKind::HolePunched)
        );
        nat.on_connection_closed(&peer, relayed);
        nat.on_connection_closed(&peer, direct);
        assert!(nat.best_connection(&peer).is_none());
    }

    #[test]
    fn kinds_and_reachability_serialize_as_operators_read_them() {
        let json = serde_json::to_string(&(
            ConnectionKind::HolePunched,
            Reachability::Private,
            ReservationState::Active,
        ))
        .unwrap();
        assert_eq!(json, r#"["hole-punched","private","active"]"#);
    }

    #[test]
    fn static_relays_keep_their_peer_id_apart() {
        let relay = PeerId::random();
        let options = NatOptions {
            relays: vec![addr(&format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}"))],
            ..Default::default()
        };
        let nat = Nat::new(&options);
        assert_eq!(
            nat.static_relays,
            vec![(relay, addr("/ip4/10.0.0.1/tcp/4001"))]
        );
        assert!(!nat.serving());
    }
}

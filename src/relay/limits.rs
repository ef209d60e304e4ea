//! Who a relay client is (the station's own, an outside address, a swarm peer through
//! `/x/strfry-<id>`) and what each may take: connection slots, and events per minute per
//! address, per peer and per author. One [`Gate`] per relay, shared by its connections.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use nostr::prelude::PublicKey;

use super::RelayConfig;

/// The window of the per-minute event quotas.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses, peers or authors tracked by one quota table (about 100 bytes each). When it
/// is full, expired windows are dropped; if none has expired, the table starts over, so that
/// memory stays bounded even against a flood of fresh addresses.
const MAX_RATE_ENTRIES: usize = 16_384;

/// Finds the swarm peer behind a loopback connection that a `/x/` tunnel made (the tunnel
/// registry knows the local address of each connection it opened).
pub type OriginLookup = Arc<dyn Fn(SocketAddr) -> Option<PeerId> + Send + Sync>;

/// Where a connection comes from, as the limits see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// Loopback, not through a tunnel: the station's own sync, CLI and apps. Not limited.
    Local,
    /// Another address (or loopback when `limit_loopback` is set).
    Remote(IpAddr),
    /// A swarm peer, through one of our `/x/` listeners.
    Peer(PeerId),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Local => write!(f, "local"),
            Client::Remote(ip) => write!(f, "{ip}"),
            Client::Peer(peer) => write!(f, "peer {peer}"),
        }
    }
}

/// Event counts in the current window, per key.
struct Quota<K> {
    windows: HashMap<K, (Instant, u32)>,
}

impl<K: Hash + Eq + Clone> Quota<K> {
    fn new() -> Self {
        Quota {
            windows: HashMap::new(),
        }
    }

    /// Events counted for `key` in the current window.
    fn used(&self, key: &K, now: Instant) -> u32 {
        match self.windows.get(key) {
            Some((start, count)) if now.duration_since(*start) < RATE_WINDOW => *count,
            _ => 0,
        }
    }

    /// Count one event for `key`; false when `key` already had `max` in this window.
    fn take(&mut self, key: &K, max: u32, now: Instant) -> bool {
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_RATE_ENTRIES {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
            if self.windows.len() >= MAX_RATE_ENTRIES {
                tracing::warn!("relay quota table full; starting it over");
                self.windows.clear();
            }
        }
        let (start, count) = self.windows.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(*start) >= RATE_WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }
}

/// Live connection counts and event quotas.
struct State {
    outside: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_peer: HashMap<PeerId, usize>,
    ip_events: Quota<IpAddr>,
    peer_events: Quota<PeerId>,
    author_events: Quota<PublicKey>,
}

/// The relay's admission and quotas.
pub struct Gate {
    config: Arc<RelayConfig>,
    origin: Option<OriginLookup>,
    state: Mutex<State>,
}

/// A held connection slot; dropping it frees the slot.
pub struct Slot {
    gate: Arc<Gate>,
    pub client: Client,
}

impl Gate {
    pub fn new(config: Arc<RelayConfig>, origin: Option<OriginLookup>) -> Arc<Gate> {
        Arc::new(Gate {
            config,
            origin,
            state: Mutex::new(State {
                outside: 0,
                per_ip: HashMap::new(),
                per_peer: HashMap::new(),
                ip_events: Quota::new(),
                peer_events: Quota::new(),
                author_events: Quota::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Counters only: a panic elsewhere cannot leave them worse than slightly off.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who is at `addr`: a tunnel's peer, the station itself, or an outside address.
    pub fn classify(&self, addr: SocketAddr) -> Client {
        if let Some(peer) = self.origin.as_ref().and_then(|lookup| lookup(addr)) {
            return Client::Peer(peer);
        }
        if addr.ip().is_loopback() && !self.config.limit_loopback {
            Client::Local
        } else {
            Client::Remote(addr.ip())
        }
    }

    /// Take a connection slot for `client`, or say why not (a NIP-01 style reason).
    pub fn admit(self: &Arc<Self>, client: Client) -> Result<Slot, String> {
        let config = &self.config;
        let mut state = self.state();
        if client != Client::Local {
            let outside_max = config
                .max_connections
                .saturating_sub(config.reserved_local_connections);
            if state.outside >= outside_max {
                return Err(format!(
                    "rate-limited: the relay is full ({outside_max} outside connections)"
                ));
            }
        }
        match &client {
            Client::Local => {}
            Client::Remote(ip) => {
                let n = state.per_ip.entry(*ip).or_default();
                if *n >= config.max_connections_per_ip {
                    return Err(format!(
                        "rate-limited: too many connections from {ip} (max {})",
                        config.max_connections_per_ip
                    ));
                }
                *n += 1;
                state.outside += 1;
            }
            Client::Peer(peer) => {
                let n = state.per_peer.entry(*peer).or_default();
                if *n >= config.max_connections_per_peer {
                    return Err(format!(
                        "rate-limited: too many connections from peer {peer} (max {})",
                        config.max_connections_per_peer
                    ));
                }
                *n += 1;
                state.outside += 1;
            }
        }
        Ok(Slot {
            gate: self.clone(),
            client,
        })
    }

    /// May `client` send one more event by `author` now? `Err` is the `OK false` message. The
    /// address or peer quota counts every attempt (checking signatures costs CPU); the author
    /// quota counts only events stored ([`Gate::stored`]), so that forged events "by" someone
    /// cannot use up that author's quota.
    pub fn allow_event(&self, client: &Client, author: &PublicKey) -> Result<(), String> {
        let config = &self.config;
        let now = Instant::now();
        let mut state = self.state();
        match client {
            Client::Local => Ok(()),
            Client::Peer(peer) => {
                let max = config.events_per_minute_per_peer;
                match state.peer_events.take(peer, max, now) {
                    true => Ok(()),
                    false => Err(format!(
                        "rate-limited: more than {max} events a minute from this peer"
                    )),
                }
            }
            Client::Remote(ip) => {
                let max = config.events_per_minute_per_ip;
                if !state.ip_events.take(ip, max, now) {
                    return Err(format!(
                        "rate-limited: more than {max} events a minute from {ip}"
                    ));
                }
                let max = config.events_per_minute_per_pubkey;
                match state.author_events.used(author, now) < max {
                    true => Ok(()),
                    false => Err(format!(
                        "rate-limited: more than {max} events a minute by this author"
                    )),
                }
            }
        }
    }

    /// `client` stored an event by `author`: it counts toward the author's quota.
    pub fn stored(&self, client: &Client, author: &PublicKey) {
        if let Client::Remote(_) = client {
            let max = self.config.events_per_minute_per_pubkey;
            self.state().author_events.take(author, max, Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        let emptied = |n: &mut usize| {
            *n = n.saturating_sub(1);
            *n == 0
        };
        match &self.client {
            Client::Local => return,
            Client::Remote(ip) => {
                if state.per_ip.get_mut(ip).is_some_and(emptied) {
                    state.per_ip.remove(ip);
                }
            }
            Client::Peer(peer) => {
                if state.per_peer.get_mut(peer).is_some_and(emptied) {
                    state.per_peer.remove(peer);
                }
            }
        }
        state.outside = state.outside.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(config: RelayConfig, origin: Option<OriginLookup>) -> Arc<Gate> {
        Gate::new(Arc::new(config), origin)
    }

    #[test]
    fn outside_clients_are_capped_per_address_and_local_ones_keep_their_slots() {
        let config = RelayConfig {
            max_connections: 10,
            reserved_local_connections: 4,
            max_connections_per_ip: 3,
            ..RelayConfig::default()
        };
        let g = gate(config, None);
        let ip = |n: u8| Client::Remote(IpAddr::from([10, 0, 0, n]));
        let a: Vec<Slot> = (0..3).map(|_| g.admit(ip(1)).expect("slot")).collect();
        let refused = g.admit(ip(1)).err().expect("a fourth from 10.0.0.1");
        assert!(refused.starts_with("rate-limited:"), "{refused}");
        let b: Vec<Slot> = (0..3).map(|_| g.admit(ip(2)).expect("slot")).collect();
        assert!(g.admit(ip(3)).is_err(), "6 outside = 10 - 4 reserved");
        let local: Vec<Slot> = (0..4)
            .map(|_| g.admit(Client::Local).expect("local"))
            .collect();
        drop(a);
        assert!(
            g.admit(ip(3)).is_ok(),
            "slots come back when connections end"
        );
        drop((b, local));
    }

    #[test]
    fn tunnel_connections_count_per_peer_not_as_loopback() {
        let peer = PeerId::random();
        let tunnel: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let lookup: OriginLookup = Arc::new(move |a| (a == tunnel).then_some(peer));
        let config = RelayConfig {
            max_connections_per_peer: 2,
            ..RelayConfig::default()
        };
        let g = gate(config, Some(lookup));
        assert_eq!(g.classify(tunnel), Client::Peer(peer));
        let own: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        assert_eq!(g.classify(own), Client::Local);
        let _s = (g.admit(Client::Peer(peer)), g.admit(Client::Peer(peer)));
        assert!(g.admit(Client::Peer(peer)).is_err());
        assert!(g.admit(Client::Peer(PeerId::random())).is_ok());
    }

    #[test]
    fn event_quotas_per_address_and_author_spare_local_clients() {
        let config = RelayConfig {
            events_per_minute_per_ip: 5,
            events_per_minute_per_pubkey: 3,
            ..RelayConfig::default()
        };
        let g = gate(config, None);
        let author = nostr::prelude::Keys::generate().public_key();
        let other = nostr::prelude::Keys::generate().public_key();
        let remote = Client::Remote(IpAddr::from([192, 0, 2, 1]));
        for _ in 0..3 {
            assert!(g.allow_event(&remote, &author).is_ok());
            g.stored(&remote, &author);
        }
        let by_author = g.allow_event(&remote, &author).expect_err("author quota");
        assert!(by_author.contains("author"), "{by_author}");
        assert!(g.allow_event(&remote, &other).is_ok());
        let by_ip = g.allow_event(&remote, &other).expect_err("ip quota (5)");
        assert!(by_ip.starts_with("rate-limited:"), "{by_ip}");
        for _ in 0..1_000 {
            assert!(g.allow_event(&Client::Local, &author).is_ok());
            g.stored(&Client::Local, &author);
        }
    }

    #[test]
    fn quota_tables_stay_bounded() {
        let mut quota = Quota::new();
        let now = Instant::now();
        for i in 0..(MAX_RATE_ENTRIES as u32 + 10) {
            assert!(quota.take(&i, 1, now));
        }
        assert!(quota.windows.len() <= MAX_RATE_ENTRIES);
    }
}

//! Kad DHT routing, as Kubo does it: a WAN table on `/ipfs/kad/1.0.0` and a LAN table on
//! `/ipfs/lan/kad/1.0.0` (Kubo's dual DHT), their modes, and bounded FIND_PEER lookups for
//! peers whose address nobody gave us.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// Kubo's (the Amino DHT's) protocol: the table of publicly reachable peers.
pub const WAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// Kubo's LAN DHT: private and loopback peers (Kubo's WAN table drops them), always a server.
pub const LAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");
/// How long a FIND_PEER lookup may take; the error says "not found in the DHT after N s".
/// Kubo's own `FindPeer` is given 10–60 s by its callers; 20 s keeps a CLI call bearable.
pub const FIND_PEER_TIMEOUT: Duration = Duration::from_secs(20);
/// Lookups running at once: each is ~3 requests in flight; more callers wait for an error.
const MAX_LOOKUPS: usize = 32;
/// Peers per k-bucket (Kademlia's k, as Kubo): the table holds at most 256 × 20 peers.
const BUCKET_SIZE: NonZeroUsize = NonZeroUsize::new(20).expect("non-zero");
/// Requests in flight per lookup (Kademlia's α, as Kubo's default).
const PARALLELISM: NonZeroUsize = NonZeroUsize::new(3).expect("non-zero");
/// Largest DHT message read or written. A FIND_NODE answer from Kubo (20 peers with their
/// addresses, relay ones included) is a few KiB; an IPNS record is at most 10 KiB. A hostile
/// peer's oversized message is refused at this size instead of being buffered.
const MAX_PACKET_SIZE: usize = 64 * 1024;
/// Records stored for others (server mode): 256 × 10 KiB bounds the store at 2.5 MiB.
const MAX_RECORDS: usize = 256;
/// Largest record value stored: the IPNS spec's 10 KiB limit.
const MAX_RECORD_BYTES: usize = 10 * 1024;
/// How often Kad announces again what we provide: Kubo's `Reprovider.Interval` default (22 h),
/// within the 48 h a provider record lives on the peers that hold it (Kad's default TTL, Kubo's).
const REPROVIDE_INTERVAL: Duration = Duration::from_secs(22 * 3600);
/// Keys with provider records (ours and others'); each keeps at most k providers.
const MAX_PROVIDER_KEYS: usize = 1024;

/// One Kad behaviour (WAN or LAN) with its bounded in-memory record store.
pub type Kad = kad::Behaviour<MemoryStore>;

pub use crate::config::RoutingMode;

/// Whether other peers can dial us: AutoNAT's verdict, owned by `node::nat`.
use super::nat::Reachability;

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Wan,
    Lan,
}

impl RoutingMode {
    /// The WAN table's mode for this routing type and reachability.
    pub fn wan_mode(self, reachability: Reachability) -> kad::Mode {
        match (self, reachability) {
            (RoutingMode::DhtServer, _) | (RoutingMode::Dht, Reachability::Public) => {
                kad::Mode::Server
            }
            _ => kad::Mode::Client,
        }
    }

    /// The LAN table serves, as Kubo's, except for an explicit client.
    fn lan_mode(self) -> kad::Mode {
        match self {
            RoutingMode::DhtClient => kad::Mode::Client,
            _ => kad::Mode::Server,
        }
    }
}

fn kad_config(protocol: StreamProtocol) -> kad::Config {
    let mut config = kad::Config::new(protocol);
    config
        .set_kbucket_size(BUCKET_SIZE)
        .set_parallelism(PARALLELISM)
        .set_max_packet_size(MAX_PACKET_SIZE)
        .set_query_timeout(FIND_PEER_TIMEOUT)
        .set_provider_publication_interval(Some(REPROVIDE_INTERVAL))
        // Records and provider records put to us are checked before they are stored
        // (`records::accept_inbound`), as Kubo's validators do.
        .set_record_filtering(kad::StoreInserts::FilterBoth);
    config
}

fn store(local: PeerId) -> MemoryStore {
    let config = MemoryStoreConfig {
        max_records: MAX_RECORDS,
        max_value_bytes: MAX_RECORD_BYTES,
        max_provided_keys: MAX_PROVIDER_KEYS,
        max_providers_per_key: BUCKET_SIZE.get(),
    };
    MemoryStore::with_config(local, config)
}

/// The WAN and LAN behaviours for `mode` (both disabled for `none`).
pub fn behaviours(local: PeerId, mode: RoutingMode) -> (Toggle<Kad>, Toggle<Kad>) {
    if mode == RoutingMode::None {
        return (Toggle::from(None), Toggle::from(None));
    }
    let make = |protocol, kad_mode| {
        let mut kad = Kad::with_config(local, store(local), kad_config(protocol));
        kad.set_mode(Some(kad_mode));
        kad
    };
    (
        Toggle::from(Some(make(
            WAN_PROTOCOL,
            mode.wan_mode(Reachability::Unknown),
        ))),
        Toggle::from(Some(make(LAN_PROTOCOL, mode.lan_mode()))),
    )
}

/// Feed a peer's identify answer to the tables whose protocol it speaks (Kad learns addresses
/// of inbound peers only this way). `listen` is already bounded by the caller.
pub fn learn(
    kad: &mut Toggle<Kad>,
    protocols: &[StreamProtocol],
    peer: PeerId,
    listen: &[Multiaddr],
) {
    let Some(kad) = kad.as_mut() else { return };
    if !kad.protocol_names().iter().any(|p| protocols.contains(p)) {
        return;
    }
    for addr in listen {
        kad.add_address(&peer, addr.clone());
    }
}

/// Lookups are full.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("the DHT is off (`[node] routing = \"none\"`)")]
    Disabled,
    #[error("{MAX_LOOKUPS} DHT lookups are already running; try again")]
    Busy,
}

/// The end of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found { peer: PeerId, addrs: Vec<Multiaddr> },
    NotFound { peer: PeerId, after: Duration },
}

/// FIND_PEER lookups in flight, on both tables; the first table that finds the peer wins.
#[derive(Default)]
pub struct Lookups {
    queries: HashMap<(Table, kad::QueryId), (PeerId, Instant)>,
}

impl Lookups {
    pub fn is_running(&self, peer: &PeerId) -> bool {
        self.queries.values().any(|(p, _)| p == peer)
    }

    /// Start looking `peer` up on every enabled table.
    pub fn start(
        &mut self,
        peer: PeerId,
        tables: [(Table, &mut Toggle<Kad>); 2],
    ) -> Result<(), LookupError> {
        if self.is_running(&peer) {
            return Ok(());
        }
        if self.queries.len() + 2 > MAX_LOOKUPS * 2 {
            return Err(LookupError::Busy);
        }
        let mut started = false;
        for (table, kad) in tables {
            if let Some(kad) = kad.as_mut() {
                let id = kad.get_closest_peers(peer);
                self.queries.insert((table, id), (peer, Instant::now()));
                started = true;
            }
        }
        if started {
            Ok(())
        } else {
            Err(LookupError::Disabled)
        }
    }

    /// Handle a Kad event of `table`; returns the outcome of a lookup when one is decided.
    pub fn on_event(
        &mut self,
        table: Table,
        event: &kad::Event,
        others: &mut Toggle<Kad>,
    ) -> Option<Lookup> {
        let kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(result),
            ..
        } = event
        else {
            return None;
        };
        let (peer, started) = self.queries.remove(&(table, *id))?;
        let found = match result {
            Ok(ok) => &ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        if let Some(info) = found
            .iter()
            .find(|p| p.peer_id == peer && !p.addrs.is_empty())
        {
            // Found: the other table's lookup is no longer needed.
            let rest: Vec<_> = (self.queries.iter())
                .filter(|(_, (p, _))| *p == peer)
                .map(|(k, _)| *k)
                .collect();
            for key in rest {
                self.queries.remove(&key);
                if let Some(mut query) = others.as_mut().and_then(|k| k.query_mut(&key.1)) {
                    query.finish();
                }
            }
            return Some(Lookup::Found {
                peer,
                addrs: info.addrs.clone(),
            });
        }
        if self.is_running(&peer) {
            None // the other table is still looking
        } else {
            Some(Lookup::NotFound {
                peer,
                after: started.elapsed(),
            })
        }
    }
}

/// Peers in one table (0 when it is off).
pub fn table_size(kad: &mut Toggle<Kad>) -> usize {
    kad.as_mut()
        .map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum())
}

/// The event loop's side of the DHT: lookups for callers, and the mode switch.
impl super::EventLoop {
    /// Look `peer` up in the DHT; callers wait in `pending_peers` for the connection.
    pub(super) fn look_up(&mut self, peer: PeerId) -> Result<(), super::NodeError> {
        let behaviour = self.swarm.behaviour_mut();
        let tables = [
            (Table::Wan, &mut behaviour.kad),
            (Table::Lan, &mut behaviour.lan_kad),
        ];
        match self.lookups.start(peer, tables) {
            Ok(()) => {
                tracing::debug!(%peer, "looking the peer up in the DHT");
                self.hint(peer, super::Origin::Dht);
                Ok(())
            }
            Err(LookupError::Disabled) => Err(super::NodeError::NoAddress(peer)),
            Err(source) => Err(super::NodeError::Lookup { peer, source }),
        }
    }

    pub(super) fn on_kad(&mut self, table: Table, event: kad::Event) {
        if self.records.on_event(table, &event) {
            return;
        }
        if let kad::Event::InboundRequest { request } = event {
            self.on_inbound_request(table, request);
            return;
        }
        let behaviour = self.swarm.behaviour_mut();
        let other = match table {
            Table::Wan => &mut behaviour.lan_kad,
            Table::Lan => &mut behaviour.kad,
        };
        match self.lookups.on_event(table, &event, other) {
            Some(Lookup::Found { peer, addrs }) => {
                tracing::debug!(%peer, ?table, "found in the DHT: {addrs:?}");
                for addr in addrs {
                    self.swarm.add_peer_address(peer, addr);
                }
                if let Err(e) = self.dial_peer(peer) {
                    self.fail_waiters(peer, || e.to_string());
                }
            }
            Some(Lookup::NotFound { peer, after }) => {
                let secs = after.as_secs_f64().ceil() as u64;
                tracing::debug!(%peer, "not found in the DHT after {secs} s");
                for reply in self.pending_peers.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(super::NodeError::NotInDht { peer, secs }));
                }
            }
            None => log_kad_event(table, &event),
        }
    }

    pub(super) fn put_record(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) {
        let behaviour = self.swarm.behaviour_mut();
        let tables = [
            (Table::Wan, &mut behaviour.kad),
            (Table::Lan, &mut behaviour.lan_kad),
        ];
        self.records.put(tables, key, value, reply);
    }

    pub(super) fn get_records(&mut self, key: Vec<u8>, reply: tokio::sync::mpsc::Sender<Vec<u8>>) {
        let behaviour = self.swarm.behaviour_mut();
        let tables = [
            (Table::Wan, &mut behaviour.kad),
            (Table::Lan, &mut behaviour.lan_kad),
        ];
        self.records.get(tables, key, reply);
    }

    /// What AutoNAT found (the NAT side's reachability hook): in `routing = "dht"`, the WAN
    /// table serves once we are public and goes back to a client when private.
    pub(super) fn set_reachability(&mut self, reachability: Reachability) {
        switch_wan_mode(
            &mut self.swarm.behaviour_mut().kad,
            self.routing,
            reachability,
        );
    }
}

/// Put the WAN table in the mode `routing` gives for `reachability`, if it is not in it yet.
fn switch_wan_mode(kad: &mut Toggle<Kad>, routing: RoutingMode, reachability: Reachability) {
    let mode = routing.wan_mode(reachability);
    if let Some(kad) = kad.as_mut()
        && kad.mode() != mode
    {
        tracing::info!(?reachability, "DHT mode: {mode}");
        kad.set_mode(Some(mode));
    }
}

/// Kad events worth a line: a peer that speaks no Kad, or a table change.
fn log_kad_event(table: Table, event: &kad::Event) {
    match event {
        kad::Event::RoutingUpdated { peer, .. } => {
            tracing::debug!(%peer, ?table, "DHT routing table updated")
        }
        kad::Event::UnroutablePeer { peer } => {
            tracing::trace!(%peer, ?table, "DHT peer without a known address")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dht_is_a_client_until_public() {
        assert_eq!(
            RoutingMode::Dht.wan_mode(Reachability::Unknown),
            kad::Mode::Client
        );
        assert_eq!(
            RoutingMode::Dht.wan_mode(Reachability::Private),
            kad::Mode::Client
        );
        assert_eq!(
            RoutingMode::Dht.wan_mode(Reachability::Public),
            kad::Mode::Server
        );
        assert_eq!(
            RoutingMode::DhtClient.wan_mode(Reachability::Public),
            kad::Mode::Client
        );
        assert_eq!(
            RoutingMode::DhtServer.wan_mode(Reachability::Private),
            kad::Mode::Server
        );
    }

    #[test]
    fn reachability_switches_the_wan_table_of_dht_only() {
        let local = PeerId::random();
        let mode = |kad: &Toggle<Kad>| kad.as_ref().map(|k| k.mode());
        let (mut wan, _) = behaviours(local, RoutingMode::Dht);
        assert_eq!(mode(&wan), Some(kad::Mode::Client));
        switch_wan_mode(&mut wan, RoutingMode::Dht, Reachability::Public);
        assert_eq!(mode(&wan), Some(kad::Mode::Server));
        switch_wan_mode(&mut wan, RoutingMode::Dht, Reachability::Private);
        assert_eq!(mode(&wan), Some(kad::Mode::Client));
        let (mut client, _) = behaviours(local, RoutingMode::DhtClient);
        switch_wan_mode(&mut client, RoutingMode::DhtClient, Reachability::Public);
        assert_eq!(mode(&client), Some(kad::Mode::Client));
        let (mut server, _) = behaviours(local, RoutingMode::DhtServer);
        switch_wan_mode(&mut server, RoutingMode::DhtServer, Reachability::Private);
        assert_eq!(mode(&server), Some(kad::Mode::Server));
        let (mut off, _) = behaviours(local, RoutingMode::None);
        switch_wan_mode(&mut off, RoutingMode::None, Reachability::Public);
        assert_eq!(mode(&off), None);
    }

    #[test]
    fn lookups_are_bounded() {
        let local = PeerId::random();
        let (mut wan, mut lan) = behaviours(local, RoutingMode::Dht);
        let mut lookups = Lookups::default();
        for _ in 0..MAX_LOOKUPS {
            lookups
                .start(
                    PeerId::random(),
                    [(Table::Wan, &mut wan), (Table::Lan, &mut lan)],
                )
                .unwrap();
        }
        let err = lookups.start(
            PeerId::random(),
            [(Table::Wan, &mut wan), (Table::Lan, &mut lan)],
        );
        assert!(matches!(err, Err(LookupError::Busy)));
        let (mut off, mut off2) = behaviours(local, RoutingMode::None);
        let err =
            Lookups::default().start(local, [(Table::Wan, &mut off), (Table::Lan, &mut off2)]);
        assert!(matches!(err, Err(LookupError::Disabled)));
    }
}

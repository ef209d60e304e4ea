//! A bounded address book: the addresses we know for each peer, offered to the swarm whenever it
//! dials a peer by id (so `open_stream(peer, …)` works after `swarm connect`, peering or identify).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// Addresses kept per peer: a station has a handful (v4, v6, LAN, relay); more is noise.
const MAX_ADDRS_PER_PEER: usize = 8;
/// Peers remembered; the oldest learned is forgotten first. A constellation has dozens of stations.
const MAX_PEERS: usize = 4096;

#[derive(Default)]
pub struct AddressBook {
    addrs: HashMap<PeerId, VecDeque<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddressBook {
    /// Remember `addr` for `peer` (newest first), evicting within the bounds above.
    pub fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        let addr = strip_p2p(addr);
        if !self.addrs.contains_key(&peer) {
            if self.order.len() >= MAX_PEERS
                && let Some(old) = self.order.pop_front()
            {
                self.addrs.remove(&old);
            }
            self.order.push_back(peer);
        }
        let list = self.addrs.entry(peer).or_default();
        list.retain(|a| a != &addr);
        list.push_front(addr);
        list.truncate(MAX_ADDRS_PER_PEER);
    }

    /// Every peer with its addresses (newest first).
    pub fn all(&self) -> impl Iterator<Item = (PeerId, Vec<Multiaddr>)> + '_ {
        (self.addrs.iter()).map(|(peer, list)| (*peer, list.iter().cloned().collect()))
    }

    pub fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.addrs
            .get(peer)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The `/p2p/<id>` at the end of `addr`, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The swarm wants addresses without the trailing `/p2p/<id>`.
pub fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(
        addr.iter().last(),
        Some(libp2p::multiaddr::Protocol::P2p(_))
    ) {
        addr.pop();
    }
    addr
}

impl NetworkBehaviour for AddressBook {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(maybe_peer.map(|p| self.get(&p)).unwrap_or_default())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::NewExternalAddrOfPeer(e) = event {
            self.add(e.peer_id, e.addr.clone());
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_addresses_first_and_bounded() {
        let mut book = AddressBook::default();
        let peer = PeerId::random();
        for port in 0..20u16 {
            book.add(peer, format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap());
        }
        let addrs = book.get(&peer);
        assert_eq!(addrs.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(addrs[0].to_string(), "/ip4/127.0.0.1/tcp/19");
    }

    #[test]
    fn strips_the_peer_suffix() {
        let mut book = AddressBook::default();
        let peer = PeerId::random();
        book.add(
            peer,
            format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap(),
        );
        assert_eq!(book.get(&peer)[0].to_string(), "/ip4/127.0.0.1/tcp/1");
    }
}

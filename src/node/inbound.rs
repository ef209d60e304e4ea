//! Inbound tunnel streams for a changing set of protocols, each delivered to a bounded queue.
//! (`libp2p-stream`'s own inbound side keeps a one-slot queue and silently drops streams that
//! arrive in a burst — 2 of 100 concurrent connections in our tests — so inbound is ours.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use libp2p::core::{
    Endpoint, Multiaddr,
    transport::PortUse,
    upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo},
};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;

/// Streams waiting for the tunnel's accept loop: a burst of connections (a browser opening a
/// page through a tunnel) fits; beyond it the stream is reset and logged rather than buffered.
pub const INBOUND_QUEUE: usize = 256;

type Registry = Arc<Mutex<HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>>>;

fn lock(
    registry: &Registry,
) -> MutexGuard<'_, HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// The protocol is already registered.
#[derive(Debug, thiserror::Error)]
#[error("{0} already has a listener")]
pub struct AlreadyRegistered(pub StreamProtocol);

/// Handle to register protocols; cloneable, shared with the behaviour.
#[derive(Clone, Default)]
pub struct InboundControl {
    registry: Registry,
}

impl InboundControl {
    /// Start accepting `protocol`; drop the receiver to stop (the name is then free again).
    pub fn accept(
        &self,
        protocol: StreamProtocol,
    ) -> Result<mpsc::Receiver<(PeerId, Stream)>, AlreadyRegistered> {
        let mut registry = lock(&self.registry);
        registry.retain(|_, sender| !sender.is_closed());
        if registry.contains_key(&protocol) {
            return Err(AlreadyRegistered(protocol));
        }
        let (sender, receiver) = mpsc::channel(INBOUND_QUEUE);
        registry.insert(protocol, sender);
        Ok(receiver)
    }

    /// The protocols accepted now (their receivers are still open).
    pub fn protocols(&self) -> Vec<String> {
        let registry = lock(&self.registry);
        (registry.iter())
            .filter(|(_, sender)| !sender.is_closed())
            .map(|(protocol, _)| protocol.to_string())
            .collect()
    }
}

/// The behaviour: one [`Handler`] per connection, all sharing the registry.
#[derive(Default)]
pub struct Inbound {
    control: InboundControl,
}

impl Inbound {
    pub fn control(&self) -> InboundControl {
        self.control.clone()
    }
    fn handler(&self, remote: PeerId) -> Handler {
        Handler {
            remote,
            registry: self.control.registry.clone(),
        }
    }
}

impl NetworkBehaviour for Inbound {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

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

/// Per-connection handler: advertises the registered protocols and hands negotiated streams over.
pub struct Handler {
    remote: PeerId,
    registry: Registry,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = Protocols;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
        let mut registry = lock(&self.registry);
        registry.retain(|_, sender| !sender.is_closed());
        SubstreamProtocol::new(Protocols(registry.keys().cloned().collect()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Protocols, Infallible, Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Protocols, Protocols, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            let sender = lock(&self.registry).get(&protocol).cloned();
            let full =
                |e: mpsc::error::TrySendError<_>| matches!(e, mpsc::error::TrySendError::Full(_));
            match sender.map(|s| s.try_send((self.remote, stream)).map_err(full)) {
                Some(Ok(())) => {}
                Some(Err(true)) => {
                    tracing::warn!(peer = %self.remote, %protocol, "refused stream: {INBOUND_QUEUE} streams already waiting");
                }
                _ => {
                    tracing::debug!(peer = %self.remote, %protocol, "stream for a closed listener")
                }
            }
        }
    }
}

/// The upgrade: multistream-select over the registered names; yields the stream and its name.
pub struct Protocols(Vec<StreamProtocol>);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;
    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;
    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;
    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

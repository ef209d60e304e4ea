//! Building the libp2p `Swarm`: transports (TCP+pnet when there is a swarm key, else TCP and
//! QUIC-v1), security, yamux, and the behaviours. A private network is decided here and only here.

use std::time::Duration;

use libp2p::core::Transport as _;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, SwarmBuilder, connection_limits, identify, noise, ping, tcp, yamux};

use super::address_book::AddressBook;
use super::inbound::Inbound;
use crate::config::NodeLimits;

/// The agent version other peers see in identify (`ipfs id` shows it).
pub const AGENT_VERSION: &str = concat!("constellation/", env!("CARGO_PKG_VERSION"));
/// Kubo's identify protocol version.
const PROTOCOL_VERSION: &str = "ipfs/0.1.0";
/// Connections with no stream are closed after this; tunnels keep theirs alive by their streams.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub addresses: AddressBook,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    /// Outbound tunnel streams (`Control::open_stream`).
    pub stream: libp2p_stream::Behaviour,
    /// Inbound tunnel streams, queued per protocol.
    pub inbound: Inbound,
}

impl Behaviour {
    fn new(key: &Keypair, limits: &NodeLimits) -> Behaviour {
        let connection_limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending))
            .with_max_pending_outgoing(Some(limits.max_pending));
        Behaviour {
            limits: connection_limits::Behaviour::new(connection_limits),
            addresses: AddressBook::default(),
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                    .with_agent_version(AGENT_VERSION.into()),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
            inbound: Inbound::default(),
        }
    }
}

/// Errors building the swarm.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the libp2p transport: {0}")]
pub struct BuildError(String);

fn yamux_config(limits: &NodeLimits) -> yamux::Config {
    let mut config = yamux::Config::default();
    // One more than the per-peer tunnel cap, so the tunnel layer (which logs) refuses first.
    config.set_max_num_streams(limits.max_streams_per_peer + 16);
    config
}

fn tcp_config() -> tcp::Config {
    tcp::Config::default().nodelay(true)
}

/// Build the swarm for `key`. With `psk`, TCP + pnet only (as Kubo: no QUIC in a private network).
pub fn build(
    key: Keypair,
    psk: Option<PreSharedKey>,
    limits: &NodeLimits,
) -> Result<Swarm<Behaviour>, BuildError> {
    let err = |e: &dyn std::fmt::Display| BuildError(e.to_string());
    let yamux_cfg = yamux_config(limits);
    let behaviour = |key: &Keypair| Behaviour::new(key, limits);
    let swarm_cfg =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let swarm = match psk {
        Some(psk) => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let noise = noise::Config::new(key)?;
                    Ok(tcp::tokio::Transport::new(tcp_config())
                        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux_cfg))
                },
            )
            .map_err(|e| err(&e))?
            .with_behaviour(|key| behaviour(key))
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_cfg)
            .build(),
        None => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp_config(), noise::Config::new, move || yamux_cfg)
            .map_err(|e| err(&e))?
            .with_quic()
            .with_behaviour(|key| behaviour(key))
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_cfg)
            .build(),
    };
    Ok(swarm)
}

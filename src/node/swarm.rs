//! Building the libp2p `Swarm`: transports (TCP+pnet when there is a swarm key, else TCP and
//! QUIC-v1), DNS, security (TLS then Noise), yamux, and the behaviours. A private network is
//! decided here and only here.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig};
use libp2p::core::Transport as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::dns::{ResolverConfig, ResolverOpts};
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{PeerId, Swarm, SwarmBuilder, connection_limits, identify, ping, relay, tcp};

use super::address_book::AddressBook;
use super::inbound::Inbound;
use super::muxer;
use super::nat;
use super::pnet::{self, PnetKey};
use super::read_ahead::ReadAhead;
use super::routing::{self, Kad};
use super::security::{Security, SecurityError};
use crate::config::{NodeLimits, RoutingMode};

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
    /// Kubo's WAN DHT (`/ipfs/kad/1.0.0`); off with `routing = "none"`.
    pub kad: Toggle<Kad>,
    /// Kubo's LAN DHT (`/ipfs/lan/kad/1.0.0`).
    pub lan_kad: Toggle<Kad>,
    /// AutoNAT, relay v2 client and service, DCUtR.
    pub nat: nat::Behaviour,
}

/// What shapes the swarm besides the key.
pub struct SwarmOptions<'a> {
    /// The swarm key: TCP + pnet only when set.
    pub psk: Option<PreSharedKey>,
    pub limits: &'a NodeLimits,
    pub routing: RoutingMode,
    /// DNS server for `/dns*` and `/dnsaddr`; `None`: the system's resolver.
    pub dns: Option<SocketAddr>,
    /// Announce only the external addresses (Kubo's `Addresses.Announce` / `NoAnnounce`).
    pub hide_listen_addrs: bool,
    pub nat: &'a nat::NatOptions,
}

impl Behaviour {
    fn new(
        key: &Keypair,
        options: &SwarmOptions<'_>,
        relay: relay::client::Behaviour,
    ) -> Behaviour {
        let limits = options.limits;
        let connection_limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending))
            .with_max_pending_outgoing(Some(limits.max_pending));
        let (kad, lan_kad) = routing::behaviours(key.public().to_peer_id(), options.routing);
        Behaviour {
            limits: connection_limits::Behaviour::new(connection_limits),
            addresses: AddressBook::default(),
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                    .with_agent_version(AGENT_VERSION.into())
                    .with_hide_listen_addrs(options.hide_listen_addrs)
                    // A new `/p2p-circuit` address must reach peers now, not at the next round.
                    .with_push_listen_addr_updates(true),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
            inbound: Inbound::default(),
            kad,
            lan_kad,
            nat: nat::Behaviour::new(key.public().to_peer_id(), relay, options.nat),
        }
    }
}

impl nat::NatSwarm for Swarm<Behaviour> {
    fn local_peer_id(&self) -> PeerId {
        *Swarm::local_peer_id(self)
    }
    fn listen_on(
        &mut self,
        addr: libp2p::Multiaddr,
    ) -> Result<libp2p::core::transport::ListenerId, String> {
        Swarm::listen_on(self, addr).map_err(|e| e.to_string())
    }
    fn remove_listener(&mut self, id: libp2p::core::transport::ListenerId) {
        Swarm::remove_listener(self, id);
    }
    fn nat(&mut self) -> &mut nat::Behaviour {
        &mut self.behaviour_mut().nat
    }
}

/// The resolver: `[node] dns` when set, else the system's (none at all if it has none, rather
/// than a public default: a node must not send queries we were not told to send).
fn dns_config(dns: Option<SocketAddr>) -> (ResolverConfig, ResolverOpts) {
    match dns {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            (
                ResolverConfig::from_name_servers(vec![server]),
                ResolverOpts::default(),
            )
        }
        None => hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
            tracing::warn!("no system DNS configuration ({e}): /dns and /dnsaddr will not resolve");
            (
                ResolverConfig::from_name_servers(Vec::new()),
                ResolverOpts::default(),
            )
        }),
    }
}

/// Errors building the swarm.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the libp2p transport: {0}")]
pub struct BuildError(String);

fn yamux_config(limits: &NodeLimits) -> muxer::Config {
    // More than the per-peer tunnel cap, so the tunnel layer (which logs) refuses first.
    muxer::Config::new(limits.max_streams_per_peer + 16)
}

fn tcp_config() -> tcp::Config {
    tcp::Config::default().nodelay(true)
}

/// Every stream transport (TCP, relayed circuits) gets the same upgrades, pnet included:
/// go-libp2p's upgrader protects every transport with the swarm key, circuits too, so Kubo
/// expects it there. The read-ahead sits under the security layer, so Noise's small reads are
/// served from memory instead of one system call each.
fn upgraded<T>(
    transport: T,
    key: &Keypair,
    psk: Option<PnetKey>,
    yamux_cfg: muxer::Config,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, SecurityError>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let security = Security::new(key)?;
    Ok(match psk {
        Some(psk) => transport
            .and_then(move |conn, _| pnet::handshake(psk, conn))
            .map(|conn, _| ReadAhead::new(conn))
            .upgrade(Version::V1Lazy)
            .authenticate(security)
            .multiplex(yamux_cfg)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        None => transport
            .map(|conn, _| ReadAhead::new(conn))
            .upgrade(Version::V1Lazy)
            .authenticate(security)
            .multiplex(yamux_cfg)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    })
}

/// Build the swarm for `key`. With a swarm key, TCP + pnet only (as Kubo: no QUIC in a private
/// network); circuits through relays in both cases.
pub fn build(key: Keypair, options: SwarmOptions<'_>) -> Result<Swarm<Behaviour>, BuildError> {
    let err = |e: &dyn std::fmt::Display| BuildError(e.to_string());
    let yamux_cfg = yamux_config(options.limits);
    let (relay_transport, relay_client) = relay::client::new(key.public().to_peer_id());
    let psk = options
        .psk
        .map(PnetKey::try_from)
        .transpose()
        .map_err(|e| err(&e))?;
    let relayed = upgraded(relay_transport, &key, psk, yamux_cfg.clone()).map_err(|e| err(&e))?;
    let tcp = upgraded(
        tcp::tokio::Transport::new(tcp_config()),
        &key,
        psk,
        yamux_cfg,
    )
    .map_err(|e| err(&e))?;
    let streams = tcp
        .or_transport(relayed)
        .map(|either, _| either.into_inner());
    let behaviour = |key: &Keypair| Behaviour::new(key, &options, relay_client);
    let (dns, dns_opts) = dns_config(options.dns);
    let swarm_cfg =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let swarm = match psk {
        Some(_) => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(|_| streams)
            .map_err(|e| err(&e))?
            .with_dns_config(dns, dns_opts)
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_cfg)
            .build(),
        None => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_quic()
            .with_other_transport(|_| streams)
            .map_err(|e| err(&e))?
            .with_dns_config(dns, dns_opts)
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_cfg)
            .build(),
    };
    Ok(swarm)
}

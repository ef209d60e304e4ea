//! The consumer side: `connect <slug> <peer>` opens a forward to another station's service on
//! the port the BRIEF rule picks (existing tunnel, native port, alternative port), `disconnect` closes it.

use std::io::Read as _;
use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::error::DragonError;
use super::slug::Slug;
use super::{catalog, port};
use crate::config::ForwardSpec;
use crate::tunnel::{CloseFilter, TunnelError, TunnelInfo, TunnelKind, Tunnels, addr};

/// Longest mirrored client script read for its `NATIVE_PORT` (real ones are ~3 KiB).
const MAX_SCRIPT_BYTES: u64 = 64 * 1024;

/// Where a remote service now is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub slug: Slug,
    pub peer: String,
    pub protocol: String,
    pub port: u16,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// True when a forward for this service was already open and is reused.
    pub reused: bool,
    pub native_port: Option<u16>,
    pub alt_port: u16,
    /// Ports tried before `port` and why they were not used.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The station a `connect` or `disconnect` names: its PeerID, or a multiaddr ending in
/// `/p2p/<PeerID>` (then the forward also dials it). On the control wire it is that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Station {
    pub peer: PeerId,
    /// The address given with it, if any.
    pub dial: Option<Multiaddr>,
}

impl Station {
    /// `<PEERID>` or a multiaddr ending in `/p2p/<PEERID>`.
    pub fn parse(text: &str) -> Result<Station, DragonError> {
        if let Ok(peer) = crate::identity::parse_peer_id(text) {
            return Ok(Station { peer, dial: None });
        }
        let target = addr::parse_forward_target(text)
            .map_err(|_| DragonError::BadPeer(crate::identity::shorten(text)))?;
        Ok(Station {
            peer: target.peer,
            dial: target.dial,
        })
    }

    /// The forward's target: `/p2p/<id>`, or the full multiaddr to dial.
    fn target(&self) -> String {
        self.dial
            .as_ref()
            .map_or_else(|| format!("/p2p/{}", self.peer), Multiaddr::to_string)
    }
}

impl std::fmt::Display for Station {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dial {
            Some(addr) => addr.fmt(f),
            None => self.peer.fmt(f),
        }
    }
}

impl TryFrom<String> for Station {
    type Error = DragonError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Station::parse(&text)
    }
}

impl From<Station> for String {
    fn from(station: Station) -> String {
        station.to_string()
    }
}

/// The consumer's preferred port: `NATIVE_PORT` of the station's mirrored `x_<slug>.sh`, else
/// the catalog's (strfry: 9999), else none (only the alternative port).
pub fn native_port(swarm_dir: &Path, peer: &PeerId, slug: &Slug) -> Option<u16> {
    let path = swarm_dir
        .join(peer.to_string())
        .join(super::script::file_name(slug));
    let mut text = String::new();
    let mirrored = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCRIPT_BYTES).read_to_string(&mut text))
        .ok()
        .and_then(|_| native_port_in_script(&text));
    mirrored.or_else(|| catalog::builtin_consumer_port(slug.as_str()))
}

/// `NATIVE_PORT="N"` of a client script.
pub fn native_port_in_script(text: &str) -> Option<u16> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("NATIVE_PORT=")
            .map(|v| v.trim_matches(|c| c == '"' || c == '\''))
            .and_then(|v| v.parse().ok())
    })
}

fn port_of(t: &TunnelInfo) -> Option<u16> {
    addr::tcp_socket_addr(&t.listen_address)
        .ok()
        .map(|a| a.port())
}

/// Open (or reuse) a forward to `peer`'s `/x/<slug>-<peer>` on a local port.
pub async fn connect(
    tunnels: &Tunnels,
    swarm_dir: &Path,
    slug: &str,
    station: &Station,
    requested: Option<u16>,
) -> Result<Connection, DragonError> {
    let slug = Slug::parse(slug)?;
    let (peer, target) = (station.peer, station.target());
    let protocol = slug.protocol(&peer);
    let native = native_port(swarm_dir, &peer, &slug);
    let alt = port::alt_port(&peer.to_string(), slug.as_str());
    let connection = |port: u16, reused: bool, notes: Vec<String>| Connection {
        slug: slug.clone(),
        peer: peer.to_string(),
        protocol: protocol.clone(),
        port,
        address: format!("127.0.0.1:{port}"),
        reused,
        native_port: native,
        alt_port: alt,
        notes,
    };
    let existing = tunnels
        .list()
        .into_iter()
        .filter(|t| t.kind == TunnelKind::Forward && t.protocol == protocol)
        .filter_map(|t| port_of(&t))
        .find(|p| requested.is_none_or(|r| r == *p));
    if let Some(port) = existing {
        return Ok(connection(port, true, Vec::new()));
    }
    let candidates = match requested {
        Some(p) => vec![p],
        None => port::candidates(native, alt),
    };
    let mut notes = Vec::new();
    if let Some(n) = native.filter(|&n| n < port::PRIVILEGED_BELOW && requested.is_none()) {
        notes.push(format!("native port {n} is privileged"));
    }
    for port in candidates {
        let spec = ForwardSpec {
            protocol: protocol.clone(),
            listen: format!("/ip4/127.0.0.1/tcp/{port}"),
            target: target.clone(),
            allow_custom_protocol: false,
        };
        match tunnels.forward(&spec).await {
            // The bound port: `--port 0` lets the system choose, and the user must learn which.
            Ok(info) => return Ok(connection(port_of(&info).unwrap_or(port), false, notes)),
            Err(TunnelError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                if requested.is_some() {
                    return Err(DragonError::PortTaken {
                        slug: slug.to_string(),
                        port,
                        source,
                    });
                }
                notes.push(format!("port {port} is taken"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DragonError::NoFreePort {
        slug: slug.to_string(),
        ports: notes.join(", "),
    })
}

/// Close every forward to `peer`'s `/x/<slug>-<peer>`.
pub fn disconnect(
    tunnels: &Tunnels,
    slug: &str,
    station: &Station,
) -> Result<Vec<TunnelInfo>, DragonError> {
    let slug = Slug::parse(slug)?;
    let protocol = slug.protocol(&station.peer);
    let forwards: Vec<TunnelInfo> = tunnels
        .list()
        .into_iter()
        .filter(|t| t.kind == TunnelKind::Forward && t.protocol == protocol)
        .collect();
    if forwards.is_empty() {
        return Err(DragonError::NotConnected(protocol));
    }
    let mut closed = Vec::new();
    for forward in forwards {
        closed.extend(tunnels.close(&CloseFilter {
            protocol: Some(protocol.clone()),
            listen: Some(forward.listen_address.clone()),
            ..CloseFilter::default()
        })?);
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_port_comes_from_a_mirrored_script_then_the_catalog() {
        assert_eq!(
            native_port_in_script("X=1\nNATIVE_PORT=\"8010\"\n"),
            Some(8010)
        );
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerId::random();
        let strfry = Slug::parse("strfry").unwrap();
        let app = Slug::parse("my-app").unwrap();
        assert_eq!(native_port(dir.path(), &peer, &strfry), Some(9999));
        assert_eq!(native_port(dir.path(), &peer, &app), None);
        let station = dir.path().join(peer.to_string());
        std::fs::create_dir_all(&station).unwrap();
        std::fs::write(station.join("x_my-app.sh"), "NATIVE_PORT=\"8010\"\n").unwrap();
        assert_eq!(native_port(dir.path(), &peer, &app), Some(8010));
    }

    #[test]
    fn peers_are_ids_or_multiaddrs() {
        let peer = PeerId::random();
        let bare = Station::parse(&peer.to_string()).unwrap();
        assert_eq!((bare.peer, bare.target()), (peer, format!("/p2p/{peer}")));
        let full = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}");
        let dialed = Station::parse(&full).unwrap();
        assert_eq!((dialed.peer, dialed.target()), (peer, full.clone()));
        assert!(Station::parse("nope").is_err());
        // On the control wire, the text it was given.
        let json = serde_json::to_value(&dialed).unwrap();
        assert_eq!(json, serde_json::json!(full));
        assert_eq!(serde_json::from_value::<Station>(json).unwrap(), dialed);
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!(peer.to_string())
        );
    }
}

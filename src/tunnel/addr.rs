//! Tunnel addressing, as Kubo's `ipfs p2p` spells it: protocol names (`/x/…`), TCP multiaddrs
//! (`/ip4/127.0.0.1/tcp/22`) and forward targets (`/p2p/<id>` or a full multiaddr). Pure parsing.

use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// The longest protocol name accepted; `/x/perplexica-<52-char peer id>` is ~70.
const MAX_PROTOCOL_LEN: usize = 256;

/// A parse error, phrased for the CLI user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("protocol name {0:?} must start with /x/ (or pass --allow-custom-protocol)")]
    NotX(String),
    #[error("protocol name {0:?} is invalid: {1}")]
    BadProtocol(String, &'static str),
    #[error("{0:?} is not a multiaddr: {1}")]
    BadMultiaddr(String, String),
    #[error("{0} is not a TCP address like /ip4/127.0.0.1/tcp/PORT")]
    NotTcp(String),
    #[error(
        "{0} does not name a peer: expected /p2p/<peer id> or a multiaddr ending in /p2p/<peer id>"
    )]
    NoPeer(String),
}

/// Check a tunnel protocol name: `/x/` prefix unless `allow_custom`, printable, bounded.
pub fn parse_protocol(name: &str, allow_custom: bool) -> Result<StreamProtocol, AddrError> {
    if !allow_custom && !name.starts_with("/x/") {
        return Err(AddrError::NotX(name.into()));
    }
    if !name.starts_with('/') {
        return Err(AddrError::BadProtocol(name.into(), "it must start with /"));
    }
    if name.len() > MAX_PROTOCOL_LEN {
        return Err(AddrError::BadProtocol(name.into(), "longer than 256 bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AddrError::BadProtocol(
            name.into(),
            "it contains spaces or control characters",
        ));
    }
    if name == "/x/" {
        return Err(AddrError::BadProtocol(
            name.into(),
            "the name after /x/ is empty",
        ));
    }
    StreamProtocol::try_from_owned(name.to_owned())
        .map_err(|_| AddrError::BadProtocol(name.into(), "rejected by libp2p"))
}

pub fn parse_multiaddr(text: &str) -> Result<Multiaddr, AddrError> {
    text.parse()
        .map_err(|e: libp2p::multiaddr::Error| AddrError::BadMultiaddr(text.into(), e.to_string()))
}

/// `/ip4/A/tcp/P` or `/ip6/A/tcp/P` → a socket address (also accepts `/dns*/localhost/tcp/P`).
pub fn tcp_socket_addr(text: &str) -> Result<SocketAddr, AddrError> {
    let addr = parse_multiaddr(text)?;
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) if h == "localhost" => {
            IpAddr::from([127, 0, 0, 1])
        }
        _ => return Err(AddrError::NotTcp(text.into())),
    };
    match (parts.next(), parts.next()) {
        (Some(Protocol::Tcp(port)), None) => Ok(SocketAddr::new(ip, port)),
        _ => Err(AddrError::NotTcp(text.into())),
    }
}

/// The TCP multiaddr of a socket address, as `p2p ls` prints it.
pub fn socket_multiaddr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("/ip4/{ip}/tcp/{}", addr.port()),
        IpAddr::V6(ip) => format!("/ip6/{ip}/tcp/{}", addr.port()),
    }
}

/// Where a forward goes: the peer, and the address to dial it at when one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub peer: PeerId,
    pub dial: Option<Multiaddr>,
}

/// `/p2p/<id>`, `/ipfs/<id>` (Kubo's old spelling), or `/ip4/…/tcp/…/p2p/<id>`.
pub fn parse_forward_target(text: &str) -> Result<ForwardTarget, AddrError> {
    let text = text.trim();
    let normalised = match text.strip_prefix("/ipfs/") {
        Some(rest) => format!("/p2p/{rest}"),
        None => text.to_owned(),
    };
    let addr = parse_multiaddr(&normalised)?;
    let peer = match addr.iter().last() {
        Some(Protocol::P2p(peer)) => peer,
        _ => return Err(AddrError::NoPeer(text.into())),
    };
    let dial = (addr.iter().count() > 1).then_some(addr);
    Ok(ForwardTarget { peer, dial })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn protocol_names_follow_kubo_rules() {
        assert!(parse_protocol("/x/strfry-abc", false).is_ok());
        assert_eq!(
            parse_protocol("/ssh", false),
            Err(AddrError::NotX("/ssh".into()))
        );
        assert!(parse_protocol("/ssh", true).is_ok());
        assert!(parse_protocol("ssh", true).is_err());
        assert!(parse_protocol("/x/", false).is_err());
        assert!(parse_protocol("/x/a b", false).is_err());
        assert!(parse_protocol(&format!("/x/{}", "a".repeat(300)), false).is_err());
    }

    #[test]
    fn tcp_addresses_parse_like_kubo() {
        assert_eq!(
            tcp_socket_addr("/ip4/127.0.0.1/tcp/22")
                .unwrap()
                .to_string(),
            "127.0.0.1:22"
        );
        assert_eq!(
            tcp_socket_addr("/ip6/::1/tcp/7777").unwrap().to_string(),
            "[::1]:7777"
        );
        assert!(matches!(
            tcp_socket_addr("/ip4/127.0.0.1/udp/22"),
            Err(AddrError::NotTcp(_))
        ));
        assert!(matches!(
            tcp_socket_addr("127.0.0.1:22"),
            Err(AddrError::BadMultiaddr(..))
        ));
        assert!(matches!(
            tcp_socket_addr("/ip4/1.2.3.4/tcp/99999"),
            Err(AddrError::BadMultiaddr(..))
        ));
        assert_eq!(
            socket_multiaddr("[::1]:5".parse().unwrap()),
            "/ip6/::1/tcp/5"
        );
    }

    #[test]
    fn forward_targets_accept_p2p_ipfs_and_full_addresses() {
        let t = parse_forward_target(&format!("/p2p/{PEER}")).unwrap();
        assert_eq!(t.peer.to_string(), PEER);
        assert!(t.dial.is_none());
        assert_eq!(parse_forward_target(&format!("/ipfs/{PEER}")).unwrap(), t);
        let full = parse_forward_target(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")).unwrap();
        assert_eq!(full.peer, t.peer);
        assert!(full.dial.is_some());
        assert!(matches!(
            parse_forward_target("/ip4/127.0.0.1/tcp/4001"),
            Err(AddrError::NoPeer(_))
        ));
        assert!(parse_forward_target("/p2p/notapeer").is_err());
    }
}

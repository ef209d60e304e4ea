//! Tunnel addressing, as Kubo's `ipfs p2p` spells it: protocol names (`/x/…`), TCP multiaddrs
//! (`/ip4/127.0.0.1/tcp/22`) and forward targets (`/p2p/<id>` or a full multiaddr). Pure parsing.

use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// The longest protocol name accepted; `/x/perplexica-<52-char peer id>` is ~70.
const MAX_PROTOCOL_LEN: usize = 256;
/// The longest multiaddr accepted: a relayed one (`/ip6/…/tcp/…/p2p/<id>/p2p-circuit/p2p/<id>`)
/// is under 200 characters. Longer text is refused before parsing (its `/p2p/` part is base58,
/// whose decoding is quadratic: 1 MB of it took 8 s of an async thread).
pub const MAX_MULTIADDR_LEN: usize = 1_024;

use crate::identity::{shorten, shorten_message};

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
        return Err(AddrError::NotX(shorten(name)));
    }
    let bad = |why| AddrError::BadProtocol(shorten(name), why);
    if !name.starts_with('/') {
        return Err(bad("it must start with /"));
    }
    if name.len() > MAX_PROTOCOL_LEN {
        return Err(bad("longer than 256 bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    if name == "/x/" {
        return Err(bad("the name after /x/ is empty"));
    }
    StreamProtocol::try_from_owned(name.to_owned()).map_err(|_| bad("rejected by libp2p"))
}

/// A multiaddr, bounded in length ([`MAX_MULTIADDR_LEN`]) before it is parsed.
pub fn parse_multiaddr(text: &str) -> Result<Multiaddr, AddrError> {
    if text.len() > MAX_MULTIADDR_LEN {
        return Err(AddrError::BadMultiaddr(
            shorten(text),
            format!("longer than {MAX_MULTIADDR_LEN} bytes"),
        ));
    }
    text.parse().map_err(|e: libp2p::multiaddr::Error| {
        AddrError::BadMultiaddr(shorten(text), shorten_message(&e.to_string()))
    })
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
        _ => return Err(AddrError::NotTcp(shorten(text))),
    };
    match (parts.next(), parts.next()) {
        (Some(Protocol::Tcp(port)), None) => Ok(SocketAddr::new(ip, port)),
        _ => Err(AddrError::NotTcp(shorten(text))),
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
        _ => return Err(AddrError::NoPeer(shorten(text))),
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
        let long = parse_protocol(&format!("/x/{}", "a".repeat(100_000)), false);
        let message = long.expect_err("too long").to_string();
        assert!(message.len() < 200, "the name is echoed whole: {message}");
    }

    #[test]
    fn over_long_multiaddrs_are_refused_before_parsing() {
        let huge = format!("/p2p/{}", "1".repeat(1_000_000));
        let started = std::time::Instant::now();
        let err = parse_forward_target(&huge).expect_err("1 MB target");
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        assert!(err.to_string().contains("longer than 1024 bytes"), "{err}");
        assert!(err.to_string().len() < 200, "{err}");
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

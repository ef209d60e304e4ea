//! Peer discovery: the `12345.json` files that stations publish under the swarm folder, and peers
//! named on the command line. Every field is untrusted: ids must parse as PeerIDs, URLs as ws(s).

use std::path::{Path, PathBuf};

use libp2p::PeerId;
use nostr::prelude::PublicKey;
use serde::Deserialize;

use crate::identity::{shorten, shorten_message};

/// Largest `12345.json` read; real ones are a few KiB.
pub const MAX_STATION_FILE: u64 = 256 * 1024;

/// How we reach a peer's relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Through its `/x/strfry-<id>` stream protocol on our libp2p node.
    Tunnel(PeerId),
    /// Directly at a ws:// or wss:// URL.
    Url(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tunnel(peer) => write!(f, "/x/strfry-{peer}"),
            Endpoint::Url(url) => f.write_str(url),
        }
    }
}

/// One station to sync with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Label used in logs, stats and the report: the PeerID, or the URL for explicit URL peers.
    pub name: String,
    pub endpoint: Endpoint,
    /// `captainHEX` / `NODEHEX` of the station: authors of the sync.
    pub pubkeys: Vec<PublicKey>,
    pub hostname: Option<String>,
}

/// The fields of `12345.json` that we use.
#[derive(Debug, Deserialize)]
struct StationFile {
    ipfsnodeid: Option<String>,
    #[serde(rename = "myRELAY")]
    my_relay: Option<String>,
    #[serde(rename = "captainHEX")]
    captain_hex: Option<String>,
    #[serde(rename = "NODEHEX")]
    node_hex: Option<String>,
    hostname: Option<String>,
}

/// Why a station file was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Is this URL only meaningful on the station itself?
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(
        host,
        "127.0.0.1" | "localhost" | "[::1]" | "::1" | "0.0.0.0"
    ) || host.starts_with("127.")
}

pub fn is_ws_url(url: &str) -> bool {
    (url.starts_with("ws://") || url.starts_with("wss://"))
        && url.len() > 6
        && !url.contains(char::is_whitespace)
}

/// A 64-hex pubkey (either case, surrounding blanks ignored); `None` otherwise. The one place
/// where an author's text becomes a key: everything after it holds [`PublicKey`]s.
pub fn parse_hex_pubkey(text: &str) -> Option<PublicKey> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    PublicKey::from_hex(t).ok()
}

/// Parse one `12345.json` found at `dir/12345.json` (pure; `x_strfry_exists` is probed by the caller).
fn parse_station(path: &Path, text: &str, x_strfry_exists: bool) -> Result<Peer, String> {
    let file: StationFile = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON: {}", shorten_message(&e.to_string())))?;
    let id_text = file.ipfsnodeid.ok_or("no ipfsnodeid")?;
    let peer =
        crate::identity::parse_peer_id(id_text.trim()).map_err(|e| format!("ipfsnodeid: {e}"))?;
    let relay = file.my_relay.unwrap_or_default();
    let endpoint = if relay.is_empty() || is_loopback_url(&relay) {
        if !x_strfry_exists {
            return Err(format!(
                "relay {:?} is not routable and {} has no x_strfry.sh",
                shorten(&relay),
                path.display()
            ));
        }
        Endpoint::Tunnel(peer)
    } else if is_ws_url(&relay) {
        Endpoint::Url(relay)
    } else {
        return Err(format!(
            "myRELAY {:?} is not a ws:// or wss:// URL",
            shorten(&relay)
        ));
    };
    let pubkeys = [file.captain_hex, file.node_hex]
        .into_iter()
        .flatten()
        .filter_map(|h| parse_hex_pubkey(&h))
        .collect();
    Ok(Peer {
        name: peer.to_string(),
        endpoint,
        pubkeys,
        hostname: file.hostname,
    })
}

/// Read every `<swarm_dir>/*/12345.json`, skipping `own` and recording what was skipped and why.
pub fn scan_swarm(swarm_dir: &Path, own: Option<&PeerId>) -> (Vec<Peer>, Vec<Skipped>) {
    let (mut peers, mut skipped) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(swarm_dir) else {
        return (peers, skipped);
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let path = dir.join("12345.json");
        if !path.is_file() {
            continue;
        }
        let text = match read_bounded(&path) {
            Ok(t) => t,
            Err(reason) => {
                skipped.push(Skipped { path, reason });
                continue;
            }
        };
        match parse_station(&path, &text, dir.join("x_strfry.sh").is_file()) {
            Ok(peer) if Some(peer.name.as_str()) == own.map(|o| o.to_string()).as_deref() => {}
            Ok(peer) if peers.iter().any(|p: &Peer| p.name == peer.name) => {}
            Ok(peer) => peers.push(peer),
            Err(reason) => {
                tracing::warn!("skipping {}: {reason}", path.display());
                skipped.push(Skipped { path, reason });
            }
        }
    }
    (peers, skipped)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let bytes =
        crate::atomic_file::read_bounded(path, MAX_STATION_FILE).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
}

/// `--peer PEERID|ws(s)://URL`.
pub fn parse_explicit_peer(text: &str) -> Result<Peer, String> {
    let text = text.trim();
    if is_ws_url(text) {
        return Ok(Peer {
            name: text.to_owned(),
            endpoint: Endpoint::Url(text.to_owned()),
            pubkeys: vec![],
            hostname: None,
        });
    }
    let id = text.strip_prefix("/p2p/").unwrap_or(text);
    let peer = crate::identity::parse_peer_id(id).map_err(|_| {
        format!(
            "--peer {:?} is neither a PeerID nor a ws(s):// URL",
            crate::identity::shorten(text)
        )
    })?;
    Ok(Peer {
        name: peer.to_string(),
        endpoint: Endpoint::Tunnel(peer),
        pubkeys: vec![],
        hostname: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    const HEX: &str = "a3a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";

    fn station(dir: &Path, name: &str, json: &str, x_strfry: bool) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("12345.json"), json).unwrap();
        if x_strfry {
            std::fs::write(d.join("x_strfry.sh"), "#!/bin/bash\n").unwrap();
        }
    }

    #[test]
    fn loopback_relays_go_through_the_tunnel_and_public_ones_direct() {
        let dir = tempfile::tempdir().unwrap();
        station(
            dir.path(),
            "a",
            &format!(
                r#"{{"ipfsnodeid":"{ID}","myRELAY":"ws://127.0.0.1:7777","captainHEX":"{HEX}","NODEHEX":"bad"}}"#
            ),
            true,
        );
        let other = PeerId::random();
        station(
            dir.path(),
            "b",
            &format!(r#"{{"ipfsnodeid":"{other}","myRELAY":"wss://relay.example"}}"#),
            false,
        );
        let (peers, skipped) = scan_swarm(dir.path(), None);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(peers[0].endpoint, Endpoint::Tunnel(ID.parse().unwrap()));
        assert_eq!(
            peers[0].pubkeys,
            vec![PublicKey::from_hex(HEX).unwrap()],
            "invalid NODEHEX dropped"
        );
        assert_eq!(
            peers[1].endpoint,
            Endpoint::Url("wss://relay.example".into())
        );
    }

    #[test]
    fn own_id_malformed_files_and_untunnelled_loopback_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        station(
            dir.path(),
            "own",
            &format!(r#"{{"ipfsnodeid":"{ID}","myRELAY":"wss://x.example"}}"#),
            false,
        );
        station(dir.path(), "garbage", "{not json", false);
        station(
            dir.path(),
            "badid",
            r#"{"ipfsnodeid":"../../etc","myRELAY":"wss://x.example"}"#,
            false,
        );
        let p = PeerId::random();
        station(
            dir.path(),
            "notunnel",
            &format!(r#"{{"ipfsnodeid":"{p}","myRELAY":"ws://127.0.0.1:7777"}}"#),
            false,
        );
        station(
            dir.path(),
            "http",
            &format!(
                r#"{{"ipfsnodeid":"{}","myRELAY":"http://x"}}"#,
                PeerId::random()
            ),
            false,
        );
        let (peers, skipped) = scan_swarm(dir.path(), Some(&ID.parse().unwrap()));
        assert!(peers.is_empty(), "{peers:?}");
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(skipped.len(), 4, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("not valid JSON")));
        assert!(reasons.iter().any(|r| r.contains("is not a PeerID")));
        assert!(reasons.iter().any(|r| r.contains("x_strfry.sh")));
        assert!(reasons.iter().any(|r| r.contains("not a ws://")));
    }

    #[test]
    fn a_station_file_with_a_huge_id_is_skipped_quickly_with_a_short_reason() {
        let dir = tempfile::tempdir().unwrap();
        let id = "1".repeat(250 * 1024);
        station(
            dir.path(),
            "huge",
            &format!(r#"{{"ipfsnodeid":"{id}","myRELAY":"wss://x.example"}}"#),
            false,
        );
        let started = std::time::Instant::now();
        let (peers, skipped) = scan_swarm(dir.path(), None);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!(peers.is_empty());
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.len() < 200, "{}", skipped[0].reason);
    }

    #[test]
    fn explicit_peers_are_ids_or_ws_urls() {
        assert_eq!(
            parse_explicit_peer(ID).unwrap().endpoint,
            Endpoint::Tunnel(ID.parse().unwrap())
        );
        assert_eq!(
            parse_explicit_peer("ws://127.0.0.1:1").unwrap().endpoint,
            Endpoint::Url("ws://127.0.0.1:1".into())
        );
        assert!(parse_explicit_peer("http://x").is_err());
        assert!(parse_explicit_peer("nope").is_err());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("ws://127.0.0.1:7777"));
        assert!(is_loopback_url("ws://localhost:7777/"));
        assert!(!is_loopback_url("wss://relay.copylaradio.com"));
    }
}

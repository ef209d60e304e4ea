//! What `constellation services` shows: the services published and skipped (and why) by the
//! last publishing cycle, and the forwards open to other stations' services.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::slug::{Slug, parse_service_protocol};
use crate::tunnel::{TunnelInfo, TunnelKind};

/// One published service, as `constellation services` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedService {
    pub slug: Slug,
    pub port: u16,
    pub protocol: String,
    pub target: String,
    #[serde(default)]
    pub allow_peers: Vec<String>,
    /// The client script, when it could be written.
    pub script: Option<PathBuf>,
    /// False when the listener was created by hand (`p2p listen`, `[[tunnels]]`), not by DRAGON.
    pub managed: bool,
}

/// Why a service is not published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum SkipReason {
    /// In `DRAGON_PRIVATE_SERVICES` or `[dragon] private`.
    Private,
    /// Nothing listens on its port, or its check failed.
    NotRunning(String),
    /// Its port is held by a tunnel (ours or Kubo's): publishing it would loop.
    Tunnel(String),
    /// modules.list gives no port.
    NoPort,
    /// Publishing failed (e.g. a bad allow-list).
    Failed(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Private => write!(f, "private"),
            SkipReason::NotRunning(d) => write!(f, "not running: {d}"),
            SkipReason::Tunnel(d) => write!(f, "tunnel: port held by {d}"),
            SkipReason::NoPort => write!(f, "no port"),
            SkipReason::Failed(d) => write!(f, "failed: {d}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedService {
    pub slug: Slug,
    pub port: Option<u16>,
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// A forward to another station's service, open on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteForward {
    pub slug: Slug,
    pub peer: String,
    pub protocol: String,
    pub listen: String,
}

/// What `constellation services` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesReport {
    /// False when publishing is off (`--no-dragon`, `[dragon] enabled = false`).
    pub publishing: bool,
    /// Publishing cycles completed since the daemon started.
    pub cycles: u64,
    pub published: Vec<PublishedService>,
    pub skipped: Vec<SkippedService>,
    pub remote: Vec<RemoteForward>,
    /// Problems with the inputs (modules.list lines, sshd_config) of the last cycle.
    pub warnings: Vec<String>,
}

/// The forwards of `tunnels` that reach another station's `/x/<slug>-<peer id>`.
pub fn remote_forwards(tunnels: &[TunnelInfo]) -> Vec<RemoteForward> {
    tunnels
        .iter()
        .filter(|t| t.kind == TunnelKind::Forward)
        .filter_map(|t| {
            let (slug, peer) = parse_service_protocol(&t.protocol)?;
            Some(RemoteForward {
                slug,
                peer: peer.to_string(),
                protocol: t.protocol.clone(),
                listen: t.listen_address.clone(),
            })
        })
        .collect()
}

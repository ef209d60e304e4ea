//! DRAGON: publish the station's running services as `/x/<slug>-<peer id>` listeners, write the
//! `x_<slug>.sh` client scripts, and reach other stations' services (`connect`/`disconnect`).
//! Replaces the hourly `DRAGON_p2p_ssh.sh`; the rules are BRIEF §1 "DRAGON".

pub mod catalog;
pub mod connect;
pub mod detect;
pub mod port;
pub mod publisher;
pub mod script;

use std::path::PathBuf;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

pub use publisher::Dragon;

pub use crate::config::DragonConfig;
use crate::config::home_dir;
use crate::tunnel::{TunnelInfo, TunnelKind};

/// Longest slug accepted (`/x/<slug>-<peer id>` must stay well under the protocol-name limit).
const MAX_SLUG_LEN: usize = 64;
/// Shortest publishing interval: faster cycles would only re-read /proc for nothing.
const MIN_INTERVAL_SECS: u64 = 1;

/// Errors of DRAGON operations, phrased for the CLI user.
#[derive(Debug, thiserror::Error)]
pub enum DragonError {
    #[error("service name {0:?} is refused: use 1 to 64 characters of a-z 0-9 . _ -")]
    BadSlug(String),
    #[error("{0} is not a peer id (nor a multiaddr ending in /p2p/<peer id>)")]
    BadPeer(String),
    #[error("{slug}: local port {port} is taken ({source}); choose another --port")]
    PortTaken {
        slug: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("{slug}: every candidate local port is taken ({ports}); pass --port")]
    NoFreePort { slug: String, ports: String },
    #[error("no forward to {0} is open")]
    NotConnected(String),
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
    #[error("DRAGON is not running in this daemon")]
    Stopped,
}

/// A service name: `[a-z0-9._-]{1,64}`, the `<slug>` of `/x/<slug>-<peer id>` and `x_<slug>.sh`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(text: &str) -> Result<Slug, DragonError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_SLUG_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && !text.starts_with(['-', '.']);
        if ok {
            Ok(Slug(text.to_owned()))
        } else {
            Err(DragonError::BadSlug(crate::identity::shorten(text)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `/x/<slug>-<peer id>`.
    pub fn protocol(&self, peer: &PeerId) -> String {
        format!("/x/{}-{peer}", self.0)
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl TryFrom<String> for Slug {
    type Error = DragonError;
    fn try_from(value: String) -> Result<Slug, DragonError> {
        Slug::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

/// `/x/<slug>-<peer id>` → (slug, peer), when the name has that shape.
pub fn parse_service_protocol(protocol: &str) -> Option<(Slug, PeerId)> {
    let rest = protocol.strip_prefix("/x/")?;
    let (slug, peer) = rest.rsplit_once('-')?;
    Some((
        Slug::parse(slug).ok()?,
        crate::identity::parse_peer_id(peer).ok()?,
    ))
}

impl DragonConfig {
    fn astroport() -> PathBuf {
        home_dir().join(".zen").join("Astroport.ONE")
    }
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.interval_secs.max(MIN_INTERVAL_SECS))
    }
    /// The modules.list to read, and whether it was configured (a missing default is no warning).
    pub fn modules_list_path(&self) -> (PathBuf, bool) {
        match &self.modules_list {
            Some(p) => (p.clone(), true),
            None => (Self::astroport().join("IA").join("modules.list"), false),
        }
    }
    pub fn env_file_path(&self) -> PathBuf {
        self.env_file
            .clone()
            .unwrap_or_else(|| Self::astroport().join(".env"))
    }
    pub fn scripts_dir_for(&self, peer: &PeerId) -> PathBuf {
        self.scripts_dir
            .clone()
            .unwrap_or_else(|| home_dir().join(".zen").join("tmp").join(peer.to_string()))
    }
    pub fn swarm_dir_path(&self) -> PathBuf {
        self.swarm_dir
            .clone()
            .unwrap_or_else(|| home_dir().join(".zen").join("tmp").join("swarm"))
    }
}

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

/// The answer to `services`: the last (or, with `refresh`, a new) publishing report, with the
/// forwards open right now.
pub async fn services(
    dragon: Option<&Dragon>,
    tunnels: &crate::tunnel::Tunnels,
    refresh: bool,
) -> Result<ServicesReport, DragonError> {
    let mut report = match dragon {
        Some(d) if refresh => d.refresh().await?,
        Some(d) => d.last(),
        None => ServicesReport::default(),
    };
    report.remote = remote_forwards(&tunnels.list());
    Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_outside_the_charset_are_refused() {
        for ok in ["ssh", "open-webui", "a.b_c-9"] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "SSH", "a b", "a/b", "ü", "-x", "a$b", &"a".repeat(65)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_protocols_split_into_slug_and_peer() {
        let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        let (slug, p) = parse_service_protocol(&format!("/x/webtop-http-{peer}")).unwrap();
        assert_eq!(slug.as_str(), "webtop-http");
        assert_eq!(p.to_string(), peer);
        assert!(parse_service_protocol("/x/test").is_none());
    }

    #[test]
    fn dragon_section_parses_with_defaults() {
        let config: DragonConfig = toml::from_str(
            "interval_secs = 1\n[ports]\nssh = 2222\n[allow_peers]\nssh = [\"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"]\n",
        )
        .unwrap();
        assert!(config.enabled);
        assert_eq!(config.ports["ssh"], 2222);
        assert_eq!(config.allow_peers["ssh"].len(), 1);
        assert_eq!(config.sshd_config, PathBuf::from("/etc/ssh/sshd_config"));
    }
}

//! Configuration: the home folder, `config.toml` (serde, TOML) and environment overrides.
//! Every section has defaults, so a missing file or a missing key means "embedded defaults".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading the configuration; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The home folder of one node: identity, config, database, control socket, logs.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$CONSTELLATION_HOME` (handled by clap), else `~/.zen/constellation`.
    pub fn resolve(explicit: Option<PathBuf>) -> Home {
        let root = explicit.unwrap_or_else(|| home_dir().join(".zen").join("constellation"));
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn identity_key(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn tunnels_state(&self) -> PathBuf {
        self.root.join("tunnels.json")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("relay.sqlite")
    }

    /// Create the folder (mode 0700: it holds the private key and the control socket).
    pub fn ensure(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| ConfigError::Write {
                path: self.root.clone(),
                source,
            })
    }
}

/// `$HOME`, falling back to `/` (a daemon started by init systems may have no HOME).
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The Kubo repo: `--kubo-repo`, else `$IPFS_PATH`, else `~/.ipfs`.
pub fn kubo_repo(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("IPFS_PATH").map(PathBuf::from))
        .unwrap_or_else(|| home_dir().join(".ipfs"))
}

/// The whole `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    /// Tunnels that come back at every start (Kubo forgets them: kubo#5460).
    pub tunnels: Vec<TunnelSpec>,
    /// `[relay]`: the embedded relay's address and limits.
    pub relay: crate::relay::RelayConfig,
    /// `[status]`: the status page.
    pub status: StatusConfig,
    /// `[trigger]`: the hourly job and its logs.
    pub trigger: crate::trigger::TriggerConfig,
    /// `[report]`: where reports are saved.
    pub report: crate::report::ReportConfig,
    /// `[mail]`: how reports reach the captain.
    pub mail: crate::report::mail::MailConfig,
    /// `[dragon]`: publishing the station's services, client scripts, connect.
    pub dragon: crate::dragon::DragonConfig,
}

/// `[status]`: where the daemon serves its status page (loopback: it shows the station's state).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    pub listen: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: "127.0.0.1:7778".into(),
        }
    }
}

/// `[node]`: the libp2p side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Multiaddrs to listen on (TCP; QUIC too when there is no swarm key).
    pub listen: Vec<String>,
    /// Peers dialled once at start (`/ip4/…/tcp/…/p2p/…`).
    pub bootstrap: Vec<String>,
    /// Peers kept connected: re-dialled when the connection drops (Kubo's `Peering.Peers`).
    pub peering: Vec<String>,
    /// Import the identity from this Kubo repo instead of the node's own key.
    pub kubo_repo: Option<PathBuf>,
    /// Swarm key file (`/key/swarm/psk/1.0.0/`); default: `<kubo repo>/swarm.key` when importing.
    pub swarm_key: Option<PathBuf>,
    pub limits: NodeLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            peering: Vec::new(),
            kubo_repo: None,
            swarm_key: None,
            limits: NodeLimits::default(),
        }
    }
}

/// `[node.limits]`: resource caps, so that one peer cannot exhaust the station.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// All established connections (a Pi serves a few dozen stations).
    pub max_connections: u32,
    /// Connections to one peer (Kubo keeps 1–2; more is a misbehaving peer).
    pub max_connections_per_peer: u32,
    /// Connections still in the handshake.
    pub max_pending: u32,
    /// Concurrent tunnel streams from one peer; more are reset.
    pub max_streams_per_peer: usize,
    /// Seconds an open stream may keep running after SIGTERM before it is cut.
    pub shutdown_grace_secs: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_connections: 512,
            max_connections_per_peer: 4,
            max_pending: 64,
            max_streams_per_peer: 256,
            shutdown_grace_secs: 5,
        }
    }
}

/// One declared tunnel, as `p2p listen` or `p2p forward` would create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TunnelSpec {
    Listen(ListenSpec),
    Forward(ForwardSpec),
}

/// `p2p listen` arguments: inbound streams of `protocol` are piped to the TCP `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    pub protocol: String,
    pub target: String,
    /// Write the remote's PeerID and `\n` to the target first (`-r`).
    #[serde(default)]
    pub report_peer_id: bool,
    #[serde(default)]
    pub allow_custom_protocol: bool,
    /// Empty: every peer of the swarm may connect (Kubo's behaviour).
    #[serde(default)]
    pub allow_peers: Vec<String>,
}

/// `p2p forward` arguments: TCP connections to `listen` are carried to `target` (a peer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    pub protocol: String,
    pub listen: String,
    pub target: String,
    #[serde(default)]
    pub allow_custom_protocol: bool,
}

impl Config {
    /// Read `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults() {
        let config = Config::load(Path::new("/nonexistent/config.toml")).unwrap();
        assert_eq!(config.node.limits.max_streams_per_peer, 256);
        assert!(config.tunnels.is_empty());
    }

    #[test]
    fn tunnels_parse_from_toml() {
        let config: Config = toml::from_str(
            r#"
            [node]
            listen = ["/ip4/127.0.0.1/tcp/0"]
            [[tunnels]]
            kind = "listen"
            protocol = "/x/ssh"
            target = "/ip4/127.0.0.1/tcp/22"
            allow_peers = ["12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
            [[tunnels]]
            kind = "forward"
            protocol = "/x/strfry"
            listen = "/ip4/127.0.0.1/tcp/9999"
            target = "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            "#,
        )
        .unwrap();
        assert_eq!(config.node.listen, vec!["/ip4/127.0.0.1/tcp/0"]);
        assert_eq!(config.tunnels.len(), 2);
        assert!(matches!(&config.tunnels[0], TunnelSpec::Listen(l) if l.allow_peers.len() == 1));
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[node]\nlisten_typo = []\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("listen_typo"), "{err}");
    }
}

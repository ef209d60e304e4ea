//! Configuration, a leaf: `config.toml` (serde, TOML), one plain struct with defaults per section,
//! and the home folder. Imports nothing of ours; behaviour stays in the module that owns it.

pub mod dragon;
pub mod error;
pub mod home;
pub mod ipfs;
pub mod kubo_api;
pub mod live;
pub mod mail;
pub mod node;
pub mod relay;
pub mod report;
pub mod status;
pub mod swarm_map;
pub mod trigger;
pub mod tunnels;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use dragon::DragonConfig;
pub use error::ConfigError;
pub use home::{Home, SyncFiles, Zen, home_dir, kubo_repo};
pub use ipfs::IpfsConfig;
pub use kubo_api::{KuboApiConfig, KuboApiEnabled};
pub use live::{LiveConfig, LiveDir};
pub use mail::MailConfig;
pub use node::{DEFAULT_LISTEN, NodeConfig, NodeLimits, RoutingMode, UnknownRouting};
pub use relay::RelayConfig;
pub use report::ReportConfig;
pub use status::StatusConfig;
pub use swarm_map::{SwarmMapConfig, SwarmMapEnabled};
pub use trigger::TriggerConfig;
pub use tunnels::{ForwardSpec, ListenSpec, TunnelSpec};

/// The whole `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    /// Tunnels that come back at every start (Kubo forgets them: kubo#5460).
    pub tunnels: Vec<TunnelSpec>,
    /// `[relay]`: the embedded relay's address and limits.
    pub relay: RelayConfig,
    /// `[status]`: the status page.
    pub status: StatusConfig,
    /// `[trigger]`: the hourly job and its logs.
    pub trigger: TriggerConfig,
    /// `[report]`: where reports are saved.
    pub report: ReportConfig,
    /// `[mail]`: how reports reach the captain.
    pub mail: MailConfig,
    /// `[dragon]`: publishing the station's services, client scripts, connect.
    pub dragon: DragonConfig,
    /// `[kubo_api]`: the Kubo RPC API on 127.0.0.1:5001.
    pub kubo_api: KuboApiConfig,
    /// `[swarm_map]`: filling `~/.zen/tmp/swarm/` and publishing our own folder, without Kubo.
    pub swarm_map: SwarmMapConfig,
    /// `[ipfs]`: the block store.
    pub ipfs: IpfsConfig,
    /// `[live]`: live links between stations, the hourly backfill being the repair pass.
    pub live: LiveConfig,
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
        assert_eq!(config.node.listen.unwrap(), vec!["/ip4/127.0.0.1/tcp/0"]);
        assert_eq!(config.tunnels.len(), 2);
        assert!(matches!(&config.tunnels[0], TunnelSpec::Listen(l) if l.allow_peers.len() == 1));
    }

    #[test]
    fn kubo_routing_types_parse() {
        assert_eq!(
            "dhtclient".parse::<RoutingMode>().unwrap(),
            RoutingMode::DhtClient
        );
        assert_eq!("auto".parse::<RoutingMode>().unwrap(), RoutingMode::Dht);
        assert_eq!("none".parse::<RoutingMode>().unwrap(), RoutingMode::None);
        assert!("custom".parse::<RoutingMode>().is_err());
        let config: Config = toml::from_str("[node]\nrouting = \"dhtserver\"\n").unwrap();
        assert_eq!(config.node.routing, Some(RoutingMode::DhtServer));
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

//! DRAGON: publish the station's running services as `/x/<slug>-<peer id>` listeners, write the
//! `x_<slug>.sh` client scripts, and reach other stations' services (`connect`/`disconnect`).
//! Replaces the hourly `DRAGON_p2p_ssh.sh`; the rules are BRIEF §1 "DRAGON".

pub mod catalog;
pub mod connect;
pub mod detect;
mod error;
pub mod port;
pub mod publisher;
mod report;
pub mod script;
mod slug;
pub mod ssh_keys;
pub mod ssh_trust;
mod trust_job;

use std::path::PathBuf;

use libp2p::PeerId;

pub use error::DragonError;
pub use publisher::Dragon;
pub use report::{
    PublishedService, RemoteForward, ServicesReport, SkipReason, SkippedService, remote_forwards,
};
pub use slug::{Slug, parse_service_protocol};
pub use trust_job::TrustJob;

pub use crate::config::DragonConfig;
use crate::config::home_dir;

/// Shortest publishing interval: faster cycles would only re-read /proc for nothing.
const MIN_INTERVAL_SECS: u64 = 1;

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

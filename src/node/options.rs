//! The node's start-up options from flags and config: the key (the home's own or imported from
//! Kubo), the swarm key (flag, config, Kubo repo, home) and the addresses.

use std::path::PathBuf;

use anyhow::Context as _;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;

use crate::config::{self, Config, Home};
use crate::identity;
use crate::node::NodeOptions;

/// The Kubo repo to import from, if any: the flag (empty = default location), else config.
pub fn kubo_repo_choice(flag: Option<&PathBuf>, config: &Config) -> Option<PathBuf> {
    match flag {
        Some(p) if p.as_os_str().is_empty() => Some(config::kubo_repo(None)),
        Some(p) => Some(p.clone()),
        None => config.node.kubo_repo.clone(),
    }
}

/// The node key: imported from Kubo when asked, else the home's own (generated on first use).
pub fn load_keypair(home: &Home, kubo_repo: Option<&PathBuf>) -> anyhow::Result<Keypair> {
    match kubo_repo {
        Some(repo) => Ok(identity::import_kubo(repo)?),
        None => {
            home.ensure()?;
            Ok(identity::load_or_generate(&home.identity_key())?)
        }
    }
}

/// The swarm key: flag, config, `<kubo repo>/swarm.key`, `<home>/swarm.key`, in that order.
fn load_psk(
    home: &Home,
    flag: Option<&PathBuf>,
    config: &Config,
    kubo: Option<&PathBuf>,
) -> anyhow::Result<Option<PreSharedKey>> {
    let explicit = flag.cloned().or_else(|| config.node.swarm_key.clone());
    let candidates: Vec<PathBuf> = match explicit {
        Some(path) => return Ok(Some(identity::load_swarm_key(&path)?)),
        None => kubo
            .map(|r| r.join("swarm.key"))
            .into_iter()
            .chain([home.swarm_key()])
            .collect(),
    };
    for path in &candidates {
        if path.exists() {
            return Ok(Some(identity::load_swarm_key(path)?));
        }
    }
    if identity::pnet_forced() {
        anyhow::bail!(
            "LIBP2P_FORCE_PNET=1 but no swarm key was found (looked at {})",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(None)
}

/// Multiaddrs of a flag or config key; an error names the address and where it came from.
fn parse_addrs(list: &[String], what: &str) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .map_err(|e| anyhow::anyhow!("{a:?} is not a multiaddr: {e}"))
                .with_context(|| format!("in {what}"))
        })
        .collect()
}

/// Identity, swarm key and addresses of the node, from flags and config.
pub fn node_options(
    home: &Home,
    config: &Config,
    kubo_flag: Option<&PathBuf>,
    swarm_key_flag: Option<&PathBuf>,
    listen: Vec<String>,
) -> anyhow::Result<NodeOptions> {
    let kubo = kubo_repo_choice(kubo_flag, config);
    let keypair = load_keypair(home, kubo.as_ref())?;
    let psk = load_psk(home, swarm_key_flag, config, kubo.as_ref())?;
    let mut listen = listen;
    if psk.is_some() {
        // Kubo disables QUIC in a private network; pnet only wraps TCP.
        listen.retain(|a| !a.contains("/quic"));
    }
    Ok(NodeOptions {
        keypair,
        psk,
        listen: parse_addrs(&listen, "--listen / [node] listen")?,
        bootstrap: parse_addrs(&config.node.bootstrap, "[node] bootstrap")?,
        peering: parse_addrs(&config.node.peering, "[node] peering")?,
        limits: config.node.limits.clone(),
    })
}

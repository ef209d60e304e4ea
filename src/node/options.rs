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
use crate::node::bootstrap::FirstPeers;

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

/// The first-peer settings (config.toml, else the Kubo repo, else Astroport's lists under
/// `$HOME`), with their sources.
pub fn first_peers(config: &Config, kubo_flag: Option<&PathBuf>) -> anyhow::Result<FirstPeers> {
    let kubo = kubo_repo_choice(kubo_flag, config);
    Ok(FirstPeers::resolve(
        &config.node,
        kubo.as_deref(),
        &config::home_dir(),
    )?)
}

/// Identity, swarm key and addresses of the node, from flags and config. `listen`: the
/// `--listen` flags; `None` takes `[node] listen`, the Kubo repo's, or the defaults.
pub fn node_options(
    home: &Home,
    config: &Config,
    kubo_flag: Option<&PathBuf>,
    swarm_key_flag: Option<&PathBuf>,
    listen: Option<Vec<String>>,
) -> anyhow::Result<NodeOptions> {
    let kubo = kubo_repo_choice(kubo_flag, config);
    let keypair = load_keypair(home, kubo.as_ref())?;
    let psk = load_psk(home, swarm_key_flag, config, kubo.as_ref())?;
    let first = first_peers(config, kubo_flag)?;
    let mut listen = listen.unwrap_or_else(|| first.listen.value.clone());
    if psk.is_some() {
        // Kubo disables QUIC in a private network; pnet only wraps TCP.
        listen.retain(|a| !a.contains("/quic"));
    }
    let dns = match &config.node.dns {
        Some(text) => Some(
            text.parse()
                .with_context(|| format!("[node] dns = {text:?} is not IP:PORT"))?,
        ),
        None => None,
    };
    Ok(NodeOptions {
        keypair,
        psk,
        listen: parse_addrs(&listen, "--listen / [node] listen")?,
        bootstrap: parse_addrs(&first.bootstrap.value, "bootstrap")?,
        peering: parse_addrs(&first.peering.value, "peering")?,
        limits: config.node.limits.clone(),
        routing: first.routing.value,
        dns,
        announce: parse_addrs(&first.announce.value, "announce")?,
        append_announce: parse_addrs(&first.append_announce.value, "append_announce")?,
        no_announce: parse_addrs(&first.no_announce.value, "no_announce")?,
        swarm_dir: None,
        first_peers: Some(first),
        nat: super::nat::NatOptions {
            relays: parse_addrs(&config.node.relays, "[node] relays")?,
            relay_service: config.node.relay_service,
            private_addresses: config.node.autonat_private_addresses,
        },
        net: None,
    })
}

//! Where the first peers come from (config.toml, the Kubo repo's config, Astroport's bootstrap
//! lists), each value with its source for `id --json`; and the keeper, which re-dials the
//! peering peers and the stations of the swarm folder with backoff and trims idle connections.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT_LISTEN, NodeConfig, RoutingMode};

/// Lines read from an Astroport bootstrap list: the real lists have a dozen entries.
const MAX_LIST_ENTRIES: usize = 256;
/// Station folders read from the swarm map: a constellation has dozens, a few hundred at most.
const MAX_SWARM_PEERS: usize = 1024;
/// Largest Kubo config file read (a real one is ~10 KiB).
const MAX_KUBO_CONFIG_BYTES: u64 = 1024 * 1024;
/// The first re-dial of a kept peer waits this long; each failure doubles it.
pub const KEEP_FIRST_BACKOFF: Duration = Duration::from_secs(15);
/// … up to this: a station that is down for the night is tried a few times an hour.
const KEEP_MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Errors reading a Kubo repo's configuration.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Kubo config: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is larger than {MAX_KUBO_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("in {what}: {source}")]
    Routing {
        what: String,
        #[source]
        source: crate::config::UnknownRouting,
    },
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Config,
    KuboRepo,
    AstroportList,
    Default,
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The first-peer settings of a node, resolved from every source (config.toml wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstPeers {
    pub listen: Sourced<Vec<String>>,
    pub bootstrap: Sourced<Vec<String>>,
    pub peering: Sourced<Vec<String>>,
    pub routing: Sourced<RoutingMode>,
    pub announce: Sourced<Vec<String>>,
    pub append_announce: Sourced<Vec<String>>,
    pub no_announce: Sourced<Vec<String>>,
}

/// The parts of a Kubo repo's `config` that say how to join the swarm.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KuboConfig {
    bootstrap: Option<Vec<String>>,
    peering: KuboPeering,
    routing: KuboRouting,
    addresses: KuboAddresses,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KuboPeering {
    peers: Option<Vec<KuboPeer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KuboPeer {
    #[serde(rename = "ID")]
    id: String,
    addrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KuboRouting {
    #[serde(rename = "Type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KuboAddresses {
    swarm: Option<Vec<String>>,
    announce: Option<Vec<String>>,
    append_announce: Option<Vec<String>>,
    no_announce: Option<Vec<String>>,
}

/// Read and parse a Kubo repo's `config` (bounded in size) into the parts `T` names.
pub fn read_kubo_config<T: serde::de::DeserializeOwned>(repo: &Path) -> Result<T, BootstrapError> {
    let path = repo.join("config");
    let read = |source| BootstrapError::Read {
        path: path.clone(),
        source,
    };
    if std::fs::metadata(&path).map_err(read)?.len() > MAX_KUBO_CONFIG_BYTES {
        return Err(BootstrapError::TooLarge { path });
    }
    let text = std::fs::read(&path).map_err(read)?;
    serde_json::from_slice(&text).map_err(|source| BootstrapError::Parse { path, source })
}

impl KuboConfig {
    /// `Peering.Peers` as multiaddrs: one per address, or `/p2p/<id>` alone (a DHT lookup).
    fn peering(&self) -> Option<Vec<String>> {
        let peers = self.peering.peers.as_ref()?;
        let mut out = Vec::new();
        for peer in peers {
            if peer.addrs.is_empty() {
                out.push(format!("/p2p/{}", peer.id));
            }
            for addr in &peer.addrs {
                out.push(format!("{addr}/p2p/{}", peer.id));
            }
        }
        Some(out)
    }
}

/// Resolve one value: config.toml, else the Kubo repo, else the fallback.
fn pick<T>(config: Option<T>, kubo: Option<T>, fallback: Sourced<T>) -> Sourced<T> {
    match (config, kubo) {
        (Some(value), _) => Sourced {
            value,
            source: Source::Config,
        },
        (None, Some(value)) => Sourced {
            value,
            source: Source::KuboRepo,
        },
        (None, None) => fallback,
    }
}

fn default<T>(value: T) -> Sourced<T> {
    Sourced {
        value,
        source: Source::Default,
    }
}

impl FirstPeers {
    /// Resolve from `[node]`, the Kubo repo (if any) and the Astroport lists under `home`.
    pub fn resolve(
        node: &NodeConfig,
        kubo_repo: Option<&Path>,
        home: &Path,
    ) -> Result<FirstPeers, BootstrapError> {
        let kubo = match kubo_repo {
            Some(repo) => read_kubo_config(repo)?,
            None => KuboConfig::default(),
        };
        let kubo_routing = match &kubo.routing.kind {
            Some(kind) => Some(kind.parse().map_err(|source| BootstrapError::Routing {
                what: format!("Routing.Type of {}", kubo_repo.unwrap_or(home).display()),
                source,
            })?),
            None => None,
        };
        let bootstrap_fallback = match astroport_list(home) {
            Some(list) => Sourced {
                value: list,
                source: Source::AstroportList,
            },
            None => default(Vec::new()),
        };
        let listen = DEFAULT_LISTEN.iter().map(|a| a.to_string()).collect();
        let addresses = &kubo.addresses;
        Ok(FirstPeers {
            listen: pick(
                node.listen.clone(),
                addresses.swarm.clone(),
                default(listen),
            ),
            bootstrap: pick(
                node.bootstrap.clone(),
                kubo.bootstrap.clone(),
                bootstrap_fallback,
            ),
            peering: pick(node.peering.clone(), kubo.peering(), default(Vec::new())),
            routing: pick(node.routing, kubo_routing, default(RoutingMode::default())),
            announce: pick(
                node.announce.clone(),
                addresses.announce.clone(),
                default(vec![]),
            ),
            append_announce: pick(
                node.append_announce.clone(),
                addresses.append_announce.clone(),
                default(vec![]),
            ),
            no_announce: pick(
                node.no_announce.clone(),
                addresses.no_announce.clone(),
                default(vec![]),
            ),
        })
    }
}

/// Astroport's bootstrap list: `~/.zen/game/MY_boostrap_nodes.txt`, else
/// `~/.zen/Astroport.ONE/A_boostrap_nodes.txt` (the spelling is Astroport's).
fn astroport_list(home: &Path) -> Option<Vec<String>> {
    let zen = home.join(".zen");
    [
        zen.join("game/MY_boostrap_nodes.txt"),
        zen.join("Astroport.ONE/A_boostrap_nodes.txt"),
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .map(|text| parse_list(&text))
}

/// One multiaddr per line; `#` starts a comment; blank lines are skipped.
fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .take(MAX_LIST_ENTRIES)
        .map(str::to_owned)
        .collect()
}

/// The station ids of the swarm map: the folder names under `~/.zen/tmp/swarm/` that are ids.
pub fn swarm_map_peers(dir: &Path) -> Vec<PeerId> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .take(MAX_SWARM_PEERS)
        .collect()
}

/// A peer to dial by id, with the addresses given for it (none: look it up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// Group `…/p2p/<id>` multiaddrs by peer (`/p2p/<id>` alone gives a peer with no address).
pub fn targets(addrs: &[Multiaddr]) -> Vec<PeerTarget> {
    let mut out: Vec<PeerTarget> = Vec::new();
    for addr in addrs {
        let mut addr = addr.clone();
        let Some(Protocol::P2p(peer)) = addr.pop() else {
            continue;
        };
        let index = match out.iter().position(|t| t.peer == peer) {
            Some(i) => i,
            None => {
                out.push(PeerTarget {
                    peer,
                    addrs: Vec::new(),
                });
                out.len() - 1
            }
        };
        if !addr.is_empty() {
            out[index].addrs.push(addr);
        }
    }
    out
}

/// Re-dial schedule of one kept peer.
#[derive(Debug, Clone)]
struct Backoff {
    next: Instant,
    wait: Duration,
}

/// The keeper: which kept peers to dial now, with a doubling backoff per peer.
pub struct Keeper {
    peering: HashSet<PeerId>,
    swarm_dir: Option<PathBuf>,
    backoff: HashMap<PeerId, Backoff>,
}

impl Keeper {
    pub fn new(peering: impl IntoIterator<Item = PeerId>, swarm_dir: Option<PathBuf>) -> Keeper {
        Keeper {
            peering: peering.into_iter().collect(),
            swarm_dir,
            backoff: HashMap::new(),
        }
    }

    pub fn is_peering(&self, peer: &PeerId) -> bool {
        self.peering.contains(peer)
    }

    /// The kept peers: peering peers and the stations of the swarm folder.
    pub fn kept(&self, local: &PeerId) -> HashSet<PeerId> {
        let mut kept = self.peering.clone();
        if let Some(dir) = &self.swarm_dir {
            kept.extend(swarm_map_peers(dir));
        }
        kept.remove(local);
        kept
    }

    /// Peers of `kept` not connected whose backoff has expired; each gets a longer backoff.
    pub fn due(
        &mut self,
        now: Instant,
        kept: &HashSet<PeerId>,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        self.backoff.retain(|peer, _| kept.contains(peer));
        let mut due = Vec::new();
        for &peer in kept {
            if connected(&peer) {
                self.backoff.remove(&peer);
                continue;
            }
            let entry = self.backoff.entry(peer).or_insert(Backoff {
                next: now,
                wait: KEEP_FIRST_BACKOFF,
            });
            if entry.next <= now {
                due.push(peer);
                entry.next = now + entry.wait;
                entry.wait = (entry.wait * 2).min(KEEP_MAX_BACKOFF);
            }
        }
        due
    }
}

/// The connection manager's settings (`[node.limits] conn_low/conn_high/conn_grace_secs`).
#[derive(Debug, Clone, Copy)]
pub struct Watermarks {
    pub low: usize,
    pub high: usize,
    pub grace: Duration,
}

/// Connections to close so that `open` (peer, connected since) drops from above `high` to
/// `low`: the oldest first, never a protected peer (tunnels, peering, our relays) nor one in
/// its grace.
pub fn trim(
    open: &[(PeerId, Instant)],
    protected: impl Fn(&PeerId) -> bool,
    now: Instant,
    Watermarks { low, high, grace }: Watermarks,
) -> Vec<PeerId> {
    if open.len() <= high {
        return Vec::new();
    }
    let mut candidates: Vec<&(PeerId, Instant)> = open
        .iter()
        .filter(|(peer, since)| !protected(peer) && now.duration_since(*since) >= grace)
        .collect();
    candidates.sort_by_key(|(_, since)| *since);
    candidates
        .into_iter()
        .take(open.len().saturating_sub(low))
        .map(|(peer, _)| *peer)
        .collect()
}

/// The event loop's side of the keeper.
impl super::EventLoop {
    /// Re-dial the kept peers that are due, then trim above the high watermark.
    pub(super) fn keep(&mut self) {
        let local = *self.swarm.local_peer_id();
        let kept = self.keeper.kept(&local);
        let swarm = &self.swarm;
        let due = self
            .keeper
            .due(Instant::now(), &kept, |p| swarm.is_connected(p));
        for peer in due {
            let origin = if self.keeper.is_peering(&peer) {
                super::Origin::Peering
            } else {
                super::Origin::SwarmMap
            };
            self.hint(peer, origin);
            let result = if self.swarm.behaviour().addresses.get(&peer).is_empty() {
                self.look_up(peer)
            } else {
                self.dial_peer(peer)
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "keeper: {e}");
            }
        }
        let open: Vec<(PeerId, Instant)> =
            self.connected.iter().map(|(p, c)| (*p, c.since)).collect();
        let (holds, nat) = (&self.holds, &self.nat);
        let protected = |p: &PeerId| kept.contains(p) || holds.is_held(p) || nat.has_reservation(p);
        for peer in trim(&open, protected, Instant::now(), self.watermarks) {
            tracing::debug!(%peer, "connection manager: closing an idle connection");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_config(toml_text: &str) -> NodeConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn config_wins_over_the_kubo_repo_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerId::random();
        let kubo = serde_json::json!({
            "Bootstrap": [format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}")],
            "Peering": {"Peers": [{"ID": peer.to_string(), "Addrs": ["/ip4/127.0.0.1/tcp/2"]},
                                  {"ID": peer.to_string(), "Addrs": []}]},
            "Routing": {"Type": "dhtclient"},
            "Addresses": {"Swarm": ["/ip4/127.0.0.1/tcp/3"], "Announce": [],
                          "AppendAnnounce": null, "NoAnnounce": ["/ip4/10.0.0.1/tcp/3"]}
        });
        std::fs::write(dir.path().join("config"), kubo.to_string()).unwrap();
        let node = node_config("routing = \"dhtserver\"\n");
        let first = FirstPeers::resolve(&node, Some(dir.path()), dir.path()).unwrap();
        assert_eq!(first.routing.value, RoutingMode::DhtServer);
        assert_eq!(first.routing.source, Source::Config);
        assert_eq!(first.bootstrap.source, Source::KuboRepo);
        assert_eq!(first.listen.value, vec!["/ip4/127.0.0.1/tcp/3"]);
        assert_eq!(
            first.peering.value,
            vec![
                format!("/ip4/127.0.0.1/tcp/2/p2p/{peer}"),
                format!("/p2p/{peer}")
            ]
        );
        assert_eq!(first.append_announce.source, Source::Default);
        assert_eq!(first.no_announce.source, Source::KuboRepo);
    }

    #[test]
    fn astroport_list_is_the_bootstrap_fallback() {
        let home = tempfile::tempdir().unwrap();
        let game = home.path().join(".zen/game");
        std::fs::create_dir_all(&game).unwrap();
        std::fs::write(
            game.join("MY_boostrap_nodes.txt"),
            "# mine\n\n/dnsaddr/a.example/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA # x\n",
        )
        .unwrap();
        let first = FirstPeers::resolve(&NodeConfig::default(), None, home.path()).unwrap();
        assert_eq!(first.bootstrap.source, Source::AstroportList);
        assert_eq!(first.bootstrap.value.len(), 1);
        assert!(first.bootstrap.value[0].starts_with("/dnsaddr/a.example/p2p/"));
        assert_eq!(first.listen.source, Source::Default);
    }

    #[test]
    fn targets_group_addresses_by_peer() {
        let peer = PeerId::random();
        let addrs: Vec<Multiaddr> = [
            format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}"),
            format!("/p2p/{peer}"),
            "/ip4/127.0.0.1/tcp/9".into(),
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let targets = targets(&addrs);
        assert_eq!(targets.len(), 1);
        assert_eq!(
            targets[0].addrs,
            vec!["/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().unwrap()]
        );
    }

    #[test]
    fn keeper_backs_off_and_reads_the_swarm_folder() {
        let dir = tempfile::tempdir().unwrap();
        let station = PeerId::random();
        std::fs::create_dir(dir.path().join(station.to_string())).unwrap();
        std::fs::create_dir(dir.path().join("not-a-peer")).unwrap();
        let peering = PeerId::random();
        let local = PeerId::random();
        let mut keeper = Keeper::new([peering], Some(dir.path().to_owned()));
        let kept = keeper.kept(&local);
        let local = &kept;
        let t0 = Instant::now();
        let mut due = keeper.due(t0, local, |_| false);
        due.sort();
        let mut want = vec![station, peering];
        want.sort();
        assert_eq!(due, want);
        assert!(
            keeper
                .due(t0 + Duration::from_secs(1), local, |_| false)
                .is_empty()
        );
        assert_eq!(
            keeper.due(t0 + KEEP_FIRST_BACKOFF, local, |_| false).len(),
            2
        );
        // The second wait is twice the first.
        let later = t0 + KEEP_FIRST_BACKOFF * 2;
        assert!(keeper.due(later, local, |_| false).is_empty());
        assert_eq!(
            keeper
                .due(t0 + KEEP_FIRST_BACKOFF * 3, local, |_| false)
                .len(),
            2
        );
        assert!(
            keeper
                .due(t0 + KEEP_FIRST_BACKOFF * 9, local, |_| true)
                .is_empty()
        );
    }

    #[test]
    fn trim_keeps_protected_and_young_connections() {
        let now = Instant::now();
        let marks = |low, high| Watermarks {
            low,
            high,
            grace: Duration::from_secs(20),
        };
        let old = now - Duration::from_secs(40);
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let mut open: Vec<(PeerId, Instant)> = peers.iter().map(|p| (*p, old)).collect();
        open[5].1 = now; // young
        let closed = trim(&open, |p| p == &peers[0], now, marks(2, 4));
        assert_eq!(closed.len(), 4);
        assert!(!closed.contains(&peers[0]) && !closed.contains(&peers[5]));
        assert!(trim(&open, |_| false, now, marks(2, 6)).is_empty());
    }
}

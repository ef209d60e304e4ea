//! One map cycle as `_12345.sh` runs it: probe each peer's `/ipns/<ID>/_MySwarm.moats`, mirror
//! stations into `<swarm>/<ID>/` (atomically, within bounds), follow each station's `g1swarm`
//! map one hop, log and disconnect intruders, then drop folders whose moats is too old.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use cid::Cid;
use libp2p::PeerId;

use super::context::{Context, CycleReport, Line, Progress, now_secs};
use super::listing::{self, Origin, State, load_state, save_state};
use super::station::{self, MAX_MOATS_BYTES, MOATS_FILE, Probe, StationFile};
use crate::ipfs::unixfs::{self, CHUNK_BYTES, FolderLimits, ReadError};

/// Stations probed in one cycle (direct and one hop together): a station has tens of peers and
/// a map lists tens of stations; a flood of peers cannot make a cycle endless.
const MAX_STATIONS_PER_CYCLE: usize = 500;
/// Entries read from one station's map (`ipfs ls /ipns/<g1swarm>`).
const MAX_MAP_ENTRIES: usize = 1000;
/// Bootstrap entries dialled when no peer is connected (`_12345.sh`: `head -n 3`).
const BOOTSTRAP_FALLBACK: usize = 3;
/// `swarm_intruders.log` past this many bytes is moved to `.1` (one old copy kept): a peer
/// flood must not fill the disk, and an operator still sees the last ones.
const MAX_INTRUDERS_LOG_BYTES: u64 = 1 << 20;

/// A station to visit, and through whose map we learnt of it.
struct Visit {
    peer: PeerId,
    via: Option<PeerId>,
}

/// One cycle's progress: what was found, what is left to visit, what was already seen.
struct Walk {
    report: CycleReport,
    state: State,
    queue: Vec<Visit>,
    seen: HashSet<PeerId>,
}

/// The whole cycle (without our publication).
pub async fn run(ctx: &Context) -> CycleReport {
    let swarm = ctx.zen.swarm();
    if let Err(e) = std::fs::create_dir_all(swarm) {
        tracing::warn!(swarm = %swarm.display(), "cannot create the swarm folder: {e}");
        return CycleReport::default();
    }
    remove_leftovers(swarm);
    let probe_secs = if listing::station_dirs(swarm).is_empty() {
        ctx.config.probe_timeout_empty_secs
    } else {
        ctx.config.probe_timeout_secs
    };
    let queue = peers(ctx).await;
    let mut seen: HashSet<PeerId> = queue.iter().map(|v| v.peer).collect();
    seen.insert(ctx.node.peer_id());
    let mut walk = Walk {
        report: CycleReport::default(),
        state: load_state(&ctx.state),
        queue,
        seen,
    };
    let budget = Duration::from_secs(ctx.config.station_timeout_secs);
    let mut i = 0;
    while i < walk.queue.len() && i < MAX_STATIONS_PER_CYCLE {
        let Visit { peer, via } = walk.queue[i];
        ctx.progress.set(Progress {
            running: true,
            visited: i,
            queued: walk.queue.len().min(MAX_STATIONS_PER_CYCLE),
            station: Some(peer.to_string()),
        });
        i += 1;
        walk.report.probed += 1;
        let visited = tokio::time::timeout(budget, visit(ctx, peer, via, probe_secs)).await;
        let outcome = visited.unwrap_or_else(|_| {
            Outcome::Refused(format!("took longer than {} s", budget.as_secs()))
        });
        walk.record(ctx, peer, via, outcome).await;
    }
    ctx.progress.set(Progress::default());
    let Walk {
        mut report,
        mut state,
        ..
    } = walk;
    remove_leftovers(swarm);
    report.removed = remove_stale(swarm, ctx.config.max_age_secs, &mut state);
    report.kept = listing::station_dirs(swarm)
        .into_iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    state.stations.retain(|id, _| report.kept.contains(id));
    save_state(&ctx.state, &state);
    report
}

impl Walk {
    /// Note what a visit gave; a direct station's map adds its stations to the queue.
    async fn record(&mut self, ctx: &Context, peer: PeerId, via: Option<PeerId>, outcome: Outcome) {
        let line = |detail: String| Line {
            station: peer.to_string(),
            via: via.map(|v| v.to_string()),
            detail,
        };
        match outcome {
            Outcome::Fetched { detail, map } => {
                let origin = Origin {
                    via: via.map(|v| v.to_string()),
                    fetched_at: now_secs(),
                };
                self.state.stations.insert(peer.to_string(), origin);
                self.report.fetched.push(line(detail));
                // One hop only: the maps of stations found through a map are not followed.
                for named in map.into_iter().filter(|_| via.is_none()) {
                    if self.seen.insert(named) {
                        let visit = Visit {
                            peer: named,
                            via: Some(peer),
                        };
                        self.queue.push(visit);
                    }
                }
            }
            Outcome::Unreachable(why) => {
                tracing::info!(station = %peer, "swarm map: {peer} unreachable: {why}");
                self.report.unreachable.push(line(why));
            }
            Outcome::Refused(why) => {
                tracing::warn!(station = %peer, "swarm map: refused {peer}: {why}");
                self.report.refused.push(line(why));
            }
            Outcome::Intruder(why) => {
                intruder(ctx, peer, &why).await;
                self.report.intruders.push(line(why));
            }
        }
    }
}

/// The peers to probe: every connected one, else the first bootstrap entries (dialled).
async fn peers(ctx: &Context) -> Vec<Visit> {
    let own = ctx.node.peer_id();
    let connected = |info: crate::node::NodeInfo| -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = (info.peers.iter())
            .filter_map(|p| p.peer_id.parse().ok())
            .filter(|p| *p != own)
            .collect();
        peers.sort();
        peers.dedup();
        peers
    };
    let mut found = match ctx.node.info().await {
        Ok(info) => connected(info),
        Err(_) => return Vec::new(),
    };
    if found.is_empty() {
        let first = ctx.node.info().await.ok().and_then(|i| i.first_peers);
        let bootstrap = first.map(|f| f.bootstrap.value).unwrap_or_default();
        for addr in bootstrap.into_iter().take(BOOTSTRAP_FALLBACK) {
            if let Ok(addr) = addr.parse()
                && let Ok(peer) = ctx.node.connect(addr).await
            {
                found.push(peer);
            }
        }
    }
    found
        .into_iter()
        .map(|peer| Visit { peer, via: None })
        .collect()
}

enum Outcome {
    /// Mirrored; `map` lists the stations its `g1swarm` map names.
    Fetched {
        detail: String,
        map: Vec<PeerId>,
    },
    Unreachable(String),
    Refused(String),
    Intruder(String),
}

/// Probe, mirror and (for a direct station) read its map.
async fn visit(ctx: &Context, peer: PeerId, via: Option<PeerId>, probe_secs: u64) -> Outcome {
    let probe = tokio::time::timeout(Duration::from_secs(probe_secs), probe(ctx, peer)).await;
    let (root, moats) = match probe {
        Err(_) => return Outcome::Unreachable(format!("no answer within {probe_secs} s")),
        Ok((_, Probe::Unreachable(why))) => return Outcome::Unreachable(why),
        Ok((_, Probe::Intruder(why))) => return Outcome::Intruder(why),
        Ok((Some(root), Probe::Station(moats))) => (root, moats),
        Ok((None, Probe::Station(_))) => return Outcome::Unreachable("no folder".into()),
    };
    let now = now_secs();
    match station::moats_age(moats, now) {
        Some(age) if age <= ctx.config.max_age_secs => {}
        Some(age) => return Outcome::Refused(format!("_MySwarm.moats is {age} s old")),
        None => return Outcome::Refused(format!("_MySwarm.moats {moats} is in the future")),
    }
    let target = ctx.zen.swarm().join(peer.to_string());
    let limits = match limits_for(ctx, &target) {
        Ok(limits) => limits,
        Err(why) => return Outcome::Refused(why),
    };
    let source = ctx.bitswap.source(Vec::new());
    let fetched = match unixfs::fetch_folder(&source, &root, &target, &limits).await {
        Ok(fetched) => fetched,
        Err(ReadError::Source(e)) => return Outcome::Unreachable(e.to_string()),
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let detail = format!(
        "{} files, {} bytes, moats {} s old",
        fetched.files,
        fetched.bytes,
        now.saturating_sub(moats)
    );
    tracing::info!(station = %peer, via = ?via, "swarm map: mirrored /ipns/{peer} ({detail})");
    let map = match via {
        Some(_) => Vec::new(),
        None => read_map(ctx, peer, &target).await,
    };
    Outcome::Fetched { detail, map }
}

/// Resolve `/ipns/<peer>` and read its moats: the folder's root and the verdict.
async fn probe(ctx: &Context, peer: PeerId) -> (Option<Cid>, Probe) {
    let record = match ctx.node.resolve_ipns(peer).await {
        Ok(record) => record,
        Err(e) => return (None, Probe::Unreachable(e.to_string())),
    };
    let Some(root) = ipfs_path_cid(record.value()) else {
        let value = String::from_utf8_lossy(record.value()).into_owned();
        return (
            None,
            Probe::Intruder(format!(
                "its IPNS record names {:?}, not /ipfs/<cid>",
                crate::identity::shorten(&value)
            )),
        );
    };
    let source = ctx.bitswap.source(Vec::new());
    let verdict = match unixfs::cat_file(&source, &root, MOATS_FILE, MAX_MOATS_BYTES).await {
        Ok(bytes) => station::classify_moats(&bytes),
        Err(ReadError::Source(e)) => Probe::Unreachable(e.to_string()),
        Err(ReadError::NotFound(what)) => Probe::Unreachable(format!("no {what}")),
        Err(e) => Probe::Intruder(e.to_string()),
    };
    (Some(root), verdict)
}

/// The CID of an `/ipfs/<cid>` value (a bare CID is accepted too, as Kubo does).
pub fn ipfs_path_cid(value: &[u8]) -> Option<Cid> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let rest = text.strip_prefix("/ipfs/").unwrap_or(text);
    let cid = rest.trim_end_matches('/');
    (!cid.contains('/')).then(|| cid.parse().ok()).flatten()
}

/// The bounds of one station's folder: the config's, cut to what the whole map has left.
fn limits_for(ctx: &Context, target: &Path) -> Result<FolderLimits, String> {
    let c = &ctx.config;
    let map = listing::dir_bytes(ctx.zen.swarm());
    let previous = listing::dir_bytes(target);
    let room = c.max_map_bytes.saturating_sub(map.saturating_sub(previous));
    if room == 0 {
        return Err(format!(
            "the map already holds its bound of {} bytes",
            c.max_map_bytes
        ));
    }
    let max_bytes = c.max_station_bytes.min(room);
    let max_entries = usize::try_from(c.max_station_files).unwrap_or(usize::MAX);
    Ok(FolderLimits {
        max_bytes,
        max_entries,
        max_depth: c.max_station_depth as usize,
        // One block per chunk of content, one per entry, and room for tree nodes and buckets.
        max_blocks: (max_bytes / CHUNK_BYTES as u64) as usize * 2 + max_entries * 2 + 64,
    })
}

/// The stations named by the map of the station mirrored at `dir` (its `g1swarm` name).
async fn read_map(ctx: &Context, peer: PeerId, dir: &Path) -> Vec<PeerId> {
    let Some(name) = StationFile::read(dir).and_then(|f| f.g1swarm_name()) else {
        return Vec::new();
    };
    let root = match ctx.node.resolve_ipns(name).await {
        Ok(record) => ipfs_path_cid(record.value()),
        Err(e) => {
            tracing::info!(station = %peer, "swarm map: its map /ipns/{name} does not resolve: {e}");
            None
        }
    };
    let Some(root) = root else {
        return Vec::new();
    };
    let source = ctx.bitswap.source(Vec::new());
    match unixfs::list_folder(&source, &root, MAX_MAP_ENTRIES).await {
        Ok(entries) => (entries.iter())
            .filter_map(|(name, _)| crate::identity::parse_peer_id(name).ok())
            .collect(),
        Err(e) => {
            tracing::warn!(station = %peer, "swarm map: refused its map /ipns/{name}: {e}");
            Vec::new()
        }
    }
}

/// Disconnect a peer that is no station and log it in `swarm_intruders.log`.
async fn intruder(ctx: &Context, peer: PeerId, why: &str) {
    let ip = ctx.node.info().await.ok().and_then(|info| {
        let id = peer.to_string();
        let p = info.peers.into_iter().find(|p| p.peer_id == id)?;
        p.address.split('/').nth(2).map(str::to_owned)
    });
    let disconnected = ctx.node.disconnect(peer).await.unwrap_or(false);
    tracing::warn!(station = %peer, disconnected, "swarm map: intruder {peer}: {why}");
    let line = format!(
        "[{}] REJECTED: {peer} (IP: {}) - Reason: {why}\n",
        station::utc_date(now_secs()),
        ip.as_deref().unwrap_or("?")
    );
    let path = ctx.zen.intruders_log();
    if let Err(e) = append_bounded(&path, line.as_bytes(), MAX_INTRUDERS_LOG_BYTES) {
        tracing::warn!(path = %path.display(), "cannot log the intruder: {e}");
    }
}

/// Append to `path`, first moving it to `<path>.1` when it holds `max` bytes or more.
fn append_bounded(path: &Path, bytes: &[u8], max: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= max) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)
}

/// Remove the temp folders a fetch leaves when it is cut (a crash, a timeout): `.<ID>.new-…`
/// and `.<ID>.old-…` beside the station folders.
fn remove_leftovers(swarm: &Path) {
    for entry in std::fs::read_dir(swarm).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let leftover = name.starts_with('.') && (name.contains(".new-") || name.contains(".old-"));
        if leftover && entry.file_type().is_ok_and(|t| t.is_dir()) {
            tracing::info!("swarm map: removing the leftover {name}");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Remove station folders whose moats (else the folder's own time) is older than `max_age`.
fn remove_stale(swarm: &Path, max_age: u64, state: &mut State) -> Vec<Line> {
    let now = now_secs();
    let mut removed = Vec::new();
    for dir in listing::station_dirs(swarm) {
        let age = match station::read_moats(&dir) {
            Some(moats) => station::moats_age(moats, now),
            None => listing::mtime_secs(&dir).map(|t| now.saturating_sub(t)),
        };
        let Some(age) = age.filter(|age| *age > max_age) else {
            continue;
        };
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let id = id.unwrap_or_default();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(station = %id, "swarm map: removed {id}: moats {age} s old");
                state.stations.remove(&id);
                removed.push(Line {
                    station: id,
                    via: None,
                    detail: format!("moats {age} s old"),
                });
            }
            Err(e) => tracing::warn!(station = %id, "swarm map: cannot remove {id}: {e}"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipns_values_name_an_ipfs_folder_or_nothing() {
        let cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
        assert_eq!(
            ipfs_path_cid(format!("/ipfs/{cid}").as_bytes()).map(|c| c.to_string()),
            Some(cid.to_owned())
        );
        assert!(ipfs_path_cid(format!("/ipfs/{cid}/sub").as_bytes()).is_none());
        assert!(ipfs_path_cid(b"/ipns/k51").is_none());
        assert!(ipfs_path_cid(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn the_intruders_log_keeps_one_old_copy_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("swarm_intruders.log");
        for _ in 0..5 {
            append_bounded(&log, b"0123456789", 25).unwrap();
        }
        let old = dir.path().join("swarm_intruders.log.1");
        assert_eq!(std::fs::metadata(&old).unwrap().len(), 30);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 20);
    }

    #[test]
    fn stale_and_leftover_folders_go_fresh_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (fresh, stale) = (dir.path().join("fresh"), dir.path().join("stale"));
        let leftover = dir.path().join(".x.new-1-0");
        for d in [&fresh, &stale, &leftover] {
            std::fs::create_dir(d).unwrap();
        }
        let now = now_secs();
        std::fs::write(fresh.join(MOATS_FILE), (now - 60).to_string()).unwrap();
        std::fs::write(stale.join(MOATS_FILE), (now - 13 * 3600).to_string()).unwrap();
        remove_leftovers(dir.path());
        let removed = remove_stale(dir.path(), 12 * 3600, &mut State::default());
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].station, "stale");
        assert!(fresh.is_dir() && !stale.exists() && !leftover.exists());
    }
}

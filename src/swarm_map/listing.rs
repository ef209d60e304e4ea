//! What the swarm folder holds, read from disk: station folders, their sizes, how each was found
//! (`<home>/swarm_map.json`), and the rows of `constellation swarm map`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::station::{self, StationFile};

/// Files and folders counted when sizing a folder: well above the map's own bounds, so a
/// folder someone else filled cannot make the count endless.
const MAX_WALK_ENTRIES: usize = 200_000;

/// One station of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub id: String,
    pub hostname: Option<String>,
    #[serde(rename = "myRELAY")]
    pub my_relay: Option<String>,
    /// Seconds since its `_MySwarm.moats`; `None` without a readable one.
    pub moats_age_secs: Option<u64>,
    /// The station whose map named it; `None`: found directly (or put there by Astroport).
    pub via: Option<String>,
    pub services: Vec<String>,
}

/// The station folders of `swarm` (not the hidden temp folders of a fetch), sorted.
pub fn station_dirs(swarm: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(swarm)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// The map's rows, from `swarm` and the origins in `state` (`<home>/swarm_map.json`).
pub fn entries(swarm: &Path, state: &Path) -> Vec<MapEntry> {
    let state = load_state(state);
    let now = super::context::now_secs();
    station_dirs(swarm)
        .into_iter()
        .map(|dir| {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = StationFile::read(&dir).unwrap_or_default();
            let mut services = station::services_in(&dir);
            if services.is_empty()
                && let Some(listed) = &file.dragon_services
            {
                services = (listed.split(','))
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            MapEntry {
                via: state.stations.get(&id).and_then(|o| o.via.clone()),
                hostname: file.hostname,
                my_relay: file.my_relay,
                moats_age_secs: station::read_moats(&dir).and_then(|m| station::moats_age(m, now)),
                services,
                id,
            }
        })
        .collect()
}

/// Bytes of the files below `dir` (not following symlinks); 0 when it does not exist.
pub fn dir_bytes(dir: &Path) -> u64 {
    let (mut total, mut stack, mut seen) = (0u64, vec![dir.to_owned()], 0usize);
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                return total;
            }
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Modification time of `path`, in epoch seconds.
pub fn mtime_secs(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs(),
    )
}

/// How a station entered our map; kept in `<home>/swarm_map.json` for `swarm map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The station whose map named it; `None`: a direct peer.
    pub via: Option<String>,
    pub fetched_at: u64,
}

/// `<home>/swarm_map.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub stations: BTreeMap<String, Origin>,
}

pub fn load_state(path: &Path) -> State {
    crate::atomic_file::read_bounded(path, MAX_STATE_BYTES)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// `swarm_map.json` holds one short line per station; the cycle's station bound keeps it small.
const MAX_STATE_BYTES: u64 = 4 << 20;

pub fn save_state(path: &Path, state: &State) {
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    if let Err(e) = crate::atomic_file::write(path, &bytes, 0o644) {
        tracing::warn!(path = %path.display(), "cannot keep the swarm map state: {e}");
    }
}

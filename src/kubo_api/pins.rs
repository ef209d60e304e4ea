//! The pin set (`<home>/pins.json`, one owner, written atomically) and `pin add` / `pin ls` /
//! `pin rm` / `repo stat`. A recursive pin fetches the whole DAG over bitswap, bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use cid::Cid;
use serde::{Deserialize, Serialize};

use super::call::Call;
use super::ipfs::Ipfs;
use super::{Failure, Reply};
use crate::ipfs::block::BlockSource;
use crate::ipfs::unixfs::node;

/// Pins kept: a station pins its own folder and a few files; the bound keeps the file small.
pub const MAX_PINS: usize = 10_000;
/// Blocks one recursive pin fetches at most: the add bound (64 MiB of 256 KiB chunks is 256
/// leaves) with a wide margin for folders and HAMT buckets.
const MAX_PIN_BLOCKS: usize = 65_536;
/// A pin file larger than this is not ours.
const MAX_PIN_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Kubo's pin types that we keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinKind {
    Recursive,
    Direct,
}

impl PinKind {
    fn as_str(self) -> &'static str {
        match self {
            PinKind::Recursive => "recursive",
            PinKind::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pin {
    kind: PinKind,
    #[serde(default)]
    name: String,
}

/// Why the pin set failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pin file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the pin set is full ({MAX_PINS} pins)")]
    Full,
    #[error("not pinned or pinned indirectly")]
    NotPinned,
}

/// The pin set. The mutex owns the map, and every change is on disk before the call answers.
pub struct Pins {
    path: PathBuf,
    pins: Mutex<BTreeMap<String, Pin>>,
}

impl Pins {
    /// The set kept in `path` (empty when the file does not exist).
    pub fn open(path: PathBuf) -> Result<Pins, PinError> {
        let bad = |reason: String| PinError::File {
            path: path.clone(),
            reason,
        };
        let pins = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(bad(e.to_string())),
            Ok(meta) if meta.len() > MAX_PIN_FILE_BYTES => {
                return Err(bad(format!("over {MAX_PIN_FILE_BYTES} bytes")));
            }
            Ok(_) => {
                let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
                serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(Pins {
            path,
            pins: Mutex::new(pins),
        })
    }

    pub fn add(&self, cid: Cid, kind: PinKind, name: &str) -> Result<(), PinError> {
        self.change(|pins| {
            let key = key_of(&cid);
            if !pins.contains_key(&key) && pins.len() >= MAX_PINS {
                return Err(PinError::Full);
            }
            // A recursive pin covers a direct one; a direct pin never lowers a recursive one.
            let kind = match pins.get(&key) {
                Some(old) if old.kind == PinKind::Recursive => PinKind::Recursive,
                _ => kind,
            };
            pins.insert(
                key,
                Pin {
                    kind,
                    name: name.to_owned(),
                },
            );
            Ok(())
        })
    }

    pub fn remove(&self, cid: &Cid) -> Result<(), PinError> {
        self.change(|pins| {
            pins.remove(&key_of(cid))
                .map(drop)
                .ok_or(PinError::NotPinned)
        })
    }

    /// Every pin: (CID as pinned, kind, name).
    pub fn list(&self) -> Vec<(String, PinKind, String)> {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.iter()
            .map(|(cid, pin)| (cid.clone(), pin.kind, pin.name.clone()))
            .collect()
    }

    fn change(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, Pin>) -> Result<(), PinError>,
    ) -> Result<(), PinError> {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = pins.clone();
        edit(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| self.error(e.to_string()))?;
        crate::atomic_file::write(&self.path, &bytes, 0o600)
            .map_err(|e| self.error(e.to_string()))?;
        *pins = next;
        Ok(())
    }

    fn error(&self, reason: String) -> PinError {
        PinError::File {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Pins are keyed by the CID's text as Kubo prints it (v0 stays `Qm…`).
fn key_of(cid: &Cid) -> String {
    cid.to_string()
}

/// Fetch every block below `root` (into the store, over bitswap where missing), bounded.
async fn fetch_dag(ipfs: &Ipfs, root: &Cid) -> Result<usize, Failure> {
    let source = ipfs.source();
    let (mut pending, mut seen) = (vec![*root], std::collections::HashSet::new());
    while let Some(cid) = pending.pop() {
        if !seen.insert(cid.hash().to_bytes()) {
            continue;
        }
        if seen.len() > MAX_PIN_BLOCKS {
            return Err(Failure::normal(format!(
                "the DAG passes {MAX_PIN_BLOCKS} blocks: not pinned"
            )));
        }
        let block = source.get(&cid).await.map_err(Failure::of)?;
        if let Ok(node) = node::read(&block) {
            pending.extend(node.links.iter().map(|l| l.cid));
        }
    }
    Ok(seen.len())
}

/// Kubo's `PinOutput` / `AddPinOutput` (no progress: `Progress` left out).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PinOutput {
    pins: Vec<String>,
}

/// `pin add`: each path resolved; recursive (default) pins fetch their whole DAG first.
pub async fn add(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.arg(0, "ipfs-path")?;
    let recursive = call.flag_or(&["recursive", "r"], true)?;
    let name = call.option(&["name"]).unwrap_or("");
    let mut pinned = Vec::new();
    for text in &call.args {
        let cid = ipfs.resolve(text).await?;
        let kind = match recursive {
            true => {
                fetch_dag(ipfs, &cid)
                    .await
                    .map_err(|e| Failure::normal(format!("pin: {}", e.message)))?;
                PinKind::Recursive
            }
            false => {
                ipfs.source().get(&cid).await.map_err(Failure::of)?;
                PinKind::Direct
            }
        };
        ipfs.pins.add(cid, kind, name).map_err(Failure::of)?;
        pinned.push(cid.to_string());
    }
    Ok(super::commands::json(&PinOutput { pins: pinned }))
}

/// `pin rm`.
pub async fn rm(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.arg(0, "ipfs-path")?;
    let mut removed = Vec::new();
    for text in &call.args {
        let cid = ipfs.resolve(text).await?;
        ipfs.pins.remove(&cid).map_err(Failure::of)?;
        removed.push(cid.to_string());
    }
    Ok(super::commands::json(&PinOutput { pins: removed }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PinLsType {
    #[serde(rename = "Type")]
    kind: &'static str,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PinLsList {
    keys: BTreeMap<String, PinLsType>,
}

/// `pin ls` (`--type` all, recursive, direct; indirect pins are not tracked): Kubo's `PinLsList`.
pub async fn ls(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let wanted = call.option(&["type", "t"]).unwrap_or("all");
    if !matches!(wanted, "all" | "recursive" | "direct" | "indirect") {
        return Err(Failure::normal(format!(
            "invalid type '{wanted}', must be one of {{direct, indirect, recursive, all}}"
        )));
    }
    let mut only = None;
    if !call.args.is_empty() {
        let mut cids = Vec::new();
        for text in &call.args {
            cids.push(ipfs.resolve(text).await?.to_string());
        }
        only = Some(cids);
    }
    let mut keys = BTreeMap::new();
    for (cid, kind, name) in ipfs.pins.list() {
        let type_ok = wanted == "all" || wanted == kind.as_str();
        let arg_ok = only.as_ref().is_none_or(|o| o.contains(&cid));
        if type_ok && arg_ok {
            keys.insert(
                cid,
                PinLsType {
                    kind: kind.as_str(),
                    name,
                },
            );
        }
    }
    if let Some(only) = &only
        && let Some(missing) = only.iter().find(|c| !keys.contains_key(*c))
    {
        return Err(Failure::normal(format!("path '{missing}' is not pinned")));
    }
    Ok(super::commands::json(&PinLsList { keys }))
}

/// `repo stat`: Kubo's `corerepo.Stat` (`--size-only` leaves out the count and path as Kubo).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RepoStat {
    repo_size: u64,
    storage_max: u64,
    num_objects: u64,
    repo_path: String,
    version: String,
}

pub fn repo_stat(ipfs: &Ipfs) -> Result<Reply, Failure> {
    let store = ipfs.bitswap.store();
    let objects = std::fs::read_dir(store.dir())
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(super::commands::json(&RepoStat {
        repo_size: store.total_bytes(),
        storage_max: store.max_bytes(),
        num_objects: objects,
        repo_path: ipfs.repo_path.display().to_string(),
        version: format!("fs-repo@{}", super::commands::KUBO_REPO_VERSION),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_survive_reopening_and_recursive_is_never_lowered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let cid: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
            .parse()
            .unwrap();
        let pins = Pins::open(path.clone()).unwrap();
        pins.add(cid, PinKind::Recursive, "site").unwrap();
        pins.add(cid, PinKind::Direct, "site").unwrap();
        drop(pins);
        let pins = Pins::open(path.clone()).unwrap();
        assert_eq!(
            pins.list(),
            [(cid.to_string(), PinKind::Recursive, "site".to_string())]
        );
        pins.remove(&cid).unwrap();
        assert!(matches!(pins.remove(&cid), Err(PinError::NotPinned)));
        assert!(Pins::open(path).unwrap().list().is_empty());
    }
}

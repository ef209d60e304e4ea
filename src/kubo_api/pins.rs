//! `pin add` / `pin ls` / `pin rm` over the [pin set](super::pin_set), and `repo stat`. A
//! recursive pin fetches the whole DAG over bitswap first, bounded.

use std::collections::BTreeMap;

use cid::Cid;
use serde::Serialize;

use super::call::Call;
use super::ipfs::Ipfs;
use super::pin_set::PinKind;
use super::{Failure, Reply};
use crate::ipfs::block::BlockSource;
use crate::ipfs::unixfs::node;

/// Blocks one recursive pin fetches at most: the add bound (64 MiB of 256 KiB chunks is 256
/// leaves) with a wide margin for folders and HAMT buckets.
const MAX_PIN_BLOCKS: usize = 65_536;

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
    let _no_gc_meanwhile = ipfs.content_lock.read().await;
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
    Ok(super::json(&PinOutput { pins: pinned }))
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
    Ok(super::json(&PinOutput { pins: removed }))
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
    Ok(super::json(&PinLsList { keys }))
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
    Ok(super::json(&RepoStat {
        repo_size: store.total_bytes(),
        storage_max: store.max_bytes(),
        num_objects: objects,
        repo_path: ipfs.repo_path.display().to_string(),
        version: format!("fs-repo@{}", super::wire::KUBO_REPO_VERSION),
    }))
}

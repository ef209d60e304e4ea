//! `repo gc`: remove the blocks no pin reaches and no record we publish names (our own folder,
//! the map), streaming Kubo's `{"Key":{"/":cid}}` line for each, one collection at a time.

use std::collections::HashSet;

use cid::Cid;
use serde::Serialize;
use tokio::sync::mpsc;

use super::call::Call;
use super::ipfs::Ipfs;
use super::pin_set::PinKind;
use super::{Failure, Reply};
use crate::ipfs::block::RAW;
use crate::ipfs::store::BlockStore;
use crate::ipfs::unixfs::node;

/// Blocks one collection looks at, kept and removed: a 1 GiB store of 256 KiB chunks holds
/// 4096; a million leaves room for stores of tiny blocks and still bounds the sets in memory.
const MAX_GC_BLOCKS: usize = 1_000_000;
/// Removed keys waiting for the connection; the sweep waits when the client reads slowly.
const GC_QUEUE: usize = 64;

/// Kubo's `GcResult`: the removed block as the CIDv1 (codec raw) of its multihash, which is
/// how Kubo's blockstore keys and prints every block; `Error` when one could not be removed.
#[derive(Serialize)]
struct GcResult {
    #[serde(rename = "Key", skip_serializing_if = "Option::is_none")]
    key: Option<CidLink>,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct CidLink {
    #[serde(rename = "/")]
    cid: String,
}

/// `repo gc [--quiet] [--stream-errors]`: mark from the pins and the published values, then
/// sweep the store, every `add` and `pin add` waiting until it is done.
pub async fn gc(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.flag(&["quiet", "q"])?;
    call.flag(&["stream-errors"])?;
    let roots = roots(ipfs);
    let exclusive = ipfs.content_lock.clone().write_owned().await;
    let store = ipfs.bitswap.store().clone();
    let (lines, receiver) = mpsc::channel(GC_QUEUE);
    ipfs.tracker.spawn_blocking(move || {
        let result = collect(&store, roots, &lines);
        if let Err(error) = result {
            tracing::warn!("repo gc stopped: {error}");
            let line = super::line(&GcResult {
                key: None,
                error: Some(error),
            });
            let _ = lines.blocking_send(line);
        }
        drop(exclusive);
    });
    Ok(Reply::Lines(receiver))
}

/// What must stay: every pin, and the `/ipfs/<cid>` of every record we publish (our folder,
/// which peers fetch from us, and the swarm map), with their direct-pin or whole-DAG reach.
fn roots(ipfs: &Ipfs) -> Vec<(Cid, PinKind)> {
    let pinned = (ipfs.pins.list().into_iter())
        .filter_map(|(cid, kind, _)| Some((Cid::try_from(cid.as_str()).ok()?, kind)));
    let published = (ipfs.names.kept_values().into_iter()).filter_map(|value| {
        let text = String::from_utf8(value).ok()?;
        let cid = text.strip_prefix("/ipfs/")?.split('/').next()?;
        Some((Cid::try_from(cid).ok()?, PinKind::Recursive))
    });
    pinned.chain(published).collect()
}

/// Mark what `roots` reach in the store, then remove the rest, one line sent per block.
fn collect(
    store: &BlockStore,
    roots: Vec<(Cid, PinKind)>,
    lines: &mpsc::Sender<Vec<u8>>,
) -> Result<(), String> {
    let keep = reachable(store, roots)?;
    let held = store
        .cids()
        .map_err(|e| format!("cannot list {}: {e}", store.dir().display()))?;
    if held.len() > MAX_GC_BLOCKS {
        return Err(format!(
            "the store holds more than {MAX_GC_BLOCKS} blocks: not collected"
        ));
    }
    for cid in held.iter().filter(|c| !keep.contains(&c.hash().to_bytes())) {
        store.remove(cid);
        let key = Cid::new_v1(RAW, *cid.hash()).to_string();
        let line = super::line(&GcResult {
            key: Some(CidLink { cid: key }),
            error: None,
        });
        if lines.blocking_send(line).is_err() {
            // The client left; what is unreachable now is still unreachable next time.
            return Ok(());
        }
    }
    Ok(())
}

/// The multihashes of the blocks in `store` that `roots` reach (a direct pin: its block only).
/// Blocks the store lacks are passed over: there is nothing of them to keep.
fn reachable(store: &BlockStore, roots: Vec<(Cid, PinKind)>) -> Result<HashSet<Vec<u8>>, String> {
    let mut keep = HashSet::new();
    let mut pending = Vec::new();
    for (cid, kind) in roots {
        match kind {
            PinKind::Direct => {
                keep.insert(cid.hash().to_bytes());
            }
            PinKind::Recursive => pending.push(cid),
        }
    }
    while let Some(cid) = pending.pop() {
        if !keep.insert(cid.hash().to_bytes()) {
            continue;
        }
        if keep.len() > MAX_GC_BLOCKS {
            return Err(format!(
                "the pins reach more than {MAX_GC_BLOCKS} blocks: not collected"
            ));
        }
        if let Ok(Some(block)) = store.get_local(&cid)
            && let Ok(node) = node::read(&block)
        {
            let links = node.links.iter().map(|l| l.cid);
            pending.extend(links.filter(|c| !keep.contains(&c.hash().to_bytes())));
        }
    }
    Ok(keep)
}

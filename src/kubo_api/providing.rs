//! `routing findprovs` and `routing provide` over the node's DHT content routing, and the
//! announcement of what `add` stored, bounded, as Kubo announces new blocks.

use cid::Cid;
use tokio::sync::mpsc;

use super::call::Call;
use super::ipfs::Ipfs;
use super::{Failure, Reply, wire};
use crate::node::providers::MAX_PROVIDERS_FOUND;

/// go-libp2p's `routing.Provider` query event type.
const QUERY_PROVIDER: u8 = 4;
/// CIDs one `add` announces (its files and folders, not every chunk: a peer that fetched a root
/// from us is connected and gets the rest by bitswap); the rest of a large add is not announced.
const MAX_PROVIDES_PER_ADD: usize = 64;
/// Lines of `findprovs` waiting for the connection (one per provider, at most 20).
const FINDPROVS_QUEUE: usize = MAX_PROVIDERS_FOUND;

/// `routing findprovs KEY [--num-providers N]`: one `Provider` event per peer found.
pub async fn findprovs(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let cid = parse_cid(call.arg(0, "key")?)?;
    let count: usize = call.number(&["num-providers", "n"], MAX_PROVIDERS_FOUND)?;
    if count == 0 {
        return Err(Failure::client(
            "number of providers must be greater than 0",
        ));
    }
    let node = ipfs.node.clone();
    let (lines, receiver) = mpsc::channel(FINDPROVS_QUEUE);
    ipfs.tracker.spawn(async move {
        let found = node.find_providers(&cid, count).await.unwrap_or_default();
        let known = node.known_addrs().await.unwrap_or_default();
        for peer in found {
            let addrs = (known.iter().find(|(p, _)| *p == peer))
                .map(|(_, addrs)| addrs.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let event = wire::QueryEvent {
                id: String::new(),
                kind: QUERY_PROVIDER,
                responses: Some(vec![wire::AddrInfo {
                    id: peer.to_string(),
                    addrs,
                }]),
                extra: String::new(),
            };
            if lines.send(super::line(&event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Reply::Lines(receiver))
}

/// `routing provide KEY...`: announce blocks we hold (not `--recursive`).
pub async fn provide(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.arg(0, "key")?;
    if call.flag(&["recursive", "r"])? {
        return Err(Failure::client(
            "constellation announces the given blocks only: drop --recursive",
        ));
    }
    let cids = (call.args.iter())
        .map(|text| parse_cid(text))
        .collect::<Result<Vec<_>, _>>()?;
    for cid in &cids {
        if !ipfs.bitswap.store().has(cid) {
            return Err(Failure::normal(format!(
                "block {cid} not found locally, cannot provide"
            )));
        }
    }
    for cid in &cids {
        (ipfs.node.provide(cid).await)
            .map_err(|e| Failure::normal(format!("failed to provide {cid}: {e}")))?;
    }
    Ok(Reply::Empty)
}

/// Announce the first [`MAX_PROVIDES_PER_ADD`] of `cids` in the background.
pub fn provide_added(ipfs: &Ipfs, cids: Vec<Cid>) {
    let node = ipfs.node.clone();
    ipfs.tracker.spawn(async move {
        for cid in cids.into_iter().take(MAX_PROVIDES_PER_ADD) {
            if let Err(e) = node.provide(&cid).await {
                tracing::debug!(%cid, "not announced in the DHT: {e}");
            }
        }
    });
}

fn parse_cid(text: &str) -> Result<Cid, Failure> {
    let bare = text.strip_prefix("/ipfs/").unwrap_or(text);
    Cid::try_from(bare).map_err(|e| Failure::client(format!("invalid CID {text:?}: {e}")))
}

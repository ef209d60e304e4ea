//! What the IPFS endpoints work with (blocks over bitswap, our IPNS names, the keystore, the pin
//! set), and the one way they read an argument: `/ipfs/<cid>/path`, `/ipns/<name>/path` or a bare
//! CID, resolved through IPNS and UnixFS to a CID.

use std::path::PathBuf;
use std::sync::Arc;

use cid::Cid;
use libp2p::PeerId;
use tokio_util::task::TaskTracker;

use super::Failure;
use super::pin_set::Pins;
use crate::ipfs::ipns::{self, IpnsRecord};
use crate::ipfs::keystore::Keystore;
use crate::ipfs::unixfs;
use crate::node::Node;
use crate::node::bitswap::{Bitswap, BitswapSource};
use crate::node::names::Names;

/// IPNS names followed to reach content: `/ipns/a` → `/ipns/b` → `/ipfs/…`. Kubo stops at 32
/// (`DefaultDepthLimit`); a station's chain is one hop.
const MAX_IPNS_HOPS: usize = 32;

/// The IPFS side of the daemon, as the API uses it.
pub struct Ipfs {
    pub node: Node,
    pub bitswap: Bitswap,
    pub names: Arc<Names>,
    pub keystore: Keystore,
    pub pins: Pins,
    /// Where uploads and `get`s are unpacked for a moment (`<home>/tmp`).
    pub scratch: PathBuf,
    /// Shown by `repo stat`.
    pub repo_path: PathBuf,
    pub tracker: TaskTracker,
    /// Held shared by `add` and `pin add` (blocks written, not pinned yet) and exclusively by
    /// `repo gc`, so a collection never removes what is being added.
    pub content_lock: Arc<tokio::sync::RwLock<()>>,
}

/// A content path once resolved: its root CID and the names below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPath {
    pub root: Cid,
    pub rest: String,
}

impl Ipfs {
    /// Blocks from the store, else from every connected peer over bitswap.
    pub fn source(&self) -> BitswapSource {
        self.bitswap.source(Vec::new())
    }

    /// `/ipfs/<cid>[/path]`, `/ipns/<name>[/path]`, `<cid>[/path]` → its CID.
    pub async fn resolve(&self, text: &str) -> Result<Cid, Failure> {
        let path = self.content_path(text).await?;
        unixfs::resolve_path(&self.source(), &path.root, &path.rest)
            .await
            .map_err(|e| Failure::normal(format!("{text}: {e}")))
    }

    /// The root CID and sub-path of `text`, following IPNS names.
    pub async fn content_path(&self, text: &str) -> Result<ContentPath, Failure> {
        let mut text = text.to_owned();
        let mut rest = String::new();
        for _ in 0..MAX_IPNS_HOPS {
            let (namespace, head, tail) = split_path(&text)?;
            let tail = join(tail, &rest);
            if namespace == Namespace::Ipfs {
                let root = Cid::try_from(head)
                    .map_err(|e| Failure::normal(format!("invalid path {text:?}: {e}")))?;
                return Ok(ContentPath { root, rest: tail });
            }
            let name = ipns::parse_name(head).map_err(Failure::normal)?;
            let record = self.resolve_name(name).await?;
            text = String::from_utf8(record.value().to_vec())
                .map_err(|_| Failure::normal("the IPNS record's value is not UTF-8"))?;
            rest = tail;
        }
        Err(Failure::normal(format!(
            "could not resolve name: more than {MAX_IPNS_HOPS} IPNS hops"
        )))
    }

    /// The freshest record of `name`: ours (kept by [`Names`]) if it is still valid, else the DHT's.
    pub async fn resolve_name(&self, name: PeerId) -> Result<IpnsRecord, Failure> {
        if let Ok(Some(record)) = self.names.last(&name)
            && record.validity() > chrono::Utc::now()
        {
            return Ok(record);
        }
        self.node
            .resolve_ipns(name)
            .await
            .map_err(|e| Failure::normal(format!("could not resolve name: {e}")))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Namespace {
    Ipfs,
    Ipns,
}

/// `(namespace, first name, the rest)` of a path; a bare CID is `/ipfs/<cid>`.
fn split_path(text: &str) -> Result<(Namespace, &str, &str), Failure> {
    let (namespace, body) = if let Some(body) = text.strip_prefix("/ipfs/") {
        (Namespace::Ipfs, body)
    } else if let Some(body) = text.strip_prefix("/ipns/") {
        (Namespace::Ipns, body)
    } else if text.starts_with('/') {
        return Err(Failure::normal(format!(
            "invalid path {text:?}: unknown namespace"
        )));
    } else {
        (Namespace::Ipfs, text)
    };
    let (head, tail) = body.split_once('/').unwrap_or((body, ""));
    if head.is_empty() {
        return Err(Failure::normal(format!("invalid path {text:?}: empty")));
    }
    Ok((namespace, head, tail))
}

fn join(a: &str, b: &str) -> String {
    let (a, b) = (a.trim_matches('/'), b.trim_matches('/'));
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_namespace_root_and_rest() {
        let cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
        let path = format!("/ipfs/{cid}/a/b");
        let (ns, head, tail) = split_path(&path).unwrap();
        assert_eq!((ns, head, tail), (Namespace::Ipfs, cid, "a/b"));
        assert_eq!(split_path(cid).unwrap().0, Namespace::Ipfs);
        let (ns, head, tail) = split_path("/ipns/k51x/").unwrap();
        assert_eq!((ns, head, tail), (Namespace::Ipns, "k51x", ""));
        assert!(split_path("/foo/bar").is_err());
        assert!(split_path("/ipfs/").is_err());
        assert_eq!(join("a/", "/b"), "a/b");
        assert_eq!(join("", "b"), "b");
    }
}

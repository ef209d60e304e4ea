//! Issue 14: hostile stations. Nodes in this test process publish crafted folders under their
//! IPNS names (bad names, a symlink, 1 GiB, 10,000 entries, a moats that is no number); the
//! daemon, bootstrapped from them, refuses each at its bound, names it in its log, writes
//! nothing of them and stays within its memory bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use cid::Cid;
use constellation::config::RoutingMode;
use constellation::ipfs::BlockStore;
use constellation::ipfs::block::{Block, BlockSink};
use constellation::ipfs::ipns::IpnsRecord;
use constellation::ipfs::unixfs::dagpb::{self, DIRECTORY, FILE, unixfs_data};
use constellation::ipfs::unixfs::{CHUNK_BYTES, FolderLimits, Hidden, add_path};

use constellation::node::Node;
use libp2p::identity::Keypair;

use crate::bitswap::{Ours, runtime};
use crate::common;
use crate::swarm_map::{folders, start_station, station_config};

/// Resident memory the daemon may reach while refusing them all (it idles around 20 MiB).
const MAX_RSS_KIB: u64 = 150 * 1024;
/// A DHT PUT needs the daemon connected; on loopback that takes well under this.
const SETTLE: Duration = Duration::from_secs(30);

/// The hostile cases: a name, and what the daemon must say about it.
const CASES: [(&str, &str); 7] = [
    ("dotdot", "refused name"),
    ("slash", "invalid name: \"a/b\""),
    ("nul", "refused name"),
    ("1gib", "bytes"),
    ("symlink", "symlink"),
    ("10000", "entries"),
    ("nan", "not a number"),
];

fn put(store: &BlockStore, block: Block) -> Cid {
    let cid = *block.cid();
    let mut sink = store;
    sink.put(block).expect("put");
    cid
}

fn file(store: &BlockStore, bytes: &[u8]) -> Cid {
    let data = unixfs_data(FILE, bytes, Some(bytes.len() as u64), &[]);
    put(store, dagpb::node(&[], &data).expect("leaf"))
}

/// A folder holding a fresh moats and `extra` links.
fn folder(store: &BlockStore, extra: &[(Cid, &[u8])]) -> Cid {
    let moats = file(store, format!("{}\n", common::relays::now()).as_bytes());
    let mut links = vec![(moats, &b"_MySwarm.moats"[..])];
    links.extend_from_slice(extra);
    let data = unixfs_data(DIRECTORY, &[], None, &[]);
    put(store, dagpb::node(&links, &data).expect("dir"))
}

/// A file node announcing 1 GiB: 4096 links to one 256 KiB chunk.
fn one_gib(store: &BlockStore) -> Cid {
    let chunk = file(store, &vec![0u8; CHUNK_BYTES]);
    let links: Vec<(Cid, &[u8])> = (0..4096).map(|_| (chunk, &b""[..])).collect();
    let sizes = vec![CHUNK_BYTES as u64; 4096];
    let data = unixfs_data(FILE, &[], Some(1 << 30), &sizes);
    put(store, dagpb::node(&links, &data).expect("big"))
}

/// A real folder on disk, added as `ipfs add` does (HAMT above 256 KiB of links).
fn added(store: &BlockStore, dir: &Path) -> Cid {
    let roomy = FolderLimits {
        max_entries: 20_000,
        max_blocks: 20_000,
        ..FolderLimits::STATION
    };
    add_path(dir, &mut &*store, &roomy, Hidden::Skip)
        .expect("add")
        .root
}

fn on_disk(tmp: &Path, name: &str, fill: impl FnOnce(&Path)) -> std::path::PathBuf {
    let dir = tmp.join("src").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("_MySwarm.moats"),
        common::relays::now().to_string(),
    )
    .unwrap();
    fill(&dir);
    dir
}

/// Build the folder of case `name` into `store`; its root.
fn case(name: &str, store: &BlockStore, tmp: &Path) -> Cid {
    let leaf = file(store, b"payload");
    match name {
        "dotdot" => folder(store, &[(leaf, b"..")]),
        "slash" => folder(store, &[(leaf, b"a/b")]),
        "nul" => folder(store, &[(leaf, b"a\0b")]),
        "1gib" => {
            let huge = one_gib(store);
            folder(store, &[(huge, b"huge.bin")])
        }
        "symlink" => added(
            store,
            &on_disk(tmp, name, |d| {
                std::os::unix::fs::symlink("/etc/passwd", d.join("passwd")).unwrap()
            }),
        ),
        "10000" => added(
            store,
            &on_disk(tmp, name, |d| {
                for i in 0..10_000 {
                    std::fs::write(d.join(format!("entry-{i:05}")), b"").unwrap();
                }
            }),
        ),
        _ => added(
            store,
            &on_disk(tmp, name, |d| {
                std::fs::write(d.join("_MySwarm.moats"), "<html>hello</html>").unwrap()
            }),
        ),
    }
}

/// Put `root` under `key`'s name from `node`, retrying until the DHT (the daemon) takes it.
async fn publish(key: &Keypair, node: &Node, root: &Cid) {
    let value = format!("/ipfs/{root}");
    let validity = Utc::now() + chrono::Duration::hours(24);
    let record = IpnsRecord::create(key, value.as_bytes(), 1, validity, ttl()).expect("record");
    let record = &record;
    let taken = || async move { node.put_ipns(record).await.is_ok() };
    assert!(
        common::wait_until_async(SETTLE, taken).await,
        "the DHT never took the record"
    );
}

fn ttl() -> Duration {
    Duration::from_secs(1800)
}

#[test]
fn hostile_stations_are_refused_at_their_bounds_named_in_the_log_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        // One hostile node per case, each serving and publishing its crafted folder.
        let mut hostile = Vec::new();
        for (name, what) in CASES {
            let ours = Ours::start(&tmp.path().join(name), RoutingMode::DhtServer, &[]).await;
            let root = case(name, ours.bitswap.store(), tmp.path());
            hostile.push((ours, root, name, what));
        }
        let boot: Vec<String> = hostile
            .iter()
            .map(|h| format!("\"{}\"", h.0.addr))
            .collect();
        let config = station_config(None, "").replace(
            "[node]\n",
            &format!("[node]\nbootstrap = [{}]\n", boot.join(",")),
        );
        let station = tokio::task::block_in_place(|| start_station(tmp.path(), "a", &config, None));
        let mut expect = BTreeMap::new();
        for (ours, root, name, what) in &hostile {
            publish(&ours.key, &ours.node, root).await;
            expect.insert(ours.node.peer_id().to_string(), (*name, *what));
        }
        let peak = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done, pid) = (peak.clone(), done.clone(), station.daemon.pid());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(common::rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        // A peer that answered nothing yet is retried next cycle, as _12345.sh does: at most
        // three cycles until every hostile station has its verdict.
        let mut verdicts = BTreeMap::new();
        let mut report = serde_json::Value::Null;
        for _ in 0..3 {
            report = tokio::task::block_in_place(|| station.refresh());
            for line in ["refused", "intruders"]
                .iter()
                .flat_map(|g| report[*g].as_array().unwrap())
            {
                let id = line["station"].as_str().unwrap().to_owned();
                verdicts.insert(id, line["detail"].as_str().unwrap().to_owned());
            }
            if expect.keys().all(|id| verdicts.contains_key(id)) {
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let log = station.daemon.log();
        eprintln!(
            "last cycle took {} s; daemon RSS peaked at {} KiB",
            report["secs"],
            peak.load(Ordering::Relaxed)
        );
        for (id, (case, what)) in &expect {
            let detail = verdicts
                .get(id)
                .unwrap_or_else(|| panic!("{case} ({id}) not refused: {report:#}"));
            assert!(detail.contains(what), "{case}: {detail}");
            assert!(
                log.lines()
                    .any(|l| l.contains(id.as_str()) && l.contains(what)),
                "{case}: no log line names {id}"
            );
        }
        // The intruder was logged as _12345.sh logs them; nothing of any case was written.
        let intruders = std::fs::read_to_string(station.user.join(".zen/tmp/swarm_intruders.log"))
            .unwrap_or_default();
        let nan = expect.iter().find(|(_, (c, _))| *c == "nan").unwrap().0;
        assert!(
            intruders.contains(&format!("REJECTED: {nan}")),
            "{intruders}"
        );
        assert!(folders(&station.swarm()).is_empty(), "{report:#}");
        let hidden: Vec<_> = std::fs::read_dir(station.swarm())
            .unwrap()
            .flatten()
            .collect();
        assert!(hidden.is_empty(), "temp folders left: {hidden:?}");
        let peak = peak.load(Ordering::Relaxed);
        assert!(
            peak > 0 && peak < MAX_RSS_KIB,
            "daemon RSS peaked at {peak} KiB"
        );
        for (ours, ..) in hostile {
            ours.stop().await;
        }
    });
}

/// Answer every bitswap want on `node` with bytes that are not the wanted block.
async fn serve_lies(node: constellation::node::Node) {
    use constellation::node::bitswap::PROTOCOLS;
    use constellation::node::bitswap::wire::{Dialect, Message};
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut wants = node.accept(PROTOCOLS[0].clone()).expect("bitswap protocol");
    while let Some((peer, mut stream)) = wants.recv().await {
        let node = node.clone();
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes).await;
            // One framed message: a varint length, then the body.
            let start = bytes
                .iter()
                .position(|b| b & 0x80 == 0)
                .map_or(0, |i| i + 1);
            let Ok(message) = Message::decode(&bytes[start..]) else {
                return;
            };
            let blocks = (message.wantlist.iter())
                .map(|e| (e.cid, b"these are not the bytes you want".to_vec()))
                .collect();
            let lie = Message {
                blocks,
                ..Message::default()
            };
            if let Ok(mut out) = node.open_stream(peer, PROTOCOLS[0].clone()).await {
                let _ = out.write_all(&lie.encode(Dialect::V110)).await;
                let _ = out.close().await;
            }
        });
    }
}

#[test]
fn a_station_whose_blocks_do_not_match_their_cids_is_never_mirrored() {
    let tmp = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let liar = crate::bitswap::Bare::start(RoutingMode::DhtServer, &[]).await;
        tokio::spawn(serve_lies(liar.node.clone()));
        let config = station_config(None, "")
            .replace(
                "[node]\n",
                &format!("[node]\nbootstrap = [\"{}\"]\n", liar.addr),
            )
            .replace("_secs = 15\n", "_secs = 3\n");
        let station = tokio::task::block_in_place(|| start_station(tmp.path(), "a", &config, None));
        // A real folder's root: the liar names it in a valid record, then lies about its bytes.
        let mut memory = constellation::ipfs::MemoryBlocks::default();
        let src = on_disk(tmp.path(), "lie", |_| {});
        let root = add_path(&src, &mut memory, &FolderLimits::STATION, Hidden::Skip)
            .expect("add")
            .root;
        publish(&liar.key, &liar.node, &root).await;
        let report = tokio::task::block_in_place(|| station.refresh());
        let id = liar.node.peer_id().to_string();
        let unreachable = report["unreachable"].as_array().unwrap();
        assert!(
            unreachable.iter().any(|l| l["station"] == id.as_str()),
            "{report:#}"
        );
        let log = station.daemon.log();
        assert!(
            log.lines()
                .any(|l| l.contains(&id) && l.contains("unwanted block dropped")),
            "the lie is not in the log:\n{log}"
        );
        assert!(folders(&station.swarm()).is_empty(), "{report:#}");
        liar.stop().await;
    });
}

/// Kad `MessageType` values (dht.proto).
const KAD_GET_VALUE: u8 = 1;
const KAD_FIND_NODE: u8 = 4;

/// Answer a GET_VALUE with a record for `local`'s name signed by another key; anything else
/// with an empty FIND_NODE answer.
async fn forged_answer(mut stream: libp2p::Stream, _turn: usize, local: libp2p::PeerId) {
    use crate::dht_hostile::{bytes_field, varint};
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut request = vec![0u8; 512];
    let n = stream.read(&mut request).await.unwrap_or(0);
    // The request is framed (a one-byte length here) and starts with its `type` field.
    let get_value = n > 3 && request[1..3] == [1 << 3, KAD_GET_VALUE];
    let mut message = Vec::new();
    if get_value {
        let stranger = Keypair::generate_ed25519();
        let value = "/ipfs/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
        let validity = Utc::now() + chrono::Duration::hours(24);
        let forged =
            IpnsRecord::create(&stranger, value.as_bytes(), 99, validity, ttl()).expect("record");
        let key = constellation::ipfs::ipns::routing_key(&local);
        let mut record = Vec::new();
        bytes_field(1, &key, &mut record);
        bytes_field(2, &forged.marshal(), &mut record);
        message.extend([1 << 3, KAD_GET_VALUE]);
        bytes_field(2, &key, &mut message);
        bytes_field(3, &record, &mut message);
    } else {
        message.extend([1 << 3, KAD_FIND_NODE]);
    }
    let mut out = Vec::new();
    varint(message.len(), &mut out);
    out.extend(message);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

#[test]
fn a_record_signed_by_another_key_is_refused_and_the_station_never_mirrored() {
    let tmp = tempfile::tempdir().unwrap();
    let config = station_config(None, "").replace("_secs = 15\n", "_secs = 3\n");
    let station = start_station(tmp.path(), "a", &config, None);
    let stop = tokio_util::sync::CancellationToken::new();
    let (answered_tx, answered) = std::sync::mpsc::channel();
    let target: libp2p::Multiaddr = station.daemon.addr().parse().unwrap();
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let run = crate::dht_hostile::run_hostile(target, stop, answered_tx, forged_answer);
            runtime.block_on(run);
        })
    };
    let connected = common::wait_until(Duration::from_secs(20), || {
        station.cli_ok(&["swarm", "peers"]).lines().count() > 0
    });
    assert!(connected, "the hostile peer never connected");
    let peers: serde_json::Value =
        serde_json::from_str(&station.cli_ok(&["swarm", "peers", "--json"])).unwrap();
    let liar = peers[0]["peer_id"]
        .as_str()
        .expect("the hostile peer")
        .to_owned();
    let report = station.refresh();
    stop.cancel();
    hostile.join().unwrap();
    let log = station.daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("IPNS record from the DHT refused") && l.contains(&liar)),
        "no refusal naming {liar} ({report:#}):\n{log}"
    );
    let unreachable = report["unreachable"].as_array().unwrap();
    assert!(
        unreachable.iter().any(|l| l["station"] == liar.as_str()),
        "{report:#}"
    );
    assert!(answered.try_iter().count() > 0);
    assert!(folders(&station.swarm()).is_empty(), "{report:#}");
}

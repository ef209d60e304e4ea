//! Fuzz targets for what the swarm issues brought: IPNS records and the DHT records we accept,
//! bitswap messages, UnixFS/dag-pb nodes read from blocks, the Kubo RPC API's calls and access
//! guard, and the request heads of the status page and the relay.

use std::cell::RefCell;
use std::path::Path;

use base64::Engine;
use chrono::Utc;
use cid::Cid;
use constellation::ipfs::block::{Block, BlockSource, DAG_PB, MemoryBlocks, RAW, SourceError};
use constellation::ipfs::ipns::{self, IpnsRecord, MAX_RECORD_BYTES};
use constellation::ipfs::unixfs::{self, FolderLimits, Hidden};
use constellation::kubo_api::call::Call;
use constellation::kubo_api::guard::{Asked, Authorization, Policy, auth_header};
use constellation::node::bitswap::wire::{
    Dialect, Entry, MAX_ITEMS_PER_MESSAGE, Message, Presence, WantType,
};
use constellation::node::records::{accept_inbound, best_valid};
use libp2p::identity::Keypair;
use libp2p::{PeerId, StreamProtocol, kad};
use proptest::prelude::*;

use crate::harness::{CI_CASES, fuzz, inputs, peak_during, short_error, texts, within};

/// Longest error message, as in `wire.rs`: a sentence, CIDs or a path, two shortened quotes.
const ERROR_MAX: usize = 2_000;
/// Cases for the targets that write files per case (UnixFS folders): each costs a few syscalls.
const FILE_CASES: u32 = 1_000;

/// What serde_ipld_dagcbor may reserve for arrays nested in a record's data: 256 slots of an
/// `Ipld` at each of its 256 nesting levels. Found by this target (1 MiB for a 208-byte record);
/// a constant, whatever the input.
const CBOR_NESTING_ALLOC: usize = 256 * 256 * std::mem::size_of::<ipld_core::ipld::Ipld>();

/// The npm `ipns` records of `tests/fixtures` (name, protobuf bytes), and one of ours.
fn ipns_samples() -> Vec<(PeerId, Vec<u8>)> {
    let text = include_str!("../fixtures/ipns-npm-records.json");
    let fixture: serde_json::Value = serde_json::from_str(text).expect("fixture");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 text"))
            .expect("base64")
    };
    let mut samples = Vec::new();
    for record in fixture["records"].as_array().expect("records") {
        let name: PeerId = record["peer_id"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("peer id");
        samples.push((name, b64(&record["v1v2"])));
        samples.push((name, b64(&record["v2"])));
    }
    let key = Keypair::generate_ed25519();
    let validity = Utc::now() + chrono::Duration::hours(24);
    let ours = IpnsRecord::create(
        &key,
        b"/ipfs/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        3,
        validity,
        ipns::STATION_TTL,
    )
    .expect("create");
    samples.push((key.public().to_peer_id(), ours.marshal()));
    samples
}

/// What a valid record may say: one of the samples' signed (value, sequence), never a forgery.
fn signed_facts(samples: &[(PeerId, Vec<u8>)]) -> Vec<(PeerId, Vec<u8>, u64)> {
    samples
        .iter()
        .map(|(name, bytes)| {
            let r = IpnsRecord::unmarshal(bytes).expect("sample unmarshals");
            r.validate(name, Utc::now()).expect("sample validates");
            (*name, r.value().to_vec(), r.sequence())
        })
        .collect()
}

#[test]
fn ipns_records() {
    let samples = ipns_samples();
    let facts = signed_facts(&samples);
    let names: Vec<PeerId> = samples.iter().map(|(n, _)| *n).collect();
    let bytes = samples.iter().map(|(_, b)| b.clone()).collect();
    fuzz("IPNS records", CI_CASES, inputs(bytes), |input| {
        let (parsed, peak) = peak_during(|| IpnsRecord::unmarshal(&input));
        // A 10 KiB record, its CBOR and its fields a few times over, and the CBOR decoder's
        // reservations for nested arrays (bounded by its depth limit, not by the input).
        within(
            "IPNS unmarshal",
            peak,
            8 * MAX_RECORD_BYTES.min(input.len()) + CBOR_NESTING_ALLOC,
            input.len(),
        )?;
        let record = match parsed {
            Ok(record) => record,
            Err(e) => return short_error("IPNS unmarshal", &e.to_string(), ERROR_MAX),
        };
        let again = IpnsRecord::unmarshal(&record.marshal());
        prop_assert_eq!(again.as_ref(), Ok(&record));
        for name in &names {
            match record.validate(name, Utc::now()) {
                Ok(()) => prop_assert!(
                    facts.contains(&(*name, record.value().to_vec(), record.sequence())),
                    "a record for {} that no sample signed validates",
                    name
                ),
                Err(e) => short_error("IPNS validate", &e.to_string(), ERROR_MAX)?,
            }
        }
        Ok(())
    });
}

/// A DHT server's Kad behaviour with a memory store, as the node's tables are built.
fn kad_table() -> kad::Behaviour<kad::store::MemoryStore> {
    let local = PeerId::random();
    let config = kad::Config::new(StreamProtocol::new("/ipfs/kad/1.0.0"));
    kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config)
}

#[test]
fn dht_records_put_to_us_and_got_from_peers() {
    let samples = ipns_samples();
    let facts = signed_facts(&samples);
    let keys: Vec<Vec<u8>> = samples.iter().map(|(n, _)| ipns::routing_key(n)).collect();
    let values: Vec<Vec<u8>> = samples.iter().map(|(_, b)| b.clone()).collect();
    let table = RefCell::new(kad_table());
    let strategy = (
        prop_oneof![8 => prop::sample::select(keys.clone()), 2 => inputs(keys.clone())],
        inputs(values.clone()),
        prop::sample::select(samples.clone()),
    );
    fuzz(
        "DHT records",
        CI_CASES,
        strategy,
        |(key, value, (name, honest))| {
            let record = kad::Record::new(key.clone(), value.clone());
            let held = |kad: &mut kad::Behaviour<kad::store::MemoryStore>| {
                use kad::store::RecordStore;
                let key = kad::RecordKey::new(&key);
                kad.store_mut().get(&key).map(|r| r.value.clone())
            };
            let mut table = table.borrow_mut();
            let before = held(&mut table);
            match accept_inbound(&mut table, record) {
                Ok(()) => {
                    let stored = held(&mut table).expect("an accepted record is stored");
                    prop_assert_eq!(&stored, &value);
                    let r = IpnsRecord::unmarshal(&stored).expect("stored record parses");
                    prop_assert!(
                        facts.iter().any(|(n, v, s)| ipns::routing_key(n) == key
                            && *v == r.value()
                            && *s == r.sequence()),
                        "a forged record was stored"
                    );
                    if let Some(before) = before.and_then(|b| IpnsRecord::unmarshal(&b).ok()) {
                        prop_assert!(r.sequence() >= before.sequence(), "the sequence went down");
                    }
                }
                Err(e) => {
                    prop_assert_eq!(
                        held(&mut table),
                        before,
                        "a refused record changed the store"
                    );
                    short_error("DHT put", &e.to_string(), ERROR_MAX)?;
                }
            }
            let (best, refused) = best_valid(&name, &[value.clone(), honest.clone()]);
            let best = best.expect("the honest record is always valid");
            prop_assert!(facts.contains(&(name, best.value().to_vec(), best.sequence())));
            for e in refused {
                short_error("DHT get", &e.to_string(), ERROR_MAX)?;
            }
            Ok(())
        },
    );
}

/// The body of a framed bitswap message (without its varint length).
fn unframed(framed: Vec<u8>) -> Vec<u8> {
    let prefix = framed
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a varint length")
        + 1;
    framed[prefix..].to_vec()
}

fn bitswap_samples() -> Vec<Vec<u8>> {
    let raw = Block::from_data(RAW, b"a block of raw bytes".to_vec()).expect("raw");
    let pb = Block::from_data(DAG_PB, vec![0x0a, 0x02, 0x08, 0x01]).expect("dag-pb");
    let entry = |cid: &Cid, want_type, cancel| Entry {
        cid: *cid,
        priority: 2_147_483_000,
        cancel,
        want_type,
        send_dont_have: true,
    };
    let message = Message {
        wantlist: vec![
            entry(raw.cid(), WantType::Have, false),
            entry(pb.cid(), WantType::Block, true),
        ],
        full: true,
        blocks: vec![
            (*raw.cid(), raw.data().to_vec()),
            (*pb.cid(), pb.data().to_vec()),
        ],
        presences: vec![
            (*raw.cid(), Presence::Have),
            (*pb.cid(), Presence::DontHave),
        ],
    };
    let v0 = Message {
        blocks: vec![(*pb.cid(), pb.data().to_vec())],
        ..Message::default()
    };
    vec![
        unframed(message.encode(Dialect::V110)),
        unframed(message.encode(Dialect::V100)),
        unframed(v0.encode(Dialect::V100)),
    ]
}

#[test]
fn bitswap_messages() {
    fuzz(
        "bitswap messages",
        CI_CASES,
        inputs(bitswap_samples()),
        |body| {
            let (decoded, peak) = peak_during(|| Message::decode(&body));
            // The blocks' bytes once, and a CID and a slot for each of at most 3 × 1,024 items.
            within(
                "bitswap decode",
                peak,
                2 * body.len() + 3 * MAX_ITEMS_PER_MESSAGE * 256 + 65_536,
                body.len(),
            )?;
            let message = match decoded {
                Ok(message) => message,
                Err(e) => return short_error("bitswap decode", &e, ERROR_MAX),
            };
            prop_assert!(message.wantlist.len() <= MAX_ITEMS_PER_MESSAGE);
            prop_assert!(message.blocks.len() <= MAX_ITEMS_PER_MESSAGE);
            prop_assert!(message.presences.len() <= MAX_ITEMS_PER_MESSAGE);
            // What we send again is what we read, but for negative priorities, sent as 0.
            let again = Message::decode(&unframed(message.encode(Dialect::V110)));
            let mut sent = message;
            for entry in &mut sent.wantlist {
                entry.priority = entry.priority.max(0);
            }
            prop_assert_eq!(
                again.as_ref(),
                Ok(&sent),
                "a decoded message does not round-trip"
            );
            Ok(())
        },
    );
}

/// A station-like folder built as `ipfs add -rw` builds it (Kubo's CIDs): small files, a folder,
/// a file of three chunks. Returns its blocks and root.
fn station_folder(dir: &Path) -> (MemoryBlocks, Cid) {
    std::fs::write(dir.join("12345.json"), br#"{"ipfsnodeid":"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA","myRELAY":"ws://127.0.0.1:7777"}"#).expect("write");
    std::fs::write(
        dir.join("x_ssh.sh"),
        b"#!/bin/bash\nipfs p2p forward /x/ssh-ID /ip4/127.0.0.1/tcp/2222 /p2p/ID\n",
    )
    .expect("write");
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("sub/a.txt"), b"a").expect("write");
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), big).expect("write");
    let mut blocks = MemoryBlocks::default();
    let added =
        unixfs::add_path(dir, &mut blocks, &FolderLimits::STATION, Hidden::Skip).expect("add");
    (blocks, added.root)
}

/// The folder's blocks plus one more (a mutated node).
struct Overlay<'a> {
    base: &'a MemoryBlocks,
    extra: Block,
}

impl BlockSource for Overlay<'_> {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        if cid.hash() == self.extra.cid().hash() {
            return Ok(Block::new(*cid, self.extra.data().to_vec())?);
        }
        self.base.get(cid).await
    }
}

#[test]
fn unixfs_nodes_read_from_blocks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = tmp.path().join("source");
    std::fs::create_dir(&source).expect("mkdir");
    let (blocks, _root) = station_folder(&source);
    let nodes: Vec<Vec<u8>> = blocks
        .blocks()
        .filter(|b| b.cid().codec() == DAG_PB)
        .map(|b| b.data().to_vec())
        .collect();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let limits = FolderLimits {
        max_bytes: 1 << 20,
        max_entries: 64,
        max_depth: 4,
        max_blocks: 64,
    };
    let paths = vec!["", "12345.json", "sub/a.txt", "big.bin", "sub"];
    let strategy = (inputs(nodes), prop::sample::select(paths.clone()));
    fuzz(
        "UnixFS/dag-pb nodes",
        FILE_CASES,
        strategy,
        |(node, path)| {
            // A node past the block bound never reaches a reader (`Block` refuses it).
            let Ok(extra) = Block::from_data(DAG_PB, node) else {
                return Ok(());
            };
            let root = *extra.cid();
            let overlay = Overlay {
                base: &blocks,
                extra,
            };
            let target = out.join("mirror");
            let (cat, fetched) = runtime.block_on(async {
                let cat = unixfs::cat_file(&overlay, &root, path, limits.max_bytes).await;
                (
                    cat,
                    unixfs::fetch_folder(&overlay, &root, &target, &limits).await,
                )
            });
            match cat {
                Ok(bytes) => prop_assert!(bytes.len() as u64 <= limits.max_bytes),
                Err(e) => short_error("UnixFS cat", &e.to_string(), ERROR_MAX)?,
            }
            match fetched {
                Ok(f) => {
                    prop_assert!(f.bytes <= limits.max_bytes && f.blocks <= limits.max_blocks);
                    prop_assert!(f.files + f.dirs <= limits.max_entries + 1);
                }
                Err(e) => short_error("UnixFS fetch", &e.to_string(), ERROR_MAX)?,
            }
            // Nothing but the mirror itself is left beside it (no temp folder of a refused read).
            for entry in std::fs::read_dir(&out).expect("read out") {
                let name = entry.expect("entry").file_name();
                prop_assert_eq!(name.to_str(), Some("mirror"), "left behind");
            }
            let _ = std::fs::remove_dir_all(&target);
            Ok(())
        },
    );
}

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

#[test]
fn kubo_api_calls_and_their_guard() {
    let queries = [
        format!("arg=/x/ssh-{PEER}&arg=/ip4/127.0.0.1/tcp/22&allow-custom-protocol=true"),
        format!("arg=%2Fp2p%2F{PEER}&count=3&n=2"),
        "arg=/ip4/127.0.0.1/tcp/4001&verbose=1&latency&direction=false".into(),
        "all=true&protocol=/x/test&listen-address=%2Fip4%2F127.0.0.1%2Ftcp%2F0&r=T".into(),
        "arg=a+b%20c%zz%&stream-channels=true&encoding=json".into(),
    ];
    let policy = Policy::new(
        &["http://localhost:3000".into(), "*".into()],
        5001,
        vec![Authorization {
            header: "Bearer secret".into(),
            allowed_paths: vec!["/api/v0/id".into()],
        }],
    );
    let paths = vec![
        "p2p/listen",
        "/swarm/connect/",
        "id",
        "ping",
        "routing/findpeer",
    ];
    let strategy = (
        texts(&queries),
        prop::sample::select(paths.clone()),
        texts(&queries),
    );
    fuzz(
        "Kubo API calls",
        CI_CASES,
        strategy,
        |(query, path, header)| {
            let (call, peak) = peak_during(|| Call::parse(path, Some(&query)));
            // The decoded pairs, the map and its strings: a few times the query.
            within(
                "Kubo API call",
                peak,
                6 * query.len() + 8 * 1024,
                query.len(),
            )?;
            prop_assert!(call.args.len() <= query.matches('&').count() + 1);
            prop_assert!(call.args.iter().all(|a| a.len() <= query.len()));
            for names in [
                &["count", "n"][..],
                &["r"],
                &["verbose", "v"],
                &["all", "a"],
            ] {
                let _ = call.option(names);
                if let Err(e) = call.flag(names) {
                    short_error("Kubo API flag", &e.message, ERROR_MAX)?;
                }
            }
            if let Err(e) = call.arg(1, "target-address") {
                short_error("Kubo API arg", &e.message, ERROR_MAX)?;
            }
            let asked = Asked {
                method: if header.len() % 3 == 0 { "POST" } else { "GET" },
                path: &format!("/api/v0/{path}"),
                origin: Some(&header),
                referer: Some(&query),
                user_agent: Some(&header),
                authorization: Some(&header),
            };
            let _ = policy.check(&asked);
            if let Some(value) = auth_header(&header) {
                prop_assert!(value.starts_with("Basic ") || value.starts_with("Bearer "));
            }
            Ok(())
        },
    );
}

#[test]
fn status_and_relay_request_heads() {
    let heads = [
        "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:7778\r\n\r\n",
        "GET /?refresh=1 HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET / HTTP/1.1\r\nAccept: application/nostr+json\r\n\r\n",
        "POST /api/status HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ];
    fuzz(
        "status and relay request heads",
        CI_CASES,
        texts(&heads),
        |head| {
            let bytes = head.as_bytes();
            let (path, peak) =
                peak_during(|| constellation::status::path_of(bytes).map(str::to_owned));
            within("status path", peak, bytes.len() + 1024, bytes.len())?;
            if let Some(path) = path {
                prop_assert!(
                    head.starts_with(&format!("GET {path}")),
                    "{path:?} is not the GET path"
                );
                prop_assert!(!path.contains('?') && !path.contains(' '));
            }
            let (_, peak) = peak_during(|| constellation::relay::http::classify(bytes));
            // The lower-cased copy and one header's values collected: linear in the head (≤ 16 KiB).
            within("relay head", peak, 8 * bytes.len() + 4096, bytes.len())?;
            Ok(())
        },
    );
}

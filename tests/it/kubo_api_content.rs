//! Issue 17, content through an independent client (aioipfs): `add`'s layout options give the
//! CIDs of Helia's importer set up as Kubo; `cat`/`get` of a 200 MiB file stream in bounded
//! memory; `key gen --type=rsa` keys are what js-libp2p derives, and their records validate there.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::Daemon;
use crate::common::net::{payload, sha256};
use crate::ipfs::{b64, js, js_script};
use crate::kubo::harness::{Kubo, KuboOptions, kubo_add};
use crate::kubo_api::{api_of, config, ipfs, ok};

/// Files and folders around a chunk boundary of `chunk` bytes, an empty file among them.
fn samples(root: &Path, chunk: usize) -> PathBuf {
    let dir = root.join("samples");
    std::fs::create_dir_all(dir.join("folder/sub/deeper")).unwrap();
    std::fs::create_dir_all(dir.join("folder/empty")).unwrap();
    let sizes = [
        ("empty", 0),
        ("one", 1),
        ("below", chunk - 1),
        ("exact", chunk),
        ("above", chunk + 1),
        ("many", 3 * chunk + 7),
    ];
    for (i, (name, len)) in sizes.iter().enumerate() {
        std::fs::write(dir.join(name), payload(*len, i as u64 + 1)).unwrap();
    }
    std::fs::write(dir.join("folder/a.txt"), b"hello\n").unwrap();
    std::fs::write(dir.join("folder/sub/b.bin"), payload(2 * chunk + 3, 42)).unwrap();
    std::fs::write(dir.join("folder/sub/deeper/z"), b"").unwrap();
    dir
}

/// (name, CID) of each top-level sample, sorted.
type Roots = Vec<(String, String)>;

/// The top-level roots of `add` (each sample by name) in one layout, ours and Helia's.
fn roots(api: &str, dir: &Path, layout: (u8, bool, usize)) -> (Roots, Roots) {
    let (version, raw, chunk) = layout;
    let mut names: Vec<String> = (std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let paths: Vec<String> = names
        .iter()
        .map(|n| dir.join(n).display().to_string())
        .collect();
    let (v, r, c) = (
        format!("cid_version={version}"),
        format!("raw_leaves={raw}"),
        format!("chunker=size-{chunk}"),
    );
    let mut op: Vec<&str> = vec!["add"];
    op.extend(paths.iter().map(String::as_str));
    op.extend(["--", "recursive=true", &v, &r, &c]);
    let events = ok(ipfs(api, None, &op));
    let ours = pick(&events, &names, |e| {
        (
            e["Name"].as_str().unwrap().to_owned(),
            e["Hash"].as_str().unwrap().to_owned(),
        )
    });
    let helia = js_script(
        "unixfs.mjs",
        &[
            "add",
            dir.to_str().unwrap(),
            &version.to_string(),
            &raw.to_string(),
            &chunk.to_string(),
            "false",
        ],
    );
    let theirs = pick(&helia["entries"], &names, |e| {
        let path = e["path"].as_str().unwrap();
        (
            path.strip_prefix("samples/").unwrap_or(path).to_owned(),
            e["cid"].as_str().unwrap().to_owned(),
        )
    });
    (ours, theirs)
}

/// The (name, cid) pairs of `entries` whose name is one of `names`, sorted.
fn pick(entries: &Value, names: &[String], each: impl Fn(&Value) -> (String, String)) -> Roots {
    let all = entries
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {entries}"));
    let mut out: Vec<_> = all
        .iter()
        .map(each)
        .filter(|(n, _)| names.contains(n))
        .collect();
    out.sort();
    out
}

#[test]
fn add_layouts_give_the_cids_of_helias_importer_set_up_as_kubo() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&config("none"), &[]);
    let api = api_of(&daemon);
    // (cid-version, raw leaves, chunk bytes): Kubo's `--cid-version=1` alone means raw leaves.
    for layout in [
        (1, true, 262_144),
        (0, true, 262_144),
        (1, false, 1024),
        (0, false, 1000),
        (1, true, 4096),
    ] {
        let dir = samples(&tmp.path().join(format!("{layout:?}")), layout.2);
        let (ours, theirs) = roots(&api, &dir, layout);
        assert_eq!(ours.len(), 7, "{ours:?}");
        assert_eq!(ours, theirs, "layout {layout:?}");
    }
    let file = tmp.path().join("x");
    std::fs::write(&file, b"x").unwrap();
    let x = file.to_str().unwrap();
    let implied = ok(ipfs(&api, None, &["add", x, "--", "cid_version=1"]));
    assert_eq!(
        implied[0]["Hash"], "bafkreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe",
        "CIDv1 alone means raw leaves, as Kubo (the CID is Helia's for the raw block)"
    );
    for (option, needle) in [
        ("trickle=true", "--trickle"),
        ("hash=sha3-256", "--hash=sha3-256"),
        ("chunker=rabin-262144", "size-N"),
        ("chunker=size-0", "greater than 0"),
        ("chunker=size-2097152", "maximum chunk size"),
    ] {
        let refused = ipfs(&api, None, &["add", x, "--", option]);
        let message = refused["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{option}: {refused}");
    }
}

#[test]
fn only_hash_keeps_no_block_and_pin_false_keeps_blocks_unpinned() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&config("none"), &[]);
    let api = api_of(&daemon);
    let file = tmp.path().join("f");
    std::fs::write(&file, payload(300_000, 5)).unwrap();
    let f = file.to_str().unwrap();
    let objects = |api: &str| {
        ok(ipfs(api, None, &["repo_stat"]))["NumObjects"]
            .as_u64()
            .unwrap()
    };
    let before = objects(&api);
    let hashed = ok(ipfs(&api, None, &["add", f, "--", "only_hash=true"]));
    let cid = hashed[0]["Hash"].as_str().unwrap().to_owned();
    assert_eq!(objects(&api), before, "--only-hash stores nothing");
    let pins = ok(ipfs(&api, None, &["pin_ls"]));
    assert!(pins["Keys"].get(&cid).is_none(), "{pins}");
    let added = ok(ipfs(&api, None, &["add", f, "--", "pin=false"]));
    assert_eq!(added[0]["Hash"], cid.as_str(), "same CID either way");
    assert_eq!(objects(&api), before + 3, "two leaves and their root");
    let pins = ok(ipfs(&api, None, &["pin_ls"]));
    assert!(pins["Keys"].get(&cid).is_none(), "--pin=false: {pins}");
}

/// `VmHWM` (peak resident memory) of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `POST /api/v0/cat?arg=<cid>` through curl, hashed as it arrives: (bytes, sha256).
fn curl_cat_hashed(api: &str, cid: &str) -> (u64, String) {
    let port = api.rsplit('/').next().unwrap();
    let mut child = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "600", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}/api/v0/cat?arg={cid}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut hasher, mut buf, mut total) = (Sha256::new(), vec![0u8; 1 << 16], 0u64);
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    assert!(child.wait().unwrap().success());
    (total, hex::encode(hasher.finalize()))
}

fn cat_range(api: &str, cid: &str, offset: u64, length: u64) -> Vec<u8> {
    let (o, l) = (offset.to_string(), length.to_string());
    hex::decode(ok(ipfs(api, None, &["cat", cid, &o, &l])).as_str().unwrap()).unwrap()
}

#[test]
fn a_200_mib_file_from_kubo_is_cat_and_get_streamed_in_bounded_memory() {
    const LEN: usize = 200 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.bin");
    let bytes = payload(LEN, 7);
    std::fs::write(&file, &bytes).unwrap();
    let repo = tmp.path().join("repo");
    let cid = kubo_add(&repo, &[&file], false).remove(0);
    let kubo = Kubo::start(KuboOptions {
        repo: Some(&repo),
        ..Default::default()
    });
    let daemon = Daemon::start_with_config(&config("none"), &[]);
    let api = api_of(&daemon);
    ok(ipfs(&api, None, &["swarm_connect", &kubo.addr()]));
    let before = peak_kib(daemon.pid());

    let (len, digest) = curl_cat_hashed(&api, &cid);
    assert_eq!(
        (len, digest),
        (LEN as u64, sha256(&bytes)),
        "Kubo log:\n{}",
        kubo.log()
    );
    let grown = peak_kib(daemon.pid()).saturating_sub(before);
    eprintln!("cat of 200 MiB: the daemon's peak RSS grew by {grown} KiB (from {before} KiB)");
    assert!(
        grown < 64 * 1024,
        "the daemon's peak memory grew by {grown} KiB for a 200 MiB cat"
    );

    let chunk = 262_144u64;
    for (offset, length) in [
        (chunk - 3, 10),
        (5 * chunk, chunk + 1),
        (LEN as u64 - 4, 100),
        (LEN as u64 + 1, 5),
    ] {
        let start = (offset as usize).min(LEN);
        let end = (start + length as usize).min(LEN);
        assert_eq!(
            cat_range(&api, &cid, offset, length),
            bytes[start..end],
            "offset {offset} length {length}"
        );
    }

    let out = tmp.path().join("got");
    std::fs::create_dir(&out).unwrap();
    ok(ipfs(
        &api,
        None,
        &["get", &format!("/ipfs/{cid}"), out.to_str().unwrap()],
    ));
    let got = std::fs::read(out.join(&cid)).unwrap();
    assert_eq!(
        sha256(&got),
        sha256(&bytes),
        "`get` of one file: the same bytes in its tar"
    );
    let grown = peak_kib(daemon.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the daemon's peak memory grew by {grown} KiB with `get`"
    );
}

#[test]
fn an_rsa_key_made_here_has_the_id_js_libp2p_derives_and_its_record_validates_in_npm_ipns() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&config("none"), &[]);
    let api = api_of(&daemon);
    let made = ok(ipfs(&api, None, &["key_gen", "old", "rsa", "2048"]));
    let id = made["Id"].as_str().unwrap().to_owned();
    // `key_old`: boxo's base32 of the name. js-libp2p reads the file and derives the id.
    let key = std::fs::read(daemon.home.join("keystore/key_n5wgi")).unwrap();
    let derived = js(&["peerid", &b64(&key)]);
    let peer: libp2p::PeerId = derived["peer_id"].as_str().unwrap().parse().unwrap();
    assert!(
        peer.to_base58().starts_with("Qm"),
        "an RSA PeerID: {derived}"
    );
    let k51 = constellation::ipfs::ipns::name_cid(&peer)
        .to_string_of_base(cid::multibase::Base::Base36Lower)
        .unwrap();
    assert_eq!(
        id, k51,
        "Kubo's `key gen` prints the k51 of the PeerID js derives"
    );
    let b58 = ok(ipfs(&api, None, &["key_list"]));
    assert!(
        b58["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["Id"] == id.as_str()),
        "{b58}"
    );
    let refused = ipfs(&api, None, &["key_gen", "small", "rsa", "1024"]);
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains(">= 2048"),
        "{refused}"
    );

    let file = tmp.path().join("moats");
    std::fs::write(&file, b"20261202").unwrap();
    let cid = ok(ipfs(&api, None, &["add", file.to_str().unwrap()]))[0]["Hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let value = format!("/ipfs/{cid}");
    let published = ok(ipfs(
        &api,
        None,
        &["name_publish", &value, "key=old", "allow_offline=true"],
    ));
    assert_eq!(published["Name"], id.as_str());
    let resolved = ok(ipfs(&api, None, &["name_resolve", &format!("/ipns/{id}")]));
    assert_eq!(resolved["Path"], value.as_str());
    let record = std::fs::read(daemon.home.join(format!("ipns/{peer}.ipns"))).unwrap();
    let checked = js(&["validate", &peer.to_string(), &b64(&record)]);
    assert_eq!(
        (checked["ok"].as_bool(), checked["value"].as_str()),
        (Some(true), Some(value.as_str())),
        "{checked}"
    );
}

/// The CIDv1 (raw) of a CID's multihash: how Kubo's `repo gc` names every block it removes.
fn gc_key(cid: &str) -> String {
    let cid: cid::Cid = cid.parse().unwrap();
    cid::Cid::new_v1(0x55, *cid.hash()).to_string()
}

#[test]
fn repo_gc_removes_what_no_pin_reaches_and_keeps_our_published_folder() {
    use crate::swarm_map::{start_station, station_config};
    let tmp = tempfile::tempdir().unwrap();
    let api_config = "[kubo_api]\nenabled = true\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n";
    let s = start_station(tmp.path(), "s", &station_config(None, api_config), None);
    let api = api_of(&s.daemon);
    let own = format!("/ipns/{}", s.id());
    let mut folder = Value::Null;
    let published = crate::common::wait_until(std::time::Duration::from_secs(60), || {
        folder = ipfs(&api, None, &["name_resolve", &own]);
        folder["result"]["Path"].is_string()
    });
    assert!(published, "our folder is published: {folder}");
    let folder = folder["result"]["Path"].as_str().unwrap().to_owned();

    let add = |name: &str, len: usize, seed: u64, pin: &str| {
        let file = tmp.path().join(name);
        std::fs::write(&file, payload(len, seed)).unwrap();
        let added = ok(ipfs(
            &api,
            None,
            &["add", file.to_str().unwrap(), "--", pin],
        ));
        added[0]["Hash"].as_str().unwrap().to_owned()
    };
    let pinned = add("pinned", 600_000, 1, "pin=true");
    let loose = add("loose", 300_000, 2, "pin=false");
    let unpinned = add("unpinned", 300_000, 3, "pin=true");
    ok(ipfs(&api, None, &["pin_rm", &unpinned]));
    let objects = |api: &str| {
        ok(ipfs(api, None, &["repo_stat"]))["NumObjects"]
            .as_u64()
            .unwrap()
    };
    let before = objects(&api);

    let removed = ok(ipfs(&api, None, &["repo_gc"]));
    let keys: Vec<&str> = (removed.as_array().unwrap().iter())
        .map(|e| e["Key"]["/"].as_str().unwrap_or_else(|| panic!("{e}")))
        .collect();
    assert_eq!(
        keys.len(),
        6,
        "two leaves and a root of each unpinned file: {removed}"
    );
    for root in [&loose, &unpinned] {
        assert!(
            keys.contains(&gc_key(root).as_str()),
            "{root} removed: {keys:?}"
        );
    }
    assert!(!keys.contains(&gc_key(&pinned).as_str()));
    assert!(
        keys.iter().all(|k| k.starts_with("bafkrei")),
        "Kubo's keys: {keys:?}"
    );
    assert_eq!(objects(&api), before - 6);

    let bytes = hex::decode(ok(ipfs(&api, None, &["cat", &pinned])).as_str().unwrap()).unwrap();
    assert_eq!(
        sha256(&bytes),
        sha256(&payload(600_000, 1)),
        "the pinned file is whole"
    );
    let station = ok(ipfs(&api, None, &["cat", &format!("{folder}/12345.json")]));
    assert!(
        !station.as_str().unwrap().is_empty(),
        "our published folder survived"
    );
    let gone = ipfs(&api, None, &["cat", &loose]);
    assert!(
        gone.get("error").is_some(),
        "an unpinned file is gone: {gone}"
    );
    let again = ok(ipfs(&api, None, &["repo_gc"]));
    assert_eq!(again, serde_json::json!([]), "nothing more to collect");
}

//! Issue 17, the IPFS endpoints of the Kubo RPC API through an independent client (aioipfs):
//! `add -rwq` gives libkubo's CIDs, `cat`/`get`/`ls` read them back, pins survive a restart,
//! names publish and resolve (a second daemon through the DHT), keys made by openssl import.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::net::{payload, sha256};
use crate::common::{self, Daemon, wait_until};
use crate::kubo::harness::kubo_add;
use crate::kubo_api::{api_of, config, ipfs, ok};

/// A station folder: the files `_12345.sh` publishes, a file of three chunks, a nested and an
/// empty folder (no hidden names: libkubo's `AddFile` would add them, `folder/*` does not).
fn station_folder(root: &Path) -> PathBuf {
    let dir = root.join("station");
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    // Nested: aioipfs sends no part for a top-level empty folder (the `ipfs` CLI does).
    std::fs::create_dir_all(dir.join("sub/empty")).unwrap();
    std::fs::write(
        dir.join("12345.json"),
        br#"{"ipfsnodeid":"12D3KooW","myRELAY":"ws://127.0.0.1:7777"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("_MySwarm.moats"), b"20261202010000000").unwrap();
    std::fs::write(dir.join("x_ssh.sh"), b"#!/bin/bash\nipfs p2p forward ...\n").unwrap();
    std::fs::write(dir.join("sub/big.bin"), payload(600 * 1024, 9)).unwrap();
    std::fs::write(dir.join("sub/deeper/note é.txt"), "unicode name").unwrap();
    dir
}

/// `ipfs add -rwq folder/*`: the folder's entries, sorted as a shell glob gives them.
fn add_rwq(api: &str, folder: &Path) -> Vec<Value> {
    let mut entries: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    entries.sort();
    let mut op: Vec<&str> = vec!["add"];
    op.extend(entries.iter().map(String::as_str));
    op.extend([
        "--",
        "recursive=true",
        "wrap_with_directory=true",
        "quiet=true",
    ]);
    ok(ipfs(api, None, &op)).as_array().unwrap().clone()
}

fn hash_of<'a>(events: &'a [Value], name: &str) -> &'a str {
    let event = events.iter().find(|e| e["Name"] == name);
    event.unwrap_or_else(|| panic!("no {name:?} in {events:?}"))["Hash"]
        .as_str()
        .unwrap()
}

fn cat(api: &str, args: &[&str]) -> Vec<u8> {
    let mut op = vec!["cat"];
    op.extend(args);
    hex::decode(ok(ipfs(api, None, &op)).as_str().unwrap()).unwrap()
}

/// Every file below `dir` (relative path, bytes) and every folder (path, None), sorted.
fn tree(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, None));
                pending.push(path);
            } else {
                out.push((rel, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn an_ipfs_client_adds_a_folder_with_kubos_cids_reads_it_back_and_pins_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = station_folder(tmp.path());
    let big = folder.join("sub/big.bin");
    let kubo = kubo_add(&tmp.path().join("repo"), &[&folder, &big], true);
    let home = common::home_with(&tmp.path().join("home"), &config("none"));
    let mut daemon = Daemon::start_in(&home, &[]);
    let api = api_of(&daemon);

    let events = add_rwq(&api, &folder);
    let root = events.last().unwrap()["Hash"].as_str().unwrap().to_owned();
    assert_eq!(events.last().unwrap()["Name"], "", "the wrapper comes last");
    assert_eq!(
        root, kubo[0],
        "`add -rwq folder/*` gives Kubo's root: {events:?}"
    );
    assert_eq!(hash_of(&events, "sub/big.bin"), kubo[1]);
    assert!(
        events.iter().any(|e| e["Name"] == "sub/empty"),
        "{events:?}"
    );

    let bytes = std::fs::read(&big).unwrap();
    let got = cat(&api, &[&format!("/ipfs/{root}/sub/big.bin")]);
    assert_eq!(sha256(&got), sha256(&bytes));
    assert_eq!(
        cat(
            &api,
            &[&format!("/ipfs/{root}/sub/big.bin"), "300000", "10"]
        ),
        bytes[300_000..300_010]
    );
    assert_eq!(
        cat(&api, &[&format!("{root}/12345.json")]),
        std::fs::read(folder.join("12345.json")).unwrap()
    );

    let out = tmp.path().join("got");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(
        ok(ipfs(
            &api,
            None,
            &["get", &format!("/ipfs/{root}"), out.to_str().unwrap()]
        )),
        true
    );
    assert_eq!(
        tree(&out.join(&root)),
        tree(&folder),
        "`get` unpacks the same tree"
    );

    let ls = ok(ipfs(&api, None, &["ls", &format!("/ipfs/{root}")]));
    let links = ls["Objects"][0]["Links"].as_array().unwrap();
    let names: Vec<(&str, u64)> = links
        .iter()
        .map(|l| (l["Name"].as_str().unwrap(), l["Type"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("12345.json", 2),
            ("_MySwarm.moats", 2),
            ("sub", 1),
            ("x_ssh.sh", 2)
        ]
    );
    assert_eq!(links[1]["Size"], 17);

    let pins = ok(ipfs(&api, None, &["pin_ls"]));
    assert_eq!(
        pins["Keys"][&root]["Type"], "recursive",
        "add pins by default: {pins}"
    );
    let stat = ok(ipfs(&api, None, &["repo_stat"]));
    assert!(
        stat["RepoSize"].as_u64().unwrap() >= bytes.len() as u64,
        "{stat}"
    );
    assert!(stat["NumObjects"].as_u64().unwrap() >= 10, "{stat}");

    daemon.stop();
    let daemon = Daemon::start_in(&home, &[]);
    let api = api_of(&daemon);
    let pins = ok(ipfs(&api, None, &["pin_ls"]));
    assert_eq!(
        pins["Keys"][&root]["Type"], "recursive",
        "the pin survived: {pins}"
    );
    assert_eq!(
        sha256(&cat(&api, &[&format!("/ipfs/{root}/sub/big.bin")])),
        sha256(&bytes)
    );
    assert_eq!(
        ok(ipfs(&api, None, &["pin_rm", &root]))["Pins"][0],
        root.as_str()
    );
    let pins = ok(ipfs(&api, None, &["pin_ls"]));
    assert!(
        pins.get("Keys").is_none_or(|k| k.get(&root).is_none()),
        "{pins}"
    );
}

#[test]
fn an_upload_above_the_bound_is_refused_with_kubos_error_shape() {
    let daemon = Daemon::start_with_config(&config("none"), &[]);
    let port: u16 = api_of(&daemon).rsplit('/').next().unwrap().parse().unwrap();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let too_big = 64 * 1024 * 1024 + 1;
    let head = format!(
        "POST /api/v0/add HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {too_big}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let body: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(
        (body["Type"].as_str(), body["Code"].as_u64()),
        (Some("error"), Some(1)),
        "{body}"
    );
    assert!(
        body["Message"].as_str().unwrap().contains("67108864"),
        "{body}"
    );
}

/// The `k51…` form Kubo prints for a PeerID (CIDv1 libp2p-key in base36).
fn k51(peer: &libp2p::PeerId) -> String {
    constellation::ipfs::ipns::name_cid(peer)
        .to_string_of_base(cid::multibase::Base::Base36Lower)
        .unwrap()
}

/// A key made by openssl (`genpkey`), and the PeerID its public key gives.
fn openssl_key(dir: &Path, algorithm: &[&str]) -> (PathBuf, libp2p::PeerId) {
    let pem = dir.join(format!("{}.pem", algorithm[0]));
    let made = Command::new("openssl")
        .arg("genpkey")
        .args(algorithm)
        .arg("-out")
        .arg(&pem)
        .status()
        .unwrap();
    assert!(made.success());
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(public.status.success());
    let spki = public.stdout;
    let key = match algorithm[1] {
        "ED25519" => {
            let raw = &spki[spki.len() - 32..];
            libp2p::identity::PublicKey::from(
                libp2p::identity::ed25519::PublicKey::try_from_bytes(raw).unwrap(),
            )
        }
        _ => libp2p::identity::PublicKey::from(
            libp2p::identity::rsa::PublicKey::try_decode_x509(&spki).unwrap(),
        ),
    };
    (pem, key.to_peer_id())
}

fn key_names(api: &str) -> Vec<(String, String)> {
    let list = ok(ipfs(api, None, &["key_list"]));
    (list["Keys"].as_array().unwrap().iter())
        .map(|k| {
            (
                k["Name"].as_str().unwrap().to_owned(),
                k["Id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn keys_made_elsewhere_import_and_names_publish_and_resolve_here_and_through_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Daemon::start_with_config(&config("dhtserver"), &[]);
    let a = Daemon::start_with_config(&config("dht"), &[]);
    let b = Daemon::start_with_config(&config("dht"), &[]);
    common::connect(&hub, &a);
    common::connect(&hub, &b);
    let (api_a, api_b) = (api_of(&a), api_of(&b));

    let swarm = ok(ipfs(&api_a, None, &["key_gen", "MySwarm_test"]));
    let me: libp2p::PeerId = a.peer_id.parse().unwrap();
    let swarm_id = swarm["Id"].as_str().unwrap().to_owned();
    assert!(swarm_id.starts_with("k51"), "{swarm}");
    let (ed_pem, ed_peer) = openssl_key(tmp.path(), &["-algorithm", "ED25519"]);
    let imported = ok(ipfs(
        &api_a,
        None,
        &[
            "key_import",
            "openssl",
            ed_pem.to_str().unwrap(),
            "pem-pkcs8-cleartext",
        ],
    ));
    assert_eq!(imported["Id"], k51(&ed_peer).as_str());
    let (rsa_pem, rsa_peer) = openssl_key(
        tmp.path(),
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let imported = ok(ipfs(
        &api_a,
        None,
        &[
            "key_import",
            "rsa",
            rsa_pem.to_str().unwrap(),
            "pem-pkcs8-cleartext",
        ],
    ));
    assert_eq!(imported["Id"], k51(&rsa_peer).as_str());
    // A key file as Kubo writes it: libp2p protobuf, in the keystore under key_<base32 name>.
    let kubo_key = libp2p::identity::Keypair::generate_ed25519();
    let file = tmp.path().join("kubo.key");
    std::fs::write(&file, kubo_key.to_protobuf_encoding().unwrap()).unwrap();
    let imported = ok(ipfs(
        &api_a,
        None,
        &["key_import", "kubo", file.to_str().unwrap()],
    ));
    assert_eq!(
        imported["Id"],
        k51(&kubo_key.public().to_peer_id()).as_str()
    );
    let stored = std::fs::read(a.home.join("keystore/key_nn2we3y")).unwrap();
    assert_eq!(
        stored,
        kubo_key.to_protobuf_encoding().unwrap(),
        "the file is Kubo's format"
    );
    let refused = ipfs(
        &api_a,
        None,
        &["key_import", "kubo", file.to_str().unwrap()],
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{refused}"
    );

    let names = key_names(&api_a);
    let expected = [
        ("self", k51(&me)),
        ("MySwarm_test", swarm_id.clone()),
        ("kubo", k51(&kubo_key.public().to_peer_id())),
        ("openssl", k51(&ed_peer)),
        ("rsa", k51(&rsa_peer)),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, i)| (n.to_string(), i.clone()))
        .collect();
    assert_eq!(names, expected);

    let file = tmp.path().join("moats");
    std::fs::write(&file, b"20261202").unwrap();
    let added = ok(ipfs(&api_a, None, &["add", file.to_str().unwrap()]));
    let cid = added[0]["Hash"].as_str().unwrap().to_owned();
    let bare = ok(ipfs(&api_a, None, &["add_bytes", "20261202"]));
    assert_eq!(
        (bare["Hash"].as_str(), bare["Name"].as_str()),
        (Some(cid.as_str()), Some(cid.as_str())),
        "stdin: named by its CID"
    );
    let value = format!("/ipfs/{cid}");
    let published = ok(ipfs(
        &api_a,
        None,
        &[
            "name_publish",
            &value,
            "key=MySwarm_test",
            "lifetime=24h",
            "ttl=30m",
            "allow_offline=true",
        ],
    ));
    assert_eq!(
        (published["Name"].as_str(), published["Value"].as_str()),
        (Some(swarm_id.as_str()), Some(value.as_str()))
    );
    let by_rsa = ok(ipfs(
        &api_a,
        None,
        &["name_publish", &value, "key=rsa", "allow_offline=true"],
    ));
    assert_eq!(by_rsa["Name"], k51(&rsa_peer).as_str());
    let resolved = ok(ipfs(
        &api_a,
        None,
        &["name_resolve", &format!("/ipns/{swarm_id}")],
    ));
    assert_eq!(resolved["Path"], value.as_str());

    let mut seen = Value::Null;
    let found = wait_until(Duration::from_secs(30), || {
        seen = ipfs(
            &api_b,
            None,
            &["name_resolve", &format!("/ipns/{swarm_id}")],
        );
        seen["result"]["Path"] == value.as_str()
    });
    assert!(
        found,
        "the second daemon resolves the name through the DHT: {seen}"
    );
    common::connect(&a, &b);
    assert_eq!(
        cat(&api_b, &[&format!("/ipns/{swarm_id}")]),
        b"20261202",
        "and fetches it over bitswap"
    );

    assert_eq!(
        ok(ipfs(&api_a, None, &["key_rm", "openssl"]))["Keys"][0]["Id"],
        k51(&ed_peer).as_str()
    );
    let renamed = ok(ipfs(&api_a, None, &["key_rename", "kubo", "kubo2"]));
    assert_eq!(
        (renamed["Now"].as_str(), renamed["Overwrite"].as_bool()),
        (Some("kubo2"), Some(false))
    );
    let names: Vec<String> = key_names(&api_a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["self", "MySwarm_test", "kubo2", "rsa"]);
    let refused = ipfs(&api_a, None, &["key_rm", "self"]);
    assert!(
        refused["error"].as_str().unwrap().contains("'self'"),
        "{refused}"
    );
}

#[test]
fn with_a_kubo_repo_keys_live_in_its_keystore_and_self_is_its_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("ipfs");
    let peer = crate::kubo_api::kubo_repo(&repo, "{}");
    let home = common::home_with(&tmp.path().join("home"), "[trigger]\nenabled = false\n");
    let daemon = Daemon::start_in(&home, &["--kubo-repo", repo.to_str().unwrap()]);
    let api = api_of(&daemon);
    let made = ok(ipfs(&api, None, &["key_gen", "MySwarm_x"]));
    // boxo's file name for "MySwarm_x": key_ + lowercase unpadded base32 (Python's b32encode).
    let file = repo.join("keystore/key_jv4vg53bojwv66a");
    let key = constellation::identity::decode_private_key(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(made["Id"], k51(&key.public().to_peer_id()).as_str());
    let names = key_names(&api);
    assert_eq!(names[0], ("self".to_string(), k51(&peer.parse().unwrap())));
    assert_eq!(names[1].0, "MySwarm_x");
    assert!(
        !home.join("keystore").exists(),
        "the repo's keystore is used, not the home's"
    );
}

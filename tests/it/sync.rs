//! Issue 5: the constellation backfill against real relays (nostr-sdk LocalRelay with NIP-77,
//! PyPI nostr-relay without it), through our daemons' tunnels, and against faulty peers.

use std::collections::BTreeSet;
use std::path::Path;

use nostr::prelude::*;

use crate::common::fake_relay::{self, Behaviour};
use crate::common::relays::{OurRelay, PyRelay, contacts, ids, note, now, publish};
use crate::common::{self, Daemon};

/// Run `constellation backfill --json …` on `home`; returns (exit code, stats JSON).
fn backfill(home: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["backfill", "--json"];
    all.extend_from_slice(args);
    // No test reaches the public fallback relays.
    if !args.contains(&"--fallback-relay") && !args.contains(&"--no-fallback") {
        all.push("--no-fallback");
    }
    let out = common::cli(home, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stats = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "backfill printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), stats)
}

/// `backfill` with `--zen ZEN`, a `--peer` per peer, then `extra` (`--days` is 1 by default).
fn sync(home: &Path, zen: &str, peers: &[&str], extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--zen", zen];
    for peer in peers {
        args.extend(["--peer", peer]);
    }
    args.extend_from_slice(extra);
    backfill(home, &args)
}

/// A home whose backfills use the embedded store (its relay address is one nothing listens on,
/// so no relay on this machine's 127.0.0.1:7777 is picked up instead).
fn embedded_home(home: &Path) -> std::path::PathBuf {
    let unused = crate::common::net::free_port();
    common::home_with(home, &format!("[relay]\nlisten = \"127.0.0.1:{unused}\"\n"))
}

/// Ids in the embedded store of `home`.
fn stored(home: &Path) -> BTreeSet<EventId> {
    crate::common::relays::stored_ids(&home.join("relay.sqlite"))
}

fn all_ids(events: &[&Event]) -> BTreeSet<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// A LocalRelay holding `n` notes ("`label` i") of a new author, one a second, the newest `age`
/// seconds old.
fn seeded(label: &str, n: u64, age: u64) -> (PyRelay, Keys, Vec<Event>) {
    let relay = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    let events: Vec<Event> = (0..n)
        .map(|i| note(&keys, &format!("{label} {i}"), now() - age - i))
        .collect();
    publish(&relay.url, &events);
    (relay, keys, events)
}

/// A zen folder whose MULTIPASS accounts are `keys`.
fn zen_with_accounts(dir: &Path, keys: &[&Keys]) -> String {
    for (i, k) in keys.iter().enumerate() {
        let account = dir.join(format!("game/nostr/user{i}@test"));
        std::fs::create_dir_all(&account).unwrap();
        std::fs::write(account.join("HEX"), k.public_key().to_hex()).unwrap();
    }
    dir.to_string_lossy().into_owned()
}

#[test]
fn nip77_pulls_what_we_lack_and_pushes_what_the_peer_lacks() {
    let local = PyRelay::start("localrelay", 0);
    let peer = PyRelay::start("localrelay", 0);
    let (ka, kb) = (Keys::generate(), Keys::generate());
    let t = now() - 100;
    let (a1, a2) = (note(&ka, "one", t), note(&ka, "two", t + 1));
    let (b3, b4) = (note(&kb, "three", t + 2), note(&kb, "four", t + 3));
    publish(&local.url, &[a1.clone(), a2.clone()]);
    publish(&peer.url, &[b3.clone(), b4.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let zen = tmp.path().join("zen");
    let zen = zen.to_str().unwrap();
    let home = tmp.path().join("home");

    let (code, stats) = sync(
        &home,
        zen,
        &[peer.url.as_str()],
        &["--local-relay", local.url.as_str(), "--days", "0"],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["peers"][0]["mode"], "nip77");
    assert_eq!(stats["imported"], 2);
    assert_eq!(stats["uploaded"], 2);
    let everything = all_ids(&[&a1, &a2, &b3, &b4]);
    assert_eq!(
        ids(&local.url, Filter::new().kind(Kind::TextNote)),
        everything
    );
    assert_eq!(
        ids(&peer.url, Filter::new().kind(Kind::TextNote)),
        everything
    );

    // The next hour: nothing new is still a success, and nothing moves.
    let (code, stats) = sync(
        &home,
        zen,
        &[peer.url.as_str()],
        &["--local-relay", local.url.as_str(), "--days", "0"],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        (stats["imported"].as_u64(), stats["uploaded"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        stats["status"],
        serde_json::Value::Null,
        "status is computed, not stored"
    );
}

#[test]
fn req_paging_brings_all_2000_events_behind_a_500_cap_including_600_in_one_second() {
    let peer = PyRelay::start("nostr-relay", 500);
    let authors: Vec<Keys> = (0..10).map(|_| Keys::generate()).collect();
    let base = now() - 3600;
    let mut events = Vec::new();
    for i in 0..2000u64 {
        let keys = &authors[(i % 10) as usize];
        // 600 events share one second; the rest spread over the last hour.
        let at = if i < 600 { base } else { base + 1 + (i % 1800) };
        events.push(note(keys, &format!("event {i}"), at));
    }
    publish(&peer.url, &events);
    let tmp = tempfile::tempdir().unwrap();
    let zen = zen_with_accounts(&tmp.path().join("zen"), &authors.iter().collect::<Vec<_>>());
    let home = embedded_home(&tmp.path().join("home"));
    let (code, stats) = sync(&home, &zen, &[peer.url.as_str()], &["--no-profiles"]);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["peers"][0]["mode"], "req");
    assert_eq!(stats["imported"], 2000, "{stats}");
    assert_eq!(stats["truncated_windows"], 0);
    let expected: BTreeSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(stored(&home), expected);
}

#[test]
fn friends_of_friends_events_arrive_by_n_squared() {
    let (la, lb, lc) = (
        PyRelay::start("localrelay", 0),
        PyRelay::start("localrelay", 0),
        PyRelay::start("localrelay", 0),
    );
    let (ka, kb, kc, stranger) = (
        Keys::generate(),
        Keys::generate(),
        Keys::generate(),
        Keys::generate(),
    );
    let t = now() - 600;
    publish(&la.url, &[contacts(&ka, &[kb.public_key()], t)]);
    publish(
        &lb.url,
        &[contacts(&kb, &[kc.public_key()], t), note(&kb, "from b", t)],
    );
    let c_note = note(&kc, "from c, a friend of a friend", t + 5);
    let stray = note(&stranger, "nobody follows me", t + 6);
    publish(&lc.url, &[c_note.clone(), stray.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let zen = zen_with_accounts(&tmp.path().join("zen"), &[&ka]);
    // amisOfAmis.txt belongs to Astroport's other jobs: read, never rewritten.
    let amis_path = Path::new(&zen).join("strfry/amisOfAmis.txt");
    let theirs = format!("{}\n\n", Keys::generate().public_key().to_hex());
    std::fs::create_dir_all(amis_path.parent().unwrap()).unwrap();
    std::fs::write(&amis_path, &theirs).unwrap();
    let (code, stats) = sync(
        &tmp.path().join("home"),
        &zen,
        &[lb.url.as_str(), lc.url.as_str()],
        &["--local-relay", la.url.as_str()],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["sources"]["amis"], 1, "{stats}");
    assert_eq!(stats["authors"], 4);
    assert_eq!(stats["discovered"], 2);
    let on_a = ids(&la.url, Filter::new().kind(Kind::TextNote));
    assert!(on_a.contains(&c_note.id), "friend-of-friend note missing");
    assert!(
        !on_a.contains(&stray.id),
        "a stranger's note must not be pulled"
    );
    assert_eq!(std::fs::read_to_string(&amis_path).unwrap(), theirs);
    let n2 = std::fs::read_to_string(Path::new(&zen).join("strfry/constellation-n2.txt")).unwrap();
    assert_eq!(n2.lines().count(), 4);
    assert!(n2.contains(&kc.public_key().to_hex()));
}

#[test]
fn bad_events_are_rejected_and_counted_and_the_run_succeeds() {
    let keys = Keys::generate();
    let good = note(&keys, "fine", now() - 10);
    let mut forged: serde_json::Value =
        serde_json::from_str(&note(&keys, "forged", now() - 11).as_json()).unwrap();
    forged["content"] = "tampered".into();
    let spam = note(&keys, "Hello NOSTR visitor. Buy now", now() - 12);
    let big = note(&keys, &"x".repeat(70_000), now() - 13);
    let served = vec![
        good.as_json(),
        forged.to_string(),
        r#"{"id":"nope"}"#.to_string(),
        spam.as_json(),
        big.as_json(),
    ];
    let peer = fake_relay::start(Behaviour::Serve(served));
    let local = PyRelay::start("localrelay", 0);
    let tmp = tempfile::tempdir().unwrap();
    let zen = tmp.path().join("zen");
    let (code, stats) = sync(
        &tmp.path().join("home"),
        zen.to_str().unwrap(),
        &[peer.as_str()],
        &["--local-relay", local.url.as_str()],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["peers"][0]["mode"], "req");
    assert_eq!(stats["imported"], 1);
    assert_eq!(stats["rejected"]["invalid signature"], 1);
    assert_eq!(stats["rejected"]["spam"], 1);
    assert_eq!(stats["rejected"]["too large"], 1);
    assert_eq!(
        ids(&local.url, Filter::new().kind(Kind::TextNote)),
        BTreeSet::from([good.id])
    );
}

#[test]
fn a_relay_that_never_sends_eose_times_out_and_the_others_still_sync() {
    let silent = fake_relay::start(Behaviour::Silent);
    let peer = PyRelay::start("localrelay", 0);
    let local = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    let e = note(&keys, "hello", now() - 5);
    publish(&peer.url, std::slice::from_ref(&e));
    let tmp = tempfile::tempdir().unwrap();
    let zen = tmp.path().join("zen");
    let started = std::time::Instant::now();
    let (code, stats) = sync(
        &tmp.path().join("home"),
        zen.to_str().unwrap(),
        &[silent.as_str(), peer.url.as_str()],
        &["--local-relay", local.url.as_str(), "--idle-timeout", "1"],
    );
    assert_eq!(code, 2, "partial run exits 2: {stats}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let failed = stats["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == silent.as_str())
        .unwrap();
    assert_eq!(failed["ok"], false);
    assert!(
        failed["error"].as_str().unwrap().contains("timed out"),
        "{failed}"
    );
    assert!(ids(&local.url, Filter::new().kind(Kind::TextNote)).contains(&e.id));
}

#[test]
fn malformed_station_files_are_skipped_with_a_reason() {
    let relay = PyRelay::start("localrelay", 0);
    let local = PyRelay::start("localrelay", 0);
    let (a, b) = (Daemon::start(&[]), Daemon::start(&[]));
    b.cli_ok(&[
        "p2p",
        "listen",
        &format!("/x/strfry-{}", b.peer_id),
        &format!("/ip4/127.0.0.1/tcp/{}", relay.port()),
    ]);
    common::connect(&b, &a);
    let keys = Keys::generate();
    let e = note(&keys, "from a good station", now() - 5);
    publish(&relay.url, std::slice::from_ref(&e));
    let tmp = tempfile::tempdir().unwrap();
    let swarm = tmp.path().join("swarm");
    let good = swarm.join(&b.peer_id);
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(
        good.join("12345.json"),
        format!(
            r#"{{"ipfsnodeid":"{}","myRELAY":"ws://127.0.0.1:7777"}}"#,
            b.peer_id
        ),
    )
    .unwrap();
    std::fs::write(good.join("x_strfry.sh"), "#!/bin/bash\n").unwrap();
    for (name, content) in [
        ("garbage", "{ this is not json"),
        (
            "evil",
            r#"{"ipfsnodeid":"../../etc/passwd","myRELAY":"wss://x.example"}"#,
        ),
    ] {
        std::fs::create_dir_all(swarm.join(name)).unwrap();
        std::fs::write(swarm.join(name).join("12345.json"), content).unwrap();
    }
    let zen = tmp.path().join("zen");
    let (code, stats) = sync(
        &a.home,
        zen.to_str().unwrap(),
        &[],
        &[
            "--local-relay",
            local.url.as_str(),
            "--swarm-dir",
            swarm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["peers_contacted"], 1);
    let skipped: Vec<&str> = stats["skipped_peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("garbage") && s.contains("not valid JSON"))
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("evil") && s.contains("is not a PeerID"))
    );
    assert!(ids(&local.url, Filter::new().kind(Kind::TextNote)).contains(&e.id));
}

/// The seed's picture: stations A, B, C (our daemons, embedded relays served on their
/// `/x/strfry-<id>` protocol) holding events 1–2, 3–4 and 5–6. Returns them and the six ids.
fn seed_picture() -> (Vec<Daemon>, BTreeSet<EventId>) {
    // Three stations, each a daemon with its embedded relay, reachable only through its tunnel.
    let daemons = vec![
        Daemon::start(&["--relay-listen", "127.0.0.1:0"]),
        Daemon::start(&["--relay-listen", "127.0.0.1:0"]),
        Daemon::start(&["--relay-listen", "127.0.0.1:0"]),
    ];
    let keys: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let t = now() - 300;
    let mut all = BTreeSet::new();
    for (i, daemon) in daemons.iter().enumerate() {
        let events = [
            note(&keys[i], &format!("event {}", 2 * i + 1), t),
            note(&keys[i], &format!("event {}", 2 * i + 2), t + 1),
        ];
        all.extend(events.iter().map(|e| e.id));
        let url = relay_url(daemon);
        publish(&url, &events);
        let port = url.rsplit(':').next().unwrap();
        daemon.cli_ok(&[
            "p2p",
            "listen",
            &format!("/x/strfry-{}", daemon.peer_id),
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ]);
    }
    (daemons, all)
}

#[test]
fn the_seed_picture_converges_through_daemon_tunnels_in_one_backfill() {
    let (daemons, all) = seed_picture();
    // A knows B and C as stations whose relay is only on their loopback.
    let tmp = tempfile::tempdir().unwrap();
    let swarm = tmp.path().join("swarm");
    for d in &daemons[1..] {
        station_file(&swarm, &d.peer_id, "ws://127.0.0.1:7777");
        common::connect(d, &daemons[0]);
    }
    let zen = tmp.path().join("zen");
    let args = [
        "--swarm-dir",
        swarm.to_str().unwrap(),
        "--days",
        "1",
        "--zen",
        zen.to_str().unwrap(),
    ];
    let (code, stats) = backfill(&daemons[0].home, &args);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["peers_ok"], 2);
    assert_eq!(stats["imported"], 4, "{stats}");
    // B lacks 1, 2, 5, 6 and C lacks 1-4: A uploads them (NIP-77 both ways, third parties' too).
    assert_eq!(stats["uploaded"], 8, "{stats}");
    for daemon in &daemons {
        assert_eq!(
            ids(&relay_url(daemon), Filter::new().kind(Kind::TextNote)),
            all,
            "{} lacks events",
            daemon.peer_id
        );
    }
    // B's own hourly run then finds nothing new, and that is a success.
    let swarm_b = tmp.path().join("swarm-b");
    station_file(&swarm_b, &daemons[0].peer_id, "ws://127.0.0.1:7777");
    let (code, stats) = sync(
        &daemons[1].home,
        zen.to_str().unwrap(),
        &[],
        &["--swarm-dir", swarm_b.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        (stats["peers_ok"].as_u64(), stats["imported"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
}

#[test]
fn the_seed_picture_converges_with_one_download_only_backfill_on_each_station() {
    let (daemons, all) = seed_picture();
    for (i, a) in daemons.iter().enumerate() {
        for b in &daemons[i + 1..] {
            common::connect(a, b);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let zen = tmp.path().join("zen");
    for (i, station) in daemons.iter().enumerate() {
        let swarm = tmp.path().join(format!("swarm-{i}"));
        for (j, other) in daemons.iter().enumerate() {
            if j != i {
                station_file(&swarm, &other.peer_id, "ws://127.0.0.1:7777");
            }
        }
        let (code, stats) = sync(
            &station.home,
            zen.to_str().unwrap(),
            &[],
            &["--swarm-dir", swarm.to_str().unwrap(), "--no-upload"],
        );
        assert_eq!(code, 0, "{stats}");
        // Each lacks the four events of the others (A's run gave B nothing: no upload).
        assert_eq!(
            (stats["imported"].as_u64(), stats["uploaded"].as_u64()),
            (Some(4), Some(0)),
            "station {i}: {stats}"
        );
        assert_eq!(
            ids(&relay_url(station), Filter::new().kind(Kind::TextNote)),
            all
        );
    }
}

/// The embedded relay's URL from a daemon's ready line.
fn relay_url(daemon: &Daemon) -> String {
    daemon.ready["relay"]
        .as_str()
        .expect("daemon runs its relay")
        .to_owned()
}

/// `<swarm>/<peer>/12345.json` (and the `x_strfry.sh` that marks a tunnelled relay).
fn station_file(swarm: &Path, peer: &str, relay: &str) {
    let dir = swarm.join(peer);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("12345.json"),
        format!(r#"{{"ipfsnodeid":"{peer}","myRELAY":"{relay}"}}"#),
    )
    .unwrap();
    std::fs::write(dir.join("x_strfry.sh"), "#!/bin/bash\n").unwrap();
}

#[test]
fn a_relay_behind_a_real_kubo_tunnel_is_synced_through_our_node() {
    use crate::kubo::harness::{Kubo, KuboOptions};
    let (relay, _, events) = seeded("behind kubo", 30, 100);
    let kubo = Kubo::start(KuboOptions::default());
    kubo.listen(&format!("/x/strfry-{}", kubo.peer_id), relay.port());
    let ours = Daemon::start(&["--relay-listen", "127.0.0.1:0"]);
    ours.cli_ok(&["swarm", "connect", &kubo.addr()]);
    let tmp = tempfile::tempdir().unwrap();
    let swarm = tmp.path().join("swarm");
    station_file(&swarm, &kubo.peer_id, "ws://127.0.0.1:7777");
    let zen = tmp.path().join("zen");
    let (code, stats) = sync(
        &ours.home,
        zen.to_str().unwrap(),
        &[],
        &["--swarm-dir", swarm.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        stats["peers"][0]["endpoint"]
            .as_str()
            .map(|e| e.contains("/x/strfry-")),
        Some(true),
        "{stats}"
    );
    assert_eq!(
        ids(&relay_url(&ours), Filter::new().kind(Kind::TextNote)),
        events.iter().map(|e| e.id).collect::<BTreeSet<_>>()
    );
}

#[test]
fn a_deleted_event_is_not_resurrected_by_a_peer_that_still_holds_it() {
    let peer = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    let kept = note(&keys, "kept", now() - 50);
    let gone = note(&keys, "deleted here", now() - 40);
    publish(&peer.url, &[kept.clone(), gone.clone()]);
    let station = Daemon::start(&["--relay-listen", "127.0.0.1:0"]);
    let deletion = EventBuilder::new(Kind::EventDeletion, "")
        .tags([Tag::event(gone.id)])
        .custom_created_at(Timestamp::from(now() - 30))
        .finalize(&keys)
        .unwrap();
    publish(&relay_url(&station), std::slice::from_ref(&deletion));
    let tmp = tempfile::tempdir().unwrap();
    let zen = zen_with_accounts(&tmp.path().join("zen"), &[&keys]);
    let (code, stats) = sync(
        &station.home,
        &zen,
        &[peer.url.as_str()],
        &["--no-profiles"],
    );
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["rejected"]["deleted"], 1, "{stats}");
    let local = ids(&relay_url(&station), Filter::new());
    assert!(local.contains(&kept.id) && local.contains(&deletion.id));
    assert!(!local.contains(&gone.id), "the deleted event came back");
    // The deletion went up to the peer too.
    assert!(ids(&peer.url, Filter::new().kind(Kind::EventDeletion)).contains(&deletion.id));
}

#[test]
fn a_peer_killed_mid_sync_is_reported_and_what_was_imported_stays() {
    let (healthy, keys, good) = seeded("healthy", 20, 60);
    let partial: Vec<String> = (0..5)
        .map(|i| note(&keys, &format!("dying {i}"), now() - 200 - i).as_json())
        .collect();
    let dying = fake_relay::start(Behaviour::Die(partial));
    let tmp = tempfile::tempdir().unwrap();
    let home = embedded_home(&tmp.path().join("home"));
    let zen = zen_with_accounts(&tmp.path().join("zen"), &[&keys]);
    let (code, stats) = sync(
        &home,
        &zen,
        &[healthy.url.as_str(), dying.as_str()],
        &["--no-profiles", "--idle-timeout", "3"],
    );
    assert_eq!(code, 2, "partial run: {stats}");
    assert_eq!(
        (stats["peers_ok"].as_u64(), stats["peers_failed"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    let failed = stats["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ok"] == false)
        .unwrap();
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    let stored = stored(&home);
    for e in &good {
        assert!(stored.contains(&e.id), "an imported event was lost");
    }
}

#[test]
fn an_import_command_stores_like_strfry_import_and_only_what_the_relay_then_holds_counts() {
    // The station's relay is our relay process; its "strfry import" is `constellation relay
    // import` on the same database, a separate process fed JSON lines, as strfry's would be.
    let local = OurRelay::start("");
    let (peer, keys, events) = seeded("imported", 40, 460);
    publish(&local.url, &events[..5]);
    let tmp = tempfile::tempdir().unwrap();
    let zen = zen_with_accounts(&tmp.path().join("zen"), &[&keys]);
    let import = format!(
        "'{}' relay --db '{}' import",
        common::bin(),
        local.db.display()
    );
    let run = |home: &Path, command: &str| {
        sync(
            home,
            &zen,
            &[peer.url.as_str()],
            &[
                "--local-relay",
                local.url.as_str(),
                "--import-command",
                command,
                "--no-profiles",
            ],
        )
    };
    let home = tmp.path().join("home");
    let (code, stats) = run(&home, &import);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["imported"], 35, "{stats}");
    assert_eq!(
        local.stored_ids(),
        all_ids(&events.iter().collect::<Vec<_>>())
    );

    // A command that fails, and one that exits 0 but stores nothing (writing elsewhere): the peer
    // fails with the reason, nothing counts, nothing is remembered as refused, and the next run
    // with the real command brings the events.
    for (n, command, reasons) in [
        (
            3,
            "echo 'database is locked' >&2; exit 7",
            &["exit status: 7", "database is locked"][..],
        ),
        (2, "cat > /dev/null", &["holds none of the 2 events"][..]),
    ] {
        let new: Vec<Event> = (0..n)
            .map(|i| note(&keys, &format!("{command} {i}"), now() - 100 + i))
            .collect();
        publish(&peer.url, &new);
        let (code, stats) = run(&home, command);
        assert_eq!((code, stats["imported"].as_u64()), (2, Some(0)), "{stats}");
        let error = stats["peers"][0]["error"].as_str().unwrap_or_default();
        assert!(reasons.iter().all(|r| error.contains(r)), "{stats}");
        let missing = all_ids(&new.iter().collect::<Vec<_>>());
        assert!(local.stored_ids().is_disjoint(&missing));
        let (code, stats) = run(&home, &import);
        assert_eq!((code, stats["imported"].as_u64()), (0, Some(n)), "{stats}");
        assert!(local.stored_ids().is_superset(&missing));
    }
}

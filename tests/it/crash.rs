//! Crash injection: `kill -9` of the daemon (and of a backfill importing into its relay) at a
//! random moment while clients publish and `--persist` tunnels are added, round after round.
//! After each kill nothing acknowledged is lost. 50 kills, as the issue asks (`CRASH_KILLS=N`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::prelude::*;
use rand::Rng;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::fake_relay::{self, Behaviour};
use crate::common::net::free_port;
use crate::common::relays::{self, runtime, stored_ids};
use crate::common::{self, Daemon};
use crate::relay::signed;

/// Kills in CI, as the issue asks: 50 took 58 s here (debug build, load average 9 on 2 cores),
/// within the minute a CI test may take. `CRASH_KILLS` sets another count.
const CI_KILLS: usize = 50;
/// The kill comes this long after the daemon is ready, at random: from the first acks to the
/// middle of a backfill.
const KILL_AFTER_MS: std::ops::Range<u64> = 200..1_500;
/// Events the backfill's peer serves (the backfill imports them into the daemon's relay).
const PEER_EVENTS: u64 = 2_000;

/// Publish new events on `url` one after another until the connection breaks; the ids that
/// got `OK true`.
async fn publish_until_cut(url: String, round: usize) -> BTreeSet<EventId> {
    let mut acked = BTreeSet::new();
    let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        return acked;
    };
    let (mut tx, mut rx) = ws.split();
    let keys = Keys::generate();
    for i in 0.. {
        let e = signed(
            &keys,
            1,
            &format!("round {round} event {i}"),
            vec![],
            relays::now(),
        );
        if tx
            .send(Message::text(ClientMessage::event(e).as_json()))
            .await
            .is_err()
        {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if v[0] == "OK" && v[2] == true {
                    acked.insert(EventId::from_hex(v[1].as_str().expect("id")).expect("id"));
                }
            }
            _ => break,
        }
    }
    acked
}

/// Add `--persist` listeners until the daemon stops answering; the protocols acknowledged.
fn add_tunnels_until_refused(home: PathBuf, round: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0.. {
        let protocol = format!("/x/crash-{round}-{i}");
        let out = common::cli(
            &home,
            &[
                "p2p",
                "listen",
                &protocol,
                "/ip4/127.0.0.1/tcp/9",
                "--persist",
            ],
        );
        if !out.status.success() {
            break;
        }
        acked.push(protocol);
    }
    acked
}

fn integrity(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .expect("open")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// Every run of the history has all its peer rows (one transaction per run), and no peer row
/// is without its run. Returns the number of runs.
fn whole_runs(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    assert_eq!(integrity(db), "ok", "{}", db.display());
    let conn = rusqlite::Connection::open(db).expect("open history");
    let orphans: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM run_peers WHERE run_id NOT IN (SELECT id FROM runs)",
            [],
            |r| r.get(0),
        )
        .expect("orphans");
    assert_eq!(orphans, 0, "peer rows without their run");
    let mut runs = conn.prepare("SELECT id, stats FROM runs").expect("runs");
    let runs: Vec<(i64, String)> = runs
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    for (id, stats) in &runs {
        let stats: Value = serde_json::from_str(stats).expect("stats are whole JSON");
        let rows: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM run_peers WHERE run_id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            rows as usize,
            stats["peers"].as_array().map_or(0, Vec::len),
            "run {id} is half written"
        );
    }
    runs.len()
}

/// One round: start the daemon on `home`, load it from three sides, kill -9 at random.
fn round(home: &Path, peer: &str, round: usize) -> (BTreeSet<EventId>, Vec<String>) {
    let port = free_port();
    let daemon = Daemon::start_in(home, &["--relay-listen", &format!("127.0.0.1:{port}")]);
    let url = format!("ws://127.0.0.1:{port}");
    let publisher = {
        let url = url.clone();
        std::thread::spawn(move || runtime().block_on(publish_until_cut(url, round)))
    };
    let tunnels = {
        let home = home.to_owned();
        std::thread::spawn(move || add_tunnels_until_refused(home, round))
    };
    let mut backfill = Command::new(common::bin())
        .arg("--home")
        .arg(home)
        .args([
            "backfill",
            "--json",
            "--days",
            "0",
            "--no-profiles",
            "--no-fallback",
            "--peer",
            peer,
        ])
        .args([
            "--zen",
            &home.join("zen").display().to_string(),
            "--local-relay",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backfill");
    let after = rand::thread_rng().gen_range(KILL_AFTER_MS);
    std::thread::sleep(Duration::from_millis(after)); // the random moment of the kill
    drop(daemon); // SIGKILL
    let _ = backfill.kill();
    let _ = backfill.wait();
    (
        publisher.join().expect("publisher"),
        tunnels.join().expect("tunnels"),
    )
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_KILLS);
    let keys = Keys::generate();
    let base = relays::now() - 100_000;
    let served: Vec<String> = (0..PEER_EVENTS)
        .map(|i| signed(&keys, 1, &format!("peer event {i}"), vec![], base + i).as_json())
        .collect();
    let peer = fake_relay::start(Behaviour::Serve(served));
    let tmp = tempfile::tempdir().expect("tmp");
    let home = common::home_with(&tmp.path().join("home"), "");
    let (mut acked, mut tunnels) = (BTreeSet::new(), BTreeSet::new());
    for r in 0..kills {
        let (events, protocols) = round(&home, &peer, r);
        acked.extend(events);
        tunnels.extend(protocols);
        let db = home.join("relay.sqlite");
        assert_eq!(integrity(&db), "ok", "round {r}");
        let stored = stored_ids(&db);
        let lost = acked.iter().filter(|id| !stored.contains(id)).count();
        assert_eq!(
            lost,
            0,
            "round {r}: {lost} of {} acknowledged events lost",
            acked.len()
        );
        let persisted: BTreeSet<String> =
            constellation::tunnel::persist::Persisted::new(home.join("tunnels.json"))
                .load()
                .expect("tunnels.json parses")
                .into_iter()
                .filter_map(|t| match t {
                    constellation::config::TunnelSpec::Listen(l) => Some(l.protocol),
                    constellation::config::TunnelSpec::Forward(_) => None,
                })
                .collect();
        let missing: Vec<_> = tunnels.difference(&persisted).collect();
        assert!(
            missing.is_empty(),
            "round {r}: acknowledged tunnels lost: {missing:?}"
        );
        whole_runs(&home.join("history.sqlite"));
    }
    let runs = whole_runs(&home.join("history.sqlite"));
    println!(
        "crash: {kills} kills, {} acknowledged events and {} persisted tunnels kept, {runs} whole runs, nothing lost",
        acked.len(),
        tunnels.len()
    );
    assert!(
        acked.len() >= kills,
        "the publisher was acknowledged in most rounds"
    );
}

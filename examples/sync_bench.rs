//! Sync benchmark (issue 5): `constellation backfill` against a constellation of our relays on
//! loopback. A 5-peer run (20k events per peer, 90% shared) then an "hourly" run with 1% new
//! events written since the first, in NIP-77 mode (with and without uploads) and in REQ mode;
//! then convergence of 10, 20 and 40 stations.
//! Prints markdown tables. A script, not a test: `interop/bench/sync.sh` builds and runs it.
//!
//! Usage: sync_bench [--peers 5] [--per-peer 20000] [--scaling 10,20,40] [--bin PATH]

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bench_common::{Relay, arg, ours, publish_all, sign};
use nostr::prelude::*;
use serde_json::Value;

/// Authors of the generated events (the station's MULTIPASS accounts).
const AUTHORS: usize = 100;
/// Share of each peer's events that every peer holds.
const OVERLAP: f64 = 0.9;
/// The hourly period.
const HOUR: u64 = 3_600;
/// Unique events per station in the scaling runs, plus as many shared by all.
const SCALE_EVENTS: usize = 500;

struct Bench {
    bin: String,
    tmp: tempfile::TempDir,
    keys: Vec<Keys>,
    zen: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    /// Events written between `age + spread` and `age` seconds ago (inside `--days 1`).
    fn events_between(&self, n: usize, salt: &str, age: u64, spread: u64) -> Vec<Event> {
        let now = Timestamp::now().as_secs();
        sign(&self.keys, n, salt, |i| now - age - (i as u64 * 7) % spread)
    }

    /// What the peers held at the previous hourly run, an hour ago: 20 hours of events before it.
    fn events(&self, n: usize, salt: &str) -> Vec<Event> {
        self.events_between(n, salt, HOUR, 72_000)
    }

    fn peers(&self, name: &str, sets: &[Vec<Event>]) -> Vec<(Relay, PathBuf)> {
        sets.iter()
            .enumerate()
            .map(|(i, events)| {
                let dir = self.tmp.path().join(format!("{name}-{i}"));
                std::fs::create_dir_all(&dir).expect("dir");
                let db = dir.join("relay.sqlite");
                let relay = ours(&self.bin, &db);
                let n = self.runtime.block_on(publish_all(&relay.url, events));
                assert_eq!(n, events.len());
                (relay, db)
            })
            .collect()
    }

    /// A station home whose backfills use its embedded store.
    fn station(&self, name: &str) -> PathBuf {
        let home = self.tmp.path().join(name);
        std::fs::create_dir_all(&home).expect("home");
        let unused = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        std::fs::write(
            home.join("config.toml"),
            format!("[relay]\nlisten = \"{unused}\"\n"),
        )
        .expect("config");
        home
    }

    fn backfill(&self, home: &Path, peers: &[&str], extra: &[&str]) -> Value {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--home")
            .arg(home)
            .args(["backfill", "--json", "--days", "1", "--no-profiles"]);
        cmd.arg("--zen").arg(&self.zen).args(extra);
        for url in peers {
            cmd.args(["--peer", url]);
        }
        let out = cmd.output().expect("run backfill");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "backfill gave no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Every peer's own hourly run (its relay as the local relay, the others and the station as
    /// peers), one after the other, as each station's trigger would do. Returns their stats.
    fn peer_runs(
        &self,
        name: &str,
        station: &Path,
        peers: &[(Relay, PathBuf)],
        flags: &[&str],
    ) -> Vec<Value> {
        let served = ours(&self.bin, &station.join("relay.sqlite"));
        (0..peers.len())
            .map(|i| {
                let home = self.station(&format!("{name}-peer{i}-home"));
                let mut urls = urls(peers, Some(i));
                urls.push(&served.url);
                let mut extra = vec!["--local-relay", peers[i].0.url.as_str()];
                extra.extend_from_slice(flags);
                self.backfill(&home, &urls, &extra)
            })
            .collect()
    }

    fn stored(&self, db: &Path) -> u64 {
        let out = Command::new(&self.bin)
            .args(["relay", "stats", "--json", "--db"])
            .arg(db)
            .output()
            .expect("relay stats");
        let v: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        v["events"].as_u64().unwrap_or(0)
    }
}

/// The peers' relay URLs, but for the one at `except`.
fn urls(peers: &[(Relay, PathBuf)], except: Option<usize>) -> Vec<&str> {
    peers
        .iter()
        .enumerate()
        .filter(|(j, _)| Some(*j) != except)
        .map(|(_, (relay, _))| relay.url.as_str())
        .collect()
}

struct Row {
    label: String,
    stats: Value,
}

fn row(label: &str, stats: Value) -> Row {
    Row {
        label: label.to_owned(),
        stats,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let peers_n: usize = arg(&args, "--peers", "5").parse().expect("--peers");
    let per_peer: usize = arg(&args, "--per-peer", "20000")
        .parse()
        .expect("--per-peer");
    let scaling: Vec<usize> = arg(&args, "--scaling", "10,20,40")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("--scaling list"))
        .collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let zen = tmp.path().join("zen");
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    for (i, k) in keys.iter().enumerate() {
        let dir = zen.join(format!("game/nostr/user{i}@bench"));
        std::fs::create_dir_all(&dir).expect("zen");
        std::fs::write(dir.join("HEX"), k.public_key().to_hex()).expect("HEX");
    }
    let bench = Bench {
        bin: arg(&args, "--bin", "target/release/constellation"),
        tmp,
        keys,
        zen,
        runtime: tokio::runtime::Runtime::new().expect("runtime"),
    };

    let shared_n = (per_peer as f64 * OVERLAP) as usize;
    eprintln!(
        "signing {} events…",
        shared_n + peers_n * (per_peer - shared_n)
    );
    let shared = bench.events(shared_n, "shared");
    let sets: Vec<Vec<Event>> = (0..peers_n)
        .map(|p| {
            let mut set = shared.clone();
            set.extend(bench.events(per_peer - shared_n, &format!("peer{p}")));
            set
        })
        .collect();
    let distinct = shared_n + peers_n * (per_peer - shared_n);

    let mut rows = Vec::new();
    let mut rounds = Vec::new();
    let modes = [
        ("NIP-77", vec![]),
        ("NIP-77 download only", vec!["--no-upload"]),
        ("REQ", vec!["--req-only"]),
    ];
    for (mode, flags) in modes {
        eprintln!("{mode}: seeding {peers_n} peers…");
        let peers = bench.peers(&format!("{mode}-peer"), &sets);
        let urls = urls(&peers, None);
        let home = bench.station(&format!("{mode}-station"));
        eprintln!("{mode}: first run, then every peer's own run…");
        rows.push(row(
            &format!("{mode}, first run"),
            bench.backfill(&home, &urls, &flags),
        ));
        bench.peer_runs(mode, &home, &peers, &flags);
        let fresh = per_peer / 100;
        for (p, (relay, _)) in peers.iter().enumerate() {
            // An hour's new events were written since the previous run.
            let new = bench.events_between(fresh, &format!("{mode}-hour-{p}"), 60, HOUR - 120);
            bench.runtime.block_on(publish_all(&relay.url, &new));
        }
        eprintln!("{mode}: hourly run, then every peer's own hourly run…");
        let hourly = bench.backfill(&home, &urls, &flags);
        let mut round = vec![hourly.clone()];
        round.extend(bench.peer_runs(mode, &home, &peers, &flags));
        let expected = (distinct + peers_n * fresh) as u64;
        let converged = bench.stored(&home.join("relay.sqlite")) == expected
            && peers.iter().all(|(_, db)| bench.stored(db) == expected);
        rows.push(row(&format!("{mode}, hourly run (+1% per peer)"), hourly));
        rounds.push((mode, round, converged));
    }

    println!(
        "| {peers_n} peers × {per_peer} events, {:.0}% shared ({distinct} distinct) | time | events in | imported | events out | MiB in / out | round trips |",
        OVERLAP * 100.0
    );
    println!("|---|---|---|---|---|---|---|");
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / (1 << 20) as f64;
    for r in &rows {
        let s = &r.stats;
        let events_in: u64 = s["peers"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["events_in"].as_u64()).sum())
            .unwrap_or(0);
        println!(
            "| {} | {:.2} s | {} | {} | {} | {:.2} / {:.2} | {} |",
            r.label,
            s["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            events_in,
            s["imported"],
            s["uploaded"],
            mib(&s["bytes_in"]),
            mib(&s["bytes_out"]),
            s["round_trips"]
        );
    }
    let bytes = |r: &Row| {
        r.stats["bytes_in"].as_f64().unwrap_or(0.0) + r.stats["bytes_out"].as_f64().unwrap_or(0.0)
    };
    println!(
        "\n| where the bytes go, KiB | EVENT in | NEG-MSG in | OK in | other in | EVENT out | NEG-* out | REQ/CLOSE out |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let t = &r.stats["traffic"];
        let kib = |k: &str| t[k].as_f64().unwrap_or(0.0) / 1024.0;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.label,
            kib("events_in"),
            kib("reconcile_in"),
            kib("acks_in"),
            kib("other_in"),
            kib("events_out"),
            kib("reconcile_out"),
            kib("requests_out")
        );
    }
    if let [_, nip77, _, download, _, req] = &rows[..] {
        let ratio = |a: &Row, b: &Row| 100.0 * bytes(a) / bytes(b);
        println!(
            "\none station's hourly run / its full-day REQ run, bytes in both directions: {:.2}% \
             for NIP-77 (which also uploads to each of the {peers_n} peers what it lacks), {:.2}% \
             for NIP-77 download only",
            ratio(nip77, req),
            ratio(download, req)
        );
    }

    // The job itself: every station runs its hourly sync, and the constellation converges.
    let total = |runs: &[Value], key: &str| -> f64 {
        runs.iter().map(|s| s[key].as_f64().unwrap_or(0.0)).sum()
    };
    let round_bytes = |runs: &[Value]| total(runs, "bytes_in") + total(runs, "bytes_out");
    println!(
        "\n| hourly round: each of the {} stations runs its own hourly sync | time | bytes | round trips | every station holds every event | bytes / REQ round |",
        peers_n + 1
    );
    println!("|---|---|---|---|---|---|");
    let req_round = rounds.last().map(|(_, r, _)| round_bytes(r)).unwrap_or(1.0);
    for (mode, runs, converged) in &rounds {
        println!(
            "| {mode} | {:.2} s | {:.2} MiB | {} | {converged} | {:.2}% |",
            total(runs, "duration_ms") / 1000.0,
            round_bytes(runs) / (1 << 20) as f64,
            total(runs, "round_trips"),
            100.0 * round_bytes(runs) / req_round
        );
    }
    println!("\ntarget: the hourly round moves < 2% of the bytes of the REQ round");

    if scaling.is_empty() {
        return;
    }
    println!(
        "\n| stations | distinct events | one backfill on station 0: time | bytes | round trips | every station holds every event |"
    );
    println!("|---|---|---|---|---|---|");
    for n in scaling {
        eprintln!("scaling: {n} stations…");
        let common = bench.events(SCALE_EVENTS, &format!("scale{n}"));
        let sets: Vec<Vec<Event>> = (1..n)
            .map(|s| {
                let mut set = common.clone();
                set.extend(bench.events(SCALE_EVENTS, &format!("scale{n}-station{s}")));
                set
            })
            .collect();
        let peers = bench.peers(&format!("scale{n}"), &sets);
        let home = bench.station(&format!("scale{n}-station0"));
        let urls = urls(&peers, None);
        let stats = bench.backfill(&home, &urls, &["--concurrency", "8"]);
        let total = (SCALE_EVENTS + (n - 1) * SCALE_EVENTS) as u64;
        let converged = bench.stored(&home.join("relay.sqlite")) == total
            && peers.iter().all(|(_, db)| bench.stored(db) == total);
        let bytes =
            stats["bytes_in"].as_u64().unwrap_or(0) + stats["bytes_out"].as_u64().unwrap_or(0);
        println!(
            "| {n} | {total} | {:.2} s | {:.1} MiB | {} | {} |",
            stats["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            bytes as f64 / (1 << 20) as f64,
            stats["round_trips"],
            converged
        );
    }
}

//! Soak (issue 19): three daemons on loopback for `--minutes` (10 by default): 20 tunnels
//! pushing data, 5 relay clients publishing (replaceable slots) and querying, a forced sync every
//! minute. Samples RSS, fds, threads, WAL every 10 s; fails on a growing trend or a loss.
//!
//! Usage: soak [--minutes 10] [--bin PATH]   (`interop/soak.sh` builds and runs it)

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bench_common::arg;
use constellation::sync::relay_client::RelayClient;
use nostr::prelude::*;

/// Tunnels carrying data, and relay clients, as the issue asks.
const TUNNELS: usize = 20;
const RELAY_CLIENTS: usize = 5;
/// Slots each relay client rewrites (kind 30078, one `d` tag a slot, each replacing the last):
/// the clients publish all along, but each station's data set stays the same size. With a
/// growing set (text notes) RSS rose at every sync as the store's page caches (64 MiB for the
/// writer) and the syncs' working sets followed it, which no trend check can tell from a leak
/// in 10 minutes; on a fixed set they level off (20 syncs of 20,000 events: flat after 9).
const SLOTS_PER_CLIENT: u64 = 100;
/// How often a sample is taken, and a sync forced.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SYNC_EVERY: Duration = Duration::from_secs(60);
/// Bytes each tunnel client sends (and reads back) per connection before reconnecting.
const PER_CONNECTION: usize = 4 << 20;
/// A growing trend: the last third's mean above the first third's by this factor plus slack.
const TREND_FACTOR: f64 = 1.25;
const RSS_SLACK_KIB: f64 = 16.0 * 1024.0;
const FD_SLACK: f64 = 16.0;
const THREAD_SLACK: f64 = 4.0;
/// The WAL is a sawtooth, not a trend: the store checkpoints every 10,000 pages (40 MiB) and
/// cuts the file back to 64 MiB (`store::schema`). Larger means checkpoints stopped.
const WAL_MAX_KIB: u64 = 80 * 1024;

struct Station {
    home: PathBuf,
    relay: String,
    peer: String,
    addr: String,
    child: Child,
}

impl Drop for Station {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start(bin: &str, home: &Path) -> Station {
    let port = free_port();
    std::fs::create_dir_all(home).expect("home");
    // Loopback only; the soak's clients are the station's own, so no per-address limits.
    std::fs::write(home.join("config.toml"), "").expect("config");
    let mut child = Command::new(bin)
        .arg("--home")
        .arg(home)
        // The daemon's defaults (`~/.zen/tmp/<ID>/`) stay inside the soak's folder.
        .env("HOME", home)
        .args([
            "daemon",
            "--no-dragon",
            "--no-status",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(["--relay-listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    let peer = ready["peer_id"].as_str().expect("peer").to_owned();
    let addr = format!(
        "{}/p2p/{peer}",
        ready["listen"][0].as_str().expect("listen")
    );
    Station {
        home: home.to_owned(),
        relay: format!("ws://127.0.0.1:{port}"),
        peer,
        addr,
        child,
    }
}

fn cli(bin: &str, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cli")
}

fn cli_ok(bin: &str, home: &Path, args: &[&str]) {
    let out = cli(bin, home, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An echo server on 127.0.0.1 (the tunnels' target); its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    port
}

/// Counters shared by the load.
#[derive(Default)]
struct Load {
    tunnel_bytes: AtomicU64,
    tunnel_errors: AtomicU64,
    events: AtomicU64,
    relay_errors: AtomicU64,
    syncs: AtomicU64,
    sync_errors: AtomicU64,
}

/// One tunnel client: send a payload through `port`, read it back whole, again, until `stop`.
fn push_through(port: u16, stop: Arc<AtomicBool>, load: Arc<Load>) {
    let chunk = vec![0x5a_u8; 64 * 1024];
    while !stop.load(Relaxed) {
        let run = || -> std::io::Result<u64> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut r = s.try_clone()?;
            let reader = std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                while got < PER_CONNECTION {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            });
            for _ in 0..PER_CONNECTION / chunk.len() {
                s.write_all(&chunk)?;
            }
            let got = reader.join().unwrap_or(0);
            if got != PER_CONNECTION {
                return Err(std::io::Error::other(format!(
                    "echoed {got} of {PER_CONNECTION}"
                )));
            }
            Ok(got as u64)
        };
        match run() {
            Ok(n) => load.tunnel_bytes.fetch_add(2 * n, Relaxed),
            Err(_) => load.tunnel_errors.fetch_add(1, Relaxed),
        };
    }
}

/// One relay client: publish an event every 100 ms and query every second; the acked ids.
/// Publish and query until `stop`; the last acked version of each slot (what must be kept).
async fn relay_client(url: String, stop: Arc<AtomicBool>, load: Arc<Load>) -> Vec<EventId> {
    let keys = Keys::generate();
    let mut acked = std::collections::BTreeMap::new();
    let Ok(mut client) =
        RelayClient::connect_url(&url, Duration::from_secs(5), Duration::from_secs(30)).await
    else {
        load.relay_errors.fetch_add(1, Relaxed);
        return Vec::new();
    };
    for i in 0u64.. {
        if stop.load(Relaxed) {
            break;
        }
        let slot = i % SLOTS_PER_CLIENT;
        let e = EventBuilder::new(Kind::Custom(30078), format!("soak {i}"))
            .tag(Tag::identifier(format!("slot{slot}")))
            .finalize(&keys)
            .expect("sign");
        match client.publish(std::slice::from_ref(&e)).await {
            Ok(p) if p.accepted + p.duplicate == 1 => {
                acked.insert(slot, e.id);
                load.events.fetch_add(1, Relaxed);
            }
            _ => drop(load.relay_errors.fetch_add(1, Relaxed)),
        }
        if i % 10 == 0
            && client
                .query(Filter::new().author(keys.public_key()).limit(10))
                .await
                .is_err()
        {
            load.relay_errors.fetch_add(1, Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
    acked.into_values().collect()
}

/// One row: per station RSS (KiB), fds, threads, WAL bytes.
struct Sample {
    at: Duration,
    rss: Vec<u64>,
    fds: Vec<u64>,
    threads: Vec<u64>,
    wal: Vec<u64>,
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn sample(stations: &[Station], at: Duration) -> Sample {
    let pids: Vec<u32> = stations.iter().map(|s| s.child.id()).collect();
    Sample {
        at,
        rss: pids.iter().map(|p| status_field(*p, "VmRSS:")).collect(),
        fds: pids
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count() as u64))
            .collect(),
        threads: pids.iter().map(|p| status_field(*p, "Threads:")).collect(),
        wal: stations
            .iter()
            .map(|s| std::fs::metadata(s.home.join("relay.sqlite-wal")).map_or(0, |m| m.len()))
            .collect(),
    }
}

fn print_row(s: &Sample) {
    let join = |v: &[u64], div: u64| {
        v.iter()
            .map(|x| format!("{:>6}", x / div))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "| {:>5} | {} | {} | {} | {} |",
        s.at.as_secs(),
        join(&s.rss, 1024),
        join(&s.fds, 1),
        join(&s.threads, 1),
        join(&s.wal, 1024)
    );
}

/// A growing trend in `series`: the last third's mean above the first third's (after the first
/// sample, the warm-up) by [`TREND_FACTOR`] plus `slack`.
fn grows(series: &[f64], slack: f64) -> bool {
    let s = if series.len() > 4 {
        &series[1..]
    } else {
        series
    };
    let third = (s.len() / 3).max(1);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    mean(&s[s.len() - third..]) > mean(&s[..third]) * TREND_FACTOR + slack
}

/// The forced sync: one station's backfill from the other two (rotating).
fn force_sync(bin: &str, stations: &[Station], round: usize, load: &Load) {
    let me = &stations[round % stations.len()];
    let mut args = vec![
        "backfill",
        "--json",
        "--days",
        "1",
        "--no-profiles",
        "--local-relay",
        me.relay.as_str(),
    ];
    for other in stations.iter().filter(|s| s.peer != me.peer) {
        args.extend(["--peer", other.relay.as_str()]);
    }
    args.extend(["--zen", "/nonexistent-zen"]);
    let out = cli(bin, &me.home, &args);
    load.syncs.fetch_add(1, Relaxed);
    if !out.status.success() {
        load.sync_errors.fetch_add(1, Relaxed);
        eprintln!(
            "sync {round} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every acked event is still in the relay it was acked by.
async fn lost(url: &str, acked: &[EventId]) -> usize {
    let Ok(mut client) =
        RelayClient::connect_url(url, Duration::from_secs(5), Duration::from_secs(30)).await
    else {
        return acked.len();
    };
    let mut found = 0;
    for chunk in acked.chunks(200) {
        found += client
            .query(Filter::new().ids(chunk.iter().copied()).limit(chunk.len()))
            .await
            .map_or(0, |e| e.len());
    }
    acked.len() - found
}

fn default_bin() -> String {
    let exe = std::env::current_exe().expect("exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("constellation").display().to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes: u64 = arg(&args, "--minutes", "10").parse().expect("--minutes N");
    let bin = arg(&args, "--bin", &default_bin());
    let tmp = tempfile::tempdir().expect("tmp");
    let stations: Vec<Station> = ["a", "b", "c"]
        .iter()
        .map(|n| start(&bin, &tmp.path().join(n)))
        .collect();
    for (i, j) in [(1, 0), (2, 0), (2, 1)] {
        cli_ok(
            &bin,
            &stations[i].home,
            &["swarm", "connect", &stations[j].addr],
        );
    }
    let (a, b) = (&stations[0], &stations[1]);
    let echo = echo_server();
    let mut ports = Vec::new();
    for i in 0..TUNNELS {
        let protocol = format!("/x/soak-{i}");
        cli_ok(
            &bin,
            &a.home,
            &[
                "p2p",
                "listen",
                &protocol,
                &format!("/ip4/127.0.0.1/tcp/{echo}"),
            ],
        );
        let port = free_port();
        cli_ok(
            &bin,
            &b.home,
            &[
                "p2p",
                "forward",
                &protocol,
                &format!("/ip4/127.0.0.1/tcp/{port}"),
                &format!("/p2p/{}", a.peer),
            ],
        );
        ports.push(port);
    }
    let (stop, load) = (Arc::new(AtomicBool::new(false)), Arc::new(Load::default()));
    let pushers: Vec<_> = ports
        .iter()
        .map(|&p| {
            let (stop, load) = (stop.clone(), load.clone());
            std::thread::spawn(move || push_through(p, stop, load))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let clients: Vec<_> = (0..RELAY_CLIENTS)
        .map(|i| {
            let url = stations[i % stations.len()].relay.clone();
            (
                url.clone(),
                runtime.spawn(relay_client(url, stop.clone(), load.clone())),
            )
        })
        .collect();
    println!(
        "soak: {minutes} min, {TUNNELS} tunnels, {RELAY_CLIENTS} relay clients, a sync every minute, 3 daemons (a b c)\n"
    );
    println!(
        "| t (s) | RSS MiB a b c | fds a b c | threads a b c | WAL KiB a b c |\n|---|---|---|---|---|"
    );
    let started = Instant::now();
    let (mut samples, mut next_sync, mut round) = (Vec::new(), SYNC_EVERY, 0);
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        std::thread::sleep(SAMPLE_EVERY); // the sampling period, not a wait for an outcome
        if started.elapsed() >= next_sync {
            force_sync(&bin, &stations, round, &load);
            round += 1;
            next_sync += SYNC_EVERY;
        }
        let s = sample(&stations, started.elapsed());
        print_row(&s);
        samples.push(s);
    }
    stop.store(true, Relaxed);
    for p in pushers {
        let _ = p.join();
    }
    let mut lost_events = 0;
    let mut acked_total = 0;
    for (url, task) in clients {
        let acked = runtime.block_on(task).unwrap_or_default();
        acked_total += acked.len();
        lost_events += runtime.block_on(lost(&url, &acked));
    }
    report(&samples, &load, acked_total, lost_events);
}

fn report(samples: &[Sample], load: &Load, acked: usize, lost: usize) {
    let col = |f: &dyn Fn(&Sample) -> u64| samples.iter().map(f).collect::<Vec<u64>>();
    let mut failures = Vec::new();
    for i in 0..3 {
        let rss = col(&|s| s.rss[i]);
        let fds = col(&|s| s.fds[i]);
        let threads = col(&|s| s.threads[i]);
        let f = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
        let name = ["a", "b", "c"][i];
        let wal_peak = col(&|s| s.wal[i]).into_iter().max().unwrap_or(0) / 1024;
        if wal_peak > WAL_MAX_KIB {
            failures.push(format!("{name}: WAL reached {wal_peak} KiB"));
        }
        println!(
            "\n{name}: RSS peak {} MiB final {} MiB; fds peak {} final {}; threads peak {} final {}; WAL peak {} KiB",
            rss.iter().max().unwrap_or(&0) / 1024,
            rss.last().unwrap_or(&0) / 1024,
            fds.iter().max().unwrap_or(&0),
            fds.last().unwrap_or(&0),
            threads.iter().max().unwrap_or(&0),
            threads.last().unwrap_or(&0),
            wal_peak,
        );
        for (what, series, slack) in [
            ("RSS", f(&rss), RSS_SLACK_KIB),
            ("fds", f(&fds), FD_SLACK),
            ("threads", f(&threads), THREAD_SLACK),
        ] {
            if grows(&series, slack) {
                failures.push(format!("{name}: {what} grows"));
            }
        }
    }
    println!(
        "\nload: {} MiB through the tunnels ({} errors), {} events acked ({} relay errors), {} syncs ({} failed), {lost} of the {acked} last acked versions lost",
        load.tunnel_bytes.load(Relaxed) >> 20,
        load.tunnel_errors.load(Relaxed),
        load.events.load(Relaxed),
        load.relay_errors.load(Relaxed),
        load.syncs.load(Relaxed),
        load.sync_errors.load(Relaxed),
    );
    if lost > 0 {
        failures.push(format!("{lost} acked events lost"));
    }
    if !failures.is_empty() {
        eprintln!("soak failed: {}", failures.join("; "));
        std::process::exit(1);
    }
    println!("soak: no growing trend, nothing lost");
}

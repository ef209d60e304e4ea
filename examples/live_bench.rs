//! Live propagation benchmark (issue 20): 10 daemons on loopback (embedded relays, served as
//! `/x/strfry-<id>`), each linked to 3 others (a ring with chords); 1,000 events published at
//! random stations; latency from publication to the last station (median, p99, max), read by a
//! subscription on every station, against the hourly-only figure. Prints a markdown table.
//! A script, not a test: `interop/bench/live.sh` builds and runs it.
//!
//! Usage: live_bench [--stations 10] [--events 1000] [--rate 100] [--bin PATH]

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_common::{arg, client, cpu_secs_of};
use nostr::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The daemons' hourly schedule (`[trigger]` defaults): period and jitter.
const HOUR: f64 = 3_600.0;
const JITTER: f64 = 300.0;
/// Every link must be live within this after the daemons start.
const LINKS_UP: Duration = Duration::from_secs(60);
/// Every event must be everywhere within this after the last publication.
const SETTLE: Duration = Duration::from_secs(120);

/// A daemon process, killed on drop.
struct Station {
    home: PathBuf,
    peer_id: String,
    listen: String,
    relay_port: u16,
    child: Option<Child>,
}

impl Drop for Station {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn cli(bin: &str, home: &Path, args: &[&str]) -> Vec<u8> {
    Command::new(bin)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run constellation")
        .stdout
}

impl Station {
    fn plan(bin: &str, root: &Path, i: usize) -> Station {
        let home = root.join(format!("s{i}"));
        std::fs::create_dir_all(&home).expect("home");
        let id: Value = serde_json::from_slice(&cli(bin, &home, &["id", "--json"])).expect("id");
        Station {
            peer_id: id["id"].as_str().expect("id").to_owned(),
            home,
            listen: format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            relay_port: free_port(),
            child: None,
        }
    }

    fn addr(&self) -> String {
        format!("{}/p2p/{}", self.listen, self.peer_id)
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.relay_port)
    }

    /// Loopback only: no DHT, no bootstrap, no scheduled sync; live links to `peers`.
    fn configure(&self, peers: &[&Station]) {
        let ids: Vec<String> = peers.iter().map(|p| p.peer_id.clone()).collect();
        let addrs: Vec<String> = peers.iter().map(|p| p.addr()).collect();
        let config = format!(
            "[node]\nrouting = \"none\"\nbootstrap = []\npeering = {addrs:?}\n\n\
             [[tunnels]]\nkind = \"listen\"\nprotocol = \"/x/strfry-{}\"\ntarget = \"/ip4/127.0.0.1/tcp/{}\"\n\n\
             [trigger]\nenabled = false\n\n[swarm_map]\nenabled = false\n\n[live]\npeers = {ids:?}\n",
            self.peer_id, self.relay_port
        );
        std::fs::write(self.home.join("config.toml"), config).expect("config");
    }

    fn start(&mut self, bin: &str) {
        let user = self.home.join("user");
        std::fs::create_dir_all(&user).expect("HOME");
        let log = std::fs::File::create(self.home.join("daemon.log")).expect("log");
        let mut child = Command::new(bin)
            .arg("--home")
            .arg(&self.home)
            .args([
                "daemon",
                "--no-status",
                "--no-dragon",
                "--listen",
                &self.listen,
            ])
            .args(["--relay-listen", &format!("127.0.0.1:{}", self.relay_port)])
            .env("HOME", user)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert!(
            line.contains("\"ready\""),
            "{}: {line}",
            self.home.display()
        );
        self.child = Some(child);
    }

    fn links_live(&self, bin: &str) -> bool {
        let links: Value =
            serde_json::from_slice(&cli(bin, &self.home, &["swarm", "live", "--json"]))
                .unwrap_or(Value::Null);
        links.as_array().is_some_and(|l| {
            !l.is_empty()
                && l.iter()
                    .all(|x| x["state"] == "live" && x["remote"] == "station")
        })
    }

    fn cpu_secs(&self) -> f64 {
        self.child.as_ref().map_or(0.0, |c| cpu_secs_of(c.id()))
    }
}

/// Arrival time of each event at each station, from a subscription on every relay.
type Arrivals = Arc<Mutex<HashMap<EventId, Vec<Instant>>>>;

async fn watch(url: String, arrivals: Arrivals) {
    let mut c = client(&url).await;
    c.subscribe(vec![Filter::new().kind(Kind::TextNote).limit(0)])
        .await
        .expect("subscribe");
    loop {
        match c.next_message(Duration::from_secs(600)).await {
            Ok(RelayMessage::Event { event, .. }) => {
                let mut map = arrivals.lock().expect("arrivals");
                map.entry(event.id).or_default().push(Instant::now());
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// The same publications without live links: an event reaches station X at X's next hourly
/// run (which pulls from the origin) or the origin's (which uploads to every peer), whichever
/// is first; each station's runs come every hour plus its jitter, from a random phase.
fn hourly_only(origins: &[usize], stations: usize, rng: &mut rand::rngs::StdRng) -> Vec<f64> {
    let phase: Vec<f64> = (0..stations).map(|_| rng.gen_range(0.0..HOUR)).collect();
    let next_run = |s: usize, t: f64, rng: &mut rand::rngs::StdRng| {
        let mut run = phase[s];
        while run < t {
            run += HOUR + rng.gen_range(0.0..JITTER);
        }
        run - t
    };
    origins
        .iter()
        .map(|&o| {
            let t = rng.gen_range(0.0..HOUR);
            let by_origin = next_run(o, t, rng);
            (0..stations)
                .filter(|&s| s != o)
                .map(|s| next_run(s, t, rng).min(by_origin))
                .fold(0.0, f64::max)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = arg(&args, "--bin", "target/release/constellation");
    let n: usize = arg(&args, "--stations", "10").parse().expect("--stations");
    let events: usize = arg(&args, "--events", "1000").parse().expect("--events");
    let rate: f64 = arg(&args, "--rate", "100").parse().expect("--rate");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut stations: Vec<Station> = (0..n).map(|i| Station::plan(&bin, tmp.path(), i)).collect();
    // A ring with chords: i links to i±1 and i+n/2 (3 links each, diameter ~n/4).
    for i in 0..n {
        let mut peers: Vec<usize> = vec![(i + 1) % n, (i + n - 1) % n, (i + n / 2) % n];
        peers.sort_unstable();
        peers.dedup();
        peers.retain(|&p| p != i);
        let refs: Vec<&Station> = peers.iter().map(|&p| &stations[p]).collect();
        stations[i].configure(&refs);
    }
    for s in &mut stations {
        s.start(&bin);
    }
    let up = Instant::now();
    while !stations.iter().all(|s| s.links_live(&bin)) {
        assert!(up.elapsed() < LINKS_UP, "links not live after {LINKS_UP:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{n} stations, all links live in {:.1} s",
        up.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let arrivals: Arrivals = Arc::default();
    for s in &stations {
        runtime.spawn(watch(s.url(), arrivals.clone()));
    }
    std::thread::sleep(Duration::from_secs(1));
    let cpu_before: f64 = stations.iter().map(Station::cpu_secs).sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let keys: Vec<Keys> = (0..20).map(|_| Keys::generate()).collect();
    let mut published: Vec<(EventId, usize, Instant)> = Vec::with_capacity(events);
    let publishers: Vec<_> = stations
        .iter()
        .map(|s| runtime.block_on(client(&s.url())))
        .collect();
    let publishers: Vec<tokio::sync::Mutex<_>> = publishers
        .into_iter()
        .map(tokio::sync::Mutex::new)
        .collect();
    let started = Instant::now();
    for i in 0..events {
        let origin = rng.gen_range(0..n);
        let event = EventBuilder::new(Kind::TextNote, format!("live bench {i}"))
            .finalize(&keys[i % keys.len()])
            .expect("sign");
        let at = Instant::now();
        runtime
            .block_on(async {
                publishers[origin]
                    .lock()
                    .await
                    .publish(std::slice::from_ref(&event))
                    .await
            })
            .expect("publish");
        published.push((event.id, origin, at));
        let due = started + Duration::from_secs_f64((i + 1) as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let settle = Instant::now();
    let complete = |map: &HashMap<EventId, Vec<Instant>>| {
        published
            .iter()
            .all(|(id, _, _)| map.get(id).is_some_and(|v| v.len() >= n))
    };
    while !complete(&arrivals.lock().expect("arrivals")) {
        assert!(
            settle.elapsed() < SETTLE,
            "not every event reached every station"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = stations.iter().map(Station::cpu_secs).sum::<f64>() - cpu_before;
    let map = arrivals.lock().expect("arrivals");
    let mut live: Vec<f64> = published
        .iter()
        .map(|(id, _, at)| {
            let last = map[id].iter().max().copied().unwrap_or(*at);
            last.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    live.sort_by(f64::total_cmp);
    let origins: Vec<usize> = published.iter().map(|(_, o, _)| *o).collect();
    let mut hourly = hourly_only(&origins, n, &mut rng);
    hourly.sort_by(f64::total_cmp);
    println!(
        "{n} stations (3 links each), {events} events at {rate}/s at random stations; latency from publication to the last station:\n"
    );
    println!("| | median | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| live links | {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&live, 0.5),
        percentile(&live, 0.99),
        live.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| hourly backfill only (simulated schedule: {HOUR} s + 0–{JITTER} s jitter) | {:.0} s | {:.0} s | {:.0} s |",
        percentile(&hourly, 0.5) / 1.0,
        percentile(&hourly, 0.99),
        hourly.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| ratio (hourly / live, median) | {:.0}x | | |",
        percentile(&hourly, 0.5) * 1000.0 / percentile(&live, 0.5)
    );
    println!("\nCPU of the {n} daemons during the run: {cpu:.1} CPU-s");
}

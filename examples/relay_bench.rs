//! Relay benchmark: our embedded relay (`constellation relay`) and nostr-sdk's `LocalRelay`, side
//! by side in one run, driven by the same Rust client: ingest of signed events (verified by the
//! relay), REQ latency for typical filters, and a NIP-77 reconciliation with a 1% difference.
//! Prints a markdown table. A script, not a test: `interop/bench/relay.sh` builds and runs it.
//!
//! Usage: relay_bench [--events N] [--bin PATH] [--python PATH]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use constellation::sync::client::RelayClient;
use nostr::prelude::*;

/// REQ samples per filter (median and p95 reported).
const REQ_SAMPLES: usize = 50;
/// Authors of the generated events.
const AUTHORS: usize = 200;
/// Seconds over which `created_at` is spread (30 days).
const SPREAD: u64 = 30 * 86_400;

struct Relay {
    name: &'static str,
    url: String,
    child: Child,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_line_with(child: &mut Child, needle: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains(needle) {
            return line;
        }
    }
    panic!("no line with {needle:?}");
}

fn ours(bin: &str, db: &std::path::Path) -> Relay {
    let mut child = Command::new(bin)
        .args(["--home"])
        .arg(db.parent().expect("dir"))
        .args(["relay", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start constellation relay");
    let line = first_line_with(&mut child, "ready");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    Relay {
        name: "constellation",
        url: ready["relay"].as_str().expect("url").to_owned(),
        child,
    }
}

fn local_relay(python: &str) -> Relay {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/relays/serve.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg("localrelay")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start LocalRelay");
    let url = first_line_with(&mut child, "ws://");
    Relay {
        name: "nostr-sdk LocalRelay",
        url: url.trim().to_owned(),
        child,
    }
}

/// `n` signed events over `AUTHORS` authors, mostly notes with a hashtag, some profiles.
fn generate(n: usize, salt: &str) -> (Vec<Keys>, Vec<Event>) {
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    let now = Timestamp::now().as_secs();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads);
    let events = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    let mut out = Vec::with_capacity(chunk);
                    for i in (t * chunk)..((t + 1) * chunk).min(n) {
                        let k = &keys[i % AUTHORS];
                        let at = now - (i as u64 * 7919) % SPREAD;
                        let tag = Tag::hashtag(format!("topic{}", i % 50));
                        let e = EventBuilder::new(Kind::TextNote, format!("{salt} note {i}"))
                            .tags([tag])
                            .custom_created_at(Timestamp::from(at))
                            .finalize(k)
                            .expect("sign");
                        out.push(e);
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    });
    (keys, events)
}

async fn client(url: &str) -> RelayClient {
    RelayClient::connect_url(url, Duration::from_secs(10), Duration::from_secs(120))
        .await
        .expect("connect")
}

struct Figures {
    ingest_rate: f64,
    ingest_secs: f64,
    req: Vec<(String, f64, f64)>,
    neg_secs: f64,
    neg_bytes: u64,
    neg_rounds: u64,
    neg_ok: bool,
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn measure(relay: &Relay, events: &[Event], keys: &[Keys], extra: &[Event]) -> Figures {
    let mut c = client(&relay.url).await;
    let start = Instant::now();
    let published = c.publish(events).await.expect("publish");
    let ingest_secs = start.elapsed().as_secs_f64();
    assert_eq!(
        published.accepted as usize,
        events.len(),
        "{} did not accept every event: {:?}",
        relay.name,
        published.refused
    );

    let now = Timestamp::now().as_secs();
    let filters: Vec<(&str, Filter)> = vec![
        (
            "one author's notes, limit 100",
            Filter::new()
                .author(keys[7].public_key())
                .kind(Kind::TextNote)
                .limit(100),
        ),
        (
            "latest notes, limit 500",
            Filter::new().kind(Kind::TextNote).limit(500),
        ),
        (
            "hashtag #topic3, limit 50",
            Filter::new().hashtag("topic3").limit(50),
        ),
        (
            "20 ids",
            Filter::new().ids(events.iter().step_by(4_999).take(20).map(|e| e.id)),
        ),
        (
            "last 6 hours, 10 authors",
            Filter::new()
                .authors(keys[..10].iter().map(|k| k.public_key()))
                .since(Timestamp::from(now - 6 * 3600))
                .limit(500),
        ),
    ];
    let mut req = Vec::new();
    for (name, f) in filters {
        let mut samples = Vec::with_capacity(REQ_SAMPLES);
        for _ in 0..REQ_SAMPLES {
            let t = Instant::now();
            let got = c.query(f.clone()).await.expect("query");
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(!got.is_empty(), "{}: {name} returned nothing", relay.name);
        }
        req.push((
            name.to_owned(),
            percentile(samples.clone(), 0.5),
            percentile(samples, 0.95),
        ));
    }
    c.close().await;

    // NIP-77: we hold 99% of the relay's set plus 1% it lacks.
    let keep = events.len() - extra.len();
    let items: Vec<(Timestamp, EventId)> = events[..keep]
        .iter()
        .chain(extra)
        .map(|e| (e.created_at, e.id))
        .collect();
    let mut c = client(&relay.url).await;
    let (bytes0, rounds0) = (c.bytes_in + c.bytes_out, c.round_trips);
    let t = Instant::now();
    let rec = c.reconcile(Filter::new(), &items).await.expect("reconcile");
    let neg_secs = t.elapsed().as_secs_f64();
    let neg_ok = rec.have.len() == extra.len() && rec.need.len() == events.len() - keep;
    let figures = Figures {
        ingest_rate: events.len() as f64 / ingest_secs,
        ingest_secs,
        req,
        neg_secs,
        neg_bytes: c.bytes_in + c.bytes_out - bytes0,
        neg_rounds: c.round_trips - rounds0,
        neg_ok,
    };
    c.close().await;
    figures
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--events", "100000")
        .parse()
        .expect("--events N");
    let bin = arg(&args, "--bin", "target/release/constellation");
    let python = arg(&args, "--python", ".venv/bin/python");
    eprintln!("signing {n} events (+1% for the NIP-77 difference)…");
    let (keys, events) = generate(n, "bench");
    let (_, extra) = generate(n / 100, "extra");
    let tmp = tempfile::tempdir().expect("tmp");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut results = Vec::new();
    for which in ["ours", "theirs"] {
        let relay = if which == "ours" {
            ours(&bin, &tmp.path().join("relay.sqlite"))
        } else {
            local_relay(&python)
        };
        eprintln!("measuring {} at {}…", relay.name, relay.url);
        let figures = runtime.block_on(measure(&relay, &events, &keys, &extra));
        results.push((relay.name, figures));
    }
    let (a, b) = (&results[0].1, &results[1].1);
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
    println!(
        "| {} events, {} cores | constellation | nostr-sdk LocalRelay | ratio |",
        n,
        std::thread::available_parallelism().map_or(1, |t| t.get())
    );
    println!("|---|---|---|---|");
    println!(
        "| ingest, signed + verified (events/s) | {:.0} ({:.1} s) | {:.0} ({:.1} s) | {:.2}× |",
        a.ingest_rate,
        a.ingest_secs,
        b.ingest_rate,
        b.ingest_secs,
        ratio(a.ingest_rate, b.ingest_rate)
    );
    for ((name, med_a, p95_a), (_, med_b, p95_b)) in a.req.iter().zip(&b.req) {
        println!(
            "| REQ {name}: median / p95 (ms) | {med_a:.2} / {p95_a:.2} | {med_b:.2} / {p95_b:.2} | {:.2}× faster |",
            ratio(*med_b, *med_a)
        );
    }
    println!(
        "| NIP-77 {}k vs {}k, 1% each side: time | {:.2} s | {:.2} s | {:.2}× faster |",
        n / 1000,
        n / 1000,
        a.neg_secs,
        b.neg_secs,
        ratio(b.neg_secs, a.neg_secs)
    );
    println!(
        "| NIP-77: bytes on the wire, round trips | {} KiB, {} | {} KiB, {} | {:.2}× |",
        a.neg_bytes / 1024,
        a.neg_rounds,
        b.neg_bytes / 1024,
        b.neg_rounds,
        ratio(a.neg_bytes as f64, b.neg_bytes as f64)
    );
    println!(
        "| NIP-77 found exactly the 1% each way | {} | {} | |",
        a.neg_ok, b.neg_ok
    );
}

//! Relay benchmark: our embedded relay (`constellation relay`) and nostr-sdk's `LocalRelay`, side
//! by side in one run, driven by the same Rust client: ingest of signed events (verified by the
//! relay), REQ latency for typical filters, and a NIP-77 reconciliation with a 1% difference.
//! Prints a markdown table. A script, not a test: `interop/bench/relay.sh` builds and runs it.
//!
//! Usage: relay_bench [--events N] [--bin PATH] [--python PATH]

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::time::Instant;

use bench_common::{Relay, arg, client, local_relay, ours, publish_all, sign};
use nostr::prelude::*;

/// REQ samples per filter (median and p95 reported).
const REQ_SAMPLES: usize = 50;
/// Authors of the generated events.
const AUTHORS: usize = 200;
/// Seconds over which `created_at` is spread (30 days).
const SPREAD: u64 = 30 * 86_400;

/// `n` signed notes over `AUTHORS` authors, spread over 30 days.
fn generate(n: usize, salt: &str) -> (Vec<Keys>, Vec<Event>) {
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    let now = Timestamp::now().as_secs();
    let events = sign(&keys, n, salt, |i| now - (i as u64 * 7919) % SPREAD);
    (keys, events)
}

struct Figures {
    ingest_rate: f64,
    ingest_secs: f64,
    req: Vec<(String, f64, f64)>,
    /// NIP-77: (seconds, bytes, round trips, found exactly the difference), or the refusal.
    neg: Result<(f64, u64, u64, bool), String>,
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn measure(relay: &Relay, events: &[Event], keys: &[Keys], extra: &[Event]) -> Figures {
    let start = Instant::now();
    let accepted = publish_all(&relay.url, events).await;
    let ingest_secs = start.elapsed().as_secs_f64();
    assert_eq!(
        accepted,
        events.len(),
        "{} did not accept every event",
        relay.name
    );
    let mut c = client(&relay.url).await;

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
    let neg = match c.reconcile(Filter::new(), &items).await {
        Ok(rec) => Ok((
            t.elapsed().as_secs_f64(),
            c.bytes_in + c.bytes_out - bytes0,
            c.round_trips - rounds0,
            rec.have.len() == extra.len() && rec.need.len() == events.len() - keep,
        )),
        Err(e) => Err(e.to_string()),
    };
    let figures = Figures {
        ingest_rate: events.len() as f64 / ingest_secs,
        ingest_secs,
        req,
        neg,
    };
    c.close().await;
    figures
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
    let cell = |neg: &Result<(f64, u64, u64, bool), String>, what: usize| match neg {
        Ok((secs, bytes, rounds, ok)) => match what {
            0 => format!("{secs:.2} s"),
            1 => format!("{} KiB, {rounds}", bytes / 1024),
            _ => ok.to_string(),
        },
        Err(e) => format!("refused: {e}"),
    };
    let speed = match (&a.neg, &b.neg) {
        (Ok(x), Ok(y)) => format!("{:.2}× faster", ratio(y.0, x.0)),
        _ => String::new(),
    };
    println!(
        "| NIP-77 {}k vs {}k, 1% each side: time | {} | {} | {speed} |",
        n / 1000,
        n / 1000,
        cell(&a.neg, 0),
        cell(&b.neg, 0)
    );
    println!(
        "| NIP-77: bytes on the wire, round trips | {} | {} | |",
        cell(&a.neg, 1),
        cell(&b.neg, 1)
    );
    println!(
        "| NIP-77 found exactly the 1% each way | {} | {} | |",
        cell(&a.neg, 2),
        cell(&b.neg, 2)
    );
}

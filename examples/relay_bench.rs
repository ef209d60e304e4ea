//! Relay benchmark: our embedded relay (`constellation relay`) against strfry, the relay stations
//! run (the anchor), and optionally nostr-sdk's `LocalRelay`, in one run, driven by the same Rust
//! client: ingest of signed events (verified by each relay), REQ and COUNT latency for the filters
//! clients use most (samples interleaved between the relays, so the machine's noise hits all
//! alike), CPU-seconds of each relay process, and a NIP-77 reconciliation with 1% on each side.
//! Prints a markdown table. A script, not a test: `interop/bench/relay.sh` builds and runs it.
//!
//! Then `--stalled N` clients per relay that ask for the whole store and never read: RSS, cuts
//! and an honest client's REQ time meanwhile, as a second table.
//!
//! Usage: relay_bench [--events N] [--bin PATH] [--strfry PATH] [--python PATH] [--localrelay]
//!   [--baseline PATH] (another build of ours, e.g. before a change, as a third column)
//!   [--stalled N] (default 16; 0 skips it)

#[path = "bench_common/mod.rs"]
mod bench_common;
#[path = "bench_common/stalled.rs"]
mod stalled;

use std::time::Instant;

use bench_common::{Relay, arg, client, local_relay, ours, publish_all, sign_with, strfry};
use futures::{SinkExt, StreamExt};
use nostr::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// REQ samples per filter and relay (median, p95 and spread reported).
const REQ_SAMPLES: usize = 50;
/// Authors of the generated events (a home feed follows all of them).
const AUTHORS: usize = 200;
/// Thread roots: every reply points (`#e`) at one of the first `ROOTS` events.
const ROOTS: usize = 100;
/// Seconds over which `created_at` is spread (30 days).
const SPREAD: u64 = 30 * 86_400;

/// `n` signed notes over `AUTHORS` authors, spread over 30 days; after the first `ROOTS`, every
/// third is a reply (`#e` a root, `#p` its author) and every fifth mentions an author (`#p`).
fn generate(n: usize, salt: &str) -> (Vec<Keys>, Vec<Event>) {
    let keys: Vec<Keys> = (0..AUTHORS).map(|_| Keys::generate()).collect();
    let now = Timestamp::now().as_secs();
    let at = |i: usize| now - (i as u64 * 7919) % SPREAD;
    let roots = sign_with(&keys, ROOTS.min(n), salt, at, |_| Vec::new());
    let rest = sign_with(
        &keys,
        n.saturating_sub(ROOTS),
        salt,
        |i| at(i + ROOTS),
        |i| {
            let mut tags = Vec::new();
            if i % 3 == 0 {
                let root = &roots[i % roots.len()];
                tags.push(Tag::event(root.id));
                tags.push(Tag::public_key(root.pubkey));
            }
            if i % 5 == 0 {
                tags.push(Tag::public_key(keys[(i * 7) % AUTHORS].public_key()));
            }
            tags
        },
    );
    (keys, roots.into_iter().chain(rest).collect())
}

/// One measured query: a REQ (events) or a COUNT.
struct Query {
    name: String,
    filter: Filter,
    count: bool,
}

fn queries(keys: &[Keys], events: &[Event]) -> Vec<Query> {
    let now = Timestamp::now().as_secs();
    let req = |name: &str, filter: Filter| Query {
        name: name.to_owned(),
        filter,
        count: false,
    };
    let all_authors = keys.iter().map(|k| k.public_key());
    vec![
        req(
            "one author's notes, limit 100",
            Filter::new()
                .author(keys[7].public_key())
                .kind(Kind::TextNote)
                .limit(100),
        ),
        req(
            "latest notes, limit 500",
            Filter::new().kind(Kind::TextNote).limit(500),
        ),
        req(
            "hashtag #topic3, limit 50",
            Filter::new().hashtag("topic3").limit(50),
        ),
        req(
            "20 ids",
            Filter::new().ids(
                events
                    .iter()
                    .step_by(events.len() / 20 + 1)
                    .take(20)
                    .map(|e| e.id),
            ),
        ),
        req(
            "last 6 hours, 10 authors",
            Filter::new()
                .authors(keys[..10].iter().map(|k| k.public_key()))
                .since(Timestamp::from(now - 6 * 3600))
                .limit(500),
        ),
        req(
            "home feed: 200 authors, limit 200",
            Filter::new()
                .authors(all_authors)
                .kind(Kind::TextNote)
                .limit(200),
        ),
        req(
            "thread: #e of a root, limit 500",
            Filter::new().event(events[3].id).limit(500),
        ),
        req(
            "mentions: #p of an author, limit 100",
            Filter::new()
                .pubkey(keys[11].public_key())
                .kinds([Kind::TextNote])
                .limit(100),
        ),
        Query {
            name: "COUNT one author's notes".to_owned(),
            filter: Filter::new()
                .author(keys[7].public_key())
                .kind(Kind::TextNote),
            count: true,
        },
    ]
}

/// A websocket for COUNT (NIP-45), which our sync client does not speak.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn count(ws: &mut Socket, filter: &Filter) -> u64 {
    let req = format!(r#"["COUNT","c",{}]"#, filter.as_json());
    ws.send(Message::text(req)).await.expect("send COUNT");
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(text)) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        if value[0] == "COUNT" {
            return value[2]["count"].as_u64().expect("count");
        }
        assert_ne!(value[0], "CLOSED", "COUNT refused: {text}");
    }
    panic!("connection closed before the COUNT answer");
}

/// Per relay: ingest figures, then the query samples and the NIP-77 result.
struct Side {
    relay: Relay,
    ingest_secs: f64,
    ingest_cpu: f64,
    samples: Vec<Vec<f64>>,
    query_cpu: f64,
    /// NIP-77: (seconds, bytes, round trips, found exactly the difference), or the refusal.
    neg: Result<(f64, u64, u64, bool), String>,
}

async fn ingest(relay: Relay, events: &[Event]) -> Side {
    eprintln!("ingest into {} at {}…", relay.name, relay.url);
    let (t, cpu) = (Instant::now(), relay.cpu_secs());
    let accepted = publish_all(&relay.url, events).await;
    assert_eq!(
        accepted,
        events.len(),
        "{} did not accept every event",
        relay.name
    );
    Side {
        ingest_secs: t.elapsed().as_secs_f64(),
        ingest_cpu: relay.cpu_secs() - cpu,
        relay,
        samples: Vec::new(),
        query_cpu: 0.0,
        neg: Err("not run".into()),
    }
}

/// Every query `REQ_SAMPLES` times on every relay, interleaved sample by sample.
async fn sample_queries(sides: &mut [Side], queries: &[Query]) {
    let mut clients = Vec::new();
    let mut sockets = Vec::new();
    for side in sides.iter_mut() {
        clients.push(client(&side.relay.url).await);
        let (ws, _) = tokio_tungstenite::connect_async(side.relay.url.as_str())
            .await
            .expect("websocket");
        sockets.push(ws);
        side.samples = vec![Vec::with_capacity(REQ_SAMPLES); queries.len()];
        side.query_cpu = side.relay.cpu_secs();
    }
    for (q, query) in queries.iter().enumerate() {
        for _ in 0..REQ_SAMPLES {
            for (s, side) in sides.iter_mut().enumerate() {
                let t = Instant::now();
                let found = if query.count {
                    count(&mut sockets[s], &query.filter).await as usize
                } else {
                    clients[s]
                        .query(query.filter.clone())
                        .await
                        .expect("query")
                        .len()
                };
                side.samples[q].push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(
                    found > 0,
                    "{}: {} found nothing",
                    side.relay.name,
                    query.name
                );
            }
        }
    }
    for side in sides.iter_mut() {
        side.query_cpu = side.relay.cpu_secs() - side.query_cpu;
    }
    for c in clients {
        c.close().await;
    }
}

/// NIP-77 with 99% of the relay's set plus 1% it lacks.
async fn reconcile(side: &mut Side, events: &[Event], extra: &[Event]) {
    let keep = events.len() - extra.len();
    let items: Vec<(Timestamp, EventId)> = events[..keep]
        .iter()
        .chain(extra)
        .map(|e| (e.created_at, e.id))
        .collect();
    let mut c = client(&side.relay.url).await;
    let (bytes0, rounds0) = (c.bytes_in + c.bytes_out, c.round_trips);
    let t = Instant::now();
    side.neg = match c.reconcile(Filter::new(), &items).await {
        Ok(rec) => Ok((
            t.elapsed().as_secs_f64(),
            c.bytes_in + c.bytes_out - bytes0,
            c.round_trips - rounds0,
            rec.have.len() == extra.len() && rec.need.len() == events.len() - keep,
        )),
        Err(e) => Err(e.to_string()),
    };
    c.close().await;
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--events", "30000").parse().expect("--events N");
    let bin = arg(&args, "--bin", "target/release/constellation");
    let strfry_bin = arg(&args, "--strfry", "../shared/peers/strfry/strfry");
    let python = arg(&args, "--python", ".venv/bin/python");
    eprintln!("signing {n} events (+1% for the NIP-77 difference)…");
    let (keys, events) = generate(n, "bench");
    let (_, extra) = generate(n / 100, "extra");
    let tmp = tempfile::tempdir().expect("tmp");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut relays = vec![
        ours(&bin, &tmp.path().join("relay.sqlite")),
        strfry(&strfry_bin),
    ];
    // A second build of ours (the one before a change), as a third column of the same run.
    let baseline = arg(&args, "--baseline", "");
    if !baseline.is_empty() {
        let dir = tmp.path().join("baseline");
        std::fs::create_dir_all(&dir).expect("baseline dir");
        let mut relay = ours(&baseline, &dir.join("relay.sqlite"));
        relay.name = "constellation (baseline)";
        relays.push(relay);
    }
    if args.iter().any(|a| a == "--localrelay") {
        relays.push(local_relay(&python));
    }
    let queries = queries(&keys, &events);
    let stalled_n: usize = arg(&args, "--stalled", "16").parse().expect("--stalled N");
    let now = Timestamp::now().as_secs();
    let (sides, stalls) = runtime.block_on(async {
        let mut sides = Vec::new();
        for relay in relays {
            sides.push(ingest(relay, &events).await);
        }
        eprintln!("querying ({REQ_SAMPLES} samples a filter, interleaved)…");
        sample_queries(&mut sides, &queries).await;
        for side in &mut sides {
            reconcile(side, &events, &extra).await;
        }
        let mut stalls = Vec::new();
        for side in sides.iter().filter(|_| stalled_n > 0) {
            eprintln!("{stalled_n} stalled readers on {}…", side.relay.name);
            let honest = &queries[0].filter;
            stalls.push(stalled::run(&side.relay, stalled_n, now, SPREAD, honest).await);
        }
        (sides, stalls)
    });
    print_table(n, &sides, &queries);
    print_stalled(stalled_n, &sides, &stalls, &queries[0].name);
}

fn print_stalled(n: usize, sides: &[Side], stalls: &[stalled::Stalled], honest: &str) {
    if stalls.is_empty() {
        return;
    }
    let names: Vec<&str> = sides.iter().map(|s| s.relay.name).collect();
    println!(
        "\n| {n} stalled readers (REQ for the whole store, never read) | {} |",
        names.join(" | ")
    );
    println!("|---|{}", "---|".repeat(stalls.len()));
    let row = |what: &str, cell: &dyn Fn(&stalled::Stalled) -> String| {
        let cells: Vec<String> = stalls.iter().map(cell).collect();
        println!("| {what} | {} |", cells.join(" | "));
    };
    row("heap (RssAnon) before → peak → after, MiB", &|s| {
        format!(
            "{:.0} → {:.0} → {:.0}",
            s.anon_before_mib, s.anon_peak_mib, s.anon_after_mib
        )
    });
    row(
        "RSS with mapped files, before → peak → after, MiB",
        &|s| {
            format!(
                "{:.0} → {:.0} → {:.0}",
                s.rss_before_mib, s.rss_peak_mib, s.rss_after_mib
            )
        },
    );
    row("stalled readers cut", &|s| format!("{} of {n}", s.cut));
    row(
        &format!("honest client ({honest}): answered, slowest ms"),
        &|s| {
            format!(
                "{} of {}, {:.1}",
                s.honest_answered, s.honest_asked, s.honest_ms_max
            )
        },
    );
}

fn print_table(n: usize, sides: &[Side], queries: &[Query]) {
    let names: Vec<&str> = sides.iter().map(|s| s.relay.name).collect();
    let cores = std::thread::available_parallelism().map_or(1, |t| t.get());
    println!(
        "| {n} events, {cores} cores | {} | ours ÷ strfry |",
        names.join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(sides.len()));
    let row = |what: String, cells: Vec<String>, ratio: String| {
        println!("| {what} | {} | {ratio} |", cells.join(" | "));
    };
    let rate = |s: &Side| n as f64 / s.ingest_secs;
    row(
        "ingest, signed + verified: events/s (CPU-s)".into(),
        sides
            .iter()
            .map(|s| format!("{:.0} ({:.1})", rate(s), s.ingest_cpu))
            .collect(),
        format!("{:.2}× the rate", rate(&sides[0]) / rate(&sides[1])),
    );
    for (q, query) in queries.iter().enumerate() {
        let med = |s: &Side| percentile(&s.samples[q], 0.5);
        let cells = sides.iter().map(|s| {
            let (lo, hi) = (
                percentile(&s.samples[q], 0.05),
                percentile(&s.samples[q], 0.95),
            );
            format!("{:.2} / {hi:.2} (p5 {lo:.2})", med(s))
        });
        row(
            format!("{}: median / p95 ms", query.name),
            cells.collect(),
            format!("{:.2}× the time", med(&sides[0]) / med(&sides[1])),
        );
    }
    row(
        format!("CPU-s for all queries ({REQ_SAMPLES} each)"),
        sides
            .iter()
            .map(|s| format!("{:.2}", s.query_cpu))
            .collect(),
        String::new(),
    );
    let neg = |s: &Side| match &s.neg {
        Ok((secs, bytes, rounds, ok)) => {
            format!(
                "{secs:.2} s, {} KiB, {rounds} round trips{}",
                bytes / 1024,
                if *ok { "" } else { ", WRONG" }
            )
        }
        Err(e) => format!("refused: {e}"),
    };
    row(
        format!("NIP-77 {0}k vs {0}k, 1% each side", n / 1000),
        sides.iter().map(neg).collect(),
        match (&sides[0].neg, &sides[1].neg) {
            (Ok(a), Ok(b)) => format!("{:.2}× the time", a.0 / b.0),
            _ => String::new(),
        },
    );
    println!(
        "\nDurability: ours commits each batch with SQLite `synchronous = FULL` (fsync before the \
         OK); strfry writes LMDB as its defaults open it."
    );
}

//! The hostile-client suite, beside `faults.rs`: relay slowloris, oversized frames, 10,000 REQs,
//! 5,000 connections, forged signatures; control and status abuse; sync peers that flood, stray or
//! never converge; tunnels nobody reads. Each checks RSS (or a bound) and an honest client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nostr::prelude::*;
use serde_json::json;

use crate::common::fake_relay::{self, Behaviour};
use crate::common::net::{self, payload, sha256};
use crate::common::relays::{self, OurRelay, runtime};
use crate::common::{self, Daemon, rss_kib};
use crate::relay::{Ws, signed};

/// RSS growth allowed for a relay under one hostile case (its caches, connection tasks).
const GROWTH_MAX_KIB: u64 = 64 * 1024;

/// The process `pid` grew by less than [`GROWTH_MAX_KIB`] since it had `before` KiB of RSS.
fn assert_grew_little(before: u64, pid: u32) {
    let after = rss_kib(pid);
    assert!(
        after.saturating_sub(before) < GROWTH_MAX_KIB,
        "RSS {before} -> {after} KiB"
    );
}

/// Write `head` one byte a second until the server closes; how long it kept the connection.
fn one_byte_a_second(addr: &str, head: &[u8], give_up: Duration) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(1_000)))
        .expect("timeout");
    for b in head.iter().cycle() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => break, // an answer (408/400) then the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        assert!(
            started.elapsed() < give_up,
            "still connected after {give_up:?}"
        );
    }
    started.elapsed()
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

#[test]
fn relay_slowloris_at_a_byte_a_second_is_cut_at_the_head_deadline() {
    let relay = OurRelay::start("");
    let addr = relay.addr().to_owned();
    let slow =
        std::thread::spawn(move || one_byte_a_second(&addr, UPGRADE, Duration::from_secs(30)));
    runtime().block_on(async {
        let mut honest = Ws::connect(&relay.url).await;
        honest.alive().await;
    });
    let held = slow.join().expect("slow client");
    // The head deadline is 10 s (relay::http::HEAD_TIMEOUT).
    assert!(
        held >= Duration::from_secs(9) && held < Duration::from_secs(15),
        "held {held:?}"
    );
    runtime().block_on(async { Ws::connect(&relay.url).await.alive().await });
}

#[test]
fn frames_over_the_limit_are_cut_at_their_header_and_cost_nothing() {
    let relay = OurRelay::start("");
    let before = rss_kib(relay.pid());
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for size in [10u64 << 20, 100 << 20, u64::MAX >> 1] {
            let mut tcp = tokio::net::TcpStream::connect(relay.addr())
                .await
                .expect("connect");
            tcp.write_all(UPGRADE).await.expect("head");
            tcp.write_all(b"\r\n").await.expect("head end");
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await.expect("101");
            // A masked text frame announcing `size` bytes, then some of them.
            let mut frame = vec![0x81, 0xff];
            frame.extend_from_slice(&size.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            let _ = tcp.write_all(&frame).await;
            let _ = tcp.write_all(&vec![b'x'; 1 << 20]).await;
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "a {size}-byte frame was not cut");
        }
        Ws::connect(&relay.url).await.alive().await;
    });
    assert_grew_little(before, relay.pid());
}

#[test]
fn ten_thousand_reqs_on_one_connection_are_all_answered_in_bounded_memory() {
    let relay = OurRelay::start("");
    let before = rss_kib(relay.pid());
    let answers = runtime().block_on(async {
        let mut ws = Ws::connect(&relay.url).await;
        let mut honest = Ws::connect(&relay.url).await;
        let mut answers = std::collections::BTreeMap::<String, u64>::new();
        for i in 0..10_000 {
            ws.send(json!(["REQ", format!("s{i}"), {"kinds": [1], "limit": 1}]).to_string())
                .await;
            let m = ws.recv().await;
            *answers
                .entry(m[0].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
            if i % 2_500 == 0 {
                honest.alive().await;
            }
        }
        honest.alive().await;
        answers
    });
    // 20 subscriptions are open (max_subscriptions); the rest are refused one by one.
    assert_eq!(answers.get("EOSE"), Some(&20), "{answers:?}");
    assert_eq!(answers.get("CLOSED"), Some(&9_980), "{answers:?}");
    assert_grew_little(before, relay.pid());
}

/// Connections tried from one outside address (127.0.0.2, an address the relay counts as
/// outside with `limit_loopback`). 5,000 plus the relay's own fds fit the 20,000 fd limit here.
const FLOOD_CONNECTIONS: usize = 5_000;

#[test]
fn five_thousand_connections_from_one_address_get_its_slots_and_the_station_is_served() {
    let relay = OurRelay::start("[relay]\nlimit_loopback = true\nmax_connections_per_ip = 32\n");
    let before = rss_kib(relay.pid());
    let addr: std::net::SocketAddr = relay.addr().parse().expect("addr");
    let (upgraded, refused, held) = runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut upgraded, mut refused, mut held) = (0, 0, Vec::new());
        for _ in 0..FLOOD_CONNECTIONS {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            let Ok(Ok(mut tcp)) =
                tokio::time::timeout(Duration::from_secs(5), socket.connect(addr)).await
            else {
                continue;
            };
            let _ = tcp.write_all(UPGRADE).await;
            let _ = tcp.write_all(b"\r\n").await;
            let mut head = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut head)).await {
                Ok(Ok(n)) if head[..n].starts_with(b"HTTP/1.1 101") => upgraded += 1,
                Ok(Ok(n)) if head[..n].starts_with(b"HTTP/1.1 503") => refused += 1,
                _ => {}
            }
            held.push(tcp);
        }
        let mut honest = Ws::connect(&format!("ws://{addr}")).await;
        honest.alive().await;
        (upgraded, refused, held.len())
    });
    assert_eq!(
        upgraded, 32,
        "{upgraded} upgraded, {refused} refused of {held}"
    );
    assert_eq!(
        upgraded + refused,
        FLOOD_CONNECTIONS,
        "every connection got an answer"
    );
    assert_grew_little(before, relay.pid());
}

#[test]
fn a_flood_of_invalid_signatures_is_refused_and_an_honest_author_is_stored() {
    let relay = OurRelay::start("");
    let keys = Keys::generate();
    let good = signed(&keys, 1, "honest", vec![], relays::now());
    let forged: Vec<Event> = (0..2_000)
        .map(|i| {
            let mut e = signed(&keys, 1, &format!("forged {i}"), vec![], relays::now());
            e.sig = good.sig;
            e
        })
        .collect();
    let before = rss_kib(relay.pid());
    runtime().block_on(async {
        let mut ws = Ws::connect(&relay.url).await;
        let mut honest = Ws::connect(&relay.url).await;
        for (i, e) in forged.iter().enumerate() {
            ws.send(ClientMessage::event(e.clone()).as_json()).await;
            let m = ws.recv().await;
            assert_eq!(
                (m[0].as_str(), m[2].as_bool()),
                (Some("OK"), Some(false)),
                "{m}"
            );
            assert!(m[3].as_str().unwrap_or("").starts_with("invalid:"), "{m}");
            if i == 1_000 {
                honest
                    .send(ClientMessage::event(good.clone()).as_json())
                    .await;
                assert_eq!(honest.recv().await[2], true);
            }
        }
    });
    let stored = relay.stored_ids();
    assert_eq!(stored.len(), 1, "only the honest event");
    assert!(stored.contains(&good.id));
    assert_grew_little(before, relay.pid());
}

#[test]
fn control_socket_slowloris_is_cut_and_the_cli_works_meanwhile() {
    let a = Daemon::start(&[]);
    let socket = a.home.join("control.sock");
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        for b in br#"{"op":"p2p_ls"}"#.iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never cut");
        }
        started.elapsed()
    });
    a.cli_ok(&["p2p", "ls"]);
    let held = slow.join().expect("slow");
    // The request deadline is 10 s (control::REQUEST_TIMEOUT).
    assert!(
        held >= Duration::from_secs(9) && held < Duration::from_secs(15),
        "held {held:?}"
    );
    a.cli_ok(&["p2p", "ls"]);
}

#[test]
fn status_page_oversized_and_many_requests_leave_an_honest_client_served() {
    let port = crate::common::net::free_port();
    let status = format!("127.0.0.1:{port}");
    let a = Daemon::start(&["--status-listen", &status]);
    let before = rss_kib(a.pid());
    // A 1 MiB request head: cut, not buffered.
    let mut big = TcpStream::connect(&status).expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    let _ = big.write_all(&head);
    // 500 connections at once that send nothing.
    let idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(&status).ok())
        .collect();
    honest_status(&status);
    drop((big, idle));
    assert_grew_little(before, a.pid());
}

/// A backfill's memory while it runs, in KiB (polled from /proc), and its exit and stats.
fn backfill_watched(
    home: &std::path::Path,
    args: &[&str],
) -> (u64, i32, serde_json::Value, Duration) {
    let started = Instant::now();
    let mut child = std::process::Command::new(common::bin())
        .arg("--home")
        .arg(home)
        .args(["backfill", "--json", "--no-fallback"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backfill");
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        peak = peak.max(rss_kib(child.id()));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the backfill never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let stats = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"));
    (peak, status.code().unwrap_or(-1), stats, started.elapsed())
}

/// Memory a backfill may reach while a peer floods it: one REQ's byte bound (64 MiB) and the rest.
const BACKFILL_RSS_MAX_KIB: u64 = 256 * 1024;

#[test]
fn sync_peers_that_never_stop_or_answer_outside_the_filter_cost_bounded_memory() {
    let keys = Keys::generate();
    let recent = signed(
        &keys,
        1,
        &"flood ".repeat(1_000),
        vec![],
        relays::now() - 60,
    );
    let endless = fake_relay::start(Behaviour::Endless(recent.as_json()));
    let old = signed(
        &keys,
        1,
        "ten days old",
        vec![],
        relays::now() - 10 * 86_400,
    );
    let other_kind = signed(
        &keys,
        9_999,
        "not a kind we asked for",
        vec![],
        relays::now() - 60,
    );
    let outside = fake_relay::start(Behaviour::Serve(vec![old.as_json(), other_kind.as_json()]));
    let honest = OurRelay::start("");
    let wanted = signed(&keys, 1, "honest", vec![], relays::now() - 60);
    relays::publish(&honest.url, std::slice::from_ref(&wanted));
    let tmp = tempfile::tempdir().expect("tmp");
    let unused = crate::common::net::free_port();
    let home = common::home_with(
        &tmp.path().join("home"),
        &format!("[relay]\nlisten = \"127.0.0.1:{unused}\"\n"),
    );
    let zen = tmp.path().join("zen").display().to_string();
    let (peak, code, stats, took) = backfill_watched(
        &home,
        &[
            "--zen",
            &zen,
            "--no-profiles",
            "--peer",
            &endless,
            "--peer",
            &outside,
            "--peer",
            &honest.url,
        ],
    );
    assert!(peak < BACKFILL_RSS_MAX_KIB, "backfill peak RSS {peak} KiB");
    assert_eq!(code, 2, "a partial run: {stats}");
    let peer = |url: &str| {
        stats["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .find(|p| p["name"] == url)
            .cloned()
            .expect("peer")
    };
    let flood = peer(&endless);
    assert_eq!(flood["ok"], false);
    assert!(
        flood["error"].as_str().unwrap_or("").contains("bytes"),
        "{flood}"
    );
    let stored = relays::stored_ids(&home.join("relay.sqlite"));
    assert!(stored.contains(&wanted.id), "the honest peer's event");
    assert!(
        !stored.contains(&old.id) && !stored.contains(&other_kind.id),
        "events outside the filter are dropped"
    );
    println!("endless peer cut after {took:?}, backfill peak RSS {peak} KiB");
}

#[test]
fn sync_peers_whose_reconciliation_never_ends_are_dropped_at_its_bounds() {
    let keys = Keys::generate();
    let honest = OurRelay::start("");
    let wanted = signed(&keys, 1, "honest", vec![], relays::now() - 60);
    relays::publish(&honest.url, std::slice::from_ref(&wanted));
    // Each answer 2,000 ids longer than the last, until one passes the client's message limit.
    let growing = fake_relay::start(Behaviour::NegEndless {
        first: 0,
        growth: 2_000,
    });
    // 15,000 fresh ids every round, each answer under the message limit, forever.
    let listing = fake_relay::start(Behaviour::NegEndless {
        first: 15_000,
        growth: 0,
    });
    // Rounds that name nothing and never converge.
    let circling = fake_relay::start(Behaviour::NegEndless {
        first: 0,
        growth: 0,
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let unused = crate::common::net::free_port();
    let home = common::home_with(
        &tmp.path().join("home"),
        &format!("[relay]\nlisten = \"127.0.0.1:{unused}\"\n"),
    );
    let zen = tmp.path().join("zen").display().to_string();
    let mut args = vec!["--zen", &zen, "--no-profiles"];
    for url in [&growing, &listing, &circling, &honest.url] {
        args.extend(["--peer", url.as_str()]);
    }
    let (peak, code, stats, took) = backfill_watched(&home, &args);
    assert!(peak < BACKFILL_RSS_MAX_KIB, "backfill peak RSS {peak} KiB");
    assert_eq!(code, 2, "a partial run: {stats}");
    let peers = stats["peers"].as_array().expect("peers");
    let error_of = |url: &str| {
        let peer = peers.iter().find(|p| p["name"] == url).expect("peer");
        assert_eq!(peer["ok"], false, "{peer}");
        peer["error"].as_str().unwrap_or("").to_owned()
    };
    let cases = [
        (&growing, "Message too long"),
        (&listing, "more ids than a reconciliation holds"),
        (&circling, "no agreement after 1000 rounds"),
    ];
    for (url, bound) in cases {
        let error = error_of(url);
        assert!(error.contains(bound), "{url}: {error}");
        println!("{url}: dropped: {error}");
    }
    let stored = relays::stored_ids(&home.join("relay.sqlite"));
    assert!(stored.contains(&wanted.id), "the honest peer's event");
    assert!(
        stored.len() == 1,
        "nothing of the hostile peers' ids is stored"
    );
    println!("hostile NIP-77 peers dropped in {took:?}, backfill peak RSS {peak} KiB");
}

/// Streams a hostile peer holds open at once, under the 256-per-peer cap so that all are piped.
const STALLED_STREAMS: usize = 200;
/// What one stalled tunnel stream may cost a daemon: yamux's 256 KiB receive window, the pipe's
/// two 64 KiB buffers, its task and its socket. 200 streams: 100 MiB at most.
const STALLED_STREAM_MAX_KIB: u64 = 512;
/// Bytes pushed at each stalled stream: eight times what it may hold in a daemon, and little
/// enough that the kernel's buffers on the way do not make the pipeline slow to fill.
const PUSH_PER_STREAM: usize = 4 << 20;

/// The largest RSS of `daemons` seen until `settled` holds (polled), in KiB each.
fn peak_until(
    daemons: &[&Daemon],
    timeout: Duration,
    mut settled: impl FnMut() -> bool,
) -> Vec<u64> {
    let mut peak = vec![0; daemons.len()];
    let held = common::wait_until(timeout, || {
        for (p, d) in peak.iter_mut().zip(daemons) {
            *p = (*p).max(rss_kib(d.pid()));
        }
        settled()
    });
    assert!(held, "the pipeline never settled in {timeout:?}");
    peak
}

fn assert_stalled_cost(what: &str, before: &[u64], peak: &[u64]) {
    let bound = STALLED_STREAMS as u64 * STALLED_STREAM_MAX_KIB;
    for (name, (b, p)) in ["a", "b"].iter().zip(before.iter().zip(peak)) {
        println!("{what}: daemon {name} RSS {b} KiB -> peak {p} KiB");
        assert!(
            p.saturating_sub(*b) < bound,
            "{what}: daemon {name} RSS {b} -> {p} KiB"
        );
    }
}

#[test]
fn streams_that_never_read_a_pushing_target_cost_bounded_memory_and_an_honest_one_flows() {
    use std::sync::atomic::Ordering;
    const PUSH: usize = PUSH_PER_STREAM;
    let (target, written) = net::firehose_server(PUSH, 5);
    let (a, b, port) = crate::tunnel::tunnel_pair(target.port(), &[]);
    let before = [rss_kib(a.pid()), rss_kib(b.pid())];
    let stalled: Vec<TcpStream> = (0..STALLED_STREAMS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // Settled: every stream is open and the target's writes have stopped for a second (each
    // stalled stream took what it will: the buffers on its way are full, or it took it all).
    let (mut last, mut still) = (0, 0);
    let peak = peak_until(&[&a, &b], Duration::from_secs(90), || {
        let now = written.load(Ordering::Relaxed);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 10 && a.cli_ok(&["p2p", "stream", "ls"]).lines().count() >= STALLED_STREAMS
    });
    let pushed = written.load(Ordering::Relaxed);
    assert!(
        pushed > STALLED_STREAMS as u64 * 256 * 1024,
        "the target pushed only {pushed} bytes"
    );
    let mut honest = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    honest
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let (len, digest) = net::read_all_hashed(&mut honest).expect("the honest stream");
    assert_eq!((len, digest), (PUSH as u64, sha256(&payload(PUSH, 5))));
    println!("{pushed} bytes pushed into {STALLED_STREAMS} stalled streams");
    assert_stalled_cost("never-reading clients", &before, &peak);
    drop(stalled);
}

#[test]
fn a_target_that_never_reads_what_the_remote_pushes_costs_bounded_memory() {
    use std::sync::atomic::Ordering;
    let (target, accepted) = net::sink_then_echo_server(STALLED_STREAMS);
    let (a, b, port) = crate::tunnel::tunnel_pair(target.port(), &[]);
    let before = [rss_kib(a.pid()), rss_kib(b.pid())];
    let mut pushers: Vec<TcpStream> = (0..STALLED_STREAMS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    assert!(
        common::wait_until(Duration::from_secs(30), || accepted.load(Ordering::Relaxed)
            >= STALLED_STREAMS),
        "the target accepted {} streams",
        accepted.load(Ordering::Relaxed)
    );
    let pushed = net::fill_until_blocked(
        &mut pushers,
        PUSH_PER_STREAM as u64,
        Duration::from_secs(90),
    );
    let peak = peak_until(&[&a, &b], Duration::from_secs(5), || true);
    assert!(
        pushed > STALLED_STREAMS as u64 * 256 * 1024,
        "only {pushed} bytes pushed"
    );
    let data = payload(4 << 20, 6);
    let answer = net::request(port, &data).expect("the honest stream");
    assert_eq!(sha256(&answer), sha256(&data));
    println!("{pushed} bytes pushed towards a target that never reads");
    assert_stalled_cost("a never-reading target", &before, &peak);
    drop(pushers);
}

/// Connections opened at once on the control socket: the issue's 5,000 idle clients, which took
/// RSS from 20 to 175 MiB before the socket had its cap of 64.
const CONTROL_FLOOD: usize = 5_000;

#[test]
fn five_thousand_idle_control_connections_cost_bounded_memory_and_the_cli_works_after() {
    let a = Daemon::start(&[]);
    let before = rss_kib(a.pid());
    let socket = a.home.join("control.sock");
    let (held, peak) = runtime().block_on(async {
        let mut held = Vec::new();
        for _ in 0..CONTROL_FLOOD {
            let connect = tokio::net::UnixStream::connect(&socket);
            // Past the cap and the kernel's backlog a connection is refused at once.
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                held.push(s);
            }
        }
        (held.len(), rss_kib(a.pid()))
    });
    assert!(held >= 64, "only {held} connections");
    assert!(
        peak.saturating_sub(before) < GROWTH_MAX_KIB,
        "{held} idle connections: RSS {before} -> {peak} KiB"
    );
    // The idle clients are gone; the next CLI call is served.
    a.cli_ok(&["p2p", "ls"]);
    println!("{held} idle control connections held: RSS {before} -> {peak} KiB");
}

#[test]
fn status_page_slowloris_at_a_byte_a_second_is_cut_and_an_honest_client_served() {
    let port = crate::common::net::free_port();
    let status = format!("127.0.0.1:{port}");
    let a = Daemon::start(&["--status-listen", &status]);
    let addr = status.clone();
    let head = b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n";
    let slow = std::thread::spawn(move || one_byte_a_second(&addr, head, Duration::from_secs(30)));
    let body = honest_status(&status);
    assert!(body.contains(&a.peer_id), "{body}");
    let held = slow.join().expect("slow client");
    // The status page's head deadline is 3 s (status::HEAD_TIMEOUT).
    assert!(
        held >= Duration::from_secs(2) && held < Duration::from_secs(8),
        "held {held:?}"
    );
}

/// An honest client's `GET /api/status` to `status`: it must answer 200; returns the response.
fn honest_status(status: &str) -> String {
    let mut honest = TcpStream::connect(status).expect("connect");
    honest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    honest
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    let _ = honest.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body:?}");
    body
}

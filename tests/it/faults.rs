//! Hostile clients against the running daemon and relay: stalled readers (direct and through
//! `/x/strfry`), slot hogs, slow parses, slow status clients, control-socket floods, rate limits
//! and the CLI's error lines. Each case checks memory or a bound, and that honest clients are served.

use std::time::{Duration, Instant};

use nostr::prelude::*;
use serde_json::{Value, json};

use crate::common::net::{free_port, tcp_addr};
use crate::common::relays::{self, OurRelay, runtime};
use crate::common::{self, Daemon, rss_kib};
use crate::relay::{Ws, signed};

/// Large events (60 KB content, under the 64 KiB event limit), oldest first.
fn large_events(n: u64) -> Vec<Event> {
    let keys = Keys::generate();
    let base = relays::now() - 100_000;
    (0..n)
        .map(|i| {
            signed(
                &keys,
                1,
                &format!("{i:06}{}", "x".repeat(60_000)),
                vec![],
                base + i,
            )
        })
        .collect()
}

/// Open `n` clients that subscribe with `filter` and then never read past the first message
/// (EOSE for a live-only filter, the first stored event otherwise).
async fn stalled_readers(url: &str, n: usize, filter: Value) -> Vec<Ws> {
    let mut readers = Vec::new();
    for i in 0..n {
        let mut ws = Ws::connect(url).await;
        ws.send(json!(["REQ", format!("all{i}"), filter]).to_string())
            .await;
        let first = ws.recv().await;
        assert!(first[0] == "EOSE" || first[0] == "EVENT", "{first}");
        readers.push(ws);
    }
    readers
}

/// Publish `events` one by one from `writer` while `honest` reads each live; returns the peak
/// RSS of `pid` seen meanwhile, in KiB.
async fn publish_and_watch(writer: &mut Ws, honest: &mut Ws, events: &[Event], pid: u32) -> u64 {
    let mut peak = 0;
    for e in events {
        writer.send(ClientMessage::event(e.clone()).as_json()).await;
        let ok = writer.recv().await;
        assert_eq!(
            (ok[0].as_str(), ok[2].as_bool()),
            (Some("OK"), Some(true)),
            "{ok}"
        );
        let live = honest.recv().await;
        assert_eq!(
            live[2]["id"],
            e.id.to_hex(),
            "the honest reader gets every event"
        );
        peak = peak.max(rss_kib(pid));
    }
    peak
}

/// RSS growth allowed while 16 stalled readers each miss 30 MB of events: the bound is 4 MiB
/// queued per client (64 MiB for 16) plus the store's caches. Before the bound they cost ~250 MiB each.
const STALLED_GROWTH_MAX_KIB: u64 = 128 * 1024;

#[test]
fn stalled_readers_are_cut_at_their_byte_bound_and_memory_stays_flat() {
    let relay = OurRelay::start("");
    let events = large_events(500);
    runtime().block_on(async {
        let stalled = stalled_readers(&relay.url, 16, json!({"limit": 0})).await;
        let mut honest = Ws::connect(&relay.url).await;
        honest
            .send(json!(["REQ", "h", {"limit": 0}]).to_string())
            .await;
        assert_eq!(honest.recv().await[0], "EOSE");
        let mut writer = Ws::connect(&relay.url).await;
        let before = rss_kib(relay.pid());
        let peak = publish_and_watch(&mut writer, &mut honest, &events, relay.pid()).await;
        assert!(
            peak.saturating_sub(before) < STALLED_GROWTH_MAX_KIB,
            "RSS {before} KiB -> peak {peak} KiB"
        );
        drop(stalled);
        honest.alive().await;
    });
    let log = std::fs::read_to_string(relay.home.join("../relay.log")).expect("relay log");
    let cut = log
        .matches("bytes waiting to be read; disconnecting")
        .count();
    assert!(cut >= 16, "{cut} stalled readers cut:\n{log}");
}

/// Store `events` through `writer`, all sent before the OKs are read.
async fn publish(writer: &mut Ws, events: &[Event]) {
    for e in events {
        writer.send(ClientMessage::event(e.clone()).as_json()).await;
    }
    for _ in events {
        let ok = writer.recv().await;
        assert_eq!(ok[2], true, "{ok}");
    }
}

/// RSS growth allowed while 16 readers stall on a REQ for the whole store (30 MB each): the
/// bound is 4 MiB queued plus one 1 MiB page of the answer per client (80 MiB for 16) plus the
/// store's caches. Before the answer was read in pages each one also held the unsent rest of
/// its filter's 500 events, ~26 MB.
const STALLED_REQ_GROWTH_MAX_KIB: u64 = 128 * 1024;
/// A reply that finds no room waits 5 s (`relay::outbox`), then its client is cut; the rest
/// is slack for a loaded machine.
const CUT_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn stalled_req_readers_hold_a_bounded_answer_and_are_cut_while_an_honest_client_is_served() {
    let relay = OurRelay::start("");
    let log = relay.home.join("../relay.log");
    let cut = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("stopped reading; disconnecting")
            .count()
    };
    runtime().block_on(async {
        let mut writer = Ws::connect(&relay.url).await;
        publish(&mut writer, &large_events(500)).await;
        let before = rss_kib(relay.pid());
        let stalled = stalled_readers(&relay.url, 16, json!({"limit": 500})).await;
        let mut honest = Ws::connect(&relay.url).await;
        // Until every stalled reader is cut (bounded), the honest client asks and is answered.
        let (deadline, mut peak, mut answered) = (Instant::now() + CUT_WITHIN, 0, 0);
        while cut() < 16 && Instant::now() < deadline {
            peak = peak.max(rss_kib(relay.pid()));
            honest
                .send(json!(["REQ", "h", {"limit": 1}]).to_string())
                .await;
            assert_eq!(
                honest.recv().await[0],
                "EVENT",
                "the honest client is served"
            );
            assert_eq!(honest.recv().await[0], "EOSE");
            answered += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(cut(), 16, "stalled readers cut within {CUT_WITHIN:?}");
        assert!(answered > 0, "the honest client asked while they stalled");
        assert!(
            peak.saturating_sub(before) < STALLED_REQ_GROWTH_MAX_KIB,
            "RSS {before} KiB -> peak {peak} KiB"
        );
        drop(stalled);
        honest.alive().await;
    });
}

/// A daemon with the embedded relay on a free port, served as `/x/strfry-<id>` too.
fn relay_station(config: &str) -> (Daemon, String) {
    let port = free_port();
    let a = Daemon::start_with_config(config, &["--relay-listen", &format!("127.0.0.1:{port}")]);
    let protocol = format!("/x/strfry-{}", a.peer_id);
    a.cli_ok(&["p2p", "listen", &protocol, &tcp_addr(port)]);
    (a, format!("ws://127.0.0.1:{port}"))
}

/// A second daemon connected to `a` with a forward to `a`'s `/x/strfry`; returns its ws URL.
fn tunnel_client(a: &Daemon) -> (Daemon, String) {
    let b = Daemon::start(&[]);
    common::connect(a, &b);
    let port = free_port();
    b.cli_ok(&[
        "p2p",
        "forward",
        &format!("/x/strfry-{}", a.peer_id),
        &tcp_addr(port),
        &format!("/p2p/{}", a.peer_id),
    ]);
    (b, format!("ws://127.0.0.1:{port}"))
}

#[test]
fn stalled_readers_through_a_tunnel_cost_the_station_bounded_memory() {
    let (a, local) = relay_station("");
    let (_b, through_b) = tunnel_client(&a);
    let events = large_events(300);
    runtime().block_on(async {
        let stalled = stalled_readers(&through_b, 8, json!({"limit": 0})).await;
        let mut honest = Ws::connect(&local).await;
        honest
            .send(json!(["REQ", "h", {"limit": 0}]).to_string())
            .await;
        assert_eq!(honest.recv().await[0], "EOSE");
        let mut writer = Ws::connect(&local).await;
        let before = rss_kib(a.pid());
        let peak = publish_and_watch(&mut writer, &mut honest, &events, a.pid()).await;
        assert!(
            peak.saturating_sub(before) < STALLED_GROWTH_MAX_KIB,
            "RSS {before} KiB -> peak {peak} KiB"
        );
        drop(stalled);
    });
    assert!(a.wait_log(
        "bytes waiting to be read; disconnecting",
        Duration::from_secs(10)
    ));
}

/// Try `n` websocket clients at `url` that each hold a subscription; returns those served.
async fn hold_clients(url: &str, n: usize) -> Vec<Ws> {
    let mut held = Vec::new();
    for i in 0..n {
        let attempt = async {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
            let mut ws = Ws { ws };
            ws.send(json!(["REQ", format!("hold{i}"), {"limit": 0}]).to_string())
                .await;
            (ws.recv().await[0] == "EOSE").then_some(ws)
        };
        if let Ok(Some(ws)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            held.push(ws);
        }
    }
    held
}

#[test]
fn swarm_peers_get_their_own_slots_and_the_station_keeps_its_reserve() {
    let config = "[relay]\nmax_connections = 24\nreserved_local_connections = 4\n\
                  max_connections_per_peer = 8\n";
    let (a, local) = relay_station(config);
    let (_b, through_b) = tunnel_client(&a);
    let (_c, through_c) = tunnel_client(&a);
    runtime().block_on(async {
        let from_b = hold_clients(&through_b, 12).await;
        let from_c = hold_clients(&through_c, 12).await;
        assert_eq!((from_b.len(), from_c.len()), (8, 8), "8 per peer");
        // Both peers hold all they may, and the station's own clients still get in.
        let own = hold_clients(&local, 4).await;
        assert_eq!(own.len(), 4, "the local reserve");
        drop(from_b);
        let again = crate::common::wait_until_async(Duration::from_secs(10), || async {
            hold_clients(&through_b, 1).await.len() == 1
        });
        assert!(again.await, "b's slots come back when its clients leave");
    });
}

/// One raw request on the daemon's control socket; the answer and how long it took.
async fn control(daemon: &Daemon, line: &[u8]) -> (Value, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut socket = tokio::net::UnixStream::connect(daemon.home.join("control.sock"))
        .await
        .expect("control socket");
    let (mut read, mut write) = socket.split();
    let mut answer = Vec::new();
    // The daemon may answer (and close) before it has read a request that is too long.
    let (_, got) = tokio::join!(write.write_all(line), read.read_to_end(&mut answer));
    got.expect("read");
    (
        serde_json::from_slice(&answer).expect("json answer"),
        started.elapsed(),
    )
}

#[test]
fn over_long_targets_are_refused_at_once_while_the_relay_keeps_answering() {
    let (a, local) = relay_station("");
    runtime().block_on(async {
        let mut probe = Ws::connect(&local).await;
        for size in [250_000, 1_000_000] {
            let request = json!({"op": "p2p_forward", "persist": false, "spec": {
                "protocol": "/x/test", "listen": "/ip4/127.0.0.1/tcp/0",
                "target": format!("/p2p/{}", "1".repeat(size)),
            }});
            let mut line = request.to_string().into_bytes();
            line.push(b'\n');
            let (answer, took) = tokio::join!(control(&a, &line), async {
                let started = Instant::now();
                probe.alive().await;
                started.elapsed()
            });
            let (answer, elapsed) = answer;
            let error = answer["error"].as_str().expect("an error");
            assert!(error.contains("longer than"), "{error}");
            assert!(
                error.len() < 300,
                "the target is echoed: {} bytes",
                error.len()
            );
            assert!(elapsed < Duration::from_millis(300), "{size}: {elapsed:?}");
            assert!(took < Duration::from_millis(500), "relay stalled {took:?}");
        }
    });
}

#[test]
fn control_socket_floods_take_bounded_memory_and_the_cli_still_works() {
    let a = Daemon::start(&[]);
    let before = rss_kib(a.pid());
    let socket = a.home.join("control.sock");
    let peak = runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut tasks = Vec::new();
        for _ in 0..1_000 {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let send = async {
                    let mut s = tokio::net::UnixStream::connect(&socket).await?;
                    s.write_all(&vec![b'x'; 1 << 20]).await?;
                    Ok::<_, std::io::Error>(s)
                };
                tokio::time::timeout(Duration::from_secs(5), send).await
            }));
        }
        let mut peak = 0;
        while tasks.iter().any(|t| !t.is_finished()) {
            peak = peak.max(rss_kib(a.pid()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "RSS {before} KiB -> peak {peak} KiB"
    );
    let ls = a.cli(&["p2p", "ls"]);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
}

#[test]
fn a_second_daemon_runs_without_the_taken_status_port_and_slow_clients_leave_room() {
    let port = free_port();
    let status = format!("127.0.0.1:{port}");
    let first = Daemon::start(&["--status-listen", &status]);
    assert_eq!(first.ready["status"], format!("http://{status}/"));
    let second = Daemon::start(&["--status-listen", &status]);
    assert_eq!(second.ready["status"], Value::Null);
    let reason = second.ready["status_error"].as_str().expect("a reason");
    assert!(reason.contains(&status), "{reason}");
    assert_eq!(
        second
            .log()
            .matches("running without a status page")
            .count(),
        1
    );
    second.cli_ok(&["p2p", "ls"]);

    // 100 clients that never finish their request head; an honest one is still answered.
    let slow: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&status).expect("connect");
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n").expect("write");
            s
        })
        .collect();
    let started = Instant::now();
    let mut honest = std::net::TcpStream::connect(&status).expect("connect");
    honest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    std::io::Write::write_all(&mut honest, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut honest, &mut body);
    assert!(
        body.starts_with("HTTP/1.1 200"),
        "{body:?} after {:?}",
        started.elapsed()
    );
    assert!(body.contains(&first.peer_id));
    drop(slow);
}

#[test]
fn rate_limits_answer_with_nip01_prefixes_when_applied_to_loopback() {
    let relay = OurRelay::start(
        "[relay]\nlimit_loopback = true\nevents_per_minute_per_ip = 5\n\
         max_connections_per_ip = 3\n",
    );
    let keys = Keys::generate();
    runtime().block_on(async {
        let mut ws = Ws::connect(&relay.url).await;
        let mut answers = Vec::new();
        for i in 0..7 {
            let e = signed(&keys, 1, &format!("n{i}"), vec![], relays::now());
            ws.send(ClientMessage::event(e).as_json()).await;
            answers.push(ws.recv().await);
        }
        let accepted = answers.iter().filter(|m| m[2] == true).count();
        assert_eq!(accepted, 5, "{answers:?}");
        let refused = answers.iter().find(|m| m[2] == false).expect("refused");
        assert!(
            refused[3]
                .as_str()
                .expect("reason")
                .starts_with("rate-limited:"),
            "{refused}"
        );
        let _more = (Ws::connect(&relay.url).await, Ws::connect(&relay.url).await);
        let fourth = tokio_tungstenite::connect_async(&relay.url).await;
        assert!(
            fourth.is_err(),
            "a fourth connection from 127.0.0.1 is refused"
        );
        ws.alive().await;
    });
}

#[test]
fn cli_errors_say_the_os_error_once_and_export_into_head_succeeds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("config.toml")).expect("a directory named config.toml");
    let out = common::cli(&home, &["relay", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
    let nobody = tmp.path().join("nobody");
    let out = common::cli(&nobody, &["p2p", "ls"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");

    // More than a pipe's buffer of events, so that the export meets the closed pipe.
    let db = tmp.path().join("relay.sqlite");
    let lines: String = large_events(40)
        .iter()
        .map(|e| format!("{}\n", e.as_json()))
        .collect();
    let mut import = std::process::Command::new(common::bin())
        .args(["--home", &nobody.display().to_string(), "relay", "--db"])
        .arg(&db)
        .arg("import")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("import");
    std::io::Write::write_all(&mut import.stdin.take().expect("stdin"), lines.as_bytes())
        .expect("feed");
    assert!(import.wait().expect("import").success());
    let script = format!(
        "'{}' --home '{}' relay --db '{}' export | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
        common::bin(),
        nobody.display(),
        db.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn connect_with_port_0_reports_the_port_it_bound() {
    let a = Daemon::start(&[]);
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let out = a.cli_ok(&["connect", "ollama", peer, "--port", "0", "--json"]);
    let c: Value = serde_json::from_str(&out).expect("json");
    let port = c["port"].as_u64().expect("port");
    assert_ne!(port, 0, "{c}");
    std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("the forward listens there");
}

//! The embedded relay as a real process (`constellation relay`), against nostr-sdk's Python
//! client and LocalRelay, raw websocket clients sending bad input, and `kill -9`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use nostr::prelude::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::relays::{self, OurRelay, PyRelay, python, runtime, stored_ids};
use crate::common::{self, Daemon, bin};

pub(crate) fn signed(keys: &Keys, kind: u16, content: &str, tags: Vec<Tag>, at: u64) -> Event {
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(Timestamp::from(at))
        .finalize(keys)
        .expect("sign")
}

fn write_jsonl(path: &Path, events: &[Event]) {
    let text: String = events.iter().map(|e| e.as_json() + "\n").collect();
    std::fs::write(path, text).expect("write events");
}

/// Run `interop/relays/sdk_client.py` and parse its JSON answer; also says how many attempts
/// it took. nostr-sdk's Python LMDB binding sometimes dies by a signal in a callback (its
/// event-loop lookup from a Rust thread); such a crash is retried, up to 3 attempts.
fn sdk_attempts(args: &[&str]) -> (Value, u32) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/relays/sdk_client.py");
    for attempt in 1..=3 {
        let out = Command::new(python())
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run sdk_client.py");
        if out.status.code().is_none() && attempt < 3 {
            eprintln!(
                "sdk_client {args:?} died by a signal ({}); retrying",
                out.status
            );
            continue;
        }
        assert!(
            out.status.success(),
            "sdk_client {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return (
            serde_json::from_slice(&out.stdout).expect("sdk_client JSON"),
            attempt,
        );
    }
    unreachable!("the last attempt returns or panics")
}

fn sdk(args: &[&str]) -> Value {
    sdk_attempts(args).0
}

fn id_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|s| s.as_str().expect("id").to_owned())
        .collect()
}

fn hex_set<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeSet<String> {
    events.into_iter().map(|e| e.id.to_hex()).collect()
}

#[test]
fn nostr_sdk_client_publishes_queries_and_syncs_both_ways() {
    let relay = OurRelay::start("");
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = Keys::generate();
    let base = relays::now() - 1_000;
    let first: Vec<Event> = (0..40)
        .map(|i| signed(&keys, 1, &format!("first {i}"), vec![], base + i))
        .collect();
    let file = tmp.path().join("first.jsonl");
    write_jsonl(&file, &first);

    let published = sdk(&["publish", &relay.url, file.to_str().expect("path")]);
    assert_eq!(id_set(&published["accepted"]), hex_set(&first));
    assert_eq!(published["refused"], json!({}));

    let queried = sdk(&["query", &relay.url, r#"{"kinds":[1]}"#]);
    assert_eq!(id_set(&queried["ids"]), hex_set(&first));

    // NIP-77 down: a client with nothing receives exactly what we hold.
    let down = sdk(&[
        "sync",
        &relay.url,
        r#"{"kinds":[1]}"#,
        tmp.path().join("down").to_str().expect("path"),
        "down",
    ]);
    assert_eq!(down["failed"], json!({}));
    assert_eq!(id_set(&down["received"]), hex_set(&first));
    assert!(id_set(&down["sent"]).is_empty());

    // NIP-77 up: a client holding 10 of ours plus 15 new sends only the 15.
    let new: Vec<Event> = (0..15)
        .map(|i| signed(&keys, 1, &format!("new {i}"), vec![], base + 100 + i))
        .collect();
    let seed = tmp.path().join("seed.jsonl");
    let mut seeded = first[..10].to_vec();
    seeded.extend(new.iter().cloned());
    write_jsonl(&seed, &seeded);
    let (up, attempts) = sdk_attempts(&[
        "sync",
        &relay.url,
        r#"{"kinds":[1]}"#,
        tmp.path().join("up").to_str().expect("path"),
        "up",
        "--seed",
        seed.to_str().expect("path"),
    ]);
    assert_eq!(up["failed"], json!({}));
    if attempts == 1 {
        assert_eq!(id_set(&up["sent"]), hex_set(&new));
    } else {
        // A crashed attempt may have sent part of them already.
        assert!(id_set(&up["sent"]).is_subset(&hex_set(&new)));
    }
    let want: BTreeSet<EventId> = first.iter().chain(&new).map(|e| e.id).collect();
    assert_eq!(relay.stored_ids(), want);
}

/// A random but reproducible event set with every rule in play.
fn differential_events() -> Vec<Event> {
    let authors: Vec<Keys> = (0..4).map(|_| Keys::generate()).collect();
    let base = relays::now() - 10_000;
    let mut events = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for i in 0..240u64 {
        let keys = &authors[next(4) as usize];
        // Few distinct seconds: many ties in created_at.
        let at = base + next(40);
        let event = match next(10) {
            0 => signed(keys, 0, &format!("profile {i}"), vec![], at),
            1 => signed(
                keys,
                3,
                "",
                vec![Tag::public_key(authors[next(4) as usize].public_key())],
                at,
            ),
            2 | 3 => signed(
                keys,
                30_023,
                &format!("article {i}"),
                vec![
                    Tag::identifier(format!("d{}", next(3))),
                    Tag::hashtag("long"),
                ],
                at,
            ),
            4 if !events.is_empty() => {
                let target: &Event = &events[next(events.len() as u64) as usize];
                signed(
                    keys,
                    7,
                    "+",
                    vec![Tag::event(target.id), Tag::public_key(target.pubkey)],
                    at,
                )
            }
            _ => signed(
                keys,
                1,
                &format!("note {i}"),
                vec![Tag::hashtag(if next(2) == 0 {
                    "nostr"
                } else {
                    "astroport"
                })],
                at,
            ),
        };
        events.push(event);
    }
    // Deletions by the author. (A kind 5 naming another author's event is where relays differ:
    // nostr-sdk refuses it, strfry and we store it without effect; NIP-09 allows both, and our
    // rule is covered by the store's unit tests.)
    for j in 0..12 {
        let target = events[(j * 17) % events.len()].clone();
        let by = authors
            .iter()
            .find(|k| k.public_key() == target.pubkey)
            .expect("author");
        events.push(signed(by, 5, "", vec![Tag::event(target.id)], base + 50));
    }
    let a = &authors[0];
    let coord = format!("30023:{}:d1", a.public_key().to_hex());
    events.push(signed(
        a,
        5,
        "",
        vec![Tag::parse(["a", coord.as_str()]).expect("a")],
        base + 20,
    ));
    events
}

#[test]
fn differential_against_nostr_sdk_local_relay() {
    let ours = OurRelay::start("");
    let theirs = PyRelay::start("localrelay", 0);
    let events = differential_events();
    // Same events, same order, one at a time (the order decides replacements and deletions).
    for event in &events {
        for url in [&ours.url, &theirs.url] {
            relays::publish_lenient(url, std::slice::from_ref(event));
        }
    }
    let authors: Vec<PublicKey> = events
        .iter()
        .map(|e| e.pubkey)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let base = events
        .iter()
        .map(|e| e.created_at.as_secs())
        .min()
        .expect("events");
    let filters = vec![
        Filter::new(),
        Filter::new().kind(Kind::TextNote),
        Filter::new().kinds([Kind::Metadata, Kind::ContactList]),
        Filter::new().kind(Kind::from(30_023)),
        Filter::new().kind(Kind::from(30_023)).identifier("d1"),
        Filter::new().kind(Kind::EventDeletion),
        Filter::new().author(authors[0]),
        Filter::new()
            .authors(authors[1..3].to_vec())
            .kind(Kind::TextNote),
        Filter::new().hashtag("nostr"),
        Filter::new().hashtag("long").author(authors[2]),
        Filter::new().pubkey(authors[1]),
        Filter::new().event(events[0].id),
        Filter::new()
            .since(Timestamp::from(base + 10))
            .until(Timestamp::from(base + 20)),
        Filter::new().kind(Kind::TextNote).limit(25),
        Filter::new().limit(7),
        Filter::new().ids(events.iter().take(30).map(|e| e.id)),
    ];
    for filter in filters {
        let (a, b) = runtime().block_on(async {
            (
                relays::query_ordered(&ours.url, filter.clone()).await,
                relays::query_ordered(&theirs.url, filter.clone()).await,
            )
        });
        let describe = |ids: Vec<&EventId>| -> Vec<String> {
            ids.into_iter()
                .map(|id| match events.iter().find(|e| &e.id == id) {
                    Some(e) => format!(
                        "{} kind {} at {}",
                        &id.to_hex()[..8],
                        e.kind,
                        e.created_at.as_secs() - base
                    ),
                    None => id.to_hex(),
                })
                .collect()
        };
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
        assert!(
            sa == sb,
            "filter {}: only ours {:?}, only LocalRelay {:?}",
            filter.as_json(),
            describe(sa.difference(&sb).copied().collect()),
            describe(sb.difference(&sa).copied().collect())
        );
        if filter.limit.is_some() {
            // With a limit the order decides which events come back: compare the lists too.
            assert_eq!(
                describe(a.iter().collect()),
                describe(b.iter().collect()),
                "filter {}",
                filter.as_json()
            );
        }
    }
    // Where we differ on purpose: a deletion that arrives before its event. nostr-sdk's
    // LocalRelay stores the event when it comes; we refuse it, so that no peer can resurrect it.
    let keys = Keys::generate();
    let late = signed(&keys, 1, "deleted before it arrived", vec![], base + 30);
    let deletion = signed(&keys, 5, "", vec![Tag::event(late.id)], base + 60);
    relays::publish(&ours.url, std::slice::from_ref(&deletion));
    relays::publish_lenient(&ours.url, std::slice::from_ref(&late));
    assert!(relays::ids(&ours.url, Filter::new().id(late.id)).is_empty());
}

/// A raw websocket client: send text, read JSON arrays with a timeout.
pub(crate) struct Ws {
    pub(crate) ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub(crate) async fn connect(url: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Ws { ws }
    }

    pub(crate) async fn send(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("relay answered in time")
                .expect("connection open")
                .expect("websocket ok");
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).expect("relay sends JSON");
            }
        }
    }

    /// A REQ for one id still gets its EOSE: the connection is alive.
    pub(crate) async fn alive(&mut self) {
        self.send(json!(["REQ", "alive", {"ids": ["0".repeat(64)]}]).to_string())
            .await;
        assert_eq!(self.recv().await, json!(["EOSE", "alive"]));
        self.send(json!(["CLOSE", "alive"]).to_string()).await;
    }
}

fn prefix_of(v: &Value, index: usize) -> String {
    v[index]
        .as_str()
        .expect("message")
        .split(':')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn bad_input_gets_a_clear_answer_and_the_connection_stays_up() {
    let relay = OurRelay::start("[relay]\nmax_filters = 3\nmax_subscriptions = 4\n");
    runtime().block_on(async {
        let mut ws = Ws::connect(&relay.url).await;
        let mut other = Ws::connect(&relay.url).await;
        let keys = Keys::generate();

        ws.send("this is not json").await;
        let m = ws.recv().await;
        assert_eq!(m[0], "NOTICE");
        assert_eq!(prefix_of(&m, 1), "invalid");
        ws.alive().await;

        ws.send(r#"["HELLO","x"]"#).await;
        let m = ws.recv().await;
        assert_eq!(m[0], "NOTICE");
        assert!(m[1].as_str().expect("text").contains("HELLO"), "{m}");
        ws.alive().await;

        ws.send(r#"["REQ",5,{}]"#).await;
        assert_eq!(ws.recv().await[0], "NOTICE");
        ws.send(r#"["REQ","typed",{"kinds":"one"}]"#).await;
        let m = ws.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str()),
            (Some("CLOSED"), Some("typed"))
        );
        assert_eq!(prefix_of(&m, 2), "invalid");
        ws.alive().await;

        // Bad signature, then bad id: OK false with "invalid:".
        let good = signed(&keys, 1, "good", vec![], relays::now());
        let other_sig = signed(&keys, 1, "other", vec![], relays::now());
        let mut bad_sig = good.clone();
        bad_sig.sig = other_sig.sig;
        ws.send(ClientMessage::event(bad_sig).as_json()).await;
        let m = ws.recv().await;
        assert_eq!((m[0].as_str(), m[2].as_bool()), (Some("OK"), Some(false)));
        assert_eq!(m[1], good.id.to_hex());
        assert_eq!(prefix_of(&m, 3), "invalid");
        let mut bad_id = good.clone();
        bad_id.content = "tampered".into();
        ws.send(ClientMessage::event(bad_id).as_json()).await;
        let m = ws.recv().await;
        assert_eq!(
            (m[2].as_bool(), prefix_of(&m, 3).as_str()),
            (Some(false), "invalid")
        );
        // A malformed event with a readable id gets OK false too.
        ws.send(json!(["EVENT", {"id": good.id.to_hex(), "kind": "x"}]).to_string())
            .await;
        let m = ws.recv().await;
        assert_eq!((m[0].as_str(), m[2].as_bool()), (Some("OK"), Some(false)));
        ws.alive().await;

        // Oversized message (200 KiB > 128 KiB): refused, connection kept.
        let huge = signed(&keys, 1, &"x".repeat(200 * 1024), vec![], relays::now());
        ws.send(ClientMessage::event(huge.clone()).as_json()).await;
        let m = ws.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str(), m[2].as_bool()),
            (Some("OK"), Some(huge.id.to_hex().as_str()), Some(false))
        );
        assert!(m[3].as_str().expect("reason").contains("too large"), "{m}");
        ws.alive().await;

        // Too many filters (max 3), too many subscriptions (max 4).
        ws.send(json!(["REQ", "many", {}, {}, {}, {}]).to_string())
            .await;
        let m = ws.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str()),
            (Some("CLOSED"), Some("many"))
        );
        assert!(
            m[2].as_str().expect("reason").contains("too many filters"),
            "{m}"
        );
        for i in 0..4 {
            ws.send(json!(["REQ", format!("s{i}"), {"ids": ["1".repeat(64)]}]).to_string())
                .await;
            assert_eq!(ws.recv().await[0], "EOSE");
        }
        ws.send(json!(["REQ", "s4", {"ids": ["1".repeat(64)]}]).to_string())
            .await;
        let m = ws.recv().await;
        assert_eq!((m[0].as_str(), m[1].as_str()), (Some("CLOSED"), Some("s4")));
        assert!(
            m[2].as_str()
                .expect("reason")
                .contains("too many subscriptions"),
            "{m}"
        );
        for i in 0..4 {
            ws.send(json!(["CLOSE", format!("s{i}")]).to_string()).await;
        }
        ws.alive().await;

        // NEG-OPEN with a bad filter, and with a message that is not hex.
        ws.send(r#"["NEG-OPEN","neg",{"kinds":"x"},"61"]"#).await;
        let m = ws.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str()),
            (Some("NEG-ERR"), Some("neg"))
        );
        ws.send(r#"["NEG-OPEN","neg",{},"zz"]"#).await;
        assert_eq!(ws.recv().await[0], "NEG-ERR");
        ws.send(r#"["NEG-MSG","nothing-open","61"]"#).await;
        assert_eq!(ws.recv().await[0], "NEG-ERR");
        ws.alive().await;

        // Through all of it, another client is served, and a valid event is stored.
        other
            .send(ClientMessage::event(good.clone()).as_json())
            .await;
        assert_eq!(
            other.recv().await,
            json!(["OK", good.id.to_hex(), true, ""])
        );
    });
}

#[test]
fn idle_connections_without_subscriptions_are_closed() {
    let relay = OurRelay::start("[relay]\nidle_timeout_secs = 1\n");
    runtime().block_on(async {
        let mut idle = Ws::connect(&relay.url).await;
        let mut subscribed = Ws::connect(&relay.url).await;
        subscribed.send(json!(["REQ", "s", {"kinds": [1]}]).to_string()).await;
        assert_eq!(subscribed.recv().await, json!(["EOSE", "s"]));
        // A client that sends half a frame and stops: only the idle timeout ends it.
        let (mut stalled, _) = {
            use tokio::io::AsyncWriteExt;
            let mut tcp = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
            let mut head = [0u8; 512];
            use tokio::io::AsyncReadExt;
            let _ = tcp.read(&mut head).await.unwrap();
            tcp.write_all(&[0x81, 0xfe, 0x01]).await.unwrap(); // a text frame header, cut short
            (tcp, ())
        };
        let closed = tokio::time::timeout(Duration::from_secs(5), idle.ws.next()).await;
        assert!(matches!(closed, Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_)))), "{closed:?}");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut stalled, &mut buf)).await;
        assert!(read.is_ok(), "the stalled client was not closed");
        // The subscribed one is still served.
        subscribed.alive().await;
    });
}

#[test]
fn live_events_reach_open_subscriptions_only_when_they_match() {
    let relay = OurRelay::start("");
    runtime().block_on(async {
        let keys = Keys::generate();
        let mut reader = Ws::connect(&relay.url).await;
        reader
            .send(json!(["REQ", "live", {"kinds": [1], "#t": ["astroport"]}]).to_string())
            .await;
        assert_eq!(reader.recv().await, json!(["EOSE", "live"]));
        let mut writer = Ws::connect(&relay.url).await;
        let other = signed(&keys, 1, "untagged", vec![], relays::now());
        let tagged = signed(
            &keys,
            1,
            "tagged",
            vec![Tag::hashtag("astroport")],
            relays::now(),
        );
        let ephemeral = signed(
            &keys,
            20_001,
            "now",
            vec![Tag::hashtag("astroport")],
            relays::now(),
        );
        for e in [&other, &tagged, &ephemeral] {
            writer.send(ClientMessage::event(e.clone()).as_json()).await;
            assert_eq!(writer.recv().await[2], true);
        }
        // Only the stored tagged note matches (the ephemeral one is kind 20001).
        let m = reader.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str()),
            (Some("EVENT"), Some("live"))
        );
        assert_eq!(m[2]["id"], tagged.id.to_hex());
        reader
            .send(json!(["REQ", "eph", {"kinds": [20_001]}]).to_string())
            .await;
        assert_eq!(
            reader.recv().await,
            json!(["EOSE", "eph"]),
            "ephemeral events are not stored"
        );
        writer
            .send(
                ClientMessage::event(signed(&keys, 20_001, "again", vec![], relays::now()))
                    .as_json(),
            )
            .await;
        let m = reader.recv().await;
        assert_eq!(
            (m[0].as_str(), m[1].as_str()),
            (Some("EVENT"), Some("eph")),
            "but relayed live"
        );
    });
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_others_are_served() {
    let relay = OurRelay::start("[relay]\noutbound_queue = 32\n");
    let keys = Keys::generate();
    let base = relays::now() - 10_000;
    let events: Vec<Event> = (0..500)
        .map(|i| signed(&keys, 1, &"padding ".repeat(40), vec![], base + i))
        .collect();
    relays::publish(&relay.url, &events);
    runtime().block_on(async {
        let mut slow = Ws::connect(&relay.url).await;
        // 60 REQs of 500 events (~12 MB of answers) that this client does not read: small
        // frames, so the sends complete; the relay's queue and the socket buffers fill up.
        let req = json!(["REQ", "flood", {"limit": 500}]).to_string();
        let sent = 60;
        for _ in 0..sent {
            slow.send(req.clone()).await;
        }
        // Longer than the relay waits for a client that reads nothing (5 s).
        tokio::time::sleep(Duration::from_secs(7)).await;
        let mut fresh = Ws::connect(&relay.url).await;
        fresh.alive().await;
        // The slow client was cut: reading now ends well before 400 × 501 messages.
        let mut received = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), slow.ws.next()).await {
                Ok(Some(Ok(_))) => received += 1,
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) => panic!("the slow client was neither served nor disconnected"),
            }
            assert!(Instant::now() < deadline, "still reading after 60 s");
        }
        assert!(
            received < sent * 501,
            "received {received} of {}",
            sent * 501
        );
        fresh.alive().await;
    });
    let log = std::fs::read_to_string(relay.home.join("../relay.log")).expect("relay log");
    assert!(
        log.contains("relay client stopped reading; disconnecting"),
        "{log}"
    );
}

#[test]
fn kill_9_during_a_bulk_import_keeps_every_acknowledged_event() {
    let mut relay = OurRelay::start("");
    let keys = Keys::generate();
    let base = relays::now() - 100_000;
    let events: Vec<Event> = (0..20_000)
        .map(|i| signed(&keys, 1, &format!("bulk {i}"), vec![], base + i))
        .collect();
    let acked = runtime().block_on(async {
        let ws = Ws::connect(&relay.url).await;
        let (mut tx, mut rx) = ws.ws.split();
        let sender = tokio::spawn(async move {
            for e in events {
                if tx
                    .send(Message::text(ClientMessage::event(e).as_json()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut acked = HashSet::new();
        while acked.len() < 3_000 {
            match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    if v[0] == "OK" && v[2] == true {
                        acked.insert(EventId::from_hex(v[1].as_str().expect("id")).expect("id"));
                    }
                }
                other => panic!("relay stopped answering: {other:?}"),
            }
        }
        relay.kill9();
        sender.abort();
        acked
    });
    let stored = relay.stored_ids();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );
    assert!(
        stored.len() < 20_000,
        "the kill came after the whole import"
    );
    let check: String = rusqlite::Connection::open(&relay.db)
        .expect("open")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

#[test]
fn nip11_document_and_stats() {
    let relay = OurRelay::start("[relay]\nname = \"station-x\"\n");
    let body = runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(relay.addr())
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/nostr+json\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    });
    let (head, json_body) = body.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/nostr+json"));
    let doc: Value = serde_json::from_str(json_body).expect("nip11 json");
    assert_eq!(doc["name"], "station-x");
    assert!(
        doc["supported_nips"]
            .as_array()
            .expect("nips")
            .contains(&json!(77))
    );
    assert_eq!(doc["limitation"]["max_limit"], 500);

    let keys = Keys::generate();
    let events = vec![
        signed(&keys, 1, "a", vec![], 100),
        signed(&keys, 1, "b", vec![], 101),
        signed(&keys, 0, "{}", vec![], 102),
    ];
    relays::publish(&relay.url, &events);
    let out = common::cli(
        &relay.home,
        &[
            "relay",
            "stats",
            "--json",
            "--db",
            relay.db.to_str().expect("db"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(stats["events"], 3);
    assert_eq!(stats["kinds"]["1"], 2);
    assert_eq!(stats["kinds"]["0"], 1);
    assert!(stats["bytes"].as_u64().expect("bytes") > 0);
    let text = common::cli(
        &relay.home,
        &["relay", "stats", "--db", relay.db.to_str().expect("db")],
    );
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("events    3"), "{text}");
}

#[test]
fn daemon_serves_the_embedded_relay_or_uses_the_one_already_there() {
    let mut daemon = Daemon::start(&["--relay-listen", "127.0.0.1:0"]);
    assert_eq!(daemon.ready["relay_mode"], "embedded");
    let url = daemon.ready["relay"]
        .as_str()
        .expect("relay url")
        .to_owned();
    let keys = Keys::generate();
    let note = signed(&keys, 1, "hello station", vec![], relays::now());
    relays::publish(&url, std::slice::from_ref(&note));
    assert_eq!(relays::ids(&url, Filter::new()), BTreeSet::from([note.id]));
    daemon.stop();
    assert!(stored_ids(&daemon.home.join("relay.sqlite")).contains(&note.id));

    let strfry = PyRelay::start("nostr-relay", 0);
    let addr = strfry
        .url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let other = Daemon::start(&["--relay-listen", &addr]);
    assert_eq!(other.ready["relay_mode"], "external");
    assert!(other.log().contains("using it as the local relay"));
}

/// `relay <args>` on `db` with `input` on stdin; returns (exit code, stdout, stderr).
fn relay_cli(db: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut command = Command::new(bin());
    command.args(["relay", "--db"]).arg(db).args(args);
    let out = crate::common::run_with_stdin(&mut command, input.as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn export_and_import_move_a_store_as_json_lines_and_count_bad_lines() {
    let source = OurRelay::start("");
    let keys = Keys::generate();
    let t = relays::now() - 1_000;
    let mut events: Vec<Event> = (0..30)
        .map(|i| signed(&keys, 1, &format!("note {i}"), vec![], t + (i * 7) % 30))
        .collect();
    events.push(signed(&keys, 0, "{\"name\":\"x\"}", vec![], t));
    relays::publish(&source.url, &events);

    let (code, exported, stderr) = relay_cli(&source.db, &["export"], "");
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Event> = exported
        .lines()
        .map(|l| Event::from_json(l).expect("an exported line is an event"))
        .collect();
    assert_eq!(hex_set(&lines), hex_set(&events));
    assert_eq!(lines.len(), events.len());
    assert!(
        lines.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );

    // The export, plus a repeated event, a line that is not JSON, a forged event, a line far
    // over the size limit, and an empty line.
    let mut forged: Value = serde_json::from_str(&lines[0].as_json()).unwrap();
    forged["content"] = json!("changed after signing");
    let input = format!(
        "{exported}{}\nnot an event\n{forged}\n{}\n\n",
        lines[3].as_json(),
        "x".repeat(200_000)
    );
    let target = tempfile::tempdir().unwrap();
    let db = target.path().join("relay.sqlite");
    let (code, stdout, stderr) = relay_cli(&db, &["import", "--json"], &input);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("Done. Processed 35 lines. 31 added, 3 rejected, 1 dups"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(
        summary["rejected"],
        json!({"malformed": 1, "invalid id": 1, "too large": 1})
    );
    let stored: BTreeSet<String> = stored_ids(&db).iter().map(|id| id.to_hex()).collect();
    assert_eq!(stored, hex_set(&events));

    // Importing the same lines again adds nothing.
    let (code, _, stderr) = relay_cli(&db, &["import"], &exported);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("Done. Processed 31 lines. 0 added, 0 rejected, 31 dups"),
        "{stderr}"
    );
}

//! Fuzz targets for what arrives on the wire or the control socket: multiaddrs, `/x/` names and
//! PeerIDs, NIP-01 client and relay messages, NEG-OPEN/NEG-MSG frames, JSON-lines imports,
//! control requests and `tunnels.json`.

use constellation::control::Request;
use constellation::identity::{MAX_PEER_ID_LEN, parse_peer_id};
use constellation::relay::jsonl;
use constellation::store::{EventLimits, Store};
use constellation::tunnel::addr::{
    MAX_MULTIADDR_LEN, parse_forward_target, parse_multiaddr, parse_protocol, tcp_socket_addr,
};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::prelude::*;
use proptest::prelude::*;

use crate::harness::{
    CI_CASES, fuzz, inputs, json_inputs, peak_during, short_error, texts, within,
};

/// Longest error message: a sentence, a path, and at most two quotes of 80 characters of the
/// input, which `{:?}` may escape to 10 bytes each (`\u{10ffff}`). Bounded, whatever the input.
const ERROR_MAX: usize = 2_000;
/// What refusing an over-long id or multiaddr may allocate: the error text, never a decode.
const REFUSAL_ALLOC_MAX: usize = 16 * 1024;

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const ADDRS: &[&str] = &[
    "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "/ip6/::1/tcp/4001",
    "/ip4/127.0.0.1/udp/4001/quic-v1",
    "/dns4/localhost/tcp/22",
    "/ipfs/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
];

#[test]
fn multiaddrs_and_forward_targets() {
    fuzz("multiaddr", CI_CASES, texts(ADDRS), |text| {
        let (parsed, peak) = peak_during(|| parse_multiaddr(&text));
        match parsed {
            Ok(addr) => {
                let again = parse_multiaddr(&addr.to_string());
                prop_assert_eq!(again.as_ref().ok(), Some(&addr), "round trip of {}", addr);
            }
            Err(e) => short_error("multiaddr", &e.to_string(), ERROR_MAX)?,
        }
        if text.len() > MAX_MULTIADDR_LEN {
            within("multiaddr refusal", peak, REFUSAL_ALLOC_MAX, text.len())?;
        }
        match parse_forward_target(&text) {
            Ok(target) => prop_assert!(
                text.contains(&target.peer.to_string())
                    || text.contains("/ipfs/")
                    || text.contains("/p2p/")
            ),
            Err(e) => short_error("forward target", &e.to_string(), ERROR_MAX)?,
        }
        if let Err(e) = tcp_socket_addr(&text) {
            short_error("tcp address", &e.to_string(), ERROR_MAX)?;
        }
        Ok(())
    });
}

#[test]
fn x_protocol_names_and_peer_ids() {
    let names = [
        format!("/x/strfry-{PEER}"),
        format!("/x/ssh-{PEER}"),
        "/x/ollama".into(),
        PEER.into(),
    ];
    fuzz(
        "/x/ names and PeerIDs",
        CI_CASES,
        (texts(&names), any::<bool>()),
        |(text, custom)| {
            match parse_protocol(&text, custom) {
                Ok(p) => {
                    prop_assert!(custom || p.as_ref().starts_with("/x/"));
                    prop_assert!(p.as_ref().len() <= 256);
                }
                Err(e) => short_error("protocol", &e.to_string(), ERROR_MAX)?,
            }
            if let Some((slug, peer)) = constellation::dragon::parse_service_protocol(&text) {
                prop_assert_eq!(slug.protocol(&peer), text.clone());
            }
            let (id, peak) = peak_during(|| parse_peer_id(&text));
            match id {
                Ok(id) => {
                    prop_assert_eq!(id.to_string().len(), text.len().min(id.to_string().len()))
                }
                Err(e) => short_error("peer id", &e.to_string(), ERROR_MAX)?,
            }
            if text.len() > MAX_PEER_ID_LEN {
                within("peer id refusal", peak, REFUSAL_ALLOC_MAX, text.len())?;
            }
            Ok(())
        },
    );
}

/// A real signed event, as JSON.
fn event_json(content: &str, tags: Vec<Tag>) -> String {
    EventBuilder::new(Kind::TextNote, content)
        .tags(tags)
        .finalize(&Keys::generate())
        .expect("sign")
        .as_json()
}

fn client_samples() -> Vec<String> {
    let event = event_json("hello", vec![Tag::hashtag("astroport")]);
    vec![
        format!(r#"["EVENT",{event}]"#),
        r##"["REQ","sub1",{"kinds":[0,1,3],"since":1700000000,"limit":500},{"authors":["6f1c5b6d2e0f8a9b7c3d4e5f60718293a4b5c6d7e8f9012345678901234567890a"],"#t":["x"]}]"##.into(),
        r#"["CLOSE","sub1"]"#.into(),
        r#"["COUNT","c",{"kinds":[1]}]"#.into(),
        r#"["NEG-OPEN","neg",{"kinds":[1]},"6100000200"]"#.into(),
        r#"["NEG-MSG","neg","61000002"]"#.into(),
        r#"["NEG-CLOSE","neg"]"#.into(),
        r#"["AUTH",{}]"#.into(),
    ]
}

const NIP01_VOCABULARY: &[&str] = &[
    "EVENT",
    "REQ",
    "CLOSE",
    "COUNT",
    "NEG-OPEN",
    "NEG-MSG",
    "NEG-CLOSE",
    "OK",
    "EOSE",
    "CLOSED",
    "NOTICE",
    "NEG-ERR",
    "id",
    "pubkey",
    "kind",
    "kinds",
    "tags",
    "content",
    "sig",
    "created_at",
    "since",
    "until",
    "limit",
    "authors",
    "ids",
    "#e",
    "#p",
    "#t",
    "search",
];

#[test]
fn nip01_client_messages() {
    fuzz(
        "NIP-01 client messages",
        CI_CASES,
        json_inputs(&client_samples(), NIP01_VOCABULARY),
        |text| {
            if let Ok(ClientMessage::Event(event)) = ClientMessage::from_json(&text) {
                let _ = event.verify();
            }
            if let Ok(message) = ClientMessage::from_json(&text) {
                prop_assert!(
                    ClientMessage::from_json(message.as_json()).is_ok(),
                    "{} does not parse again",
                    message.as_json()
                );
            }
            Ok(())
        },
    );
}

fn relay_samples() -> Vec<String> {
    let event = event_json("hi", vec![]);
    vec![
        format!(r#"["EVENT","sub1",{event}]"#),
        r#"["OK","b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30",true,""]"#.into(),
        r#"["OK","b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30",false,"rate-limited: slow down"]"#.into(),
        r#"["EOSE","sub1"]"#.into(),
        r#"["CLOSED","sub1","blocked: too many subscriptions"]"#.into(),
        r#"["NOTICE","invalid: not json"]"#.into(),
        r#"["NEG-MSG","neg","6100000200"]"#.into(),
        r#"["NEG-ERR","neg","blocked: too many records"]"#.into(),
        r#"["COUNT","c",{"count":42}]"#.into(),
    ]
}

#[test]
fn nip01_relay_messages() {
    fuzz(
        "NIP-01 relay messages",
        CI_CASES,
        json_inputs(&relay_samples(), NIP01_VOCABULARY),
        |text| {
            if let Ok(RelayMessage::Event { event, .. }) = RelayMessage::from_json(&text) {
                let _ = event.verify();
            }
            Ok(())
        },
    );
}

/// The frame limits of our two sides (the relay's and the sync client's).
const NEG_FRAME_LIMITS: [u64; 2] = [
    constellation::nip77::RELAY_FRAME_LIMIT,
    constellation::nip77::FRAME_LIMIT,
];
/// Largest frame a NEG-MSG of the largest relay message (128 KiB of hex) carries.
const NEG_MESSAGE_MAX: usize = 64 * 1024;

fn neg_storage(n: u64) -> NegentropyStorageVector {
    let mut storage = NegentropyStorageVector::with_capacity(n as usize);
    for i in 0..n {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&i.to_be_bytes());
        storage
            .insert(1_700_000_000 + i, Id::from_byte_array(id))
            .expect("insert");
    }
    storage.seal().expect("seal");
    storage
}

/// Real frames: a client's first message and the server's answer, for 300 items against 200.
fn neg_samples() -> Vec<Vec<u8>> {
    let mut client = Negentropy::owned(neg_storage(300), NEG_FRAME_LIMITS[1]).expect("client");
    let first = client.initiate().expect("initiate");
    let mut server = Negentropy::owned(neg_storage(200), NEG_FRAME_LIMITS[0]).expect("server");
    let answer = server.reconcile(&first).expect("answer");
    vec![first, answer, vec![0x61]]
}

#[test]
fn neg_open_and_neg_msg_frames() {
    fuzz(
        "NEG-OPEN/NEG-MSG frames",
        CI_CASES,
        inputs(neg_samples()),
        |frame| {
            prop_assume!(frame.len() <= NEG_MESSAGE_MAX);
            let mut server =
                Negentropy::owned(neg_storage(200), NEG_FRAME_LIMITS[0]).expect("server");
            if let Ok(reply) = server.reconcile(&frame) {
                prop_assert!(
                    reply.len() as u64 <= NEG_FRAME_LIMITS[0] + 1024,
                    "reply of {} bytes",
                    reply.len()
                );
            }
            let mut client =
                Negentropy::owned(neg_storage(300), NEG_FRAME_LIMITS[1]).expect("client");
            client.initiate().expect("initiate");
            let (mut have, mut need) = (Vec::new(), Vec::new());
            if let Ok(Some(next)) = client.reconcile_with_ids(&frame, &mut have, &mut need) {
                prop_assert!(
                    next.len() as u64 <= NEG_FRAME_LIMITS[1] + 1024,
                    "next of {} bytes",
                    next.len()
                );
            }
            Ok(())
        },
    );
}

/// A JSON-lines import costs a commit per batch: fewer cases keep the target under 20 s.
const JSONL_CASES: u32 = 600;

#[test]
fn json_lines_imports() {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store =
        Store::open(&dir.path().join("import.sqlite"), EventLimits::default()).expect("store");
    let lines: Vec<String> = (0..4)
        .map(|i| event_json(&format!("line {i}"), vec![]))
        .collect();
    let samples = [
        lines.join("\n"),
        format!("{}\r\n\n{}\n", lines[0], lines[1]),
    ];
    fuzz("JSON-lines import", JSONL_CASES, texts(&samples), |text| {
        let summary = runtime.block_on(jsonl::import(
            &store,
            std::io::Cursor::new(text.as_bytes()),
            None,
        ));
        let summary = summary.map_err(|e| TestCaseError::fail(format!("import failed: {e}")))?;
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        prop_assert_eq!(summary.lines, lines);
        let c = &summary.counts;
        prop_assert_eq!(
            c.imported + c.duplicate + c.rejected_total(),
            lines,
            "{:?}",
            c
        );
        Ok(())
    });
}

pub fn control_samples() -> Vec<String> {
    vec![
        r#"{"op":"id"}"#.into(),
        format!(
            r#"{{"op":"p2p_listen","persist":true,"spec":{{"protocol":"/x/ssh-{PEER}","target":"/ip4/127.0.0.1/tcp/22","report_peer_id":true,"allow_peers":["{PEER}"]}}}}"#
        ),
        format!(
            r#"{{"op":"p2p_forward","persist":false,"spec":{{"protocol":"/x/strfry-{PEER}","listen":"/ip4/127.0.0.1/tcp/9999","target":"/p2p/{PEER}"}}}}"#
        ),
        r#"{"op":"p2p_close","filter":{"all":true}}"#.into(),
        r#"{"op":"stream_close","id":3}"#.into(),
        format!(r#"{{"op":"connect","slug":"ollama","peer":"{PEER}","port":0}}"#),
        r#"{"op":"services","refresh":true}"#.into(),
        r#"{"op":"backfill","args":{"days":1}}"#.into(),
    ]
}

pub const CONTROL_VOCABULARY: &[&str] = &[
    "op",
    "id",
    "p2p_listen",
    "p2p_forward",
    "p2p_ls",
    "p2p_close",
    "stream_ls",
    "stream_close",
    "connect",
    "disconnect",
    "services",
    "backfill",
    "spec",
    "persist",
    "protocol",
    "target",
    "listen",
    "allow_peers",
    "report_peer_id",
    "filter",
    "slug",
    "peer",
    "port",
    "args",
];

/// A parse error is an error of bounded length; a success is fine.
fn bounded<T, E: std::fmt::Display>(what: &str, parsed: Result<T, E>) -> Result<(), TestCaseError> {
    parsed.map_or_else(|e| short_error(what, &e.to_string(), ERROR_MAX), |_| Ok(()))
}

/// A control request as the daemon takes it: the JSON line, then every address and name in it.
#[test]
fn control_api_requests() {
    let samples = control_samples();
    fuzz(
        "control requests",
        CI_CASES,
        json_inputs(&samples, CONTROL_VOCABULARY),
        |text| {
            let Ok(request) = serde_json::from_str::<Request>(&text) else {
                return Ok(());
            };
            match request {
                Request::P2pListen { spec, .. } => {
                    bounded(
                        "protocol",
                        parse_protocol(&spec.protocol, spec.allow_custom_protocol),
                    )?;
                    bounded("target", tcp_socket_addr(&spec.target))?;
                    for p in &spec.allow_peers {
                        bounded("allow_peers", parse_peer_id(p))?;
                    }
                }
                Request::P2pForward { spec, .. } => {
                    bounded(
                        "protocol",
                        parse_protocol(&spec.protocol, spec.allow_custom_protocol),
                    )?;
                    bounded("listen", tcp_socket_addr(&spec.listen))?;
                    bounded("target", parse_forward_target(&spec.target))?;
                }
                // The peer is parsed with the request (a `Station`); the slug after it.
                Request::Connect { slug, .. } | Request::Disconnect { slug, .. } => {
                    bounded("slug", constellation::dragon::Slug::parse(&slug))?;
                }
                _ => {}
            }
            Ok(())
        },
    );
}

#[test]
fn tunnels_json_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("tunnels.json");
    let sample = format!(
        r#"[{{"kind":"listen","protocol":"/x/ssh-{PEER}","target":"/ip4/127.0.0.1/tcp/22","allow_peers":[]}},{{"kind":"forward","protocol":"/x/strfry-{PEER}","listen":"/ip4/127.0.0.1/tcp/9999","target":"/p2p/{PEER}"}}]"#
    );
    fuzz(
        "tunnels.json",
        CI_CASES,
        json_inputs(&[sample], CONTROL_VOCABULARY),
        |text| {
            std::fs::write(&path, &text).expect("write");
            // The daemon's own file: the error keeps serde's message whole, and names the file.
            if let Err(e) = constellation::tunnel::persist::Persisted::new(path.clone()).load() {
                prop_assert!(e.to_string().contains("tunnels.json"), "{}", e);
            }
            Ok(())
        },
    );
}

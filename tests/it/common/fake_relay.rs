//! A deliberately misbehaving relay for fault tests: it serves a fixed list of raw messages for
//! any REQ (bad signatures, malformed JSON, oversize events), refuses NIP-77, never sends EOSE,
//! sends one event forever, or runs a NIP-77 reconciliation that never converges.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// How the fake relay answers a REQ.
#[derive(Clone)]
pub enum Behaviour {
    /// Send these raw `EVENT` payloads (JSON objects as text), then EOSE.
    Serve(Vec<String>),
    /// Accept the REQ and never answer.
    Silent,
    /// Send these events for the first REQ, then drop the connection (a peer killed mid-sync).
    Die(Vec<String>),
    /// Send this event again and again for every REQ, never an EOSE (a runaway relay).
    Endless(String),
    /// Answer NEG-OPEN and every NEG-MSG with a NEG-MSG that never converges: an id list of
    /// `first + round * growth` fresh ids, then a fingerprint that never matches.
    NegEndless { first: usize, growth: usize },
}

/// Start the relay on 127.0.0.1:0 in a background thread; returns its URL.
pub fn start(behaviour: Behaviour) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut round, mut next_id) = (0usize, 0u64);
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let Ok(serde_json::Value::Array(msg)) =
                            serde_json::from_str::<serde_json::Value>(&text)
                        else {
                            continue;
                        };
                        let verb = msg.first().and_then(|v| v.as_str()).unwrap_or("");
                        let sub = msg.get(1).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                        match (verb, &behaviour) {
                            ("NEG-OPEN" | "NEG-MSG", Behaviour::NegEndless { first, growth }) => {
                                let ids = first + round * growth;
                                round += 1;
                                let frame = never_converging(ids, &mut next_id);
                                let message = format!(r#"["NEG-MSG","{sub}","{frame}"]"#);
                                if ws.send(Message::text(message)).await.is_err() {
                                    return;
                                }
                            }
                            ("REQ", Behaviour::NegEndless { .. }) => {
                                let _ =
                                    ws.send(Message::text(format!(r#"["EOSE","{sub}"]"#))).await;
                            }
                            ("NEG-OPEN", _) => {
                                let _ = ws
                                    .send(Message::text(format!(
                                        r#"["NEG-ERR","{sub}","blocked: no negentropy here"]"#
                                    )))
                                    .await;
                            }
                            ("REQ", Behaviour::Serve(events)) => {
                                for e in events {
                                    let _ = ws
                                        .send(Message::text(format!(r#"["EVENT","{sub}",{e}]"#)))
                                        .await;
                                }
                                let _ =
                                    ws.send(Message::text(format!(r#"["EOSE","{sub}"]"#))).await;
                            }
                            ("REQ", Behaviour::Endless(event)) => {
                                let message = format!(r#"["EVENT","{sub}",{event}]"#);
                                while ws.send(Message::text(message.clone())).await.is_ok() {}
                                return;
                            }
                            ("REQ", Behaviour::Die(events)) => {
                                for e in events {
                                    let _ = ws
                                        .send(Message::text(format!(r#"["EVENT","{sub}",{e}]"#)))
                                        .await;
                                }
                                return; // no EOSE: the connection drops
                            }
                            ("EVENT", _) => {
                                let id = msg
                                    .get(1)
                                    .and_then(|e| e.get("id"))
                                    .and_then(|v| v.as_str())
                                    .unwrap_or("");
                                let _ = ws
                                    .send(Message::text(format!(
                                        r#"["OK","{id}",false,"blocked: read-only"]"#
                                    )))
                                    .await;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
    });
    format!("ws://{addr}")
}

/// A negentropy v1 message (hex) that lists `ids` fresh ids for the range below the current
/// time and a wrong fingerprint for the rest, so the initiator must answer again.
fn never_converging(ids: usize, next_id: &mut u64) -> String {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        let mut bytes = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n > 0 {
            bytes.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        out.extend(bytes.iter().rev());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = vec![0x61];
    varint(now + 1, &mut out); // upper bound: `now`, encoded as 1 + delta
    out.extend([0, 2]); // no id prefix; mode IdList
    varint(ids as u64, &mut out);
    for _ in 0..ids {
        *next_id += 1;
        out.extend(next_id.to_be_bytes());
        out.extend([0xee; 24]);
    }
    out.extend([0, 0, 1]); // upper bound: infinity; no id prefix; mode Fingerprint
    out.extend([0xab; 16]);
    hex::encode(out)
}

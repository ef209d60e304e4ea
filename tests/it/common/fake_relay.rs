//! A deliberately misbehaving relay for fault tests: it serves a fixed list of raw messages for
//! any REQ (bad signatures, malformed JSON, oversize events), refuses NIP-77, never sends EOSE,
//! or sends one event forever.

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
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let Ok(serde_json::Value::Array(msg)) =
                            serde_json::from_str::<serde_json::Value>(&text)
                        else {
                            continue;
                        };
                        let verb = msg.first().and_then(|v| v.as_str()).unwrap_or("");
                        let sub = msg.get(1).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                        match (verb, &behaviour) {
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

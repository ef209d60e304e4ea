//! Shared by the benchmark examples: start our relay or nostr-sdk's LocalRelay as a process,
//! sign events on every core, connect our client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use constellation::sync::relay_client::RelayClient;
use nostr::prelude::*;

/// A relay process, killed on drop.
pub struct Relay {
    pub name: &'static str,
    pub url: String,
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

/// `constellation relay` on 127.0.0.1:0 with its database at `db`.
pub fn ours(bin: &str, db: &Path) -> Relay {
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

/// nostr-sdk's LocalRelay (through `interop/relays/serve.py`).
pub fn local_relay(python: &str) -> Relay {
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

/// `n` text notes signed on every core; event `i` is by `keys[i % keys.len()]` at `at(i)`.
pub fn sign(keys: &[Keys], n: usize, salt: &str, at: impl Fn(usize) -> u64 + Sync) -> Vec<Event> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let at = &at;
                s.spawn(move || {
                    ((t * chunk)..((t + 1) * chunk).min(n))
                        .map(|i| {
                            EventBuilder::new(Kind::TextNote, format!("{salt} note {i}"))
                                .tags([Tag::hashtag(format!("topic{}", i % 50))])
                                .custom_created_at(Timestamp::from(at(i)))
                                .finalize(&keys[i % keys.len()])
                                .expect("sign")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    })
}

pub async fn client(url: &str) -> RelayClient {
    RelayClient::connect_url(url, Duration::from_secs(10), Duration::from_secs(120))
        .await
        .expect("connect")
}

/// Publish in batches on fresh connections (LocalRelay resets a connection after ~10k events).
pub async fn publish_all(url: &str, events: &[Event]) -> usize {
    let mut accepted = 0;
    for batch in events.chunks(2_000) {
        let mut c = client(url).await;
        let published = c.publish(batch).await.expect("publish");
        assert!(
            published.refused.is_empty(),
            "{url}: {:?}",
            published.refused
        );
        accepted += (published.accepted + published.duplicate) as usize;
        c.close().await;
    }
    accepted
}

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

//! Third-party relays for tests (nostr-sdk's LocalRelay, PyPI nostr-relay), run by
//! `interop/relays/serve.py` as child processes, and our own `constellation relay`; plus event
//! seeding and reading through our client.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use constellation::sync::relay_client::RelayClient;
use nostr::prelude::*;
use serde_json::Value;

/// The Python of the venv with the pinned peers (`./test` creates it).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CONSTELLATION_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run ./test (it installs interop/requirements.txt)",
        venv.display()
    );
    venv
}

/// A relay process; killed on drop.
pub struct PyRelay {
    pub url: String,
    child: Child,
}

impl PyRelay {
    /// `kind`: `localrelay` (NIP-77) or `nostr-relay` (REQ only); `max_limit` 0 = default.
    pub fn start(kind: &str, max_limit: usize) -> PyRelay {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/relays/serve.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(kind)
            .args(["--max-limit", &max_limit.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start relay");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ws://") {
                    let _ = tx.send(line);
                    break;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("{kind} did not start")
            });
        PyRelay { url, child }
    }

    /// The `host:port` part of the URL.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }
}

impl Drop for PyRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(url: &str) -> RelayClient {
    RelayClient::connect_url(url, Duration::from_secs(10), Duration::from_secs(30))
        .await
        .expect("connect relay")
}

/// Publish events; asserts every one was accepted (new or duplicate).
pub fn publish(url: &str, events: &[Event]) {
    runtime().block_on(async {
        let mut c = client(url).await;
        let published = c.publish(events).await.expect("publish");
        assert!(
            published.refused.is_empty(),
            "relay refused: {:?}",
            published.refused
        );
        c.close().await;
    })
}

/// Publish events one by one; refusals (deleted, superseded) are fine.
pub fn publish_lenient(url: &str, events: &[Event]) {
    runtime().block_on(async {
        let mut c = client(url).await;
        c.publish(events).await.expect("publish");
        c.close().await;
    })
}

/// Ids of one REQ, in the order the relay sent them.
pub async fn query_ordered(url: &str, filter: Filter) -> Vec<EventId> {
    let mut c = client(url).await;
    let events = c.query(filter).await.expect("query");
    c.close().await;
    events.into_iter().map(|e| e.id).collect()
}

/// Ids of every event on the relay matching `filter` (paged, complete).
pub fn ids(url: &str, filter: Filter) -> std::collections::BTreeSet<EventId> {
    runtime().block_on(async {
        let mut c = client(url).await;
        let events = c.fetch_all(&filter, 500).await.expect("fetch");
        c.close().await;
        events.into_iter().map(|e| e.id).collect()
    })
}

/// A text note by `keys` with `content` at `created_at`.
pub fn note(keys: &Keys, content: &str, created_at: u64) -> Event {
    EventBuilder::new(Kind::TextNote, content)
        .custom_created_at(Timestamp::from(created_at))
        .finalize(keys)
        .unwrap()
}

/// A contact list of `keys` following `follows`.
pub fn contacts(keys: &Keys, follows: &[PublicKey], created_at: u64) -> Event {
    EventBuilder::new(Kind::ContactList, "")
        .tags(follows.iter().map(|p| Tag::public_key(*p)))
        .custom_created_at(Timestamp::from(created_at))
        .finalize(keys)
        .unwrap()
}

pub fn now() -> u64 {
    Timestamp::now().as_secs()
}

/// Ids in an event database file, read with our store's own reader.
pub fn stored_ids(db: &std::path::Path) -> std::collections::BTreeSet<EventId> {
    runtime().block_on(async {
        let store = constellation::store::Store::open(db, Default::default()).expect("open db");
        store
            .items(Filter::new())
            .await
            .expect("items")
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    })
}

/// `constellation relay` on 127.0.0.1:0 with its own database; killed on drop.
pub struct OurRelay {
    pub url: String,
    pub db: PathBuf,
    pub home: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl OurRelay {
    pub fn start(config: &str) -> OurRelay {
        let tmp = tempfile::tempdir().expect("tmp");
        let home = crate::common::home_with(&tmp.path().join("home"), config);
        let db = tmp.path().join("relay.sqlite");
        let log = std::fs::File::create(tmp.path().join("relay.log")).expect("log");
        let mut child = Command::new(crate::common::bin())
            .arg("--home")
            .arg(&home)
            .args(["relay", "--listen", "127.0.0.1:0", "--db"])
            .env("RUST_LOG", "info,constellation=debug")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("relay did not start: {line:?}")
        });
        OurRelay {
            url: ready["relay"].as_str().expect("url").to_owned(),
            db,
            home,
            child: Some(child),
            _tmp: tmp,
        }
    }

    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("ws://")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    pub fn stored_ids(&self) -> BTreeSet<EventId> {
        stored_ids(&self.db)
    }
}

impl Drop for OurRelay {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.home.join("../relay.log")).unwrap_or_default();
            eprintln!("relay log:\n{log}");
        }
    }
}

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
    /// A folder the relay owns (strfry's config and LMDB), removed with it.
    _dir: Option<tempfile::TempDir>,
}

impl Relay {
    /// CPU-seconds (user + system) the relay process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs_of(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU-seconds (user + system) process `pid` has used so far.
pub fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields of the line: 12th and 13th after ')'.
    (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_SEC
}

/// `sysconf(_SC_CLK_TCK)` on Linux, which is 100 on every architecture it runs here.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

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
        _dir: None,
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
        _dir: None,
    }
}

/// strfry (`../shared/peers/strfry/strfry` unless `bin` says otherwise) on 127.0.0.1, with its
/// LMDB in a fresh folder; its defaults otherwise (`nofiles = 0` leaves the fd limit alone).
pub fn strfry(bin: &str) -> Relay {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).expect("db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("strfry.conf");
    let text = format!(
        "db = \"{}/\"\nrelay {{\n  bind = \"127.0.0.1\"\n  port = {port}\n  nofiles = 0\n}}\n",
        db.display()
    );
    std::fs::write(&config, text).expect("config");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("relay")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start strfry {bin}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "strfry did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Relay {
        name: "strfry",
        url: format!("ws://127.0.0.1:{port}"),
        child,
        _dir: Some(dir),
    }
}

/// `n` text notes signed on every core; event `i` is by `keys[i % keys.len()]` at `at(i)`.
pub fn sign(keys: &[Keys], n: usize, salt: &str, at: impl Fn(usize) -> u64 + Sync) -> Vec<Event> {
    sign_with(keys, n, salt, at, |_| Vec::new())
}

/// As [`sign`], each note with a `#t` tag and the tags `extra(i)` adds.
pub fn sign_with(
    keys: &[Keys],
    n: usize,
    salt: &str,
    at: impl Fn(usize) -> u64 + Sync,
    extra: impl Fn(usize) -> Vec<Tag> + Sync,
) -> Vec<Event> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (at, extra) = (&at, &extra);
                s.spawn(move || {
                    ((t * chunk)..((t + 1) * chunk).min(n))
                        .map(|i| {
                            let mut tags = vec![Tag::hashtag(format!("topic{}", i % 50))];
                            tags.extend(extra(i));
                            EventBuilder::new(Kind::TextNote, format!("{salt} note {i}"))
                                .tags(tags)
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

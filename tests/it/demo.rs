//! Issue 8: `constellation demo` and the status page, as a newcomer and an operator see them:
//! real daemons, real sync, headless Chromium on the page.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nostr::prelude::*;
use serde_json::Value;

use crate::common::relays::{note, now, publish};
use crate::common::{self, Daemon, bin, chromium};

/// Command lines of running processes that mention `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
fn demo_converges_the_seed_picture_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let out = Command::new(bin())
        .args(["demo", "--json"])
        .env("TMPDIR", &tmpdir)
        .stdin(Stdio::null())
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("demo JSON");
    assert_eq!(result["complete"], true);
    for station in ["A", "B", "C"] {
        let before = result["before"][station]
            .as_object()
            .expect("before column");
        let after = result["after"][station].as_object().expect("after column");
        assert_eq!(after.len(), 8, "6 events + the N¹ and N² notes");
        assert!(
            after.values().all(|v| v == true),
            "{station} lacks events: {after:?}"
        );
        // Before the sync each station held only its own pair (and B, C a friend's note each).
        let held = before.values().filter(|v| **v == true).count();
        assert_eq!(
            held,
            if station == "A" { 2 } else { 3 },
            "{station}: {before:?}"
        );
    }
    assert_eq!(result["before"]["A"]["event 3 (B)"], false);
    assert_eq!(result["before"]["A"]["friend of friend (N²)"], false);
    assert_eq!(result["after"]["A"]["friend of friend (N²)"], true);
    assert_eq!(
        result["stats"]["discovered"], 2,
        "the friend and the friend of a friend"
    );
    assert!(result["seconds"].as_f64().unwrap() < 10.0);
    // Nothing left: no folder, no process, no port.
    assert_eq!(
        std::fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "files left behind"
    );
    let dir = result["dir"].as_str().unwrap();
    assert!(
        processes_mentioning(dir).is_empty(),
        "processes left: {:?}",
        processes_mentioning(dir)
    );
    for s in result["stations"].as_array().unwrap() {
        let addr = s["relay"].as_str().unwrap().trim_start_matches("ws://");
        assert!(TcpStream::connect(addr).is_err(), "{addr} still open");
    }
}

/// `GET path` on a loopback HTTP server; the body.
pub(crate) fn http_get(url: &str, path: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).expect("connect status page");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

#[test]
fn status_page_shows_peers_tunnels_services_and_the_last_sync() {
    // A peer station with three events behind its /x/strfry tunnel.
    let peer = Daemon::start(&["--relay-listen", "127.0.0.1:0"]);
    let peer_relay = peer.ready["relay"].as_str().unwrap().to_owned();
    let keys = Keys::generate();
    publish(
        &peer_relay,
        &(0..3)
            .map(|i| note(&keys, &format!("status {i}"), now() - 10 - i))
            .collect::<Vec<_>>(),
    );
    let port = peer_relay.rsplit(':').next().unwrap();
    peer.cli_ok(&[
        "p2p",
        "listen",
        &format!("/x/strfry-{}", peer.peer_id),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
    ]);

    // Our station: a service DRAGON publishes, a forward to the peer, one finished sync.
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web_port = web.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let home = common::home_with(
        &tmp.path().join("home"),
        &format!(
            "[dragon]\nscripts_dir = {:?}\nswarm_dir = {:?}\nenv_file = {:?}\nsshd_config = {:?}\n\n[dragon.ports]\nwebstatus = {web_port}\n",
            tmp.path().join("scripts"),
            tmp.path().join("swarm"),
            tmp.path().join("env"),
            tmp.path().join("no-sshd"),
        ),
    );
    let station = Daemon::start_in(
        &home,
        &[
            "--dragon",
            "--relay-listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
        ],
    );
    let status_url = station.ready["status"]
        .as_str()
        .expect("status url")
        .to_owned();
    crate::common::connect(&peer, &station);
    // DRAGON's first cycle runs in the background; one cycle now makes its listener certain.
    station.cli_ok(&["services", "--refresh"]);
    station.cli_ok(&[
        "p2p",
        "forward",
        &format!("/x/strfry-{}", peer.peer_id),
        "/ip4/127.0.0.1/tcp/0",
        &format!("/p2p/{}", peer.peer_id),
    ]);
    let zen = tmp.path().join("zen");
    let out = station.cli(&[
        "backfill",
        "--peer",
        &peer.peer_id,
        "--zen",
        zen.to_str().unwrap(),
        "--no-profiles",
        "--no-fallback",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["imported"], 3);

    // /api/status against the daemon's real state.
    let status: Value =
        serde_json::from_str(&http_get(&status_url, "/api/status")).expect("status JSON");
    assert_eq!(status["peer_id"], station.peer_id.as_str());
    assert!(
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer.peer_id.as_str())
    );
    let tunnels = status["tunnels"].as_array().unwrap();
    assert!(tunnels.iter().any(|t| t["kind"] == "forward"
        && t["protocol"] == format!("/x/strfry-{}", peer.peer_id).as_str()));
    assert!(tunnels.iter().any(|t| t["kind"] == "listen"
        && t["protocol"] == format!("/x/webstatus-{}", station.peer_id).as_str()));
    let ls: Value = serde_json::from_str(&station.cli_ok(&["p2p", "ls", "--json"])).unwrap();
    assert_eq!(
        ls.as_array().unwrap().len(),
        tunnels.len(),
        "the page lists what p2p ls lists"
    );
    assert!(
        status["services"]["published"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["slug"] == "webstatus")
    );
    assert_eq!(status["relay"]["events"], 3);
    assert_eq!(status["runs"][0]["imported"], 3);
    assert_eq!(status["runs"][0]["status"], "OK");
    assert_eq!(status["runs"][0]["run_id"], run["run_id"]);

    // The page, rendered by Chromium, shows them.
    let dom = chromium(&["--dump-dom"], &status_url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(&peer.peer_id), "peer missing from the page");
    // How each peer was found and its connection kind, as `swarm peers -v` shows them.
    let shown = &status["peers"][0];
    for (class, value) in [
        ("found", &shown["found"]),
        ("connection", &shown["connection"]),
    ] {
        let cell = format!(
            r#"<span class="{class}">{}</span>"#,
            value.as_str().unwrap()
        );
        assert!(dom.contains(&cell), "{cell} missing from the page");
    }
    assert!(dom.contains("webstatus"), "service missing from the page");
    assert!(
        dom.contains(r#"<span class="imported">3</span>"#),
        "sync numbers missing"
    );
    assert!(
        dom.contains(r#"id="relay-events">3<"#),
        "relay count missing"
    );
    assert!(
        dom.contains(r#"<svg id="groups-chart""#),
        "the report's chart is missing"
    );
    let shot = docs().join("status.png");
    let out = chromium(
        &["--screenshot=".to_owned() + shot.to_str().unwrap()]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .into_iter()
            .chain(["--window-size=1280,1000"])
            .collect::<Vec<_>>(),
        &status_url,
    );
    assert!(
        out.status.success() || shot.exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank one ({} bytes)",
        png.len()
    );
    drop(web);
}

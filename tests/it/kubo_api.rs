//! Issue 17: the Kubo RPC API, driven by an independent client (PyPI aioipfs): id, swarm
//! peers, p2p tunnels that carry bytes, ping, routing findpeer through the DHT, `<repo>/api`,
//! and Kubo's refusals (GET, foreign Origin, missing authorization, big body, slowloris).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::common::{self, Daemon, relays::python, wait_until};

/// The API on a free loopback port, the DHT as given.
pub fn config(routing: &str) -> String {
    format!(
        "[node]\nrouting = \"{routing}\"\n[kubo_api]\nenabled = true\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n[trigger]\nenabled = false\n"
    )
}

/// The API multiaddr a daemon's ready line names.
pub fn api_of(daemon: &Daemon) -> String {
    daemon.ready["kubo_api"]
        .as_str()
        .unwrap_or_else(|| panic!("no Kubo API: {}", daemon.ready))
        .to_owned()
}

/// Run one aioipfs call (`interop/kubo_rpc/client.py`); its JSON answer.
pub fn ipfs(api: &str, auth: Option<&str>, op: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/kubo_rpc/client.py");
    let mut command = Command::new(python());
    command.arg(script).arg(api);
    if let Some(auth) = auth {
        command.args(["--auth", auth]);
    }
    let out = command
        .args(op)
        .stdin(Stdio::null())
        .output()
        .expect("run the aioipfs client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "aioipfs {op:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn ok(answer: Value) -> Value {
    assert!(answer.get("error").is_none(), "aioipfs failed: {answer}");
    answer["result"].clone()
}

#[test]
fn an_ipfs_client_opens_tunnels_that_carry_bytes_and_sees_the_node() {
    let a = Daemon::start_with_config(&config("none"), &[]);
    let b = Daemon::start_with_config(&config("none"), &[]);
    common::connect(&b, &a);
    let (api_a, api_b) = (api_of(&a), api_of(&b));

    let id = ok(ipfs(&api_a, None, &["id"]));
    assert_eq!(id["ID"], a.peer_id.as_str());
    let key = base64::engine::general_purpose::STANDARD
        .decode(id["PublicKey"].as_str().unwrap())
        .unwrap();
    let key = libp2p::identity::PublicKey::try_decode_protobuf(&key).unwrap();
    assert_eq!(key.to_peer_id().to_string(), a.peer_id);
    let addrs: Vec<&str> = id["Addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(addrs.contains(&a.addr().as_str()), "{addrs:?}");
    assert!(
        id["AgentVersion"]
            .as_str()
            .unwrap()
            .starts_with("kubo/0.40.0/constellation-")
    );

    let peers = ok(ipfs(&api_a, None, &["swarm_peers"]));
    let ids: Vec<&str> = peers["Peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Peer"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.peer_id.as_str()]);

    // B serves an echo service; A forwards a local port to it, both through the Kubo API.
    let echo = net::echo_server();
    let protocol = format!("/x/echo-{}", b.peer_id);
    ok(ipfs(
        &api_b,
        None,
        &["p2p_listen", &protocol, &tcp_addr(echo.port())],
    ));
    let port = free_port();
    let target = format!("/p2p/{}", b.peer_id);
    ok(ipfs(
        &api_a,
        None,
        &["p2p_forward", &protocol, &tcp_addr(port), &target],
    ));
    let data = payload(1 << 20, 17);
    let answer = net::request(port, &data).unwrap();
    assert_eq!(sha256(&answer), sha256(&data));

    // Kubo's `p2p ls` and ours list the same tunnel.
    let ls = ok(ipfs(&api_a, None, &["p2p_ls"]));
    let listeners = ls["Listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0]["Protocol"], protocol.as_str());
    assert_eq!(listeners[0]["ListenAddress"], tcp_addr(port).as_str());
    assert_eq!(listeners[0]["TargetAddress"], target.as_str());
    let ours: Value = serde_json::from_str(&a.cli_ok(&["p2p", "ls", "--json"])).unwrap();
    assert_eq!(ours[0]["listen_address"], tcp_addr(port).as_str());

    let pings = ok(ipfs(&api_a, None, &["ping", &b.peer_id, "2"]));
    let pings = pings.as_array().unwrap();
    let pongs = pings
        .iter()
        .filter(|p| p["Success"] == true && p["Text"] == "")
        .count();
    assert_eq!(pongs, 2, "{pings:?}");
    assert!(pings.iter().any(|p| p["Time"].as_u64().unwrap() > 0));
    assert!(
        pings.last().unwrap()["Text"]
            .as_str()
            .unwrap()
            .starts_with("Average latency: ")
    );

    assert_eq!(ok(ipfs(&api_a, None, &["p2p_close", &protocol])), 1);
    assert_eq!(
        ok(ipfs(&api_a, None, &["p2p_ls"]))["Listeners"],
        Value::Null
    );
    assert_eq!(a.cli_ok(&["p2p", "ls", "--json"]).trim(), "[]");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the forward's port is closed"
    );

    let missing = ipfs(&api_a, None, &["findpeer", &a.peer_id]);
    assert!(
        missing.get("error").is_some(),
        "finding oneself is refused as Kubo does"
    );
}

#[test]
fn routing_findpeer_finds_a_peer_known_only_through_the_dht() {
    let hub = Daemon::start_with_config(&config("dhtserver"), &[]);
    let seeker = Daemon::start_with_config(&config("dht"), &[]);
    let hidden = Daemon::start_with_config(&config("dht"), &[]);
    common::connect(&hub, &seeker);
    common::connect(&hub, &hidden);
    let api = api_of(&seeker);
    let mut found = Value::Null;
    let answered = wait_until(Duration::from_secs(30), || {
        found = ipfs(&api, None, &["findpeer", &hidden.peer_id]);
        found["result"]["Type"] == 2
    });
    assert!(answered, "findpeer never answered a final peer: {found}");
    let responses = found["result"]["Responses"].as_array().unwrap();
    assert_eq!(responses[0]["ID"], hidden.peer_id.as_str());
    let addrs: Vec<&str> = responses[0]["Addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        addrs.contains(&hidden.listen[0].as_str()),
        "{addrs:?} lacks {}",
        hidden.listen[0]
    );
}

/// A Kubo repo folder with an Ed25519 identity and `api` (the `API` section) as given.
pub fn kubo_repo(dir: &Path, api: &str) -> String {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let peer = key.public().to_peer_id().to_string();
    let private =
        base64::engine::general_purpose::STANDARD.encode(key.to_protobuf_encoding().unwrap());
    let config = format!(
        r#"{{"Identity": {{"PeerID": "{peer}", "PrivKey": "{private}"}},
            "Addresses": {{"API": "/ip4/127.0.0.1/tcp/0", "Swarm": ["/ip4/127.0.0.1/tcp/0"]}},
            "Bootstrap": [], "Routing": {{"Type": "none"}}, "API": {api}}}"#
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config"), config).unwrap();
    peer
}

#[test]
fn the_api_file_lives_with_the_daemon_and_a_second_daemon_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("ipfs");
    let peer = kubo_repo(&repo, "{}");
    let home = common::home_with(&tmp.path().join("one"), "[trigger]\nenabled = false\n");
    let repo_flag = repo.to_str().unwrap();
    let mut first = Daemon::start_in(&home, &["--kubo-repo", repo_flag]);
    assert_eq!(first.peer_id, peer);
    let api = api_of(&first);
    assert_eq!(std::fs::read_to_string(repo.join("api")).unwrap(), api);
    assert_eq!(ok(ipfs(&api, None, &["id"]))["ID"], peer.as_str());

    let other = common::home_with(&tmp.path().join("two"), "[trigger]\nenabled = false\n");
    let mut second = Command::new(common::bin())
        .arg("--home")
        .arg(&other)
        .args([
            "daemon",
            "--no-relay",
            "--no-status",
            "--no-dragon",
            "--kubo-repo",
            repo_flag,
        ])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = second.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second daemon on the same repo started");
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("is in use") && stderr.contains(&api),
        "{stderr}"
    );

    first.stop();
    assert!(
        !repo.join("api").exists(),
        "the api file is removed on exit"
    );
}

/// One raw HTTP/1.1 exchange (`Connection: close`); the status code and the body.
fn raw(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(body); // the server may answer (and close) before the whole body
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_api_refuses_what_kubo_refuses_and_cuts_slow_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("ipfs");
    let auth = r#"{"Authorizations": {"alice": {"AuthSecret": "basic:alice:secret", "AllowedPaths": ["/api/v0"]}}}"#;
    kubo_repo(&repo, auth);
    let home = common::home_with(&tmp.path().join("home"), "[trigger]\nenabled = false\n");
    let daemon = Daemon::start_in(&home, &["--kubo-repo", repo.to_str().unwrap()]);
    let api = api_of(&daemon);
    let port: u16 = api.rsplit('/').next().unwrap().parse().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );

    // Authorization: refused without it (aioipfs sees Kubo's 403), served with it.
    let refused = ipfs(&api, None, &["id"]);
    assert!(refused.get("error").is_some(), "{refused}");
    assert_eq!(
        ok(ipfs(&api, Some("basic:alice:secret"), &["id"]))["ID"],
        daemon.peer_id.as_str()
    );
    let (status, body) = raw(
        port,
        "POST /api/v0/id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(
        (status, body.contains("Kubo RPC Access Denied")),
        (403, true)
    );

    let head = |method: &str, extra: &str| {
        format!(
            "{method} /api/v0/id HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {basic}\r\nConnection: close\r\n{extra}\r\n"
        )
    };
    assert_eq!(
        raw(port, &head("GET", ""), b""),
        (405, "405 - Method Not Allowed\n".into())
    );
    let foreign = head("POST", "Origin: https://evil.example\r\n");
    assert_eq!(raw(port, &foreign, b""), (403, "403 - Forbidden\n".into()));
    let own = head("POST", &format!("Origin: http://127.0.0.1:{port}\r\n"));
    assert_eq!(raw(port, &own, b"").0, 200);
    let big = vec![b'x'; 2 << 20];
    let oversized = head("POST", &format!("Content-Length: {}\r\n", big.len()));
    let (status, body) = raw(port, &oversized, &big);
    assert_eq!(status, 413, "{body}");

    // Slowloris: clients that dribble their head are cut at the deadline; an honest one is served.
    let slow: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let _ = conn.write_all(b"POST /api/v0/id HTTP/1.1\r\nHost: x\r\n");
                let mut buf = [0u8; 256];
                while started.elapsed() < Duration::from_secs(20) {
                    if conn.write_all(b"X").is_err() {
                        break;
                    }
                    match conn.read(&mut buf) {
                        Ok(_) => break, // closed (0) or answered (408): cut either way
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    // Time passing on purpose: the slow clients are connected and dribbling when the honest one
    // arrives (nothing to poll: they hold their connections open by design).
    std::thread::sleep(Duration::from_millis(500));
    let honest = Instant::now();
    assert_eq!(
        ok(ipfs(&api, Some("basic:alice:secret"), &["version"]))["Version"],
        "0.40.0"
    );
    assert!(
        honest.elapsed() < Duration::from_secs(4),
        "honest client waited {:?}",
        honest.elapsed()
    );
    for handle in slow {
        let cut = handle.join().unwrap();
        assert!(
            cut > Duration::from_secs(4) && cut < Duration::from_secs(9),
            "slow client cut after {cut:?}"
        );
    }
}

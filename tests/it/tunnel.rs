//! Issue 2: tunnels between two real daemons — bytes, half-close, concurrency, resets,
//! allow-lists, pnet, Kubo identity import, persistence, the p2p CLI and shutdown.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::common::{self, Daemon};

/// A (listener daemon, forwarder daemon) pair with `/x/test` from b's local port to a's `target`.
pub fn tunnel_pair(target_port: u16, listen_extra: &[&str]) -> (Daemon, Daemon, u16) {
    tunnel_pair_with(&[], target_port, listen_extra)
}

/// [`tunnel_pair`] with `daemon_args` (e.g. `--swarm-key`) given to both daemons.
fn tunnel_pair_with(
    daemon_args: &[&str],
    target_port: u16,
    listen_extra: &[&str],
) -> (Daemon, Daemon, u16) {
    let a = Daemon::start(daemon_args);
    let b = Daemon::start(daemon_args);
    let mut args = vec!["p2p", "listen", "/x/test", ""];
    let target = tcp_addr(target_port);
    args[3] = &target;
    args.extend_from_slice(listen_extra);
    a.cli_ok(&args);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    (a, b, port)
}

#[test]
fn echo_goes_through_forward_then_listen() {
    let echo = net::echo_server();
    let (_a, _b, port) = tunnel_pair(echo.port(), &[]);
    let data = payload(100_000, 1);
    let answer = net::request(port, &data).unwrap();
    assert_eq!(sha256(&answer), sha256(&data));
}

#[test]
fn half_close_still_delivers_a_reply_of_one_mebibyte() {
    half_close_delivers_a_reply_of_one_mebibyte(&[]);
}

#[test]
fn half_close_and_sixty_four_mebibytes_both_ways_pass_through_pnet() {
    let dir = tempfile::tempdir().unwrap();
    let zero = write_swarm_key(dir.path(), &"0".repeat(64));
    half_close_delivers_a_reply_of_one_mebibyte(&["--swarm-key", &zero]);
    sixty_four_mebibytes_both_ways_keep_their_hashes(&["--swarm-key", &zero]);
}

fn half_close_delivers_a_reply_of_one_mebibyte(daemon_args: &[&str]) {
    let server = net::reply_after_eof_server(1 << 20);
    let (_a, _b, port) = tunnel_pair_with(daemon_args, server.port(), &[]);
    let request = payload(300_000, 3);
    let answer = net::request(port, &request).unwrap();
    assert_eq!(answer.len(), (1 << 20) + 64, "reply was cut short");
    assert_eq!(&answer[..1 << 20], &payload(1 << 20, 7)[..]);
    // The server hashed the request it saw after our FIN: it must be the whole request.
    assert_eq!(
        String::from_utf8_lossy(&answer[1 << 20..]),
        sha256(&request)
    );
}

#[test]
fn sixty_four_mebibytes_both_ways_at_once_keep_their_hashes() {
    sixty_four_mebibytes_both_ways_keep_their_hashes(&[]);
}

/// Bytes each way of the both-ways tests.
const SWAP_LEN: usize = 64 << 20;

fn sixty_four_mebibytes_both_ways_keep_their_hashes(daemon_args: &[&str]) {
    let (server, received) = net::swap_server(SWAP_LEN);
    let (_a, _b, port) = tunnel_pair_with(daemon_args, server.port(), &[]);
    swap_through(port, &received);
}

/// Push [`SWAP_LEN`] bytes into local `port` while reading what the swap server sends back:
/// both directions must arrive whole (length and SHA-256, on each side).
fn swap_through(port: u16, received: &std::sync::mpsc::Receiver<(u64, String)>) {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&payload(SWAP_LEN, 1)).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = conn;
    let (got, digest) = net::read_all_hashed(&mut reader).unwrap();
    sender.join().unwrap();
    assert_eq!(got, SWAP_LEN as u64);
    assert_eq!(digest, sha256(&payload(SWAP_LEN, 2)));
    let (server_got, server_digest) = received.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(server_got, SWAP_LEN as u64);
    assert_eq!(server_digest, sha256(&payload(SWAP_LEN, 1)));
}

#[test]
fn a_hundred_concurrent_connections_share_one_tunnel() {
    let echo = net::echo_server();
    let (_a, _b, port) = tunnel_pair(echo.port(), &[]);
    let workers: Vec<_> = (0..100u64)
        .map(|i| {
            thread::spawn(move || {
                let data = payload(64 * 1024 + i as usize, i + 10);
                let answer = net::request(port, &data).unwrap();
                sha256(&answer) == sha256(&data)
            })
        })
        .collect();
    let ok = workers
        .into_iter()
        .map(|w| w.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 100);
}

#[test]
fn target_down_closes_the_client_within_a_second() {
    let dead = free_port(); // nothing listens there
    let (a, _b, port) = tunnel_pair(dead, &[]);
    // Warm the connection so we measure the reset, not the dial.
    let _ = net::request(port, b"x");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = conn.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no bytes can come from a dead target");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(a.wait_log("cannot reach target", Duration::from_secs(5)));
}

#[test]
fn report_peer_id_writes_the_remote_id_first() {
    let echo = net::echo_server();
    let (_a, b, port) = tunnel_pair(echo.port(), &["-r"]);
    let answer = net::request(port, b"hello").unwrap();
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        format!("{}\nhello", b.peer_id)
    );
}

#[test]
fn a_peer_outside_the_allow_list_is_refused_and_logged() {
    let echo = net::echo_server();
    let stranger = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let (a, _b, port) = tunnel_pair(echo.port(), &["--allow-peer", stranger]);
    let answer = net::request(port, b"let me in").unwrap_or_default();
    assert!(answer.is_empty(), "refused peer got {answer:?}");
    assert!(a.wait_log(
        "refused stream: peer is not in the allow-list",
        Duration::from_secs(5)
    ));
}

#[test]
fn allow_listed_peer_gets_through() {
    let echo = net::echo_server();
    let a = Daemon::start(&[]);
    let b = Daemon::start(&[]);
    a.cli_ok(&[
        "p2p",
        "listen",
        "/x/test",
        &tcp_addr(echo.port()),
        "--allow-peer",
        &b.peer_id,
    ]);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    assert_eq!(net::request(port, b"friend").unwrap(), b"friend");
}

fn write_swarm_key(dir: &std::path::Path, key_hex: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("swarm.key");
    std::fs::write(
        &path,
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{key_hex}\n"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn pnet_same_key_connects_and_a_different_key_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let zero = write_swarm_key(&dir.path().join("zero"), &"0".repeat(64));
    let other = write_swarm_key(&dir.path().join("other"), &"ab".repeat(32));
    let a = Daemon::start(&["--swarm-key", &zero]);
    let b = Daemon::start(&["--swarm-key", &zero]);
    let c = Daemon::start(&["--swarm-key", &other]);
    assert!(
        a.log().contains("Swarm key fingerprint:"),
        "fingerprint not logged"
    );

    let echo = net::echo_server();
    a.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(echo.port())]);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    assert_eq!(net::request(port, b"private").unwrap(), b"private");

    let out = c.cli(&["swarm", "connect", &a.addr()]);
    assert!(
        !out.status.success(),
        "a different swarm key must not connect"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("swarm key"),
        "error should name the swarm key: {err}"
    );
}

#[test]
fn kubo_identity_import_gives_the_kubo_peer_id() {
    use base64::Engine as _;
    // A fixed Ed25519 key: protobuf {Type: Ed25519, Data: 64 bytes} as Kubo writes it.
    let seed = [42u8; 32];
    let secret = libp2p_identity_from_seed(seed);
    let (proto, expected) = secret;
    let repo = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"Identity":{{"PeerID":"{expected}","PrivKey":"{}"}},"Addresses":{{}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(&proto)
    );
    std::fs::write(repo.path().join("config"), config).unwrap();
    let repo_path = repo.path().to_str().unwrap();

    let home = tempfile::tempdir().unwrap();
    let out = common::cli(home.path(), &["id", "--kubo-repo", repo_path]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    let daemon = Daemon::start(&["--kubo-repo", repo_path]);
    assert_eq!(daemon.peer_id, expected);

    // A config whose key is not its PeerID is refused with one line.
    let wrong = config_with_wrong_peer(&proto);
    std::fs::write(repo.path().join("config"), wrong).unwrap();
    let out = common::cli(home.path(), &["id", "--kubo-repo", repo_path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    assert!(err.contains("refusing to start"), "{err}");
}

/// The libp2p protobuf encoding of the Ed25519 key with `seed`, and its PeerID.
fn libp2p_identity_from_seed(seed: [u8; 32]) -> (Vec<u8>, String) {
    let mut seed = seed;
    let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut seed).unwrap();
    let keypair = libp2p::identity::Keypair::from(libp2p::identity::ed25519::Keypair::from(secret));
    let id = keypair.public().to_peer_id().to_string();
    (keypair.to_protobuf_encoding().unwrap(), id)
}

fn config_with_wrong_peer(proto: &[u8]) -> String {
    use base64::Engine as _;
    let other = libp2p_identity_from_seed([1u8; 32]).1;
    format!(
        r#"{{"Identity":{{"PeerID":"{other}","PrivKey":"{}"}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(proto)
    )
}

#[test]
fn declared_and_persisted_tunnels_come_back_after_a_restart() {
    let echo = net::echo_server();
    let a = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // b declares a listen in config.toml, and persists a forward to a from the CLI.
    let declared_port = echo.port();
    let home = common::home_with(
        &tmp.path().join("b"),
        &format!(
            "[[tunnels]]\nkind = \"listen\"\nprotocol = \"/x/declared\"\ntarget = \"{}\"\n",
            tcp_addr(declared_port)
        ),
    );
    a.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(echo.port())]);
    let port = free_port();
    let mut b = Daemon::start_in(&home, &[]);
    b.cli_ok(&[
        "p2p",
        "forward",
        "/x/test",
        &tcp_addr(port),
        &a.addr(),
        "--persist",
    ]);
    assert_eq!(net::request(port, b"before").unwrap(), b"before");
    assert_eq!(b.stop().map(|s| s.success()), Some(true));

    let b = Daemon::start_in(&home, &[]);
    let ls = b.cli_ok(&["p2p", "ls"]);
    let mut rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    rows.sort();
    let declared = [
        "/x/declared".to_string(),
        format!("/p2p/{}", b.peer_id),
        tcp_addr(declared_port),
    ];
    let persisted = [
        "/x/test".to_string(),
        tcp_addr(port),
        format!("/p2p/{}", a.peer_id),
    ];
    assert_eq!(
        rows,
        [
            declared.iter().map(String::as_str).collect::<Vec<_>>(),
            persisted.iter().map(String::as_str).collect()
        ],
        "{ls}"
    );
    assert_eq!(net::request(port, b"after").unwrap(), b"after");
}

#[test]
fn after_shutdown_every_port_and_the_control_socket_can_be_bound_again() {
    let mut daemon = Daemon::start(&[
        "--relay-listen",
        "127.0.0.1:0",
        "--status-listen",
        "127.0.0.1:0",
    ]);
    let port_of = |url: &str| -> u16 {
        let rest = url.rsplit_once(':').expect("host:port").1;
        rest.trim_end_matches('/').parse().expect("port")
    };
    let p2p = port_of(&daemon.listen[0].replace("/tcp/", ":"));
    let relay = port_of(daemon.ready["relay"].as_str().expect("relay url"));
    let status = port_of(daemon.ready["status"].as_str().expect("status url"));
    let socket = PathBuf::from(daemon.ready["control"].as_str().expect("control socket"));
    assert!(socket.exists());
    assert_eq!(daemon.stop().map(|s| s.success()), Some(true));
    for port in [p2p, relay, status] {
        TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} is still held after shutdown: {e}"));
    }
    assert!(!socket.exists(), "the control socket file is left behind");
    std::os::unix::net::UnixListener::bind(&socket).expect("the control socket path is free");
}

/// `--persist` requests that arrive together: enough that unserialised read-change-write
/// cycles of `tunnels.json` would lose some.
const CONCURRENT_PERSISTS: usize = 12;

#[test]
fn concurrent_persist_requests_all_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut daemon = Daemon::start_in(&home, &[]);
    let target = tcp_addr(free_port());
    std::thread::scope(|scope| {
        for i in 0..CONCURRENT_PERSISTS {
            let (daemon, target) = (&daemon, &target);
            scope.spawn(move || {
                let protocol = format!("/x/persist-{i}");
                daemon.cli_ok(&["p2p", "listen", &protocol, target, "--persist"]);
            });
        }
    });
    assert_eq!(daemon.stop().map(|s| s.success()), Some(true));

    let daemon = Daemon::start_in(&home, &[]);
    let ls = daemon.cli_ok(&["p2p", "ls"]);
    let mut protocols: Vec<&str> = ls
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    protocols.sort();
    let mut expected: Vec<String> = (0..CONCURRENT_PERSISTS)
        .map(|i| format!("/x/persist-{i}"))
        .collect();
    expected.sort();
    assert_eq!(protocols, expected, "{ls}");
}

#[test]
fn ls_close_and_stream_ls_print_what_is_open() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap().port();
    let (a, b, port) = tunnel_pair(target, &[]);
    let ls = b.cli_ok(&["p2p", "ls", "--headers"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines.len(), 2, "{ls}");
    assert!(
        lines[0].starts_with("Protocol")
            && lines[0].contains("ListenAddress")
            && lines[0].contains("TargetAddress")
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["/x/test", &tcp_addr(port), &format!("/p2p/{}", a.peer_id)]
    );

    // Hold one stream open and see it on both sides.
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"ping").unwrap();
    let (mut served, _) = server.accept().unwrap();
    let mut buf = [0u8; 4];
    served.read_exact(&mut buf).unwrap();
    let streams = a.cli_ok(&["p2p", "stream", "ls"]);
    assert_eq!(streams.lines().count(), 1, "{streams}");
    let row: Vec<&str> = streams.split_whitespace().collect();
    assert_eq!(
        row[1..],
        ["/x/test", &format!("/p2p/{}", b.peer_id), &tcp_addr(target)]
    );
    let verbose = b.cli_ok(&["p2p", "stream", "ls", "--headers"]);
    let fields: Vec<&str> = verbose.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        fields[fields.len() - 2..],
        ["4", "0"],
        "4 bytes sent, none received: {verbose}"
    );

    // stream close resets it: the client sees its connection end.
    let id = row[0];
    a.cli_ok(&["p2p", "stream", "close", id]);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
    assert_eq!(a.cli_ok(&["p2p", "stream", "ls"]), "");

    // close by protocol; a second close matches nothing and says so.
    assert_eq!(
        b.cli_ok(&["p2p", "close", "-p", "/x/test"]).trim(),
        "Closed 1 tunnel(s)"
    );
    assert_eq!(b.cli_ok(&["p2p", "ls"]), "");
    let again = b.cli(&["p2p", "close", "-p", "/x/test"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no tunnel matched"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "closed forward must release its port"
    );
}

#[test]
fn one_listener_per_protocol_and_names_must_start_with_x() {
    let a = Daemon::start(&[]);
    a.cli_ok(&["p2p", "listen", "/x/one", "/ip4/127.0.0.1/tcp/1"]);
    let dup = a.cli(&["p2p", "listen", "/x/one", "/ip4/127.0.0.1/tcp/2"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let custom = a.cli(&["p2p", "listen", "/ssh", "/ip4/127.0.0.1/tcp/22"]);
    assert!(String::from_utf8_lossy(&custom.stderr).contains("must start with /x/"));
    a.cli_ok(&[
        "p2p",
        "listen",
        "/ssh",
        "/ip4/127.0.0.1/tcp/22",
        "--allow-custom-protocol",
    ]);
}

#[test]
fn bad_input_gets_one_clear_line_and_the_daemon_keeps_serving() {
    let a = Daemon::start(&[]);
    let cases: [(&[&str], &str); 5] = [
        (
            &["p2p", "listen", "/x/a", "/ip4/127.0.0.1/udp/5"],
            "not a TCP address",
        ),
        (&["p2p", "listen", "/x/a", "nonsense"], "not a multiaddr"),
        (
            &[
                "p2p",
                "forward",
                "/x/a",
                "/ip4/127.0.0.1/tcp/0",
                "/ip4/127.0.0.1/tcp/1",
            ],
            "does not name a peer",
        ),
        (
            &[
                "p2p",
                "listen",
                "/x/a",
                "/ip4/127.0.0.1/tcp/1",
                "--allow-peer",
                "bob",
            ],
            "not a peer id",
        ),
        (
            &[
                "swarm",
                "connect",
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            ],
            "cannot connect",
        ),
    ];
    for (args, expected) in cases {
        let out = a.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
    }
    // Port already in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = a.cli(&[
        "p2p",
        "forward",
        "/x/a",
        &tcp_addr(port),
        &format!("/p2p/{}", a.peer_id),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    // A forward to an unknown peer closes the local connection; the daemon lives on.
    let unknown = free_port();
    a.cli_ok(&[
        "p2p",
        "forward",
        "/x/a",
        &tcp_addr(unknown),
        "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    ]);
    assert!(
        net::request(unknown, b"anyone?")
            .unwrap_or_default()
            .is_empty()
    );
    assert!(a.cli_ok(&["id"]).contains(&a.peer_id));
    // No daemon at all.
    let nobody = tempfile::tempdir().unwrap();
    let out = common::cli(nobody.path(), &["p2p", "ls"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon is running"));
}

#[test]
fn a_peer_opening_hundreds_of_streams_is_capped_and_the_daemon_survives() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let home = common::home_with(
        &tmp.path().join("a"),
        "[node.limits]\nmax_streams_per_peer = 50\n",
    );
    let a = Daemon::start_in(&home, &[]);
    let b = Daemon::start(&[]);
    a.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(target)]);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    // 300 connections that stay open (the target accepts and holds them).
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(
        a.wait_log("too many open streams", Duration::from_secs(20)),
        "cap not applied"
    );
    let open = a.cli_ok(&["p2p", "stream", "ls"]).lines().count();
    assert!(open <= 50, "{open} streams open past the cap of 50");
    drop(held);
    drop(server);
    assert!(a.cli_ok(&["id"]).contains(&a.peer_id));
}

#[test]
fn sigterm_releases_ports_and_the_control_socket() {
    let mut a = Daemon::start(&[]);
    let port = free_port();
    a.cli_ok(&[
        "p2p",
        "forward",
        "/x/a",
        &tcp_addr(port),
        &format!("/p2p/{}", a.peer_id),
    ]);
    let swarm_port: u16 = a.listen[0].rsplit('/').next().unwrap().parse().unwrap();
    let status = a.stop().expect("exit status");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "forward port still held"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", swarm_port)).is_ok(),
        "swarm port still held"
    );
    assert!(!a.home.join("control.sock").exists());
}

#[test]
fn quic_carries_tunnels_when_there_is_no_swarm_key() {
    let echo = net::echo_server();
    let a = Daemon::start(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let b = Daemon::start(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    assert!(a.listen[0].contains("/quic-v1"), "{:?}", a.listen);
    a.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(echo.port())]);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    let data = payload(2 << 20, 5);
    assert_eq!(sha256(&net::request(port, &data).unwrap()), sha256(&data));
}

#[test]
fn force_pnet_without_a_key_refuses_to_start() {
    let home = tempfile::tempdir().unwrap();
    let out = daemon_until_it_exits(home.path(), &[("LIBP2P_FORCE_PNET", "1")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LIBP2P_FORCE_PNET=1 but no swarm key"),
        "{err}"
    );
}

#[test]
fn open_streams_finish_within_the_grace_period_after_sigterm() {
    // The target answers 1 MiB only after the client's FIN, after a pause.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = net::read_all_hashed(&mut conn);
            thread::sleep(Duration::from_millis(800));
            let _ = conn.write_all(&payload(1 << 20, 9));
            let _ = conn.shutdown(Shutdown::Write);
        }
    });
    let (a, mut b, port) = tunnel_pair(target, &[]);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"request").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    // The stream is open on both sides before the SIGTERM.
    let open = |d: &Daemon| {
        let list: serde_json::Value =
            serde_json::from_str(&d.cli_ok(&["p2p", "stream", "ls", "--json"])).expect("json");
        list.as_array().is_some_and(|l| l.len() == 1)
    };
    assert!(crate::common::wait_until(Duration::from_secs(10), || open(
        &a
    )
        && open(&b)));
    let pid = b.pid();
    let stopper = thread::spawn(move || b.stop());
    let (len, digest) = net::read_all_hashed(&mut conn).unwrap();
    assert_eq!(
        (len, digest),
        ((1 << 20) as u64, sha256(&payload(1 << 20, 9))),
        "daemon {pid} cut the stream"
    );
    assert!(stopper.join().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn a_stale_control_socket_from_a_killed_daemon_is_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("a");
    let a = Daemon::start_in(&home, &[]);
    drop(a); // SIGKILL: the socket file stays behind
    assert!(home.join("control.sock").exists());
    let out = common::cli(&home, &["p2p", "ls"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon is running"));
    let again = Daemon::start_in(&home, &[]);
    assert_eq!(again.cli_ok(&["p2p", "ls"]), "");
    // A second daemon on the same home is refused while the first runs.
    let out = daemon_until_it_exits(&home, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
}

/// Run a daemon on `home` with `env` in the foreground and wait for it to exit: for the cases
/// where it must refuse to start.
fn daemon_until_it_exits(home: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let args = ["daemon", "--no-relay", "--listen", "/ip4/127.0.0.1/tcp/0"];
    common::cli_with_env(home, &args, env)
}

/// The threads of process `pid`: name and CPU ticks (user + system) of each, from
/// `/proc/<pid>/task/*/stat` (the name is in parentheses, utime and stime are the 12th and 13th
/// fields after it).
fn threads(pid: u32) -> Vec<(String, u64)> {
    let mut threads: Vec<(String, u64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, tail) = stat.rsplit_once(") ")?;
            let name = head.split_once(" (")?.1.to_owned();
            let fields: Vec<&str> = tail.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((name, ticks))
        })
        .collect();
    threads.sort();
    threads
}

/// CPU ticks of `pid`'s threads named `name`, and of all its threads.
fn ticks_of(pid: u32, name: &str) -> (u64, u64) {
    let all = threads(pid);
    let named = all.iter().filter(|(n, _)| n == name).map(|(_, t)| t).sum();
    (named, all.iter().map(|(_, t)| t).sum())
}

#[test]
fn the_network_runtime_is_one_thread_by_default_shared_at_zero_and_bounded() {
    // Default: one "net" thread carries the swarm and the tunnels. `net_workers = 0`: none,
    // the daemon's runtime does. Both ends of a 64 MiB exchange must keep their hashes.
    let default = Daemon::start(&[]);
    let shared = Daemon::start_with_config("[node]\nnet_workers = 0\n", &[]);
    let count = |d: &Daemon| threads(d.pid()).iter().filter(|(n, _)| n == "net").count();
    assert_eq!(count(&default), 1, "{:?}", threads(default.pid()));
    assert_eq!(count(&shared), 0, "{:?}", threads(shared.pid()));
    for (listener, forwarder) in [(&default, &shared), (&shared, &default)] {
        let (server, received) = net::swap_server(SWAP_LEN);
        let target = tcp_addr(server.port());
        listener.cli_ok(&["p2p", "listen", "/x/rt", &target]);
        let port = free_port();
        forwarder.cli_ok(&["p2p", "forward", "/x/rt", &tcp_addr(port), &listener.addr()]);
        let (net_before, all_before) = ticks_of(default.pid(), "net");
        swap_through(port, &received);
        // The bytes went through the default daemon's "net" thread: the connection, the pipes
        // and the local sockets all run there, so it did nearly all of that daemon's work
        // meanwhile (all of it, here). With the pipes on the shared runtime and only the
        // connection on "net", it did about two thirds, which must fail.
        let (net_after, all_after) = ticks_of(default.pid(), "net");
        let (net, all) = (net_after - net_before, all_after - all_before);
        assert!(
            all > 0 && net * 5 >= all * 4,
            "net thread {net} of {all} ticks: {:?}",
            threads(default.pid())
        );
        listener.cli_ok(&["p2p", "close", "--all"]);
        forwarder.cli_ok(&["p2p", "close", "--all"]);
    }
    // A typo does not start a hundred threads: one clear line, and no daemon.
    let home = tempfile::tempdir().unwrap();
    let home = common::home_with(&home.path().join("home"), "[node]\nnet_workers = 1000\n");
    let out = daemon_until_it_exits(&home, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("net_workers = 1000: at most 64"), "{err}");
}

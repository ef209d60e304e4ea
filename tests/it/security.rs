//! Issue 15: TLS with AES-128-GCM is offered before Noise. What two of our daemons negotiate
//! (± swarm key), as their logs say, with a tunnel's bytes checked; a wrong PeerId is refused.

use std::time::Duration;

use crate::common::Daemon;
use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::kubo::harness::{ZERO_KEY, swarm_key_file};

/// The log line of a secured connection is written during the upgrade; this is generous.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Bytes through the tunnel: several yamux windows and many TLS records each way.
const PAYLOAD: usize = 8 << 20;

/// The line `node::security` logs for a TLS connection with AES-128-GCM.
pub fn tls_aes_line(peer: &str, direction: &str) -> String {
    format!("secured connection with {peer}: /tls/1.0.0 TLS13_AES_128_GCM_SHA256 ({direction})")
}

/// Two daemons started with `extra`, a tunnel from b to a's echo server: the payload comes
/// back with its hash, and both sides logged TLS with AES-128-GCM (b dialled, a accepted).
fn tunnel_over_tls_with_aes(extra: &[&str]) {
    let echo = net::echo_server();
    let a = Daemon::start(extra);
    let b = Daemon::start(extra);
    a.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(echo.port())]);
    let port = free_port();
    b.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &a.addr()]);
    let data = payload(PAYLOAD, 15);
    let answer = net::request(port, &data).expect("echo through the tunnel");
    assert_eq!(sha256(&answer), sha256(&data), "echoed bytes differ");
    let (dialled, accepted) = (
        tls_aes_line(&a.peer_id, "outbound"),
        tls_aes_line(&b.peer_id, "inbound"),
    );
    assert!(
        b.wait_log(&dialled, LOG_WAIT),
        "b: no `{dialled}`:\n{}",
        b.log()
    );
    assert!(
        a.wait_log(&accepted, LOG_WAIT),
        "a: no `{accepted}`:\n{}",
        a.log()
    );
    assert!(
        !a.log().contains(": /noise ("),
        "a fell back to Noise:\n{}",
        a.log()
    );
}

#[test]
fn ours_to_ours_negotiates_tls_with_aes_128_gcm_and_a_tunnel_keeps_its_hash() {
    tunnel_over_tls_with_aes(&[]);
}

#[test]
fn ours_to_ours_negotiates_tls_with_aes_128_gcm_under_the_zero_swarm_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = swarm_key_file(keys.path(), ZERO_KEY);
    tunnel_over_tls_with_aes(&["--swarm-key", key.to_str().expect("utf-8 path")]);
}

/// The certificate names the peer that answered; a dial for another PeerId at that address
/// must fail, and the tunnel layer never sees a connection to the wrong peer.
#[test]
fn a_dial_for_another_peer_id_at_that_address_is_refused() {
    let a = Daemon::start(&[]);
    let b = Daemon::start(&[]);
    let c = Daemon::start(&[]);
    let wrong = format!("{}/p2p/{}", a.listen[0], c.peer_id);
    let out = b.cli(&["swarm", "connect", &wrong]);
    assert!(
        !out.status.success(),
        "connect to a's address as c succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Unexpected peer ID {}", a.peer_id)),
        "the error should name the peer that answered: {err}"
    );
    let peers = b.cli_ok(&["swarm", "peers"]);
    assert!(!peers.contains(&c.peer_id), "c listed as a peer: {peers}");
    assert!(!peers.contains(&a.peer_id), "a kept as a peer: {peers}");
}

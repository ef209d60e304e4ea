//! A live fuzz of the running daemon: mutated control requests, each on its own connection to a
//! real daemon's socket. Every one gets a one-line JSON answer, the daemon stays up within its
//! memory bound, and the CLI is served afterwards.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use constellation::control::{Request, Response};
use proptest::prelude::*;

use crate::common::{Daemon, rss_kib};
use crate::harness::{fuzz, json_inputs};
use crate::wire::{CONTROL_VOCABULARY, control_samples};

/// Requests sent in CI: each is a connection and an answer, well under a millisecond.
const LIVE_CASES: u32 = 3_000;
/// How long one answer may take (a request over the socket's 256 KiB bound is answered at once).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS growth allowed over the whole run: tunnels that valid requests opened, caches.
const GROWTH_MAX_KIB: u64 = 64 * 1024;

/// Whether a request may go to a live daemon: anything that does not parse (the bulk), and the
/// valid requests that stay on this machine. Dials (`swarm_connect`), forwards (which bind ports
/// and may name remote addresses), backfills and DRAGON cycles are parsed in-process only.
fn safe_to_send(line: &str) -> bool {
    match serde_json::from_str::<Request>(line) {
        Err(_) => true,
        Ok(Request::P2pListen { spec, .. }) => {
            constellation::tunnel::addr::tcp_socket_addr(&spec.target)
                .is_ok_and(|a| a.ip().is_loopback())
        }
        Ok(
            Request::Id
            | Request::SwarmPeers
            | Request::P2pLs
            | Request::P2pClose { .. }
            | Request::StreamLs
            | Request::StreamClose { .. }
            | Request::Disconnect { .. },
        ) => true,
        Ok(_) => false,
    }
}

/// Send `line` on a fresh connection; the daemon's answer.
fn ask(daemon: &Daemon, line: &str) -> std::io::Result<Vec<u8>> {
    let mut socket = UnixStream::connect(daemon.home.join("control.sock"))?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut request = line.as_bytes().to_vec();
    request.push(b'\n');
    // The daemon may answer (and close) before it has read a request that is too long.
    let _ = socket.write_all(&request);
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn the_running_daemon_answers_mutated_control_requests_and_stays_up() {
    let daemon = Daemon::start(&[]);
    let before = rss_kib(daemon.pid());
    let samples = control_samples();
    let strategy = json_inputs(&samples, CONTROL_VOCABULARY);
    fuzz("live control socket", LIVE_CASES, strategy, |line| {
        if !safe_to_send(&line) {
            return Ok(());
        }
        let answer = ask(&daemon, &line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response: Result<Response, _> = serde_json::from_slice(&answer);
        prop_assert!(
            response.is_ok_and(|r| r.result.is_some() != r.error.is_some()),
            "not one answer: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        Ok(())
    });
    let after = rss_kib(daemon.pid());
    assert!(
        after.saturating_sub(before) < GROWTH_MAX_KIB,
        "RSS {before} -> {after} KiB"
    );
    assert!(daemon.cli_ok(&["id"]).contains(&daemon.peer_id));
}

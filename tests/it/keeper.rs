//! Issue 13: keeping the stations connected, as Kubo's connection manager and Astroport's
//! `ping_bootstrap.sh` do: a peering peer that restarts is dialled again, a station of the swarm
//! folder is found through the DHT by its id alone, and idle connections above the high
//! watermark are trimmed while those that carry a tunnel or a peering peer stay.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::common::{Daemon, home_with, wait_until};

/// The keeper ticks every 5 s and its first back-off is 15 s: a re-dial lands within both.
const REDIAL_WITHIN: Duration = Duration::from_secs(40);
/// Longer than the keeper's tick: one re-dial of B fails before it comes back.
const B_DOWN: Duration = Duration::from_secs(7);
/// Loopback DHT lookups take well under a second; margin for a loaded CI box.
const SETTLE: Duration = Duration::from_secs(40);

/// Connected peers of `d`, each with how it was found.
fn peers(d: &Daemon) -> Vec<(String, String)> {
    let list: Value = serde_json::from_str(&d.cli_ok(&["swarm", "peers", "--json"])).expect("json");
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let id = p["peer_id"].as_str().unwrap_or_default().to_owned();
            (id, p["found"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn found_as(d: &Daemon, peer: &str) -> Option<String> {
    peers(d)
        .into_iter()
        .find(|(id, _)| id == peer)
        .map(|(_, f)| f)
}

#[test]
fn a_peering_peer_that_restarts_is_dialled_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b_home = tmp.path().join("b");
    let b_listen = tcp_addr(free_port());
    let mut b = Daemon::start_in(&b_home, &["--listen", &b_listen]);
    let b_addr = b.addr();
    // No DHT on A: only the keeper can dial B again (a DHT re-dials its table's peers too).
    let a_home = home_with(
        &tmp.path().join("a"),
        &format!("[node]\nrouting = \"none\"\npeering = [{b_addr:?}]\n"),
    );
    let a = Daemon::start_in(&a_home, &[]);
    let dialled = wait_until(REDIAL_WITHIN, || {
        found_as(&a, &b.peer_id).as_deref() == Some("peering")
    });
    assert!(dialled, "A never dialled its peering peer:\n{}", a.log());
    b.stop();
    assert!(wait_until(REDIAL_WITHIN, || found_as(&a, &b.peer_id).is_none()));
    // B stays down across a keeper tick (5 s), so a re-dial fails and B's back-off starts.
    std::thread::sleep(B_DOWN);
    // Same home (same PeerID), same port: the keeper finds it again by itself.
    let b = Daemon::start_in(&b_home, &["--listen", &b_listen]);
    let again = wait_until(REDIAL_WITHIN, || {
        found_as(&a, &b.peer_id).as_deref() == Some("peering")
    });
    assert!(
        again,
        "A did not dial B again after its restart: {:?}\n{}",
        peers(&a),
        a.log()
    );
}

#[test]
fn a_station_of_the_swarm_folder_is_found_through_the_dht_by_its_id_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = "[node]\nrouting = \"dhtserver\"\n";
    let hub = Daemon::start_with_config(server, &[]);
    let boot = format!(
        "[node]\nrouting = \"dhtserver\"\nbootstrap = [{:?}]\n",
        hub.addr()
    );
    let b = Daemon::start_in(&home_with(&tmp.path().join("b"), &boot), &[]);
    // B's folder in A's swarm map, as `_12345.sh` (or our map cycle) leaves it: no address.
    let swarm = tmp.path().join("swarm");
    std::fs::create_dir_all(swarm.join(&b.peer_id)).expect("station folder");
    std::fs::create_dir_all(swarm.join("not-a-peer-id")).expect("noise");
    let a_config = format!(
        "[node]\nbootstrap = [{:?}]\n[dragon]\nswarm_dir = {:?}\n",
        hub.addr(),
        swarm.to_str().expect("utf-8")
    );
    let a = Daemon::start_in(&home_with(&tmp.path().join("a"), &a_config), &[]);
    let found = wait_until(SETTLE, || {
        found_as(&a, &b.peer_id).as_deref() == Some("swarm_map")
    });
    assert!(found, "A never reached B: {:?}\n{}", peers(&a), a.log());
}

#[test]
fn idle_connections_above_the_high_watermark_are_trimmed_and_kept_ones_stay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let peering = Daemon::start(&[]);
    let a_config = format!(
        "[node]\npeering = [{:?}]\n[node.limits]\nconn_low = 2\nconn_high = 3\nconn_grace_secs = 1\n",
        peering.addr()
    );
    let a = Daemon::start_in(&home_with(&tmp.path().join("a"), &a_config), &[]);
    // T carries a tunnel into A; its stream stays open while A trims.
    let echo = net::echo_server();
    a.cli_ok(&["p2p", "listen", "/x/keep", &tcp_addr(echo.port())]);
    let t = Daemon::start(&[]);
    let port = free_port();
    let target = format!("/p2p/{}", a.peer_id);
    t.cli_ok(&["swarm", "connect", &a.addr()]);
    t.cli_ok(&["p2p", "forward", "/x/keep", &tcp_addr(port), &target]);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("tunnel");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let first = payload(4096, 1);
    stream.write_all(&first).expect("write");
    let mut back = vec![0; first.len()];
    stream.read_exact(&mut back).expect("echo");
    // Four idle peers push A over its high watermark.
    let idle: Vec<Daemon> = (0..4).map(|_| Daemon::start(&[])).collect();
    for d in &idle {
        d.cli_ok(&["swarm", "connect", &a.addr()]);
    }
    let kept: BTreeSet<String> = [peering.peer_id.clone(), t.peer_id.clone()].into();
    let mut now = BTreeSet::new();
    let trimmed = wait_until(SETTLE, || {
        now = peers(&a).into_iter().map(|(id, _)| id).collect();
        now == kept
    });
    assert!(
        trimmed,
        "A kept {now:?}, want exactly {kept:?}\n{}",
        a.log()
    );
    // The tunnel's stream survived the trim.
    let second = payload(64 * 1024, 2);
    stream.write_all(&second).expect("write after the trim");
    let mut back = vec![0; second.len()];
    stream.read_exact(&mut back).expect("echo after the trim");
    assert_eq!(sha256(&back), sha256(&second));
}

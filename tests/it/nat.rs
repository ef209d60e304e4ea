//! Issue 13 (NAT traversal): AutoNAT, relay v2 reservations, tunnels through a relay, and DCUtR
//! hole punching, between real daemons in network namespaces behind nft masquerade routers.

use std::time::Duration;

use serde_json::Value;

use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::common::netns::{self, GLOBAL_LOOKING_IP, Lab, Nat, PUBLIC_HOST_IP, PUBLIC_IP};
use crate::common::{self, Daemon, wait_until};
use crate::kubo::harness::{Kubo, KuboOptions};

/// AutoNAT's first probe comes 5 s after start; a reservation takes a round trip more.
const NAT_SETTLE: Duration = Duration::from_secs(40);
/// Under the relay's data limit (Kubo's 128 KiB each way): an echo that fits with room for the
/// noise, yamux, identify and ping bytes that share the circuit.
const FITS_THE_RELAY: usize = 64 * 1024;
/// A payload the relay would cut: if it arrives whole, the bytes went direct.
const OVER_THE_RELAY_LIMIT: usize = 1 << 20;

/// `[node]` for a lab daemon: AutoNAT on private addresses (the lab's are 10.99.x).
fn config(relays: &[String], relay_service: Option<bool>) -> String {
    let mut toml = String::from("[node]\nautonat_private_addresses = true\n");
    let quoted: Vec<String> = relays.iter().map(|r| format!("{r:?}")).collect();
    toml.push_str(&format!("relays = [{}]\n", quoted.join(", ")));
    if let Some(on) = relay_service {
        toml.push_str(&format!("relay_service = {on}\n"));
    }
    toml
}

fn id(d: &Daemon) -> Value {
    serde_json::from_str(&d.cli_ok(&["id", "--json"])).expect("id --json")
}

fn peers(d: &Daemon) -> Value {
    serde_json::from_str(&d.cli_ok(&["swarm", "peers", "--json"])).expect("peers --json")
}

/// The connection kind `d` shows for `peer`, if connected.
fn connection_to(d: &Daemon, peer: &str) -> Option<String> {
    peers(d)
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer)
        .and_then(|p| p["connection"].as_str().map(str::to_owned))
}

/// Wait until `d` is private with an active reservation; returns its `/p2p-circuit` address.
fn wait_for_reservation(d: &Daemon) -> String {
    let mut last = Value::Null;
    let ok = wait_until(NAT_SETTLE, || {
        last = id(d);
        last["reachability"] == "private"
            && last["relay_reservations"][0]["state"] == "active"
            && last["relay_reservations"][0]["addresses"][0].is_string()
    });
    assert!(ok, "no reservation: id --json = {last}\nlog:\n{}", d.log());
    assert_eq!(
        last["dht_mode"], "client",
        "private: the WAN DHT stays a client"
    );
    let addr = last["relay_reservations"][0]["addresses"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(addr.contains("/p2p-circuit"), "{addr}");
    assert!(
        last["announced"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(&addr)),
        "the circuit address is announced: {last}"
    );
    if addr.ends_with(&d.peer_id) {
        addr
    } else {
        format!("{addr}/p2p/{}", d.peer_id)
    }
}

/// An echo service in `server_ns` behind `server`'s `/x/test`, forwarded from `client`; returns
/// the answer to `data` sent from `client_ns`.
fn echo_through(
    server: &Daemon,
    server_ns: &str,
    client: &Daemon,
    client_ns: &str,
    data: Vec<u8>,
) -> Vec<u8> {
    let echo = netns::in_netns(server_ns, net::echo_server);
    server.cli_ok(&["p2p", "listen", "/x/test", &tcp_addr(echo.port())]);
    let port = free_port();
    let target = format!("/p2p/{}", server.peer_id);
    client.cli_ok(&["p2p", "forward", "/x/test", &tcp_addr(port), &target]);
    netns::in_netns(client_ns, move || net::request(port, &data)).expect("tunnel answer")
}

#[test]
fn autonat_finds_a_reachable_node_public_and_turns_its_relay_service_on() {
    let toml = config(&[], None);
    let tmp = tempfile::tempdir().unwrap();
    let a = Daemon::start_in(&common::home_with(&tmp.path().join("a"), &toml), &[]);
    let b = Daemon::start_in(&common::home_with(&tmp.path().join("b"), &toml), &[]);
    let first = id(&a);
    assert_eq!(first["reachability"], "unknown");
    assert_eq!(first["relay_service"], false, "auto: off until public");
    assert_eq!(first["routing"], "dht");
    assert_eq!(
        first["dht_mode"], "client",
        "routing = dht: a client until public"
    );
    common::connect(&a, &b);
    let mut last = Value::Null;
    let public = wait_until(NAT_SETTLE, || {
        last = id(&a);
        last["reachability"] == "public"
    });
    assert!(public, "a: {last}\n{}", a.log());
    assert_eq!(last["relay_service"], true);
    assert_eq!(
        last["dht_mode"], "server",
        "the reachability hook switches the WAN DHT"
    );
    assert_eq!(last["relay_reservations"], serde_json::json!([]));
    assert_eq!(connection_to(&b, &a.peer_id).as_deref(), Some("direct"));
    // Kubo's `swarm peers` lines stay bare; `-v` adds found, connection, latency, tunnels.
    let line = b.cli_ok(&["swarm", "peers"]);
    assert!(line.trim_end().ends_with(&a.peer_id), "{line}");
    let verbose = b.cli_ok(&["swarm", "peers", "-v"]);
    let columns: Vec<&str> = verbose.split_whitespace().collect();
    assert_eq!(columns.get(2), Some(&"direct"), "{verbose}");
}

#[test]
fn a_node_behind_a_strict_nat_is_reached_through_our_relay() {
    reached_through_our_relay(&[]);
}

/// The same with the all-zero swarm key on all three: pnet runs on TCP and inside the circuit.
#[test]
fn a_node_behind_a_strict_nat_is_reached_through_our_relay_in_a_private_network() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::kubo::harness::swarm_key_file(dir.path(), &"0".repeat(64));
    reached_through_our_relay(&["--swarm-key", key.to_str().expect("utf-8")]);
}

fn reached_through_our_relay(key_args: &[&str]) {
    let mut lab = Lab::new();
    let a_ns = lab.add_host_behind_nat(Nat::OnlyTo(PUBLIC_IP));
    let c_ns = lab.add_public_host();
    let public = lab.public();
    let listen = |ip: std::net::Ipv4Addr| format!("/ip4/{ip}/tcp/0");
    let relay = Daemon::start_in_netns(
        &public,
        &config(&[], Some(true)),
        &[&["--listen", &listen(PUBLIC_IP)][..], key_args].concat(),
    );
    let a = Daemon::start_in_netns(
        &a_ns,
        &config(&[relay.addr()], None),
        &[&["--listen", &listen(Lab::host_ip(1))][..], key_args].concat(),
    );
    let c = Daemon::start_in_netns(
        &c_ns,
        &config(&[], Some(false)),
        &[&["--listen", &listen(PUBLIC_HOST_IP)][..], key_args].concat(),
    );
    let circuit = wait_for_reservation(&a);
    assert!(circuit.starts_with(&relay.addr()), "{circuit}");
    // C cannot dial A: its address is behind the router.
    let refused = c.cli(&["swarm", "connect", &a.addr()]);
    assert!(!refused.status.success(), "a direct dial reached A");
    c.cli_ok(&["swarm", "connect", &circuit]);
    assert_eq!(
        connection_to(&c, &a.peer_id).as_deref(),
        Some("relayed"),
        "{}",
        peers(&c)
    );
    let data = payload(FITS_THE_RELAY, 13);
    let answer = echo_through(&a, &a_ns, &c, &c_ns, data.clone());
    assert_eq!(answer.len(), data.len());
    assert_eq!(sha256(&answer), sha256(&data));
    assert!(
        relay.log().contains("CircuitReqAccepted"),
        "{}",
        relay.log()
    );
    // The firewall lets no hole punch through: still relayed after the tunnel's bytes.
    assert_eq!(connection_to(&c, &a.peer_id).as_deref(), Some("relayed"));
    // The only connection C has to A is the circuit, and it was secured with TLS (issue 15).
    let tls = crate::security::tls_aes_line(&a.peer_id, "outbound");
    assert!(
        c.log().contains(&tls),
        "no `{tls}` in C's log:\n{}",
        c.log()
    );
}

#[test]
fn a_node_behind_a_strict_nat_is_reached_through_a_kubo_relay() {
    let mut lab = Lab::new();
    // go-libp2p's relay reserves only with public addresses: it listens on the global-looking one.
    let a_ns = lab.add_host_behind_nat(Nat::OnlyTo(GLOBAL_LOOKING_IP));
    let c_ns = lab.add_public_host();
    let public = lab.public();
    let ip = GLOBAL_LOOKING_IP.to_string();
    let kubo = Kubo::start(KuboOptions {
        netns: Some(&public),
        listen_ip: Some(&ip),
        relay_service: true,
        ..Default::default()
    });
    // Kubo's AutoNAT refuses to dial private addresses back, so A learns that it is private from
    // one of ours beside the relay (the only address A's firewall lets it reach).
    let prober = Daemon::start_in_netns(
        &public,
        &config(&[], Some(false)),
        &["--listen", &format!("/ip4/{GLOBAL_LOOKING_IP}/tcp/0")],
    );
    let a_config = format!(
        "{}bootstrap = [{:?}]\n",
        config(&[kubo.addr()], None),
        prober.addr()
    );
    let a = Daemon::start_in_netns(
        &a_ns,
        &a_config,
        &["--listen", &format!("/ip4/{}/tcp/0", Lab::host_ip(1))],
    );
    let c = Daemon::start_in_netns(
        &c_ns,
        &config(&[], Some(false)),
        &["--listen", &format!("/ip4/{PUBLIC_HOST_IP}/tcp/0")],
    );
    let circuit = wait_for_reservation(&a);
    assert!(
        circuit.starts_with(&kubo.addr()),
        "reserved on Kubo: {circuit}, Kubo log:\n{}",
        kubo.log()
    );
    assert!(!c.cli(&["swarm", "connect", &a.addr()]).status.success());
    c.cli_ok(&["swarm", "connect", &circuit]);
    assert_eq!(connection_to(&c, &a.peer_id).as_deref(), Some("relayed"));
    let data = payload(FITS_THE_RELAY, 19);
    let answer = echo_through(&a, &a_ns, &c, &c_ns, data.clone());
    assert_eq!(
        sha256(&answer),
        sha256(&data),
        "through Kubo's relay, intact"
    );
    assert_eq!(connection_to(&c, &a.peer_id).as_deref(), Some("relayed"));
}

#[test]
fn hole_punching_upgrades_a_relayed_connection_between_two_nats() {
    let mut lab = Lab::new();
    let a_ns = lab.add_host_behind_nat(Nat::Open);
    let b_ns = lab.add_host_behind_nat(Nat::Open);
    let public = lab.public();
    let relay = Daemon::start_in_netns(
        &public,
        &config(&[], Some(true)),
        &["--listen", &format!("/ip4/{PUBLIC_IP}/tcp/0")],
    );
    let behind = |ns: &str, i: u8| {
        let listen = format!("/ip4/{}/tcp/0", Lab::host_ip(i));
        Daemon::start_in_netns(ns, &config(&[relay.addr()], None), &["--listen", &listen])
    };
    let a = behind(&a_ns, 1);
    let b = behind(&b_ns, 2);
    let circuit = wait_for_reservation(&a);
    wait_for_reservation(&b);
    b.cli_ok(&["swarm", "connect", &circuit]);
    let punched = wait_until(Duration::from_secs(20), || {
        connection_to(&b, &a.peer_id).as_deref() == Some("hole-punched")
    });
    assert!(
        punched,
        "b sees a as {:?}\nb log:\n{}\na log:\n{}",
        connection_to(&b, &a.peer_id),
        b.log(),
        a.log()
    );
    let data = payload(OVER_THE_RELAY_LIMIT, 17);
    let answer = echo_through(&a, &a_ns, &b, &b_ns, data.clone());
    assert_eq!(sha256(&answer), sha256(&data), "a mebibyte went direct");
}

//! Issue 13: joining the swarm. Our daemon finds Kubo peers by PeerID alone through Kubo's DHT,
//! Kubo finds ours, first peers come from a Kubo repo or a `/dnsaddr` name served by a real DNS
//! server on loopback, and a hostile DHT peer cannot make the daemon grow or fall.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::net::free_port;
use crate::common::{self, Daemon, home_with, wait_until};
use crate::kubo::harness::{self, Kubo, KuboOptions, ZERO_KEY};

/// Kubo's DHT on loopback settles in a few seconds; a loaded CI box needs margin.
const SETTLE: Duration = Duration::from_secs(60);
/// Bytes each way through the tunnel found by PeerID alone.
const PAYLOAD: usize = 4 << 20;

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Peer ids our daemon is connected to, with how each was found.
fn peers_found(d: &Daemon) -> Vec<(String, String)> {
    let peers = json_of(&d.cli_ok(&["swarm", "peers", "--json"]));
    peers
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let id = p["peer_id"].as_str().unwrap_or_default().to_owned();
                    (id, p["found"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubo node in DHT mode bootstrapped from `boot` (none: the first node).
fn kubo_dht<'a>(key: Option<&'a str>, boot: &'a [String]) -> Kubo {
    Kubo::start(KuboOptions {
        swarm_key: key,
        routing: Some("dht"),
        bootstrap: boot,
        ..Default::default()
    })
}

/// Our daemon with `config` (a `[node]` body) in a fresh home, HOME pointed inside the test.
fn daemon_with(dir: &Path, node: &str, extra: &[&str]) -> Daemon {
    // No swarm map: its start-up lookups (our record, the peers' moats) would teach the node
    // addresses before the lookups these tests watch.
    let config = format!("[node]\n{node}\n[swarm_map]\nenabled = false\n");
    let home = home_with(&dir.join("home"), &config);
    let fake_home = dir.join("user");
    std::fs::create_dir_all(&fake_home).expect("HOME");
    let home_env = fake_home.to_str().expect("utf-8");
    Daemon::start_with_env(&home, extra, &[("HOME", home_env)])
}

fn key_flags(dir: &Path, key: Option<&str>) -> Vec<String> {
    match key {
        Some(k) => {
            let path = harness::swarm_key_file(dir, k);
            vec!["--swarm-key".into(), path.to_str().expect("utf-8").into()]
        }
        None => Vec::new(),
    }
}

/// Our daemon bootstraps from K1 only and forwards `/x/…-<K2>` to `/p2p/<K2>` with no address.
fn forwards_to_a_kubo_found_in_the_dht(key: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let k1 = kubo_dht(key, &[]);
    let boot = [k1.addr()];
    let k2 = kubo_dht(key, &boot);
    let (swap, swapped) = harness::swap_exact_server(PAYLOAD);
    let proto = format!("/x/strfry-{}", k2.peer_id);
    k2.listen(&proto, swap.port());
    let flags = key_flags(dir.path(), key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ours = daemon_with(
        dir.path(),
        &format!("bootstrap = [{:?}]", k1.addr()),
        &flags,
    );
    assert!(
        wait_until(SETTLE, || peers_found(&ours)
            .iter()
            .any(|(id, _)| id == &k1.peer_id)),
        "our daemon did not connect to its bootstrap peer; log:\n{}",
        ours.log()
    );
    assert!(
        !peers_found(&ours).iter().any(|(id, _)| id == &k2.peer_id),
        "K2 must not be connected before the lookup (the test would prove nothing)"
    );
    let port = free_port();
    let target = format!("/p2p/{}", k2.peer_id);
    ours.cli_ok(&[
        "p2p",
        "forward",
        &proto,
        &common::net::tcp_addr(port),
        &target,
    ]);
    let got = harness::swap_exact(port, PAYLOAD)
        .unwrap_or_else(|e| panic!("tunnel to K2 by PeerID failed: {e}; log:\n{}", ours.log()));
    assert_eq!(got, common::net::sha256(&common::net::payload(PAYLOAD, 2)));
    let theirs = swapped
        .recv_timeout(harness::IO_TIMEOUT)
        .expect("K2's service saw the stream");
    assert_eq!(
        theirs.expect("K2 side read"),
        common::net::sha256(&common::net::payload(PAYLOAD, 1))
    );
    let found = peers_found(&ours);
    assert!(
        found.contains(&(k2.peer_id.clone(), "dht".into())),
        "K2 should show as found through the DHT: {found:?}"
    );
}

#[test]
fn daemon_forwards_to_a_kubo_peer_found_in_the_dht() {
    forwards_to_a_kubo_found_in_the_dht(None);
}

#[test]
fn daemon_forwards_to_a_kubo_peer_found_in_the_dht_with_the_zero_swarm_key() {
    forwards_to_a_kubo_found_in_the_dht(Some(ZERO_KEY));
}

/// A Kubo K3 that knows only K1 finds our daemon with `FindPeer`.
fn kubo_finds_our_daemon(key: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let k1 = kubo_dht(key, &[]);
    let flags = key_flags(dir.path(), key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ours = daemon_with(
        dir.path(),
        &format!("bootstrap = [{:?}]", k1.addr()),
        &flags,
    );
    assert!(wait_until(SETTLE, || k1.peer_ids().contains(&ours.peer_id)));
    let boot = [k1.addr()];
    let k3 = kubo_dht(key, &boot);
    let mut last = Err(String::new());
    let found = wait_until(SETTLE, || {
        last = k3.find_peer(&ours.peer_id, 10);
        last.as_ref()
            .is_ok_and(|addrs| addrs.iter().any(|a| ours.listen.contains(a)))
    });
    assert!(
        found,
        "K3 did not find our daemon: {last:?}; listen {:?}",
        ours.listen
    );
}

#[test]
fn kubo_finds_our_daemon_through_the_dht() {
    kubo_finds_our_daemon(None);
}

#[test]
fn kubo_finds_our_daemon_through_the_dht_with_the_zero_swarm_key() {
    kubo_finds_our_daemon(Some(ZERO_KEY));
}

#[test]
fn kubo_repo_bootstrap_and_peering_are_dialled_and_shown_by_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Kubo::start(KuboOptions::default());
    let b = Kubo::start(KuboOptions::default());
    let other = Kubo::start(KuboOptions::default());
    // A station's repo: run once, then give it a Bootstrap and a Peering list.
    let repo = dir.path().join("ipfs");
    let station = Kubo::start(KuboOptions {
        repo: Some(&repo),
        ..Default::default()
    });
    station.stop();
    let config_path = repo.join("config");
    let mut config = json_of(&std::fs::read_to_string(&config_path).expect("config"));
    let b_tcp = b.addr().rsplit_once("/p2p/").expect("p2p").0.to_owned();
    config["Bootstrap"] = json!([a.addr()]);
    config["Peering"] = json!({"Peers": [{"ID": b.peer_id, "Addrs": [b_tcp]}]});
    config["Routing"]["Type"] = json!("dhtclient");
    // Kubo's NoAnnounce takes /ipcidr networks: the loopback listen address and the loopback
    // AppendAnnounce entry are hidden, the public one is announced.
    config["Addresses"]["NoAnnounce"] = json!(["/ip4/127.0.0.0/ipcidr/8"]);
    config["Addresses"]["AppendAnnounce"] =
        json!(["/ip4/203.0.113.7/tcp/4001", "/ip4/127.0.0.9/tcp/9"]);
    std::fs::write(&config_path, config.to_string()).expect("write config");

    let repo_flag = repo.to_str().expect("utf-8");
    let ours = daemon_with(dir.path(), "", &["--kubo-repo", repo_flag]);
    let mut want = vec![
        (a.peer_id.clone(), "bootstrap".to_owned()),
        (b.peer_id.clone(), "peering".to_owned()),
    ];
    want.sort();
    let mut got = Vec::new();
    let both = wait_until(SETTLE, || {
        got = peers_found(&ours);
        got.sort();
        got == want
    });
    assert!(
        both,
        "peers {got:?}, want exactly {want:?}; log:\n{}",
        ours.log()
    );
    assert!(!got.iter().any(|(id, _)| id == &other.peer_id));

    let id = json_of(&ours.cli_ok(&["id", "--json"]));
    let first = &id["first_peers"];
    assert_eq!(first["bootstrap"]["value"], json!([a.addr()]), "{id}");
    assert_eq!(first["bootstrap"]["source"], "kubo_repo");
    assert_eq!(
        first["peering"]["value"],
        json!([format!("{b_tcp}/p2p/{}", b.peer_id)])
    );
    assert_eq!(first["peering"]["source"], "kubo_repo");
    assert_eq!(
        first["routing"],
        json!({"value": "dhtclient", "source": "kubo_repo"})
    );
    assert_eq!(id["routing"], "dhtclient");
    assert_eq!(id["dht_mode"], "client");
    assert_eq!(first["listen"]["source"], "kubo_repo");
    assert_eq!(first["no_announce"]["source"], "kubo_repo");
    assert_eq!(
        id["announced"],
        json!(["/ip4/203.0.113.7/tcp/4001"]),
        "{id}"
    );
}

/// The DNS server of `interop/dns/server.py` serving `zone`; killed on drop.
struct Dns {
    port: u16,
    child: Child,
}

impl Dns {
    fn start(zone: &Value) -> Dns {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/dns/server.py");
        let mut child = Command::new(harness::python())
            .arg(script)
            .args(["--zone", &zone.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the DNS server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let ready = json_of(&line);
        Dns {
            port: ready["port"].as_u64().expect("port") as u16,
            child,
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dnsaddr_bootstrap_entry_is_resolved_through_a_loopback_dns_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Daemon::start(&[]);
    // Two levels, as the public bootstrap names are: boot → nodes → the address.
    let zone = json!({"TXT": {
        "_dnsaddr.boot.constellation.test": [format!("dnsaddr=/dnsaddr/nodes.constellation.test/p2p/{}", target.peer_id)],
        "_dnsaddr.nodes.constellation.test": [format!("dnsaddr={}", target.addr())],
    }});
    let dns = Dns::start(&zone);
    let entry = format!("/dnsaddr/boot.constellation.test/p2p/{}", target.peer_id);
    let node = format!("bootstrap = [{entry:?}]\ndns = \"127.0.0.1:{}\"", dns.port);
    let ours = daemon_with(dir.path(), &node, &[]);
    let mut got = Vec::new();
    let connected = wait_until(SETTLE, || {
        got = peers_found(&ours);
        got.contains(&(target.peer_id.clone(), "bootstrap".into()))
    });
    assert!(connected, "peers {got:?}; log:\n{}", ours.log());
    let id = json_of(&ours.cli_ok(&["id", "--json"]));
    assert_eq!(id["first_peers"]["bootstrap"]["value"], json!([entry]));
    assert_eq!(id["first_peers"]["bootstrap"]["source"], "config");
}

#[test]
fn astroport_bootstrap_list_is_used_when_config_has_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Daemon::start(&[]);
    let game = dir.path().join("user/.zen/game");
    std::fs::create_dir_all(&game).expect("game dir");
    std::fs::write(
        game.join("MY_boostrap_nodes.txt"),
        format!("# my stations\n{} # the target\n\n", target.addr()),
    )
    .expect("list");
    let ours = daemon_with(dir.path(), "", &[]);
    assert!(
        wait_until(SETTLE, || peers_found(&ours)
            .contains(&(target.peer_id.clone(), "bootstrap".into()))),
        "log:\n{}",
        ours.log()
    );
    let id = json_of(&ours.cli_ok(&["id", "--json"]));
    assert_eq!(id["first_peers"]["bootstrap"]["source"], "astroport_list");
}

#[test]
fn unknown_peer_id_fails_with_the_dht_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = daemon_with(dir.path(), "", &[]);
    let missing = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let out = ours.cli(&["swarm", "connect", &format!("/p2p/{missing}")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found in the DHT after"), "{err}");
}

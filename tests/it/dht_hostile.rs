//! Issue 13: a hostile DHT peer (in this test process, over real libp2p) answers every Kad
//! request with a flood of bogus peers, an oversized message or garbage; the daemon must log,
//! drop, stay within its bounds and keep answering.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, noise, tcp, yamux};
use tokio_util::sync::CancellationToken;

use crate::common::{Daemon, wait_until};

/// Kubo's Kad protocols: the daemon asks the hostile peer on both.
const KAD: [&str; 2] = ["/ipfs/kad/1.0.0", "/ipfs/lan/kad/1.0.0"];
/// Bogus peers per flooded answer: as many as fit under the daemon's 64 KiB message bound
/// (51 bytes each), so that the daemon reads them all; several answers make thousands.
const FLOOD_PEERS: usize = 1200;
/// The oversized answer announces this many bytes (Kubo's own limit is 4 MiB).
const OVERSIZED: usize = 4 << 20;
/// Lookups the test makes, each answered by the hostile peer.
const LOOKUPS: usize = 6;
/// Resident memory the daemon may reach during the attack (it idles at ~15 MiB).
const MAX_RSS_KIB: u64 = 150 * 1024;

pub fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Protobuf field `field` of wire type 2 (bytes) holding `bytes`.
pub fn bytes_field(field: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// A FIND_NODE answer (`type = 4`) naming `n` random peers, each at loopback port 9 (refused).
fn flood(n: usize) -> Vec<u8> {
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().expect("addr");
    let mut message = vec![1 << 3, 4];
    for _ in 0..n {
        let mut peer = Vec::new();
        bytes_field(1, &PeerId::random().to_bytes(), &mut peer);
        bytes_field(2, &addr.to_vec(), &mut peer);
        bytes_field(8, &peer, &mut message);
    }
    message
}

#[derive(NetworkBehaviour)]
struct Hostile {
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Answer one Kad request according to `turn`: flood, oversized, garbage.
async fn answer(mut stream: libp2p::Stream, turn: usize, _local: PeerId) {
    let mut request = vec![0u8; 512];
    let _ = stream.read(&mut request).await;
    let mut out = Vec::new();
    match turn % 3 {
        0 => {
            let message = flood(FLOOD_PEERS);
            varint(message.len(), &mut out);
            out.extend(message);
        }
        1 => {
            varint(OVERSIZED, &mut out);
            out.resize(out.len() + OVERSIZED, 0xff);
        }
        _ => {
            varint(200, &mut out);
            out.extend((0..200u8).map(|b| b.wrapping_mul(37)));
        }
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

/// Run the hostile peer: dial `target`, serve Kad streams with `answer` (given the stream, the
/// request's turn and the hostile peer's id) until `stop`.
pub async fn run_hostile<F>(
    target: Multiaddr,
    stop: CancellationToken,
    answered: std::sync::mpsc::Sender<usize>,
    answer: impl Fn(libp2p::Stream, usize, PeerId) -> F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Hostile {
            identify: identify::Behaviour::new(identify::Config::new(
                "ipfs/0.1.0".into(),
                key.public(),
            )),
            stream: libp2p_stream::Behaviour::new(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = futures::stream::select_all(
        KAD.map(|p| control.accept(StreamProtocol::new(p)).expect("accept kad")),
    );
    swarm.dial(target).expect("dial the daemon");
    let mut turn = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some((_, stream)) = incoming.next() => {
                tokio::spawn(answer(stream, turn, *swarm.local_peer_id()));
                turn += 1;
                let _ = answered.send(turn);
            }
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionClosed { cause, .. } = event {
                    eprintln!("hostile peer: connection closed: {cause:?}");
                }
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_dht_peer_cannot_grow_or_crash_the_daemon() {
    let ours = Daemon::start(&[]);
    let stop = CancellationToken::new();
    let (answered_tx, answered) = std::sync::mpsc::channel();
    let target: Multiaddr = ours.addr().parse().expect("daemon addr");
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(run_hostile(target, stop, answered_tx, answer));
        })
    };
    // The daemon learns from identify that the hostile peer speaks Kad, and asks it.
    let dht_peers = || {
        let id: serde_json::Value =
            serde_json::from_str(&ours.cli_ok(&["id", "--json"])).expect("id --json");
        id["dht_peers"].as_u64().expect("dht_peers")
    };
    assert!(
        wait_until(Duration::from_secs(30), || dht_peers() > 0),
        "the hostile peer never entered the DHT table"
    );
    let mut max_rss = 0;
    for _ in 0..LOOKUPS {
        let missing = PeerId::random().to_string();
        let out = ours.cli(&["swarm", "connect", &format!("/p2p/{missing}")]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "a random peer cannot be found");
        assert!(err.contains("not found in the DHT after"), "{err}");
        max_rss = max_rss.max(rss_kib(ours.pid()));
    }
    let turns = answered.try_iter().last().unwrap_or(0);
    assert!(
        turns >= 3,
        "the hostile peer answered only {turns} requests; the test proves nothing"
    );
    assert!(
        max_rss < MAX_RSS_KIB,
        "daemon RSS {max_rss} KiB during the attack"
    );
    // Still alive and bounded: the bogus peers never connected, so no table holds them.
    let in_tables = dht_peers();
    assert!(
        in_tables <= 2,
        "routing tables took bogus peers: {in_tables}"
    );
    let dialled = ours.log().matches("outgoing connection failed").count();
    assert!(
        dialled > 0,
        "the daemon never tried the flooded peers: the flood was not read"
    );
    assert!(wait_until(Duration::from_secs(5), || ours
        .cli(&["id"])
        .status
        .success()));
    stop.cancel();
    hostile.join().expect("hostile peer thread");
}

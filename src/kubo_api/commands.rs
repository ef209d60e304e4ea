//! The served endpoints: each maps a Kubo command onto the daemon's control operations (the same
//! ones `constellation p2p …` uses, so both CLIs see the same tunnels) or onto the node handle.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::call::Call;
use super::ipfs::Ipfs;
use super::wire::{self, KUBO_REPO_VERSION, nil_if_empty};
use super::{Failure, Reply, json, line};
use super::{files, gc, keys, pins, providing};
use crate::control::{Handler, Request};
use crate::node::{Node, NodeInfo, Origin, PeerInfo};
use crate::tunnel::{CloseFilter, ForwardSpec, ListenSpec, StreamInfo, TunnelInfo, addr};

/// The Kubo release whose RPC this API follows (the stations run Kubo 0.40). Clients gate
/// endpoints on the version `id` and `version` report (aioipfs uses pre-0.4.18 paths below it).
pub const KUBO_VERSION: &str = "0.40.0";

/// Lines of a streamed answer queued for a slow reader before its producer waits.
const STREAM_QUEUE: usize = 16;
/// Kubo waits a second between pings.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Kubo's default `ping --count`.
const DEFAULT_PING_COUNT: u64 = 10;
/// Largest `--count`: a call longer than ten minutes is a mistake.
const MAX_PING_COUNT: u64 = 600;
/// Distinct missing endpoints logged (each once), so a script's misses are seen, not a flood.
const MAX_LOGGED_MISSING: usize = 256;
/// Kubo's top-level commands: one of these that we do not serve is "not served yet".
const KUBO_COMMANDS: &[&str] = &[
    "add",
    "bitswap",
    "block",
    "bootstrap",
    "cat",
    "cid",
    "commands",
    "config",
    "dag",
    "diag",
    "dht",
    "files",
    "filestore",
    "get",
    "id",
    "key",
    "log",
    "ls",
    "multibase",
    "name",
    "object",
    "p2p",
    "pin",
    "ping",
    "provide",
    "pubsub",
    "refs",
    "repo",
    "resolve",
    "routing",
    "shutdown",
    "stats",
    "swarm",
    "update",
    "version",
];

/// What the endpoints work with.
pub struct Api<H> {
    pub control: Arc<H>,
    pub node: Node,
    pub tracker: TaskTracker,
    /// Blocks, names, keys and pins for the IPFS endpoints.
    pub ipfs: Arc<Ipfs>,
    missing: Mutex<HashSet<String>>,
}

impl<H: Handler> Api<H> {
    pub fn new(control: Arc<H>, ipfs: Arc<Ipfs>, tracker: TaskTracker) -> Api<H> {
        Api {
            control,
            node: ipfs.node.clone(),
            tracker,
            ipfs,
            missing: Mutex::new(HashSet::new()),
        }
    }

    /// Run one call.
    pub async fn run(&self, call: &Call) -> Result<Reply, Failure> {
        match call.command.as_str() {
            "version" => Ok(json(&version())),
            "id" => self.id(call).await,
            "swarm/peers" => self.swarm_peers(call).await,
            "swarm/connect" => self.swarm_connect(call).await,
            "swarm/addrs" => self.swarm_addrs().await,
            "ping" => self.ping(call).await,
            "routing/findpeer" | "dht/findpeer" => self.find_peer(call),
            "p2p/listen" => self.p2p_listen(call).await,
            "p2p/forward" => self.p2p_forward(call).await,
            "p2p/ls" => self.p2p_ls().await,
            "p2p/close" => self.p2p_close(call).await,
            "p2p/stream/ls" => self.stream_ls().await,
            "p2p/stream/close" => self.stream_close(call).await,
            other => self.run_ipfs(call, other).await,
        }
    }

    /// The IPFS endpoints (content, names, keys, pins).
    async fn run_ipfs(&self, call: &Call, command: &str) -> Result<Reply, Failure> {
        let ipfs = &*self.ipfs;
        match command {
            "add" => files::add(ipfs, call).await,
            "cat" => files::cat(ipfs, call).await,
            "get" => files::get(ipfs, call).await,
            "ls" => files::ls(ipfs, call).await,
            "name/publish" => keys::publish(ipfs, call).await,
            "name/resolve" => keys::resolve(ipfs, call).await,
            "key/list" | "key/ls" => keys::list(ipfs, call),
            "key/gen" => keys::generate(ipfs, call).await,
            "key/import" => keys::import(ipfs, call),
            "key/rm" => keys::rm(ipfs, call),
            "key/rename" => keys::rename(ipfs, call),
            "pin/add" => pins::add(ipfs, call).await,
            "pin/ls" => pins::ls(ipfs, call).await,
            "pin/rm" => pins::rm(ipfs, call).await,
            "repo/stat" => pins::repo_stat(ipfs),
            "repo/gc" => gc::gc(ipfs, call).await,
            "routing/findprovs" | "dht/findprovs" => providing::findprovs(ipfs, call).await,
            "routing/provide" | "dht/provide" => providing::provide(ipfs, call).await,
            other => Err(self.missing(other)),
        }
    }

    /// The 404 of an endpoint we do not serve, logged once per endpoint.
    fn missing(&self, command: &str) -> Failure {
        let known = KUBO_COMMANDS.contains(&command.split('/').next().unwrap_or(""));
        let message = if known {
            format!(
                "constellation does not serve /api/v0/{command} yet (see protocols/kubo-rpc.md)"
            )
        } else {
            format!("/api/v0/{command} is not a Kubo RPC command")
        };
        let mut seen = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < MAX_LOGGED_MISSING && seen.insert(command.to_owned()) {
            tracing::warn!("Kubo RPC call not served: /api/v0/{command}");
        }
        Failure::not_found(message)
    }

    /// One control operation, its answer read back as `T`.
    async fn control<T: DeserializeOwned>(&self, request: Request) -> Result<T, Failure> {
        let value = self
            .control
            .handle(request)
            .await
            .map_err(Failure::normal)?;
        serde_json::from_value(value).map_err(|e| Failure::normal(format!("bad answer: {e}")))
    }

    async fn id(&self, call: &Call) -> Result<Reply, Failure> {
        let info: NodeInfo = self.control(Request::Id).await?;
        let me = info.peer_id.clone();
        let Some(other) = call.args.first().filter(|a| **a != me) else {
            return Ok(json(&self_id(info)));
        };
        let peer = crate::identity::parse_peer_id(other)
            .map_err(|_| Failure::normal("invalid peer id"))?;
        let addr = format!("/p2p/{peer}");
        let _: serde_json::Value = self.control(Request::SwarmConnect { addr }).await?;
        let peers: Vec<PeerInfo> = self.control(Request::SwarmPeers).await?;
        let known = self.node.known_addrs().await.map_err(Failure::of)?;
        let addrs = (known.into_iter().find(|(p, _)| *p == peer))
            .map(|(_, a)| a.iter().map(|a| format!("{a}/p2p/{peer}")).collect())
            .unwrap_or_default();
        Ok(json(&wire::IdOutput {
            id: peer.to_string(),
            public_key: inline_public_key(&peer),
            addresses: nil_if_empty(sorted(addrs)),
            agent_version: (peers.iter().find(|p| p.peer_id == peer.to_string()))
                .and_then(|p| p.agent.clone())
                .unwrap_or_default(),
            protocols: None,
        }))
    }

    async fn swarm_peers(&self, call: &Call) -> Result<Reply, Failure> {
        let verbose = call.flag(&["verbose", "v"])?;
        let latency = verbose || call.flag(&["latency"])?;
        let direction = verbose || call.flag(&["direction"])?;
        let identify = verbose || call.flag(&["identify"])?;
        let peers: Vec<PeerInfo> = self.control(Request::SwarmPeers).await?;
        let mut out: Vec<wire::ConnInfo> = (peers.into_iter())
            .map(|p| wire::ConnInfo {
                addr: p.address.clone(),
                peer: p.peer_id.clone(),
                latency: match (latency, p.latency_ms) {
                    (false, _) => String::new(),
                    (true, None) => "n/a".into(),
                    (true, Some(ms)) => wire::go_duration(Duration::from_secs_f64(ms / 1000.0)),
                },
                muxer: String::new(),
                direction: match (direction, p.found) {
                    (false, _) => 0,
                    (true, Origin::Inbound) => 1,
                    (true, _) => 2,
                },
                streams: Vec::new(),
                identify: match identify {
                    false => wire::IdOutput::default(),
                    true => wire::IdOutput {
                        id: p.peer_id.clone(),
                        public_key: (p.peer_id.parse().ok())
                            .map(|peer| inline_public_key(&peer))
                            .unwrap_or_default(),
                        agent_version: p.agent.clone().unwrap_or_default(),
                        ..wire::IdOutput::default()
                    },
                },
            })
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(json(&wire::ConnInfos {
            peers: nil_if_empty(out),
        }))
    }

    async fn swarm_connect(&self, call: &Call) -> Result<Reply, Failure> {
        call.arg(0, "address")?;
        let mut lines = Vec::new();
        for text in &call.args {
            let peer = (addr::parse_multiaddr(text).ok().as_ref())
                .and_then(crate::node::peer_of)
                .map_or_else(|| text.clone(), |p| p.to_string());
            let request = Request::SwarmConnect { addr: text.clone() };
            match self.control::<serde_json::Value>(request).await {
                Ok(_) => lines.push(format!("connect {peer} success")),
                Err(e) => {
                    return Err(Failure::normal(format!(
                        "connect {peer} failure: {}",
                        e.message
                    )));
                }
            }
        }
        Ok(json(&wire::StringList {
            strings: nil_if_empty(lines),
        }))
    }

    async fn swarm_addrs(&self) -> Result<Reply, Failure> {
        let known = self.node.known_addrs().await.map_err(Failure::of)?;
        let addrs: BTreeMap<String, Vec<String>> = (known.into_iter())
            .filter(|(_, a)| !a.is_empty())
            .map(|(p, a)| (p.to_string(), a.iter().map(|a| a.to_string()).collect()))
            .collect();
        Ok(json(&wire::AddrMap { addrs }))
    }

    async fn ping(&self, call: &Call) -> Result<Reply, Failure> {
        let text = call.arg(0, "peer ID")?;
        let (peer, dial) = parse_peer_param(text)
            .map_err(|e| Failure::normal(format!("failed to parse peer address '{text}': {e}")))?;
        if peer == self.node.peer_id() {
            return Err(Failure::normal("error: can't ping self"));
        }
        let count = match call.option(&["count", "n"]) {
            None => DEFAULT_PING_COUNT,
            Some(n) => match n.parse::<i64>() {
                Ok(n) if n > 0 => (n as u64).min(MAX_PING_COUNT),
                Ok(n) => {
                    return Err(Failure::normal(format!(
                        "ping count must be greater than 0, was {n}"
                    )));
                }
                Err(_) => {
                    let shown = crate::identity::shorten(n);
                    return Err(Failure::client(format!(
                        "option \"count\": {shown:?} is not a number"
                    )));
                }
            },
        };
        let known = self.node.known_addrs().await.map_err(Failure::of)?;
        let lookup = dial.is_none() && !known.iter().any(|(p, a)| *p == peer && !a.is_empty());
        let node = self.node.clone();
        Ok(self.stream(move |lines| pings(node, peer, dial, lookup, count, lines)))
    }

    fn find_peer(&self, call: &Call) -> Result<Reply, Failure> {
        let peer = crate::identity::parse_peer_id(call.arg(0, "peerID")?)
            .map_err(|e| Failure::normal(format!("failed to parse peer ID: {e}")))?;
        if peer == self.node.peer_id() {
            return Err(Failure::normal(
                "finding your own node in the DHT is currently not supported",
            ));
        }
        let node = self.node.clone();
        Ok(self.stream(move |lines| async move {
            let event = match node.find_peer(peer).await {
                Ok(addrs) => wire::QueryEvent {
                    id: String::new(),
                    kind: wire::QUERY_FINAL_PEER,
                    responses: Some(vec![wire::AddrInfo {
                        id: peer.to_string(),
                        addrs: addrs.iter().map(|a| a.to_string()).collect(),
                    }]),
                    extra: String::new(),
                },
                Err(e) => wire::QueryEvent {
                    id: String::new(),
                    kind: wire::QUERY_ERROR,
                    responses: None,
                    extra: e.to_string(),
                },
            };
            let _ = lines.send(line(&event)).await;
        }))
    }

    async fn p2p_listen(&self, call: &Call) -> Result<Reply, Failure> {
        refuse_foreground(call)?;
        let spec = ListenSpec {
            protocol: call.arg(0, "protocol")?.to_owned(),
            target: call.arg(1, "target-address")?.to_owned(),
            report_peer_id: call.flag(&["report-peer-id", "r"])?,
            allow_custom_protocol: call.flag(&["allow-custom-protocol"])?,
            allow_peers: Vec::new(),
        };
        let _: TunnelInfo = self
            .control(Request::P2pListen {
                spec,
                persist: false,
            })
            .await?;
        Ok(Reply::Empty)
    }

    async fn p2p_forward(&self, call: &Call) -> Result<Reply, Failure> {
        refuse_foreground(call)?;
        let spec = ForwardSpec {
            protocol: call.arg(0, "protocol")?.to_owned(),
            listen: call.arg(1, "listen-address")?.to_owned(),
            target: call.arg(2, "target-address")?.to_owned(),
            allow_custom_protocol: call.flag(&["allow-custom-protocol"])?,
        };
        let _: TunnelInfo = self
            .control(Request::P2pForward {
                spec,
                persist: false,
            })
            .await?;
        Ok(Reply::Empty)
    }

    async fn p2p_ls(&self) -> Result<Reply, Failure> {
        let mut tunnels: Vec<TunnelInfo> = self.control(Request::P2pLs).await?;
        // Kubo lists its local listeners (forwards) before the p2p ones.
        tunnels.sort_by_key(|t| t.kind != crate::tunnel::TunnelKind::Forward);
        let listeners = (tunnels.into_iter())
            .map(|t| wire::ListenerInfo {
                protocol: t.protocol,
                listen_address: t.listen_address,
                target_address: t.target_address,
            })
            .collect();
        Ok(json(&wire::P2pLsOutput {
            listeners: nil_if_empty(listeners),
        }))
    }

    async fn p2p_close(&self, call: &Call) -> Result<Reply, Failure> {
        let filter = CloseFilter {
            all: call.flag(&["all", "a"])?,
            protocol: call.option(&["protocol", "p"]).map(String::from),
            listen: call.option(&["listen-address", "l"]).map(String::from),
            target: call.option(&["target-address", "t"]).map(String::from),
        };
        let some = filter.protocol.is_some() || filter.listen.is_some() || filter.target.is_some();
        if !filter.all && !some {
            return Err(Failure::normal("no matching options given"));
        }
        if filter.all && some {
            return Err(Failure::normal(
                "can't combine --all with other matching options",
            ));
        }
        let tunnels: Vec<TunnelInfo> = self.control(Request::P2pLs).await?;
        // Kubo answers 0 when nothing matches; our control API calls that an error.
        let matching = tunnels.iter().filter(|t| filter.matches(t)).count();
        if matching > 0 {
            let _: serde_json::Value = self.control(Request::P2pClose { filter }).await?;
        }
        Ok(json(&matching))
    }

    async fn stream_ls(&self) -> Result<Reply, Failure> {
        let streams: Vec<StreamInfo> = self.control(Request::StreamLs).await?;
        let streams = (streams.into_iter())
            .map(|s| wire::StreamInfoOutput {
                handler_id: s.id.to_string(),
                protocol: s.protocol,
                origin_address: s.origin_address,
                target_address: s.target_address,
            })
            .collect();
        Ok(json(&wire::P2pStreamsOutput {
            streams: nil_if_empty(streams),
        }))
    }

    async fn stream_close(&self, call: &Call) -> Result<Reply, Failure> {
        let id = if call.flag(&["all", "a"])? {
            None
        } else {
            let text = call
                .args
                .first()
                .ok_or_else(|| Failure::normal("no id specified"))?;
            let id: u64 = (text.parse()).map_err(|_| {
                Failure::normal(format!(
                    "strconv.ParseUint: parsing {text:?}: invalid syntax"
                ))
            })?;
            let streams: Vec<StreamInfo> = self.control(Request::StreamLs).await?;
            if !streams.iter().any(|s| s.id == id) {
                return Ok(Reply::Empty); // Kubo closes nothing and says nothing
            }
            Some(id)
        };
        let _: serde_json::Value = self.control(Request::StreamClose { id }).await?;
        Ok(Reply::Empty)
    }

    /// A streamed answer: `produce` sends its lines, on a task the daemon tracks.
    fn stream<F, Fut>(&self, produce: F) -> Reply
    where
        F: FnOnce(mpsc::Sender<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (lines, receiver) = mpsc::channel(STREAM_QUEUE);
        self.tracker.spawn(produce(lines));
        Reply::Lines(receiver)
    }
}

/// `ipfs ping`'s lines, as Kubo emits them; ends early when the reader has gone.
async fn pings(
    node: Node,
    peer: PeerId,
    dial: Option<Multiaddr>,
    lookup: bool,
    count: u64,
    lines: mpsc::Sender<Vec<u8>>,
) {
    let say = |success: bool, text: String| line(&wire::PingResult::text(success, text));
    if lookup
        && lines
            .send(say(true, format!("Looking up peer {peer}")))
            .await
            .is_err()
    {
        return;
    }
    if let Some(addr) = dial
        && let Err(e) = node.connect(addr).await
    {
        let _ = lines.send(say(false, format!("Ping error: {e}"))).await;
        return;
    }
    if lines
        .send(say(true, format!("PING {peer}.")))
        .await
        .is_err()
    {
        return;
    }
    let mut pinger = match node.pinger(peer).await {
        Ok(p) => p,
        Err(e) => {
            let _ = lines.send(say(false, format!("Ping error: {e}"))).await;
            return;
        }
    };
    let (mut total, mut ok) = (Duration::ZERO, 0u32);
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(PING_INTERVAL).await;
        }
        let result = match pinger.ping().await {
            Ok(rtt) => {
                total += rtt;
                ok += 1;
                wire::PingResult {
                    success: true,
                    time: rtt.as_nanos() as u64,
                    text: String::new(),
                }
            }
            Err(e) => wire::PingResult::text(false, format!("Ping error: {e}")),
        };
        if lines.send(line(&result)).await.is_err() {
            return;
        }
    }
    if ok > 0 {
        let average = total.as_secs_f64() * 1000.0 / f64::from(ok);
        let _ = lines
            .send(say(true, format!("Average latency: {average:.2}ms")))
            .await;
    }
}

/// Kubo's `ParsePeerParam`: a peer id, or a multiaddr ending in `/p2p/<id>` (dialled first).
fn parse_peer_param(text: &str) -> Result<(PeerId, Option<Multiaddr>), String> {
    if text.starts_with('/') {
        let addr = addr::parse_multiaddr(text).map_err(|e| e.to_string())?;
        let peer = crate::node::peer_of(&addr).ok_or("no /p2p/<peer id> part")?;
        let dial = (addr.iter().count() > 1).then_some(addr);
        return Ok((peer, dial));
    }
    // Bounded before decoding (an over-long base58 id costs quadratic time), quoted shortened.
    crate::identity::parse_peer_id(text)
        .map(|p| (p, None))
        .map_err(|e| e.to_string())
}

fn refuse_foreground(call: &Call) -> Result<(), Failure> {
    if call.flag(&["foreground", "f"])? {
        return Err(Failure::client(
            "constellation does not support --foreground yet: the tunnel would outlive the call; close it with `ipfs p2p close`",
        ));
    }
    Ok(())
}

fn self_id(info: NodeInfo) -> wire::IdOutput {
    let peer = info.peer_id;
    let addrs: Vec<String> = (info.listen.iter().chain(&info.announced))
        .filter(|a| !a.contains("/0.0.0.0/") && !a.contains("/::/"))
        .map(|a| format!("{a}/p2p/{peer}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    wire::IdOutput {
        id: peer,
        public_key: info.public_key,
        addresses: nil_if_empty(addrs),
        agent_version: agent_version(),
        protocols: nil_if_empty(info.protocols),
    }
}

/// The public key inside an identity-hashed peer id (Ed25519, secp256k1), base64; else empty.
fn inline_public_key(peer: &PeerId) -> String {
    let hash = peer.as_ref();
    if hash.code() != 0 {
        return String::new();
    }
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hash.digest())
}

fn version() -> wire::VersionOutput {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    wire::VersionOutput {
        version: KUBO_VERSION.into(),
        commit: format!("constellation-{}", env!("CARGO_PKG_VERSION")),
        repo: KUBO_REPO_VERSION.into(),
        system: format!("{arch}/{}", std::env::consts::OS),
        golang: "none (Rust)".into(),
    }
}

/// `kubo/<version>/constellation-<ours>`: Kubo's `kubo/<version>/<commit>` form, so clients
/// that read the version find the Kubo API they talk to, and people see what answers.
fn agent_version() -> String {
    format!(
        "kubo/{KUBO_VERSION}/constellation-{}",
        env!("CARGO_PKG_VERSION")
    )
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

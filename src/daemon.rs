//! `constellation daemon`: wires identity, node, tunnels and the control API together, prints a
//! ready line, and shuts down in order on SIGINT/SIGTERM (stop accepting, grace, cut, release).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Zen;
use crate::config::{Config, Home, TunnelSpec};
use crate::control::{self, Request};
use crate::ipfs::store::BlockStore;
use crate::node::Node;
use crate::node::bitswap::Bitswap;
use crate::node::names::Names;
use crate::node::net::{self, NetRuntime};
use crate::store::Store;
use crate::swarm_map::{self, SwarmMap};
use crate::sync::local::Station;
use crate::tunnel::{self, Tunnels, persist};

/// Round trips of one `ping` request: the control API answers once, so a long count would hold
/// the caller (each trip may take `PING_TIMEOUT`); `x_<slug>.sh` asks for 2, as the original.
const MAX_PING_COUNT: u32 = 10;

/// Flags of `constellation daemon`.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Listen on this multiaddr (repeatable). Default: `[node] listen` of config.toml,
    /// else /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Address of the embedded Nostr relay, unless another relay already answers there (then
    /// that one is the local relay). Default: `[relay] listen` of config.toml, else 127.0.0.1:7777.
    #[arg(long, value_name = "ADDR")]
    pub relay_listen: Option<String>,
    /// Do not start or look for a local relay.
    #[arg(long)]
    pub no_relay: bool,
    /// Address of the status page (`/` and `/api/status`). Default: `[status] listen` of
    /// config.toml, else 127.0.0.1:7778.
    #[arg(long, value_name = "ADDR")]
    pub status_listen: Option<String>,
    /// Do not serve the status page.
    #[arg(long, conflicts_with = "status_listen")]
    pub no_status: bool,
    /// Use the identity of this Kubo repo (its `config`), so the PeerID is the station's
    /// IPFSNODEID. Without a value: $IPFS_PATH, else ~/.ipfs.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub kubo_repo: Option<PathBuf>,
    /// Swarm key file (private network). Default: swarm.key of the Kubo repo or of the home.
    #[arg(long, value_name = "PATH")]
    pub swarm_key: Option<PathBuf>,
    /// Do not publish the station's services (DRAGON); `connect` still works.
    #[arg(long, conflicts_with = "dragon")]
    pub no_dragon: bool,
    /// Publish the station's services even if `[dragon] enabled = false`.
    #[arg(long)]
    pub dragon: bool,
}

/// Run the daemon until SIGINT/SIGTERM.
pub async fn run(home: &Home, config: &Config, args: DaemonArgs) -> anyhow::Result<()> {
    let socket = check_not_running(home).await?;
    let (kubo_repo, mut options) = start_options(home, config, &args).await?;
    let net = NetRuntime::start(config.node.net_workers.unwrap_or(net::DEFAULT_WORKERS))?;
    options.net = net.as_ref().map(NetRuntime::handle);
    let keypair = options.keypair.clone();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (node, bound) = Node::start(options, shutdown.clone(), &tracker).await?;
    let names = Arc::new(Names::new(node.clone(), home.names()));
    let tunnels = Tunnels::new(node.clone(), config.node.limits.max_streams_per_peer);
    let bitswap = start_bitswap(home, config, &node, (shutdown.clone(), &tracker))?;
    let live = crate::live::Registry::new();
    let relay = if args.no_relay {
        None
    } else {
        let hooks = (tunnels.origin_lookup(), live.fanout());
        let listen = args.relay_listen.clone();
        Some(start_relay(home, config, listen, hooks, (shutdown.clone(), &tracker)).await?)
    };
    let control_stop = CancellationToken::new();
    let map_ctx = map_context(
        (home, kubo_repo.as_deref()),
        config,
        (&node, &bitswap),
        &names,
        &keypair,
        relay.as_ref(),
    );
    let swarm_map = swarm_map(home, config, kubo_repo.as_deref(), map_ctx).await;
    let daemon = Arc::new(Daemon {
        node: node.clone(),
        tunnels: tunnels.clone(),
        bitswap: bitswap.clone(),
        persisted: persist::Persisted::new(home.tunnels_state()),
        home: home.clone(),
        station: relay.as_ref().map(|r| r.station.clone()),
        dragon: std::sync::OnceLock::new(),
        config: config.clone(),
        relay_url: relay.as_ref().map(|r| r.url.clone()),
        started: std::time::Instant::now(),
        figures: crate::status::Cached::new(crate::status::figures::FIGURES_TTL),
        swarm_map: swarm_map.clone(),
        live: live.clone(),
    });
    daemon.restore_tunnels(config).await;
    if args.dragon || (config.dragon.enabled && !args.no_dragon) {
        // After the restored tunnels (its first cycle sees them); stopped with the control API,
        // before the tunnels shut down.
        spawn_dragon(&daemon, control_stop.clone(), &tracker)?;
    }
    serve_control(&socket, daemon.clone(), control_stop.clone(), &tracker)?;
    let (kubo_api, kubo_api_error) = start_kubo_api(
        config,
        kubo_repo.as_deref(),
        daemon.clone(),
        (keypair, names.clone()),
        (control_stop.clone(), &tracker),
    )
    .await;
    spawn_cycles(
        home,
        config,
        (&node, swarm_map, daemon.bitswap.store()),
        relay.as_ref(),
        (&control_stop, &tracker),
    );
    start_live(
        home,
        config,
        (&node, relay.as_ref()),
        live,
        (&control_stop, &tracker),
    );
    let status = start_status(&args, config, daemon.clone(), (&control_stop, &tracker)).await;
    let kubo = (kubo_api.as_ref().map(|k| k.addr), kubo_api_error);
    let ready = ready_line((&node, &bound), &socket, relay.as_ref(), status, kubo);
    let signals = crate::signal::Signals::watch()?;
    println!("{ready}");
    tracing::info!(peer_id = %node.peer_id(), "daemon ready");

    signals.received().await;
    let grace = Duration::from_secs(config.node.limits.shutdown_grace_secs);
    shut_down(&tunnels, grace, kubo_api, (control_stop, shutdown, tracker)).await;
    let _ = std::fs::remove_file(&socket);
    drop(net); // every task on it has ended: `shut_down` waited for the tracker
    tracing::info!("stopped");
    Ok(())
}

/// Makes the home and says no when a daemon already answers on its control socket (returned).
async fn check_not_running(home: &Home) -> anyhow::Result<PathBuf> {
    home.ensure()?;
    let socket = home.control_socket();
    if control::is_running(&socket).await {
        anyhow::bail!(
            "a daemon is already running for {} (control socket {})",
            home.root().display(),
            socket.display()
        );
    }
    Ok(socket)
}

/// The node's start-up options, and the Kubo repo whose identity it takes (checked not in use
/// by a running Kubo).
async fn start_options(
    home: &Home,
    config: &Config,
    args: &DaemonArgs,
) -> anyhow::Result<(Option<PathBuf>, crate::node::NodeOptions)> {
    let kubo_repo = crate::node::options::kubo_repo_choice(args.kubo_repo.as_ref(), config);
    if let Some(repo) = &kubo_repo {
        crate::kubo_api::repo::check_not_in_use(repo).await?;
    }
    let listen = (!args.listen.is_empty()).then(|| args.listen.clone());
    let mut options = crate::node::options::node_options(
        home,
        config,
        args.kubo_repo.as_ref(),
        args.swarm_key.as_ref(),
        listen,
    )?;
    // The daemon keeps the stations of the swarm map connected (a one-off backfill node does not).
    options.swarm_dir = Some(config.dragon.swarm_dir_path());
    Ok((kubo_repo, options))
}

/// What the swarm map works with: the node, its blocks and names, its key, our folder.
fn map_context(
    (home, kubo_repo): (&Home, Option<&std::path::Path>),
    config: &Config,
    (node, bitswap): (&Node, &Bitswap),
    names: &Arc<Names>,
    key: &libp2p::identity::Keypair,
    relay: Option<&LocalRelay>,
) -> swarm_map::Context {
    swarm_map::Context {
        node: node.clone(),
        bitswap: bitswap.clone(),
        names: names.clone(),
        key: key.clone(),
        zen: Zen::new(
            config.dragon.swarm_dir_path(),
            config.dragon.scripts_dir_for(&node.peer_id()),
        ),
        config: config.swarm_map.clone(),
        state: home.swarm_map_state(),
        keystores: (kubo_repo.map(|r| r.join("keystore")).into_iter())
            .chain([home.keystore()])
            .collect(),
        relay_url: relay.map(|r| r.url.clone()),
        progress: Default::default(),
    }
}

/// Start the service publisher (DRAGON) over the daemon's tunnels.
fn spawn_dragon(
    daemon: &Daemon,
    stop: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let dragon = crate::dragon::Dragon::spawn(
        daemon.tunnels.clone(),
        daemon.node.peer_id(),
        daemon.config.dragon.clone(),
        stop.clone(),
        tracker,
    )?;
    let _ = daemon.dragon.set(dragon);
    let config = &daemon.config.dragon;
    match (&daemon.station, config.manage_ssh_keys) {
        (Some(station), true) => {
            let zen = Zen::new(
                config.swarm_dir_path(),
                config.scripts_dir_for(&daemon.node.peer_id()),
            );
            let job = crate::dragon::TrustJob::new(config, zen, daemon.node.peer_id());
            job.spawn(
                station.clone(),
                config.ssh_keys_interval_secs,
                stop,
                tracker,
            );
        }
        (None, true) => {
            tracing::warn!("[dragon] manage_ssh_keys needs the local relay (no --no-relay)")
        }
        _ => {}
    }
    Ok(())
}

/// Bind the control socket and serve the control API on it until `stop`.
fn serve_control(
    socket: &std::path::Path,
    daemon: Arc<Daemon>,
    stop: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let listener = control::bind(socket)
        .with_context(|| format!("cannot bind the control socket {}", socket.display()))?;
    tracker.spawn(control::serve(listener, daemon, stop, tracker.clone()));
    Ok(())
}

/// The swarm map's cycle and the hourly sync, both stopped with the control API.
fn spawn_cycles(
    home: &Home,
    config: &Config,
    (node, swarm_map, blocks): (&Node, Option<Arc<SwarmMap>>, &Arc<BlockStore>),
    relay: Option<&LocalRelay>,
    (stop, tracker): (&CancellationToken, &TaskTracker),
) {
    if let Some(map) = swarm_map {
        // After DRAGON (its scripts are in our folder).
        tracker.spawn(map.run(stop.clone()));
    }
    if config.trigger.enabled {
        // The hourly sync, so that cron is optional.
        let lent = crate::trigger::InDaemon {
            node: node.clone(),
            station: relay.map(|r| r.station.clone()),
            blocks: Some(blocks.clone()),
            relay_url: relay.map(|r| r.url.clone()),
        };
        tracker.spawn(crate::trigger::schedule(
            home.clone(),
            config.clone(),
            lent,
            stop.clone(),
        ));
    }
}

/// The live links (`[live]`, on by default), over the local relay, with the scheduled
/// backfill's peers and authors; stopped with the control API.
fn start_live(
    home: &Home,
    config: &Config,
    (node, relay): (&Node, Option<&LocalRelay>),
    registry: Arc<crate::live::Registry>,
    (stop, tracker): (&CancellationToken, &TaskTracker),
) {
    let Some(relay) = relay.filter(|_| config.live.enabled) else {
        return;
    };
    let backfill = match crate::trigger::flags::parse_args(&config.trigger.backfill) {
        Ok(args) => args.options(),
        Err(e) => {
            tracing::warn!("[trigger] backfill flags are invalid, no live links: {e}");
            return;
        }
    };
    let setup = crate::live::Setup {
        node: node.clone(),
        station: relay.station.clone(),
        config: config.live.clone(),
        backfill,
        history: home.history(),
    };
    crate::live::start(setup, registry, stop.clone(), tracker);
}

/// Serve the status page; returns its URL, or why there is none. The status page is not worth
/// failing a node for: a second daemon on the machine finds 127.0.0.1:7778 taken and runs
/// without one, saying why in its ready line.
async fn start_status(
    args: &DaemonArgs,
    config: &Config,
    daemon: Arc<Daemon>,
    (stop, tracker): (&CancellationToken, &TaskTracker),
) -> (Option<String>, Option<String>) {
    if args.no_status {
        return (None, None);
    }
    let addr = args
        .status_listen
        .clone()
        .unwrap_or_else(|| config.status.listen.clone());
    match crate::status::start(&addr, daemon, stop.clone(), tracker).await {
        Ok(bound) => {
            tracing::info!("status page at http://{bound}/");
            (Some(format!("http://{bound}/")), None)
        }
        Err(e) => {
            let reason = format!("cannot listen on {addr} for the status page: {e}");
            tracing::warn!("{reason}; running without a status page");
            (None, Some(reason))
        }
    }
}

/// The `ready` line printed on stdout once everything is up.
fn ready_line(
    (node, bound): (&Node, &[libp2p::Multiaddr]),
    socket: &std::path::Path,
    relay: Option<&LocalRelay>,
    (status, status_error): (Option<String>, Option<String>),
    (kubo_api, kubo_api_error): (Option<std::net::SocketAddr>, Option<String>),
) -> serde_json::Value {
    json!({
        "event": "ready",
        "status": status,
        "status_error": status_error,
        "kubo_api": kubo_api.map(crate::tunnel::addr::socket_multiaddr),
        "kubo_api_error": kubo_api_error,
        "peer_id": node.peer_id().to_string(),
        "listen": bound.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "control": socket,
        "relay": relay.map(|r| r.url.clone()),
        "relay_mode": relay.map(|r| match r.station {
            Station::Embedded(_) => "embedded",
            Station::External(_) => "external",
        }),
    })
}

/// Shut down in order: stop accepting (control API and everything stopped with it, the Kubo
/// API), give the tunnels their grace then cut them, stop the node, wait for every task.
async fn shut_down(
    tunnels: &Tunnels,
    grace: Duration,
    kubo_api: Option<crate::kubo_api::Running>,
    (control_stop, shutdown, tracker): (CancellationToken, CancellationToken, TaskTracker),
) {
    tracing::info!("shutting down");
    control_stop.cancel();
    if let Some(kubo_api) = kubo_api {
        kubo_api.stop();
    }
    tunnels.shutdown(grace).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Serve the Kubo RPC API when `[kubo_api]` says so (auto: with a Kubo repo). Like the status
/// page it is not worth failing the node for: a taken port is logged and said in the ready line.
async fn start_kubo_api(
    config: &Config,
    kubo_repo: Option<&std::path::Path>,
    daemon: Arc<Daemon>,
    // The node key (the API's `self` key) and our IPNS names (one owner, shared).
    (node_key, names): (libp2p::identity::Keypair, Arc<Names>),
    (stop, tracker): (CancellationToken, &TaskTracker),
) -> (Option<crate::kubo_api::Running>, Option<String>) {
    if !config.kubo_api.is_enabled(kubo_repo.is_some()) {
        return (None, None);
    }
    let started = async {
        let settings = crate::kubo_api::Settings::resolve(&config.kubo_api, kubo_repo)?;
        let ipfs = kubo_ipfs(&daemon, kubo_repo, (node_key, names), tracker)?;
        crate::kubo_api::start(settings, daemon, ipfs, stop, tracker).await
    };
    match started.await {
        Ok(running) => (Some(running), None),
        Err(e) => {
            let reason = crate::logging::error_line(&e);
            tracing::warn!("{reason}; running without the Kubo RPC API");
            (None, Some(reason))
        }
    }
}

/// What the Kubo API's IPFS endpoints use: the keystore of the Kubo repo (else of the home),
/// our IPNS names, the pin set, a scratch folder.
fn kubo_ipfs(
    daemon: &Daemon,
    kubo_repo: Option<&std::path::Path>,
    (node_key, names): (libp2p::identity::Keypair, Arc<Names>),
    tracker: &TaskTracker,
) -> anyhow::Result<Arc<crate::kubo_api::ipfs::Ipfs>> {
    let home = &daemon.home;
    let keystore_dir = kubo_repo.map_or_else(|| home.keystore(), |r| r.join("keystore"));
    let keystore = crate::ipfs::keystore::Keystore::open(&keystore_dir, node_key)
        .with_context(|| format!("cannot open the keystore {}", keystore_dir.display()))?;
    let pins =
        crate::kubo_api::pin_set::Pins::open(home.pins()).context("cannot read the pin set")?;
    let scratch = home.root().join("tmp");
    // Leftovers of a previous run (a crash mid-add) are swept.
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Arc::new(crate::kubo_api::ipfs::Ipfs {
        node: daemon.node.clone(),
        bitswap: daemon.bitswap.clone(),
        names,
        keystore,
        pins,
        scratch,
        repo_path: kubo_repo.map_or_else(|| home.root().to_owned(), std::path::Path::to_owned),
        tracker: tracker.clone(),
        content_lock: Default::default(),
    }))
}

/// The swarm map, unless `[swarm_map] enabled` says no (auto: no while a Kubo daemon serves the
/// station's repo, so the two never fight over the folder).
async fn swarm_map(
    home: &Home,
    config: &Config,
    kubo_repo: Option<&std::path::Path>,
    ctx: swarm_map::Context,
) -> Option<Arc<SwarmMap>> {
    let repo = kubo_repo
        .map(std::path::Path::to_owned)
        .unwrap_or_else(|| crate::config::kubo_repo(None));
    let kubo_running = crate::kubo_api::repo::api_answers(&repo).await;
    if !config.swarm_map.is_enabled(kubo_running) {
        tracing::info!(
            kubo_running,
            "swarm map off (a Kubo daemon serving {} keeps it)",
            repo.display()
        );
        return None;
    }
    tracing::info!(home = %home.root().display(), swarm = %ctx.zen.swarm().display(), "swarm map on");
    Some(Arc::new(SwarmMap::new(ctx)))
}

/// Open the block store (`<home>/blocks`, bounded by `[ipfs] blocks_max_bytes`) and serve it
/// over bitswap; the handle also fetches.
fn start_bitswap(
    home: &Home,
    config: &Config,
    node: &Node,
    (shutdown, tracker): (CancellationToken, &TaskTracker),
) -> anyhow::Result<Bitswap> {
    let dir = home.blocks();
    let store = BlockStore::open(&dir, config.ipfs.blocks_max_bytes)
        .with_context(|| format!("cannot open the block store {}", dir.display()))?;
    Bitswap::start(node, Arc::new(store), shutdown, tracker).context("cannot serve bitswap")
}

/// The local relay the daemon uses.
struct LocalRelay {
    station: Station,
    url: String,
}

/// Serve the embedded relay, unless a relay already answers at its address (strfry on a
/// station that has one): then that relay is the local relay.
async fn start_relay(
    home: &Home,
    config: &Config,
    listen: Option<String>,
    (origin, fanout): (crate::relay::limits::OriginLookup, crate::relay::LiveFanout),
    (shutdown, tracker): (CancellationToken, &TaskTracker),
) -> anyhow::Result<LocalRelay> {
    let mut relay_config = config.relay.clone();
    if let Some(listen) = listen {
        relay_config.listen = listen;
    }
    let listen = relay_config.listen.clone();
    if crate::sync::local::probe(&listen).await {
        let url = format!("ws://{listen}");
        tracing::info!("a relay already answers at {url}: using it as the local relay");
        return Ok(LocalRelay {
            station: Station::External(url.clone()),
            url,
        });
    }
    let db = home.database();
    let store = Store::open(&db, relay_config.event_limits())
        .with_context(|| format!("cannot open the event store {}", db.display()))?;
    let served = crate::relay::Served {
        store: store.clone(),
        config: relay_config,
        origin: Some(origin),
        fanout: Some(fanout),
    };
    let addr = crate::relay::start(served, shutdown, tracker)
        .await
        .with_context(|| format!("cannot listen on {listen} for the embedded relay"))?;
    let url = format!("ws://{addr}");
    tracing::info!(db = %db.display(), "embedded relay at {url}");
    Ok(LocalRelay {
        station: Station::Embedded(store),
        url,
    })
}

/// The daemon's shared state, as the control API sees it.
struct Daemon {
    node: Node,
    tunnels: Tunnels,
    /// The block store and bitswap over the swarm (the swarm map, the Kubo API's `add`/`cat`).
    bitswap: Bitswap,
    /// `tunnels.json`, changed by one request at a time.
    persisted: persist::Persisted,
    home: Home,
    /// The local relay (None with `--no-relay`).
    station: Option<Station>,
    /// The service publisher (unset with `--no-dragon`).
    dragon: std::sync::OnceLock<crate::dragon::Dragon>,
    /// The daemon's `config.toml`, read once at start.
    config: Config,
    relay_url: Option<String>,
    started: std::time::Instant,
    figures: crate::status::Cached<serde_json::Value>,
    /// The map cycle (None when `[swarm_map]` is off).
    swarm_map: Option<Arc<SwarmMap>>,
    /// The live links and their figures.
    live: Arc<crate::live::Registry>,
}

impl crate::status::StatusSource for Daemon {
    /// Everything the status page shows; a part that fails is left out, not the whole.
    async fn status(&self) -> serde_json::Value {
        let info = self.node.info().await.ok();
        let services = match self.dragon.get() {
            Some(dragon) => crate::dragon::services(Some(dragon), &self.tunnels, false)
                .await
                .ok()
                .and_then(|r| serde_json::to_value(r).ok()),
            None => None,
        };
        let history = self.home.history();
        let figures = self
            .figures
            .get(crate::status::figures::figures(
                self.station.as_ref(),
                self.relay_url.as_deref(),
                history,
            ))
            .await;
        json!({
            "charts": figures["charts"],
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "peer_id": self.node.peer_id().to_string(),
            "listen": info.as_ref().map(|i| i.listen.clone()).unwrap_or_default(),
            "private_network": info.as_ref().is_some_and(|i| i.private_network),
            "peers": info.as_ref().map(|i| i.peers.clone()).unwrap_or_default(),
            "tunnels": self.tunnels.list(),
            "streams": self.tunnels.streams(),
            "blocks_bytes": self.bitswap.store().total_bytes(),
            "services": services,
            "relay": figures["relay"],
            "runs": figures["runs"],
            "live": self.live.links(),
        })
    }
}

impl Daemon {
    /// Bring back the tunnels of config.toml and of `--persist`; a failing one is logged, not fatal.
    async fn restore_tunnels(&self, config: &Config) {
        let persisted = self.persisted.load().unwrap_or_else(|e| {
            tracing::warn!("ignoring persisted tunnels: {e}");
            Vec::new()
        });
        for spec in config.tunnels.iter().chain(&persisted) {
            let result = match spec {
                TunnelSpec::Listen(l) => self.tunnels.listen(l).map(|_| ()),
                TunnelSpec::Forward(f) => self.tunnels.forward(f).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::warn!("cannot restore tunnel {spec:?}: {e}");
            }
        }
    }

    /// `count` round trips (at most [`MAX_PING_COUNT`]) on one ping stream; their times in ms.
    async fn ping(&self, peer: &str, count: u32) -> anyhow::Result<serde_json::Value> {
        let peer = crate::identity::parse_peer_id(peer.trim_start_matches("/p2p/"))?;
        anyhow::ensure!(peer != self.node.peer_id(), "cannot ping this node itself");
        let mut pinger = self.node.pinger(peer).await?;
        let mut rtts = Vec::new();
        for _ in 0..count.clamp(1, MAX_PING_COUNT) {
            rtts.push(pinger.ping().await?.as_secs_f64() * 1000.0);
        }
        Ok(json!({ "peer": peer.to_string(), "rtt_ms": rtts }))
    }

    async fn dispatch(&self, request: Request) -> anyhow::Result<serde_json::Value> {
        Ok(match request {
            Request::Id => serde_json::to_value(self.node.info().await?)?,
            Request::SwarmConnect { addr } => {
                let addr = tunnel::addr::parse_multiaddr(&addr)?;
                json!({ "peer_id": self.node.connect(addr).await?.to_string() })
            }
            Request::SwarmPeers => serde_json::to_value(self.node.info().await?.peers)?,
            Request::Ping { peer, count } => self.ping(&peer, count).await?,
            Request::P2pListen { spec, persist } => {
                let info = self.tunnels.listen(&spec)?;
                if persist {
                    self.persisted.add(TunnelSpec::Listen(spec))?;
                }
                serde_json::to_value(info)?
            }
            Request::P2pForward { mut spec, persist } => {
                let info = self.tunnels.forward(&spec).await?;
                if persist {
                    spec.listen = info.listen_address.clone();
                    self.persisted.add(TunnelSpec::Forward(spec))?;
                }
                serde_json::to_value(info)?
            }
            Request::P2pLs => serde_json::to_value(self.tunnels.list())?,
            Request::P2pClose { filter } => {
                let closed = self.tunnels.close(&filter)?;
                self.persisted.remove_closed(&closed)?;
                serde_json::to_value(closed)?
            }
            Request::StreamLs => serde_json::to_value(self.tunnels.streams())?,
            Request::StreamClose { id } => json!({ "closed": self.tunnels.close_streams(id)? }),
            Request::Backfill { args } => serde_json::to_value(
                crate::sync::backfill::execute(
                    (&self.home, &self.config),
                    &mut crate::sync::history::History::open(&self.home.history())?,
                    &args,
                    Some(self.node.clone()),
                    self.station.clone(),
                )
                .await?,
            )?,
            Request::Services { refresh } => serde_json::to_value(
                crate::dragon::services(self.dragon.get(), &self.tunnels, refresh).await?,
            )?,
            Request::Connect { slug, peer, port } => serde_json::to_value(
                crate::dragon::connect::connect(
                    &self.tunnels,
                    &self.config.dragon.swarm_dir_path(),
                    &slug,
                    &peer,
                    port,
                )
                .await?,
            )?,
            Request::Disconnect { slug, peer } => serde_json::to_value(
                crate::dragon::connect::disconnect(&self.tunnels, &slug, &peer)?,
            )?,
            Request::LiveLinks => serde_json::to_value(self.live.links())?,
            Request::SwarmProgress => match &self.swarm_map {
                Some(map) => serde_json::to_value(map.progress())?,
                None => serde_json::to_value(crate::swarm_map::Progress::default())?,
            },
            Request::SwarmRefresh => match &self.swarm_map {
                Some(map) => serde_json::to_value(map.refresh().await)?,
                None => anyhow::bail!(
                    "the swarm map is off on this daemon ([swarm_map] enabled, or a Kubo daemon serves the repo)"
                ),
            },
        })
    }
}

impl control::Handler for Daemon {
    async fn handle(&self, request: Request) -> Result<serde_json::Value, String> {
        self.dispatch(request)
            .await
            .map_err(|e| crate::logging::error_line(&e))
    }
}

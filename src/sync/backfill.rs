//! One backfill run: its plain options, the run lock, and the glue that feeds discovery and the
//! author sources into the sync engine and records the run in the history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Home, SyncFiles, home_dir};
use crate::node::Node;
use crate::store::Store;
use crate::sync::authors::{self, AuthorSources};
use crate::sync::discovery::{self, Peer};
use crate::sync::history::History;
use crate::sync::local::{CommandImport, ExternalRelay, LocalStore, Station};
use crate::sync::stats::RunStats;
use crate::sync::{Engine, SyncOptions};

/// One backfill's options, as the CLI, `[trigger] backfill` and the control API carry them
/// (the flags are parsed in [`crate::trigger::flags`]; this is the plain value they give).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillOptions {
    /// Days back to sync (0 = everything).
    pub days: u64,
    /// Sync into this relay instead of the station's local relay.
    pub local_relay: Option<String>,
    /// Store through this command (`sh -c`), fed JSON lines on stdin.
    pub import_command: Option<String>,
    /// The station's own `strfry import`, used when the local relay is external and no
    /// `import_command` is given.
    #[serde(default)]
    pub station_import: Option<String>,
    /// Sync with these peers (PeerID or ws(s):// URL); empty: the swarm folder's.
    pub peers: Vec<String>,
    /// Folder of the stations' published files. Default: `<zen>/tmp/swarm`.
    pub swarm_dir: Option<PathBuf>,
    /// Astroport root for the author sources. Default: `~/.zen`.
    pub zen: Option<PathBuf>,
    pub no_dms: bool,
    pub verify: bool,
    pub profiles: bool,
    pub dry_run: bool,
    /// Print the author pubkeys on stderr.
    pub show_hex: bool,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    pub fallback_relays: Vec<String>,
    /// Seconds a silent relay is waited for.
    pub idle_timeout: u64,
    /// Peers synced at the same time.
    pub concurrency: usize,
    pub req_only: bool,
    pub upload: bool,
    /// Content that marks spam ("" disables the rule).
    pub spam: String,
}

impl BackfillOptions {
    /// The Astroport root: `--zen`, else `~/.zen`.
    pub fn zen_root(&self) -> PathBuf {
        self.zen.clone().unwrap_or_else(|| home_dir().join(".zen"))
    }

    fn sync_options(&self) -> SyncOptions {
        SyncOptions {
            days: self.days,
            no_dms: self.no_dms,
            verify: self.verify,
            profiles: self.profiles,
            dry_run: self.dry_run,
            spam_phrase: Some(self.spam.clone()).filter(|s| !s.is_empty()),
            concurrency: self.concurrency.max(1),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            fallback_relays: self.fallback_relays.clone(),
            amis_out: Some(SyncFiles::new(self.zen_root()).n2_authors()),
            req_only: self.req_only,
            upload: self.upload,
            ..SyncOptions::default()
        }
    }
}

/// The run lock: `flock` on `<home>/backfill.lock`. The kernel drops it when the process dies
/// (even by OOM kill), so a lock can never go stale.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// `Ok(None)` when another run holds it.
    pub fn try_acquire(home: &Home) -> anyhow::Result<Option<RunLock>> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        home.ensure()?;
        let path = home.run_lock();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a valid, owned file descriptor has no memory effects.
        let held = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        if held {
            return Ok(None);
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Some(RunLock { _file: file }))
    }
}

/// Discover, sync and record one run in `history`. `node` and `station` are the daemon's;
/// without a node a temporary one is started when a peer must be reached through its tunnel,
/// and without a station the local relay is found as the daemon would.
pub async fn execute(
    (home, config): (&Home, &Config),
    history: &mut History,
    args: &BackfillOptions,
    node: Option<Node>,
    station: Option<Station>,
) -> anyhow::Result<RunStats> {
    let zen = args.zen_root();
    let own = node.as_ref().map(Node::peer_id);
    let (peers, skipped) = gather_peers(args, &zen, own.as_ref())?;
    let peer_keys: Vec<_> = peers.iter().flat_map(|p| p.pubkeys.clone()).collect();
    let (base, sources) = authors::collect(&AuthorSources::astroport(&zen), &peer_keys);
    if args.show_hex {
        for a in &base {
            eprintln!("{a}");
        }
    }
    let rejected = history.rejected_ids().unwrap_or_default();
    let node = match node {
        Some(n) => Some(n),
        None if peers
            .iter()
            .any(|p| matches!(p.endpoint, discovery::Endpoint::Tunnel(_))) =>
        {
            Some(temporary_node(home, config).await?)
        }
        None => None,
    };
    let initial = RunStats {
        sources,
        skipped_peers: skipped,
        ..Default::default()
    };
    let station = match (&args.local_relay, station) {
        (Some(url), _) => Station::External(url.clone()),
        (None, Some(station)) => station,
        (None, None) => local_station(home, config).await?,
    };
    let run = Run {
        args,
        node,
        rejected,
        peers,
        base,
        initial,
    };
    let outcome = match station {
        Station::Embedded(store) => run.sync_into(store, None).await,
        Station::External(url) => {
            let local = ExternalRelay::connect(&url, LOCAL_CONNECT_TIMEOUT)
                .await
                .with_context(|| format!("the local relay {url} is not reachable"))?;
            run.sync_into(local, args.station_import.clone()).await
        }
    };
    let mut stats = outcome.stats;
    if !args.dry_run {
        stats.run_id = history.record(&stats)?;
        history.remember_rejected(&outcome.rejected, stats.started_at)?;
    }
    Ok(stats)
}

/// How long the local relay may take to accept the connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Without a daemon: the relay answering at `[relay] listen` (strfry, or our own `relay`
/// command), else the embedded store opened here.
async fn local_station(home: &Home, config: &Config) -> anyhow::Result<Station> {
    let listen = config.relay.listen.clone();
    if super::local::probe(&listen).await {
        return Ok(Station::External(format!("ws://{listen}")));
    }
    let db = home.database();
    Ok(Station::Embedded(
        Store::open(&db, config.relay.event_limits())
            .with_context(|| format!("cannot open the event store {}", db.display()))?,
    ))
}

/// Everything a run needs besides the local side.
struct Run<'a> {
    args: &'a BackfillOptions,
    node: Option<Node>,
    rejected: std::collections::HashSet<nostr::prelude::EventId>,
    peers: Vec<Peer>,
    base: std::collections::BTreeSet<nostr::prelude::PublicKey>,
    initial: RunStats,
}

impl Run<'_> {
    /// Sync into `local`, through the import command when one is given, else through
    /// `station_import` (the station's strfry) when there is one.
    async fn sync_into<L: LocalStore>(
        self,
        local: L,
        station_import: Option<String>,
    ) -> crate::sync::RunOutcome {
        match self.args.import_command.clone().or(station_import) {
            Some(command) => self.sync(&CommandImport::new(local, command)).await,
            None => self.sync(&local).await,
        }
    }

    async fn sync<L: LocalStore>(self, local: &L) -> crate::sync::RunOutcome {
        let engine = Engine::new(self.args.sync_options(), local, self.node, self.rejected);
        let engine = if self.args.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            engine.with_progress(indicatif::ProgressBar::new(0))
        } else {
            engine
        };
        engine.run(self.peers, self.base, self.initial).await
    }
}

/// The run's peers: the `--peer`s, else the stations of the swarm folder (and what was skipped).
pub fn gather_peers(
    args: &BackfillOptions,
    zen: &Path,
    own: Option<&libp2p::PeerId>,
) -> anyhow::Result<(Vec<Peer>, Vec<String>)> {
    if !args.peers.is_empty() {
        let peers = args
            .peers
            .iter()
            .map(|p| discovery::parse_explicit_peer(p).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok((peers, Vec::new()));
    }
    let dir = args
        .swarm_dir
        .clone()
        .unwrap_or_else(|| zen.join("tmp/swarm"));
    let (peers, skipped) = discovery::scan_swarm(&dir, own);
    Ok((
        peers,
        skipped
            .into_iter()
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect(),
    ))
}

/// A node for one run, with the home's identity and swarm key, listening nowhere.
async fn temporary_node(home: &Home, config: &Config) -> anyhow::Result<Node> {
    let options = crate::node::options::node_options(home, config, None, None, Some(Vec::new()))?;
    let tracker = tokio_util::task::TaskTracker::new();
    let (node, _) = Node::start(
        options,
        tokio_util::sync::CancellationToken::new(),
        &tracker,
    )
    .await?;
    Ok(node)
}

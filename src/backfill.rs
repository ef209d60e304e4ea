//! `constellation backfill`: the flags users know from `backfill_constellation.sh`, the run lock,
//! and the glue that feeds discovery and author sources into the sync engine and records the run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::{Home, home_dir};
use crate::node::Node;
use crate::store::Store;
use crate::sync::authors::{self, AuthorSources};
use crate::sync::discovery::{self, Peer};
use crate::sync::history::History;
use crate::sync::local::{CommandImport, ExternalRelay, LocalStore, Station};
use crate::sync::stats::RunStats;
use crate::sync::{Engine, SyncOptions};

/// Exit code: the run finished but some peers failed.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit code: skipped (another run holds the lock, or the last run is too recent).
pub const EXIT_SKIPPED: u8 = 3;

/// Flags of `constellation backfill` (names of the original script kept).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct BackfillArgs {
    /// Days back to sync (0 = everything).
    #[arg(long, default_value_t = 1)]
    pub days: u64,
    /// Sync into this relay (strfry or any NIP-01 relay) instead of the station's local relay.
    #[arg(long, value_name = "URL")]
    pub local_relay: Option<String>,
    /// Store through this command, fed JSON lines on stdin, e.g. `strfry --config
    /// /etc/strfry.conf import` (run with `sh -c`); the local relay is asked afterwards which
    /// events it now holds, and only those count as imported.
    #[arg(long, value_name = "COMMAND")]
    #[serde(default)]
    pub import_command: Option<String>,
    /// Sync with this peer (PeerID, reached through its /x/strfry tunnel, or ws(s):// URL); repeatable.
    /// Without --peer, peers come from the swarm folder.
    #[arg(long = "peer", value_name = "PEERID|URL")]
    pub peers: Vec<String>,
    /// Folder of the stations' published files (`*/12345.json`). Default: ~/.zen/tmp/swarm.
    #[arg(long, value_name = "DIR")]
    pub swarm_dir: Option<PathBuf>,
    /// Astroport root for the author sources (game/nostr, strfry/amisOfAmis.txt, flashmem).
    #[arg(long, value_name = "DIR")]
    pub zen: Option<PathBuf>,
    /// Drop direct messages (kind 4).
    #[arg(long)]
    pub no_dms: bool,
    /// Verify ids and signatures (the default).
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,
    /// Do not verify signatures.
    #[arg(long)]
    pub no_verify: bool,
    /// Skip the search for missing profiles.
    #[arg(long)]
    pub no_profiles: bool,
    /// Fetch and count, but store and upload nothing.
    #[arg(long, alias = "DRYRUN")]
    pub dry_run: bool,
    /// Also print the local database's figures and the pubkeys per source.
    #[arg(long)]
    pub stats: bool,
    /// Print the author pubkeys.
    #[arg(long)]
    pub show_hex: bool,
    /// Print the run's stats as JSON.
    #[arg(long)]
    pub json: bool,
    /// Public relays asked for missing profiles (kind 0 only); repeatable.
    #[arg(long = "fallback-relay", value_name = "URL")]
    pub fallback_relays: Vec<String>,
    /// Seconds a silent relay is waited for.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout: u64,
    /// Peers synced at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Use REQ paging even with peers that speak NIP-77 (to compare, or to debug a peer).
    #[arg(long)]
    #[serde(default)]
    pub req_only: bool,
    /// Download only: do not upload to NIP-77 peers what they lack.
    #[arg(long)]
    #[serde(default)]
    pub no_upload: bool,
    /// Content that marks spam ("" disables the rule).
    #[arg(long, default_value = "Hello NOSTR visitor.")]
    pub spam: String,
}

impl BackfillArgs {
    fn zen(&self) -> PathBuf {
        self.zen.clone().unwrap_or_else(|| home_dir().join(".zen"))
    }

    fn options(&self) -> SyncOptions {
        SyncOptions {
            days: self.days,
            no_dms: self.no_dms,
            verify: !self.no_verify,
            profiles: !self.no_profiles,
            dry_run: self.dry_run,
            spam_phrase: Some(self.spam.clone()).filter(|s| !s.is_empty()),
            concurrency: self.concurrency.max(1),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            fallback_relays: self.fallback_relays.clone(),
            amis_out: Some(AuthorSources::astroport(&self.zen()).amis_file),
            req_only: self.req_only,
            upload: !self.no_upload,
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
        let path = home.root().join("backfill.lock");
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

/// Run a backfill: in the running daemon (its libp2p node) when there is one, else here.
pub fn run(home: &Home, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let Some(_lock) = RunLock::try_acquire(home)? else {
        eprintln!("skipped: a backfill is already running");
        return Ok(ExitCode::from(EXIT_SKIPPED));
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let stats = runtime.block_on(run_locked(home, &args))?;
    print(&args, &stats);
    Ok(match stats.status() {
        "OK" => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_PARTIAL),
    })
}

/// One run for a caller that holds the [`RunLock`]: in the running daemon (its node and local
/// relay) when there is one, else here.
pub async fn run_locked(home: &Home, args: &BackfillArgs) -> anyhow::Result<RunStats> {
    let socket = home.control_socket();
    if crate::control::is_running(&socket).await {
        let value = crate::control::call(
            &socket,
            &crate::control::Request::Backfill { args: args.clone() },
        )
        .await?;
        Ok(serde_json::from_value(value)?)
    } else {
        execute(home, args, None, None).await
    }
}

/// Backfill flags from a list of words (`[trigger] backfill` in config.toml, the demo).
pub fn parse_args<I, T>(words: I) -> anyhow::Result<BackfillArgs>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BackfillArgs,
    }
    let words = std::iter::once(std::ffi::OsString::from("backfill"))
        .chain(words.into_iter().map(Into::into));
    Ok(<Wrap as clap::Parser>::try_parse_from(words)?.args)
}

/// Discover, sync and record one run. `node` and `station` are the daemon's; without a node a
/// temporary one is started when a peer must be reached through its tunnel, and without a
/// station the local relay is found as the daemon would.
pub async fn execute(
    home: &Home,
    args: &BackfillArgs,
    node: Option<Node>,
    station: Option<Station>,
) -> anyhow::Result<RunStats> {
    let zen = args.zen();
    let own = node.as_ref().map(Node::peer_id);
    let (peers, skipped) = gather_peers(args, &zen, own.as_ref())?;
    let peer_keys: Vec<String> = peers.iter().flat_map(|p| p.pubkeys.clone()).collect();
    let (base, sources) = authors::collect(&AuthorSources::astroport(&zen), &peer_keys);
    if args.show_hex {
        for a in &base {
            eprintln!("{a}");
        }
    }
    let mut history = History::open(&home.root().join("history.sqlite"))?;
    let rejected = history.rejected_ids().unwrap_or_default();
    let node = match node {
        Some(n) => Some(n),
        None if peers
            .iter()
            .any(|p| matches!(p.endpoint, discovery::Endpoint::Tunnel(_))) =>
        {
            Some(temporary_node(home).await?)
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
        (None, None) => local_station(home).await?,
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
        Station::Embedded(store) => run.sync_into(store).await,
        Station::External(url) => {
            let local = ExternalRelay::connect(&url, LOCAL_CONNECT_TIMEOUT)
                .await
                .with_context(|| format!("the local relay {url} is not reachable"))?;
            run.sync_into(local).await
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
async fn local_station(home: &Home) -> anyhow::Result<Station> {
    let config = crate::config::Config::load(&home.config_file())?;
    let listen = config.relay.listen.clone();
    if crate::relay::probe(&listen).await {
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
    args: &'a BackfillArgs,
    node: Option<Node>,
    rejected: std::collections::HashSet<String>,
    peers: Vec<Peer>,
    base: std::collections::BTreeSet<String>,
    initial: RunStats,
}

impl Run<'_> {
    /// Sync into `local`, through the import command when one is given.
    async fn sync_into<L: LocalStore>(self, local: L) -> crate::sync::RunOutcome {
        match self.args.import_command.clone() {
            Some(command) => self.sync(&CommandImport::new(local, command)).await,
            None => self.sync(&local).await,
        }
    }

    async fn sync<L: LocalStore>(self, local: &L) -> crate::sync::RunOutcome {
        let engine = Engine::new(self.args.options(), local, self.node, self.rejected);
        let engine = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !self.args.json {
            engine.with_progress(indicatif::ProgressBar::new(0))
        } else {
            engine
        };
        engine.run(self.peers, self.base, self.initial).await
    }
}

fn gather_peers(
    args: &BackfillArgs,
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
async fn temporary_node(home: &Home) -> anyhow::Result<Node> {
    let config = crate::config::Config::load(&home.config_file())?;
    let options = crate::daemon::node_options(home, &config, None, None, Vec::new())?;
    let tracker = tokio_util::task::TaskTracker::new();
    let (node, _) = Node::start(
        options,
        tokio_util::sync::CancellationToken::new(),
        &tracker,
    )
    .await?;
    Ok(node)
}

fn print(args: &BackfillArgs, stats: &RunStats) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(stats).unwrap_or_default()
        );
        return;
    }
    println!(
        "{} — run {} in {:.1} s{}",
        stats.status(),
        stats.run_id,
        stats.duration_ms as f64 / 1000.0,
        if stats.dry_run { " (dry run)" } else { "" }
    );
    println!(
        "peers: {} contacted, {} ok, {} failed",
        stats.peers_contacted, stats.peers_ok, stats.peers_failed
    );
    println!(
        "events: {} collected, {} imported, {} duplicate, {} rejected, {} uploaded",
        stats.collected,
        stats.imported,
        stats.duplicate,
        stats.rejected.values().sum::<u64>(),
        stats.uploaded
    );
    println!(
        "authors: {} ({} discovered by N²), {} unique pubkeys imported, profiles {} found / {} missing",
        stats.authors,
        stats.discovered,
        stats.unique_pubkeys,
        stats.profiles_found,
        stats.profiles_missing
    );
    for p in &stats.peers {
        let state = p
            .error
            .as_deref()
            .map_or("ok".to_string(), |e| format!("FAILED: {e}"));
        println!(
            "  {} [{}] in {} out {} — {}",
            p.name, p.mode, p.events_in, p.events_out, state
        );
    }
    if args.stats {
        println!("sources: {:?}", stats.sources);
        println!("kinds: {:?}", stats.kinds);
        println!("rejected: {:?}", stats.rejected);
        println!(
            "bytes: {} in, {} out, {} round trips",
            stats.bytes_in, stats.bytes_out, stats.round_trips
        );
    }
}

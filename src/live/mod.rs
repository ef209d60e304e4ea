//! Live propagation (issue 20): one link per station of the swarm map (or explicit peer), which
//! pulls its new events by a subscription with the sync's filter and pushes ours to plain
//! relays; the hourly backfill stays the repair pass. The rule is in `protocols/live.md`.

mod link;
mod local;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nostr::prelude::{Filter, MatchEventOptions, PublicKey};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use state::{LinkState, LinkStatus, Registry, Remote};

use crate::config::LiveConfig;
use crate::node::Node;
use crate::sync::authors::{self, AuthorSources};
use crate::sync::backfill::{BackfillOptions, gather_peers};
use crate::sync::discovery::{Endpoint, Peer};
use crate::sync::local::Station;
use link::{LinkTask, Shared};

/// Authors per filter, as the sync's (a 128 KiB frame holds ~1,900 keys; stay well below).
const AUTHOR_CHUNK: usize = 250;

/// What the live links are started with.
pub struct Setup {
    pub node: Node,
    pub station: Station,
    pub config: LiveConfig,
    /// The scheduled backfill's options: its `--peer`s, zen, swarm folder, `--no-dms`, spam.
    pub backfill: BackfillOptions,
    /// The sync history, whose last run repairs what the links owe.
    pub history: PathBuf,
}

/// Start the links' supervisor (tracked, stopped by `stop`); `registry` is the one whose
/// fan-out the relay asks.
pub fn start(
    setup: Setup,
    registry: Arc<Registry>,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    let spam = Some(setup.backfill.spam.clone()).filter(|s| !s.is_empty());
    let shared = Arc::new(Shared {
        node: setup.node,
        local: local::Local::new(setup.station),
        registry,
        config: setup.config,
        spam,
    });
    let supervisor = Supervisor {
        shared,
        backfill: setup.backfill,
        history: setup.history,
        tracker: tracker.clone(),
        running: BTreeMap::new(),
    };
    tracker.spawn(supervisor.run(stop));
}

/// Owns the set of link tasks: adds and removes them as the peers change, refreshes the
/// filter as the authors change, and clears what a reconciliation repaired.
struct Supervisor {
    shared: Arc<Shared>,
    backfill: BackfillOptions,
    history: PathBuf,
    tracker: TaskTracker,
    /// Running links by name, with the token that stops each.
    running: BTreeMap<String, CancellationToken>,
}

impl Supervisor {
    async fn run(mut self, stop: CancellationToken) {
        let (peers, base) = self.discover();
        let (filters_tx, filters) = watch::channel(live_filters(&base, self.backfill.no_dms));
        self.tracker
            .spawn(dispatch(self.shared.clone(), filters.clone(), stop.clone()));
        let shared = self.shared.clone();
        let feed_filters = filters.clone();
        let feed_stop = stop.clone();
        self.tracker
            .spawn(async move { shared.local.run_feed(feed_filters, feed_stop).await });
        self.reconcile_links(peers, &filters, &stop);
        let every = Duration::from_secs(self.shared.config.refresh_secs.max(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            let (peers, base) = self.discover();
            let next = live_filters(&base, self.backfill.no_dms);
            filters_tx.send_if_modified(|f| {
                let changed = *f != next;
                if changed {
                    *f = next;
                }
                changed
            });
            self.reconcile_links(peers, &filters, &stop);
            self.repaired().await;
        }
        for token in self.running.values() {
            token.cancel();
        }
    }

    /// The links' peers, and the base authors with the last N² (the backfill's file).
    fn discover(&self) -> (Vec<Peer>, BTreeSet<PublicKey>) {
        let mut options = self.backfill.clone();
        options
            .peers
            .extend(self.shared.config.peers.iter().cloned());
        let own = self.shared.node.peer_id();
        let peers = match gather_peers(&options, &options.zen_root(), Some(&own)) {
            Ok((peers, _)) => peers,
            Err(e) => {
                tracing::warn!("live links: {e}");
                Vec::new()
            }
        };
        let keys: Vec<PublicKey> = peers.iter().flat_map(|p| p.pubkeys.clone()).collect();
        let (base, _) = authors::collect(&AuthorSources::astroport(&options.zen_root()), &keys);
        (peers, base)
    }

    /// Start a task for each new peer, stop those of peers that are gone.
    fn reconcile_links(
        &mut self,
        peers: Vec<Peer>,
        filters: &watch::Receiver<Vec<Filter>>,
        stop: &CancellationToken,
    ) {
        let own = self.shared.node.peer_id();
        let wanted: BTreeSet<String> = peers.iter().map(|p| p.name.clone()).collect();
        self.running.retain(|name, token| {
            let keep = wanted.contains(name);
            if !keep {
                token.cancel();
                self.shared.registry.remove(name);
            }
            keep
        });
        for peer in peers {
            let peer_id = match &peer.endpoint {
                Endpoint::Tunnel(id) => Some(*id),
                Endpoint::Url(_) => peer.name.parse().ok(),
            };
            if self.running.contains_key(&peer.name) || peer_id == Some(own) {
                continue;
            }
            let (tx, queue) = mpsc::channel(self.shared.config.queue.max(1));
            let link = Arc::new(state::Link::new(
                peer.name.clone(),
                peer.endpoint.to_string(),
                peer_id,
                tx,
            ));
            self.shared.registry.add(link.clone());
            let token = stop.child_token();
            self.running.insert(peer.name.clone(), token.clone());
            let task = LinkTask {
                peer,
                link,
                shared: self.shared.clone(),
                filters: filters.clone(),
                queue,
            };
            self.tracker.spawn(task.run(token));
        }
    }

    /// Links that owe events are square again once a backfill ran after they began to owe.
    async fn repaired(&self) {
        let path = self.history.clone();
        let last = tokio::task::spawn_blocking(move || {
            crate::sync::history::History::open(&path)
                .ok()
                .and_then(|h| h.last_run_at().ok().flatten())
        })
        .await
        .ok()
        .flatten();
        if let Some(at) = last {
            for link in self.shared.registry.all() {
                link.reconciled(at);
            }
        }
    }
}

/// The sync's filters (kinds, N² authors, station kinds), without `since`: each subscription
/// adds its own.
fn live_filters(authors: &BTreeSet<PublicKey>, no_dms: bool) -> Vec<Filter> {
    crate::sync::sync_filters(
        authors,
        &crate::sync::sync_kinds(no_dms),
        AUTHOR_CHUNK,
        None,
    )
}

/// Hand each event newly stored here, if it matches, to the queue of every plain-relay link
/// except the one it came from. Constellation stations pull it themselves.
async fn dispatch(
    shared: Arc<Shared>,
    filters: watch::Receiver<Vec<Filter>>,
    stop: CancellationToken,
) {
    if !shared.config.dir.pushes() {
        return;
    }
    let mut feed = shared.local.subscribe();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = feed.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "live links fell behind the local relay; they catch up at the next reconciliation"
                );
                for link in shared.registry.all() {
                    if link.remote() == Remote::Relay {
                        link.owe();
                    }
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let matches = filters
            .borrow()
            .iter()
            .any(|f| f.match_event(&event, MatchEventOptions::default()));
        if !matches {
            continue;
        }
        let source = shared.registry.source(&event.id);
        for link in shared.registry.all() {
            if link.remote() == Remote::Relay && source.as_deref() != Some(link.name.as_str()) {
                link.offer(&event);
            }
        }
    }
}

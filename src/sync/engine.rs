//! One run of the sync: the peers' sessions reconciled a few at a time (NIP-77 both ways, else
//! REQ paging), then the push pass; the N² rounds, the profiles and the accounting are beside it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use futures::StreamExt;
use nostr::prelude::{EventId, Filter, Kind, PublicKey, Timestamp};

use super::authors;
use super::discovery::Peer;
use super::error::{NegOutcome, SyncError};
use super::kinds;
use super::local::{self, LocalError, LocalStore};
use super::options::SyncOptions;
use super::refusal::Refusal;
use super::session::{Reach, Session};
use super::stats::RunStats;
use crate::node::Node;

/// What the run remembers of a stored event: kind, author, ids it reposts or reacts to.
pub(super) type Stored = (u16, PublicKey, Vec<String>);
/// A NIP-77 item set: `(created_at, id)` of the events a filter matches.
type Items = Vec<(Timestamp, EventId)>;

/// One run of the engine.
pub struct Engine<'a, L: LocalStore> {
    pub(super) options: SyncOptions,
    pub(super) local: &'a L,
    pub(super) node: Option<Node>,
    pub(super) rejected_cache: HashSet<EventId>,
    /// Events stored during the run (id → (kind, author, referenced ids for reposts/reactions)).
    pub(super) stored: Mutex<HashMap<EventId, Stored>>,
    pub(super) newly_rejected: Mutex<Vec<(EventId, Refusal)>>,
    /// Ids being downloaded by some peer's session (NIP-77 `need`), so others skip them.
    pub(super) claimed: Mutex<HashSet<EventId>>,
    /// Ids imported during the run, in order (the push pass sends a peer what came after it).
    pub(super) imported_log: Mutex<Vec<EventId>>,
    /// The local NIP-77 item set of each filter, read once per run (an external local relay is
    /// read by REQ paging: once, not once per peer) and kept up to date with the run's imports.
    pub(super) local_items: Mutex<Vec<(Filter, Items)>>,
    /// Held while an item set is read, so that concurrent sessions wait for one read.
    pub(super) items_loading: tokio::sync::Mutex<()>,
    pub(super) progress: Option<indicatif::ProgressBar>,
}

/// The outcome: stats, plus the rejected ids to remember.
pub struct RunOutcome {
    pub stats: RunStats,
    pub rejected: Vec<(EventId, Refusal)>,
}

impl<'a, L: LocalStore> Engine<'a, L> {
    pub fn new(
        options: SyncOptions,
        local: &'a L,
        node: Option<Node>,
        rejected_cache: HashSet<EventId>,
    ) -> Self {
        Engine {
            options,
            local,
            node,
            rejected_cache,
            stored: Mutex::default(),
            newly_rejected: Mutex::default(),
            claimed: Mutex::default(),
            imported_log: Mutex::default(),
            local_items: Mutex::default(),
            items_loading: tokio::sync::Mutex::new(()),
            progress: None,
        }
    }

    /// Show a progress bar (for a TTY).
    pub fn with_progress(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Some(bar);
        self
    }

    /// One filter of `kind` per chunk of `authors` ([`SyncOptions::author_chunk`] keys each).
    pub(super) fn author_filters<'k>(
        &self,
        authors: impl IntoIterator<Item = &'k PublicKey>,
        kind: Kind,
    ) -> Vec<Filter> {
        let keys: Vec<PublicKey> = authors.into_iter().copied().collect();
        keys.chunks(self.options.author_chunk.max(1))
            .map(|c| Filter::new().authors(c.to_vec()).kind(kind))
            .collect()
    }

    /// What a peer's session needs of the run.
    fn reach(&self) -> Reach<'_> {
        Reach {
            options: &self.options,
            node: self.node.as_ref(),
        }
    }

    fn since(&self) -> Option<Timestamp> {
        (self.options.days > 0).then(|| {
            Timestamp::from(
                Timestamp::now()
                    .as_secs()
                    .saturating_sub(self.options.days * 86_400),
            )
        })
    }

    pub(super) fn sync_kinds(&self) -> Vec<Kind> {
        sync_kinds(self.options.no_dms)
    }

    /// Run against `peers` with the base `authors`.
    pub async fn run(
        &self,
        peers: Vec<Peer>,
        base: BTreeSet<PublicKey>,
        mut stats: RunStats,
    ) -> RunOutcome {
        let started = Instant::now();
        stats.started_at = Timestamp::now().as_secs();
        stats.days = self.options.days;
        stats.dry_run = self.options.dry_run;
        let mut sessions: Vec<Session> = peers.into_iter().map(Session::new).collect();
        if let Some(bar) = &self.progress {
            bar.set_length(sessions.len() as u64 * 3);
        }

        // N²: contact lists of the authors give friends, theirs give friends of friends.
        let mut authors = base.clone();
        if !base.is_empty() {
            let friends = self.expand_round(&mut sessions, &mut authors, &base).await;
            self.expand_round(&mut sessions, &mut authors, &friends)
                .await;
        }
        stats.authors = authors.len() as u64;
        stats.discovered = authors.difference(&base).count() as u64;
        if let (Some(path), false) = (
            &self.options.amis_out,
            self.options.dry_run || authors.is_empty(),
        ) && let Err(e) = authors::write_atomically(path, &authors)
        {
            {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        }

        // Reconcile every peer, then push once more what later peers brought.
        let filters = self.filters(&authors);
        self.for_each_session(&mut sessions, Phase::Reconcile(&filters))
            .await;
        if self.options.upload
            && !self.options.dry_run
            && sessions.iter().any(|s| s.nip77 == Some(true) && s.alive())
        {
            self.for_each_session(&mut sessions, Phase::Push).await;
        }
        if self.options.profiles && !authors.is_empty() {
            let (found, missing) = self.profiles(&mut sessions, &authors).await;
            stats.profiles_found = found;
            stats.profiles_missing = missing;
        }
        for session in sessions {
            stats.duplicate += session.duplicate;
            for (reason, n) in &session.rejected {
                stats.reject(reason, *n);
            }
            stats.peers.push(session.finish().await);
        }
        self.finish(&mut stats, started);
        let rejected = std::mem::take(
            &mut *self
                .newly_rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        RunOutcome { stats, rejected }
    }

    /// Run `work` on each live session, at most `concurrency` at once; a failure marks that peer.
    pub(super) async fn for_each_session<'s>(
        &self,
        sessions: impl IntoIterator<Item = &'s mut Session>,
        phase: Phase<'_>,
    ) {
        let live: Vec<&mut Session> = sessions.into_iter().filter(Session::is_alive).collect();
        futures::stream::iter(live)
            .for_each_concurrent(self.options.concurrency.max(1), |session| {
                let phase = &phase;
                async move {
                    let result = match phase {
                        Phase::Fetch(filters) => self.fetch_into_store(session, filters).await,
                        Phase::Reconcile(filters) => {
                            self.reconcile_peer(session, filters, self.options.upload)
                                .await
                        }
                        Phase::Push => self.push_peer(session).await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(peer = %session.peer.name, "sync failed: {e}");
                        session.fail(&e);
                    }
                    if let Some(bar) = &self.progress {
                        bar.inc(1);
                    }
                }
            })
            .await;
    }

    /// Filters of the main reconciliation: author chunks (or everything), plus station kinds.
    fn filters(&self, authors: &BTreeSet<PublicKey>) -> Vec<Filter> {
        sync_filters(
            authors,
            &self.sync_kinds(),
            self.options.author_chunk,
            self.since(),
        )
    }

    /// REQ `filters` from a peer and store the results (contact lists, profiles).
    pub(super) async fn fetch_into_store(
        &self,
        session: &mut Session,
        filters: &[Filter],
    ) -> Result<(), SyncError> {
        for filter in filters {
            let events = session.fetch_all(&self.reach(), filter).await?;
            if self.options.dry_run {
                session.contact_lists.extend(
                    events
                        .iter()
                        .filter(|e| e.kind == Kind::ContactList)
                        .cloned(),
                );
            }
            self.store(session, events).await?;
        }
        Ok(())
    }

    /// The main reconciliation with one peer.
    async fn reconcile_peer(
        &self,
        session: &mut Session,
        filters: &[Filter],
        upload: bool,
    ) -> Result<(), SyncError> {
        if self.options.req_only {
            session.nip77 = Some(false);
        }
        session.push_from = self
            .imported_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        for filter in filters {
            if session.nip77 != Some(false) {
                match self.negentropy(session, filter, upload).await {
                    Ok(()) => {
                        session.nip77 = Some(true);
                        continue;
                    }
                    Err(NegOutcome::Unsupported(reason)) => {
                        tracing::info!(peer = %session.peer.name, "NIP-77 unavailable ({reason}); using REQ paging");
                        session.nip77 = Some(false);
                    }
                    Err(NegOutcome::Failed(e)) => return Err(e),
                }
            }
            let events = session.fetch_all(&self.reach(), filter).await?;
            self.store(session, events).await?;
        }
        Ok(())
    }

    /// Second pass for NIP-77 peers: upload what other peers brought after this peer's
    /// reconciliation began and the peer is not known to hold. No second reconciliation: the
    /// candidates are exactly the run's later imports (a duplicate costs one `OK`).
    async fn push_peer(&self, session: &mut Session) -> Result<(), SyncError> {
        if session.nip77 != Some(true) {
            return Ok(());
        }
        let candidates: Vec<EventId> = {
            let log = self.imported_log.lock().unwrap_or_else(|e| e.into_inner());
            log.get(session.push_from..)
                .unwrap_or_default()
                .iter()
                .filter(|id| !session.peer_has.contains(id))
                .copied()
                .collect()
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let events = self.local.events(&candidates).await?;
        session.publish(&self.reach(), &events).await?;
        session.peer_has.extend(candidates);
        Ok(())
    }

    async fn negentropy(
        &self,
        session: &mut Session,
        filter: &Filter,
        upload: bool,
    ) -> Result<(), NegOutcome> {
        let items = self.items(filter).await?;
        let rec = session.reconcile(&self.reach(), filter, &items).await?;
        session.peer_has.extend(rec.need.iter().copied());
        // Ids another peer's session already fetches are not downloaded twice; a failed fetch
        // gives its ids back for the others.
        let need: Vec<EventId> = {
            let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
            rec.need
                .into_iter()
                .filter(|id| !self.rejected_cache.contains(id))
                .filter(|id| claimed.insert(*id))
                .collect()
        };
        for (i, chunk) in need.chunks(local::IDS_PER_FILTER).enumerate() {
            let filter = Filter::new().ids(chunk.iter().copied()).limit(chunk.len());
            let events = match session.query(&self.reach(), filter).await {
                Ok(events) => events,
                Err(e) => {
                    let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
                    for id in &need[i * local::IDS_PER_FILTER..] {
                        claimed.remove(id);
                    }
                    return Err(e.into());
                }
            };
            self.store(session, events).await?;
        }
        if upload && !self.options.dry_run && !rec.have.is_empty() {
            let events = self.local.events(&rec.have).await?;
            session.publish(&self.reach(), &events).await?;
            session.peer_has.extend(rec.have.iter().copied());
        }
        Ok(())
    }

    /// The local item set of `filter`: read on first use, then kept with the run's imports.
    async fn items(&self, filter: &Filter) -> Result<Items, LocalError> {
        let cached = |engine: &Self| {
            engine
                .local_items
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(f, _)| f == filter)
                .map(|(_, items)| items.clone())
        };
        if let Some(items) = cached(self) {
            return Ok(items);
        }
        let _loading = self.items_loading.lock().await;
        if let Some(items) = cached(self) {
            return Ok(items);
        }
        // An import committed while this read runs may be missed by it: negentropy then sees
        // the event as lacking, but its id is claimed (no second download) and the push pass
        // still offers it to the peers.
        let items = self.local.items(filter).await?;
        self.local_items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((filter.clone(), items.clone()));
        Ok(items)
    }
}

/// The kinds the constellation carries (without DMs when `no_dms`).
pub fn sync_kinds(no_dms: bool) -> Vec<Kind> {
    kinds::SYNC_KINDS
        .iter()
        .filter(|k| !(no_dms && **k == kinds::DM_KIND))
        .map(|k| Kind::from(*k))
        .collect()
}

/// The sync's filters over `authors`: one per chunk of `author_chunk` keys (or one for
/// everybody when there are none), plus the station kinds from anyone; the live links
/// subscribe with the same ones.
pub fn sync_filters(
    authors: &BTreeSet<PublicKey>,
    kinds: &[Kind],
    author_chunk: usize,
    since: Option<Timestamp>,
) -> Vec<Filter> {
    let with_since = |f: Filter| match since {
        Some(s) => f.since(s),
        None => f,
    };
    let keys: Vec<PublicKey> = authors.iter().copied().collect();
    if keys.is_empty() {
        return vec![with_since(Filter::new().kinds(kinds.to_vec()))];
    }
    let mut filters: Vec<Filter> = keys
        .chunks(author_chunk.max(1))
        .map(|c| with_since(Filter::new().authors(c.to_vec()).kinds(kinds.to_vec())))
        .collect();
    filters.push(with_since(
        Filter::new().kinds(kinds::STATION_KINDS.iter().map(|k| Kind::from(*k))),
    ));
    filters
}

/// What [`Engine::for_each_session`] does with each peer.
pub(super) enum Phase<'f> {
    /// REQ these filters and store the results (contact lists, profiles).
    Fetch(&'f [Filter]),
    /// Reconcile: NIP-77 both ways, or REQ paging.
    Reconcile(&'f [Filter]),
    /// Upload what arrived after a NIP-77 peer's reconciliation.
    Push,
}

//! The constellation sync (backfill): discover peers, expand authors to friends of friends (N²),
//! reconcile every peer (NIP-77 both ways, else complete REQ paging), filter, store, count.

pub mod authors;
pub mod backfill;
pub mod discovery;
mod error;
pub mod history;
pub mod kinds;
pub mod local;
pub mod refusal;
pub mod relay_client;
mod session;
pub mod stats;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nostr::prelude::{Event, EventId, Filter, Kind, MatchEventOptions, PublicKey, Timestamp};

use crate::node::Node;
use crate::store::rules::{self, EventLimits, Rejection};
use discovery::Peer;
use error::NegOutcome;
pub use error::SyncError;
use local::{ImportCounts, LocalError, LocalStore};
use refusal::Refusal;
use session::Session;
use stats::{PeerStats, RunStats};

/// What a run does; the CLI flags map onto this.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Window in days (`0` = everything).
    pub days: u64,
    pub no_dms: bool,
    pub verify: bool,
    pub profiles: bool,
    pub dry_run: bool,
    /// Events whose content contains this are spam (`Hello NOSTR visitor.` by default).
    pub spam_phrase: Option<String>,
    /// Peers reconciled at the same time.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// A relay silent this long (no EOSE, no NEG-MSG) is given up.
    pub idle_timeout: Duration,
    /// Reconnections per peer after a failure, with exponential backoff.
    pub retries: u32,
    /// Public relays asked for missing profiles (kind 0) after the peers.
    pub fallback_relays: Vec<String>,
    /// Events per REQ page (relays cap at 500).
    pub page: usize,
    /// Authors per filter (128 KiB frames hold ~1,900 keys; stay well below).
    pub author_chunk: usize,
    /// Where to write the N² author set (`amisOfAmis.txt`), unless dry-run.
    pub amis_out: Option<PathBuf>,
    /// REQ paging even with peers that speak NIP-77 (comparisons, debugging).
    pub req_only: bool,
    /// Upload to NIP-77 peers what they lack (off: download only).
    pub upload: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            days: 1,
            no_dms: false,
            verify: true,
            profiles: true,
            dry_run: false,
            spam_phrase: Some("Hello NOSTR visitor.".into()),
            concurrency: 4,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retries: 2,
            fallback_relays: Vec::new(),
            page: 500,
            author_chunk: 250,
            amis_out: None,
            req_only: false,
            upload: true,
        }
    }
}

/// Events per import batch: one transaction each.
const IMPORT_BATCH: usize = 2_000;
/// Entries of the "viral content" list.
const VIRAL_TOP: usize = 10;

/// What the run remembers of a stored event: kind, author, ids it reposts or reacts to.
type Stored = (u16, PublicKey, Vec<String>);
/// A NIP-77 item set: `(created_at, id)` of the events a filter matches.
type Items = Vec<(Timestamp, EventId)>;

/// One run of the engine.
pub struct Engine<'a, L: LocalStore> {
    options: SyncOptions,
    local: &'a L,
    node: Option<Node>,
    rejected_cache: HashSet<EventId>,
    /// Events stored during the run (id → (kind, author, referenced ids for reposts/reactions)).
    stored: Mutex<HashMap<EventId, Stored>>,
    newly_rejected: Mutex<Vec<(EventId, Refusal)>>,
    /// Ids being downloaded by some peer's session (NIP-77 `need`), so others skip them.
    claimed: Mutex<HashSet<EventId>>,
    /// Ids imported during the run, in order (the push pass sends a peer what came after it).
    imported_log: Mutex<Vec<EventId>>,
    /// The local NIP-77 item set of each filter, read once per run (an external local relay is
    /// read by REQ paging: once, not once per peer) and kept up to date with the run's imports.
    local_items: Mutex<Vec<(Filter, Items)>>,
    /// Held while an item set is read, so that concurrent sessions wait for one read.
    items_loading: tokio::sync::Mutex<()>,
    progress: Option<indicatif::ProgressBar>,
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

    fn since(&self) -> Option<Timestamp> {
        (self.options.days > 0).then(|| {
            Timestamp::from(
                Timestamp::now()
                    .as_secs()
                    .saturating_sub(self.options.days * 86_400),
            )
        })
    }

    fn sync_kinds(&self) -> Vec<Kind> {
        kinds::SYNC_KINDS
            .iter()
            .filter(|k| !(self.options.no_dms && **k == kinds::DM_KIND))
            .map(|k| Kind::from(*k))
            .collect()
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
    async fn for_each_session(&self, sessions: &mut [Session], phase: Phase<'_>) {
        futures::stream::iter(sessions.iter_mut().filter(|s| s.alive()))
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
        let kinds = self.sync_kinds();
        let since = self.since();
        let with_since = |f: Filter| match since {
            Some(s) => f.since(s),
            None => f,
        };
        let keys: Vec<PublicKey> = authors.iter().copied().collect();
        let mut filters: Vec<Filter> = if keys.is_empty() {
            vec![with_since(Filter::new().kinds(kinds))]
        } else {
            keys.chunks(self.options.author_chunk.max(1))
                .map(|c| with_since(Filter::new().authors(c.to_vec()).kinds(kinds.clone())))
                .collect()
        };
        if !keys.is_empty() {
            filters.push(with_since(
                Filter::new().kinds(kinds::STATION_KINDS.iter().map(|k| Kind::from(*k))),
            ));
        }
        filters
    }

    /// One N² step: fetch contact lists of `of` from every peer (and locally); add their follows.
    async fn expand_round(
        &self,
        sessions: &mut [Session],
        authors: &mut BTreeSet<PublicKey>,
        of: &BTreeSet<PublicKey>,
    ) -> BTreeSet<PublicKey> {
        let keys: Vec<PublicKey> = of.iter().copied().collect();
        let filters: Vec<Filter> = keys
            .chunks(self.options.author_chunk.max(1))
            .map(|c| Filter::new().authors(c.to_vec()).kind(Kind::ContactList))
            .collect();
        self.for_each_session(sessions, Phase::Fetch(&filters))
            .await;
        let mut lists = Vec::new();
        for f in &filters {
            match self.local.query(f.clone()).await {
                Ok(events) => lists.extend(events),
                Err(e) => tracing::warn!("cannot read local contact lists: {e}"),
            }
        }
        // In a dry run nothing was stored: use what the peers sent.
        lists.extend(
            sessions
                .iter_mut()
                .flat_map(|s| std::mem::take(&mut s.contact_lists)),
        );
        authors::expand(authors, of, &authors::follows(&lists))
    }

    /// REQ `filters` from a peer and store the results (contact lists, profiles).
    async fn fetch_into_store(
        &self,
        session: &mut Session,
        filters: &[Filter],
    ) -> Result<(), SyncError> {
        for filter in filters {
            let events = session.fetch_all(self, filter).await?;
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
            let events = session.fetch_all(self, filter).await?;
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
        session.publish(self, &events).await?;
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
        let rec = session.reconcile(self, filter, &items).await?;
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
            let events = match session.query(self, filter).await {
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
            session.publish(self, &events).await?;
            session.peer_has.extend(rec.have.iter().copied());
        }
        Ok(())
    }

    /// Screen events from a peer, then import the survivors in batches.
    async fn store(&self, session: &mut Session, events: Vec<Event>) -> Result<(), SyncError> {
        session.stats.events_in += events.len() as u64;
        let kept = self.screen(session, events);
        if self.options.dry_run {
            return Ok(());
        }
        for batch in kept.chunks(IMPORT_BATCH) {
            let counts = self.local.import(batch.to_vec()).await?;
            self.account(session, batch, counts);
        }
        Ok(())
    }

    /// The store's own rules (strfry's limits; id and signature unless the local side checks
    /// them itself), so that a peer's event is judged here as the relay would judge it.
    fn check(&self, event: &Event) -> Result<(), Rejection> {
        let serialized = serde_json::to_string(event).map_or(usize::MAX, |s| s.len());
        rules::check_limits(event, serialized, &EventLimits::default())?;
        if self.options.verify && !self.local.verifies() {
            // The history has always counted a forged event (id or signature) under one key.
            rules::check_signature(event).map_err(|_| Rejection::InvalidSignature)?;
        }
        Ok(())
    }

    fn screen(&self, session: &mut Session, events: Vec<Event>) -> Vec<Event> {
        let mut kept = Vec::with_capacity(events.len());
        let mut rejected = Vec::new();
        for event in events {
            if self.rejected_cache.contains(&event.id) {
                continue;
            }
            let reason = if self.options.no_dms && event.kind.as_u16() == kinds::DM_KIND {
                session.reject(&Refusal::NoDms);
                continue;
            } else if self
                .options
                .spam_phrase
                .as_deref()
                .is_some_and(|p| !p.is_empty() && event.content.contains(p))
            {
                Refusal::Spam
            } else if let Err(refused) = self.check(&event) {
                Refusal::Rule(refused)
            } else {
                kept.push(event);
                continue;
            };
            session.reject(&reason);
            rejected.push((event.id, reason));
        }
        self.newly_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(rejected);
        kept
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

    /// Record what the store acknowledged.
    fn account(&self, session: &mut Session, batch: &[Event], counts: ImportCounts) {
        session.stats.imported += counts.imported;
        session.duplicate += counts.duplicate;
        for (reason, n) in &counts.rejected {
            session.reject_n(reason, *n);
        }
        self.newly_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(counts.rejected_ids.iter().cloned());
        self.imported_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(counts.accepted.iter().copied());
        let accepted: HashSet<&EventId> = counts.accepted.iter().collect();
        let mut sets = self.local_items.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        for event in batch.iter().filter(|e| accepted.contains(&e.id)) {
            for (filter, items) in sets.iter_mut() {
                if filter.match_event(event, MatchEventOptions::default()) {
                    items.push((event.created_at, event.id));
                }
            }
            let refs = if matches!(event.kind.as_u16(), 6 | 7) {
                event
                    .tags
                    .iter()
                    .filter(|t| t.kind() == "e")
                    .filter_map(|t| t.content().map(str::to_owned))
                    .collect()
            } else {
                Vec::new()
            };
            stored.insert(event.id, (event.kind.as_u16(), event.pubkey, refs));
        }
    }

    /// Profiles (kind 0) of authors that have none locally: all peers, then fallback relays.
    async fn profiles(
        &self,
        sessions: &mut [Session],
        authors: &BTreeSet<PublicKey>,
    ) -> (u64, u64) {
        let missing = self.missing_profiles(authors).await;
        if missing.is_empty() {
            return (0, 0);
        }
        let filters: Vec<Filter> = missing
            .chunks(self.options.author_chunk.max(1))
            .map(|c| Filter::new().authors(c.to_vec()).kind(Kind::Metadata))
            .collect();
        self.for_each_session(sessions, Phase::Fetch(&filters))
            .await;
        let mut still = self.missing_profiles(authors).await;
        for url in &self.options.fallback_relays {
            if still.is_empty() {
                break;
            }
            let mut fallback = Session::new(Peer {
                name: url.clone(),
                endpoint: discovery::Endpoint::Url(url.clone()),
                pubkeys: vec![],
                hostname: None,
            });
            let filters: Vec<Filter> = still
                .chunks(self.options.author_chunk.max(1))
                .map(|c| Filter::new().authors(c.to_vec()).kind(Kind::Metadata))
                .collect();
            if let Err(e) = self.fetch_into_store(&mut fallback, &filters).await {
                tracing::warn!(relay = %url, "profile fallback failed: {e}");
            }
            fallback.finish().await;
            still = self.missing_profiles(authors).await;
        }
        ((missing.len() - still.len()) as u64, still.len() as u64)
    }

    async fn missing_profiles(&self, authors: &BTreeSet<PublicKey>) -> Vec<PublicKey> {
        let keys: Vec<PublicKey> = authors.iter().copied().collect();
        let mut have = HashSet::new();
        for chunk in keys.chunks(self.options.author_chunk.max(1)) {
            if let Ok(events) = self
                .local
                .query(Filter::new().authors(chunk.to_vec()).kind(Kind::Metadata))
                .await
            {
                have.extend(events.into_iter().map(|e| e.pubkey));
            }
        }
        keys.into_iter().filter(|k| !have.contains(k)).collect()
    }

    /// Totals over peers and stored events.
    fn finish(&self, stats: &mut RunStats, started: Instant) {
        stats.duration_ms = started.elapsed().as_millis() as u64;
        stats.peers_contacted = stats.peers.len() as u64;
        stats.peers_ok = stats.peers.iter().filter(|p| p.ok).count() as u64;
        stats.peers_failed = stats.peers_contacted - stats.peers_ok;
        for p in &stats.peers {
            stats.collected += p.events_in;
            stats.imported += p.imported;
            stats.uploaded += p.events_out.saturating_sub(p.refused_out);
            stats.upload_refused += p.refused_out;
            stats.bytes_in += p.bytes_in;
            stats.bytes_out += p.bytes_out;
            stats.traffic.add(&p.traffic);
            stats.round_trips += p.round_trips;
        }
        let stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let mut pubkeys = HashSet::new();
        let mut engagement: HashMap<String, u64> = HashMap::new();
        for (kind, author, refs) in stored.values() {
            stats.count_kind(*kind);
            pubkeys.insert(*author);
            for r in refs {
                *engagement.entry(r.clone()).or_insert(0) += 1;
            }
        }
        stats.unique_pubkeys = pubkeys.len() as u64;
        let mut viral: Vec<(String, u64)> = engagement.into_iter().collect();
        viral.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        viral.truncate(VIRAL_TOP);
        stats.viral = viral;
    }
}

/// What [`Engine::for_each_session`] does with each peer.
enum Phase<'f> {
    /// REQ these filters and store the results (contact lists, profiles).
    Fetch(&'f [Filter]),
    /// Reconcile: NIP-77 both ways, or REQ paging.
    Reconcile(&'f [Filter]),
    /// Upload what arrived after a NIP-77 peer's reconciliation.
    Push,
}

/// Per-peer stats for a run that never contacted anyone (for tests and the report).
pub fn empty_peer(name: &str) -> PeerStats {
    PeerStats {
        name: name.into(),
        ..Default::default()
    }
}

//! What happens to a peer's events: screened (the store's rules, spam, `--no-dms`), imported in
//! batches, counted from the store's acknowledgements, and the run's totals at its end.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use nostr::prelude::{Event, EventId, MatchEventOptions};

use super::engine::Engine;
use super::error::SyncError;
use super::kinds;
use super::local::{ImportCounts, LocalStore};
use super::refusal::Refusal;
use super::session::Session;
use super::stats::RunStats;
use crate::store::rules::{self, EventLimits, Rejection};

/// Events per import batch: one transaction each.
const IMPORT_BATCH: usize = 2_000;
/// Entries of the "viral content" list.
const VIRAL_TOP: usize = 10;

impl<L: LocalStore> Engine<'_, L> {
    /// Screen events from a peer, then import the survivors in batches.
    pub(super) async fn store(
        &self,
        session: &mut Session,
        events: Vec<Event>,
    ) -> Result<(), SyncError> {
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
            .extend(
                counts
                    .rejected_ids
                    .iter()
                    .filter(|(_, r)| r.lasting())
                    .cloned(),
            );
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

    /// Totals over peers and stored events.
    pub(super) fn finish(&self, stats: &mut RunStats, started: Instant) {
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

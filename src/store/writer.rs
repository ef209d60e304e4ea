//! The single writer: one thread owns the write connection, takes insert jobs from a bounded
//! queue, commits several jobs per transaction (group commit), and only then answers and
//! broadcasts the new events.

use std::sync::Arc;

use nostr::prelude::Event;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::error::StoreError;
use super::rules::{self, Outcome, Rejection};

/// Most events committed in one transaction: large enough to amortise the fsync, small enough
/// that a reader's snapshot and the WAL stay small.
const MAX_EVENTS_PER_COMMIT: usize = 5_000;

/// An event that passed the checks that need no database.
pub(super) struct Checked {
    pub event: Event,
    pub json: String,
}

pub(super) struct Job {
    pub events: Vec<Checked>,
    pub reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// The writer loop; returns when every `Store` handle is gone.
pub(super) fn run(
    mut conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    live: broadcast::Sender<Arc<Event>>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        let mut size = batch[0].events.len();
        while size < MAX_EVENTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => {
                    size += job.events.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(results) => {
                for (job, outcomes) in batch.into_iter().zip(results) {
                    for (checked, outcome) in job.events.iter().zip(&outcomes) {
                        if matches!(outcome, Outcome::Inserted { .. }) {
                            // No receiver is fine: nobody is subscribed.
                            let _ = live.send(Arc::new(checked.event.clone()));
                        }
                    }
                    let _ = job.reply.send(Ok(outcomes));
                }
            }
            Err(e) => {
                tracing::error!("event store write failed: {e}");
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Write(message.clone())));
                }
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<Vec<Outcome>>> {
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let mut outcomes = Vec::with_capacity(job.events.len());
        for checked in &job.events {
            outcomes.push(insert(&tx, checked)?);
        }
        results.push(outcomes);
    }
    tx.commit()?;
    Ok(results)
}

fn exists(tx: &Transaction, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached(sql)?
        .query_row(params, |_| Ok(()))
        .optional()?
        .is_some())
}

/// Apply the NIP-01/NIP-09 rules to one event inside the batch's transaction.
fn insert(tx: &Transaction, checked: &Checked) -> rusqlite::Result<Outcome> {
    let event = &checked.event;
    let id = event.id.to_bytes();
    let pubkey = event.pubkey.to_bytes();
    let kind = i64::from(event.kind.as_u16());
    let created_at = event.created_at.as_secs() as i64;

    if exists(tx, "SELECT 1 FROM events WHERE id = ?1", params![id])? {
        return Ok(Outcome::Duplicate);
    }
    if exists(
        tx,
        "SELECT 1 FROM deleted_ids WHERE id = ?1 AND pubkey = ?2",
        params![id, pubkey],
    )? {
        return Ok(Outcome::Rejected(Rejection::Deleted));
    }
    let slot = rules::slot(event);
    let mut replaced = 0;
    if let Some(slot) = &slot {
        if exists(
            tx,
            "SELECT 1 FROM deleted_slots WHERE pubkey = ?1 AND kind = ?2 AND slot = ?3 AND until >= ?4",
            params![pubkey, kind, slot, created_at],
        )? {
            return Ok(Outcome::Rejected(Rejection::Deleted));
        }
        let mut older = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, created_at, id FROM events WHERE pubkey = ?1 AND kind = ?2 AND slot = ?3",
            )?;
            let mut rows = stmt.query(params![pubkey, kind, slot])?;
            while let Some(row) = rows.next()? {
                let (seq, at, other): (i64, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
                // Newest wins; on a tie the lowest id wins.
                if at > created_at || (at == created_at && other.as_slice() < id.as_slice()) {
                    return Ok(Outcome::Superseded);
                }
                older.push(seq);
            }
        }
        for seq in older {
            tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?
                .execute(params![seq])?;
            replaced += 1;
        }
    }
    tx.prepare_cached(
        "INSERT INTO events (id, pubkey, created_at, kind, slot, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, pubkey, created_at, kind, slot, checked.json])?;
    let seq = tx.last_insert_rowid();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO tags (seq, name, value, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        // One row per (name, value): a repeated tag matches once (a one-value tag query
        // needs no DISTINCT). An event's tags are bounded by the event size limit.
        let mut stored = std::collections::HashSet::new();
        for tag in event.tags.iter().map(|t| t.as_slice()) {
            if let [name, value, ..] = tag
                && name.len() == 1
                && name.as_bytes()[0].is_ascii_alphabetic()
                && stored.insert((name, value))
            {
                stmt.execute(params![seq, name, value, created_at])?;
            }
        }
    }
    if event.kind.as_u16() == 5 {
        apply_deletion(tx, event)?;
    }
    Ok(Outcome::Inserted { replaced })
}

/// NIP-09: `e` tags remove the author's own events (never other deletions); `a` tags remove
/// the author's versions up to the deletion's time. Both leave a tombstone so that a peer
/// that still holds the event cannot bring it back.
fn apply_deletion(tx: &Transaction, deletion: &Event) -> rusqlite::Result<()> {
    let pubkey = deletion.pubkey.to_bytes();
    let at = deletion.created_at.as_secs() as i64;
    let targets = rules::deletion_targets(deletion);
    for id in targets.ids {
        let id = id.to_bytes();
        tx.prepare_cached("DELETE FROM events WHERE id = ?1 AND pubkey = ?2 AND kind != 5")?
            .execute(params![id, pubkey])?;
        tx.prepare_cached("INSERT OR IGNORE INTO deleted_ids (id, pubkey) VALUES (?1, ?2)")?
            .execute(params![id, pubkey])?;
    }
    for c in targets.coordinates {
        let kind = i64::from(c.kind);
        tx.prepare_cached(
            "DELETE FROM events WHERE pubkey = ?1 AND kind = ?2 AND slot = ?3 AND created_at <= ?4",
        )?
        .execute(params![pubkey, kind, c.d, at])?;
        tx.prepare_cached(
            "INSERT INTO deleted_slots (pubkey, kind, slot, until) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pubkey, kind, slot) DO UPDATE SET until = max(until, excluded.until)",
        )?
        .execute(params![pubkey, kind, c.d, at])?;
    }
    Ok(())
}

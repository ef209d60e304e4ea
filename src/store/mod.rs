//! The SQLite event store used by the embedded relay and the sync: one writer thread (group
//! commit), one checker thread per core (ids, signatures, limits), a small pool of read
//! connections, and a broadcast of newly stored events.
//! `Outcome`s are answered only after the transaction that holds them has committed.

mod error;
pub mod query;
pub mod rules;
pub mod schema;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nostr::prelude::{Event, EventId, Filter, Timestamp};
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use error::StoreError;
pub use query::Cursor;
use query::Select;
pub use rules::{EventLimits, Outcome, Rejection};
use writer::{Checked, Job};

/// Insert jobs waiting for the writer; callers wait (back-pressure) when it is full.
const WRITE_QUEUE: usize = 256;
/// New events kept for live subscribers that fall behind; a connection that lags more is closed.
const LIVE_BUFFER: usize = 8_192;
/// Idle read connections kept open.
const READ_POOL: usize = 8;
/// Batches up to this size are checked on the caller's thread; larger ones on a blocking thread.
const INLINE_CHECK: usize = 4;

/// Counts for `relay stats` and the status page.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub path: PathBuf,
    pub events: u64,
    /// Database plus WAL, in bytes.
    pub bytes: u64,
    pub kinds: BTreeMap<u16, u64>,
    pub pubkeys: u64,
    pub oldest: Option<u64>,
    pub newest: Option<u64>,
}

impl StoreStats {
    /// Read the statistics of the database at `path` without starting a writer.
    pub fn read(path: &Path) -> Result<StoreStats, StoreError> {
        let conn = schema::open_reader(path)?;
        stats(&conn, path)
    }
}

/// Write every stored event of the database at `path` to `out` as JSON lines, oldest first
/// (the `strfry export` format), without starting a writer. Returns the number written.
pub fn export_jsonl(path: &Path, out: &mut impl std::io::Write) -> Result<u64, StoreError> {
    let conn = schema::open_reader(path)?;
    let mut stmt = conn.prepare("SELECT json FROM events ORDER BY created_at, id")?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        writeln!(out, "{json}").map_err(StoreError::Output)?;
        n += 1;
    }
    out.flush().map_err(StoreError::Output)?;
    Ok(n)
}

fn stats(conn: &Connection, path: &Path) -> Result<StoreStats, StoreError> {
    let (events, pubkeys, oldest, newest): (i64, i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), count(DISTINCT pubkey), min(created_at), max(created_at) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut kinds = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT kind, count(*) FROM events GROUP BY kind")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (kind, n): (i64, i64) = (row.get(0)?, row.get(1)?);
        kinds.insert(kind as u16, n as u64);
    }
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(StoreStats {
        path: path.to_owned(),
        events: events as u64,
        bytes: size(path.to_owned()) + size(PathBuf::from(wal)),
        kinds,
        pubkeys: pubkeys as u64,
        oldest: oldest.map(|t| t as u64),
        newest: newest.map(|t| t as u64),
    })
}

/// Events queued for the writer; [`Pending::wait`] gives their outcomes once committed.
pub struct Pending {
    outcomes: Vec<Option<Outcome>>,
    slots: Vec<usize>,
    answer: Option<oneshot::Receiver<Result<Vec<Outcome>, StoreError>>>,
}

impl Pending {
    pub async fn wait(self) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = self.outcomes;
        if let Some(answer) = self.answer {
            let stored = answer.await.map_err(|_| StoreError::Closed)??;
            for (slot, outcome) in self.slots.into_iter().zip(stored) {
                outcomes[slot] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Rejected(Rejection::InvalidId)))
            .collect())
    }
}

/// A cloneable handle on the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    limits: EventLimits,
    writer: mpsc::Sender<Job>,
    checkers: mpsc::Sender<CheckJob>,
    checker_threads: usize,
    readers: Mutex<Vec<Connection>>,
    live: broadcast::Sender<Arc<Event>>,
}

impl Store {
    /// Open (create, migrate) the database at `path` and start its writer thread.
    pub fn open(path: &Path, limits: EventLimits) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Write(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = schema::open_writer(path)?;
        let (writer, jobs) = mpsc::channel(WRITE_QUEUE);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let live_tx = live.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, jobs, live_tx))
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        let (checkers, checker_threads) = start_checkers(limits)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                limits,
                writer,
                checkers,
                checker_threads,
                readers: Mutex::new(Vec::new()),
                live,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn limits(&self) -> EventLimits {
        self.inner.limits
    }

    /// Events stored from now on (and ephemeral events passed to [`Store::relay_ephemeral`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    /// Hand an ephemeral event to live subscribers without storing it.
    pub fn relay_ephemeral(&self, event: Event) {
        let _ = self.inner.live.send(Arc::new(event));
    }

    /// Check and store `events`; one `Outcome` per event, in order, after commit.
    pub async fn insert(&self, events: Vec<Event>) -> Result<Vec<Outcome>, StoreError> {
        self.submit(events).await?.wait().await
    }

    /// Check `events` and queue them for the writer, in call order; the returned [`Pending`]
    /// resolves after commit. Queueing without waiting lets one client's events share a commit.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Pending, StoreError> {
        if events.len() <= INLINE_CHECK {
            return self.queue(check_chunk(events, &self.inner.limits)).await;
        }
        let checking = self.check(events).await?;
        self.enqueue(checking).await
    }

    /// Start checking `events` (ids, signatures, limits) on the store's checker threads, one per
    /// core, and return at once: a large batch is split across the threads, and one connection's
    /// events are checked in parallel while [`Store::enqueue`], called in arrival order, keeps
    /// their order for the writer.
    pub async fn check(&self, mut events: Vec<Event>) -> Result<Checking, StoreError> {
        let parts = if events.len() < PARALLEL_CHECK {
            1
        } else {
            self.inner.checker_threads
        };
        let chunk = events.len().div_ceil(parts).max(1);
        let mut answers = Vec::with_capacity(parts);
        while !events.is_empty() {
            let rest = events.split_off(chunk.min(events.len()));
            let (reply, answer) = oneshot::channel();
            self.inner
                .checkers
                .send(CheckJob { events, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answers.push(answer);
            events = rest;
        }
        Ok(Checking(answers))
    }

    /// Queue events checked by [`Store::check`] for the writer (call order is write order).
    pub async fn enqueue(&self, checking: Checking) -> Result<Pending, StoreError> {
        let mut checked = Vec::new();
        for answer in checking.0 {
            checked.extend(answer.await.map_err(|_| StoreError::Closed)?);
        }
        self.queue(checked).await
    }

    async fn queue(&self, checked: Vec<Result<Checked, Rejection>>) -> Result<Pending, StoreError> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(checked.len());
        let mut valid = Vec::new();
        let mut slots = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Ok(c) => {
                    outcomes.push(None);
                    slots.push(i);
                    valid.push(c);
                }
                Err(r) => outcomes.push(Some(Outcome::Rejected(r))),
            }
        }
        let answer = if valid.is_empty() {
            None
        } else {
            let (reply, answer) = oneshot::channel();
            self.inner
                .writer
                .send(Job {
                    events: valid,
                    reply,
                })
                .await
                .map_err(|_| StoreError::Closed)?;
            Some(answer)
        };
        Ok(Pending {
            outcomes,
            slots,
            answer,
        })
    }

    /// Run `f` on a pooled read connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => schema::open_reader(&inner.path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Write(format!("read task failed: {e}")))?
    }

    /// Rows of `select` for `filter`, newest first, each turned into a `T` by `row`.
    async fn select<T: Send + 'static>(
        &self,
        filter: Filter,
        select: Select,
        limit: Option<usize>,
        row: fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if query::matches_nothing(&filter) {
            return Ok(Vec::new());
        }
        self.read(move |conn| {
            let (sql, params) = query::build(&filter, select, limit, None);
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(row(r)?);
            }
            Ok(out)
        })
        .await
    }

    /// One page of the events matching `filter`, newest first, after `after` (None: from the
    /// newest), at most `limit` rows (None: no cap) and about [`PAGE_BYTES`] of JSON; `next`
    /// says where the following page starts when this one stopped at its byte budget.
    pub async fn query_page(
        &self,
        filter: Filter,
        limit: Option<usize>,
        after: Option<Cursor>,
    ) -> Result<Page, StoreError> {
        if query::matches_nothing(&filter) || limit == Some(0) {
            return Ok(Page::default());
        }
        self.read(move |conn| {
            if query::ties_sorted_by_reader(&filter)
                && let Some(page) = page_sorting_ties(conn, &filter, limit, after.as_ref())?
            {
                return Ok(page);
            }
            let (sql, params) = query::build(&filter, Select::Json, limit, after.as_ref());
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let (mut page, mut bytes) = (Page::default(), 0);
            while let Some(r) = rows.next()? {
                let (created_at, id, json): (i64, Vec<u8>, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                bytes += json.len();
                page.rows.push((event_id(&id)?, json));
                if bytes >= PAGE_BYTES && limit.is_none_or(|l| page.rows.len() < l) {
                    page.next = Some(Cursor { created_at, id });
                    break;
                }
            }
            Ok(page)
        })
        .await
    }

    /// Events matching `filter` (every match when `limit` is None), read page by page.
    pub async fn query(
        &self,
        filter: Filter,
        limit: Option<usize>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        let mut after = None;
        loop {
            let left = limit.map(|l| l.saturating_sub(events.len()));
            let page = self.query_page(filter.clone(), left, after).await?;
            for (_, json) in &page.rows {
                events
                    .push(Event::from_json(json).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(events),
            }
        }
    }

    /// `(created_at, id)` of every event matching `filter`: the NIP-77 item set.
    pub async fn items(&self, filter: Filter) -> Result<Vec<(Timestamp, EventId)>, StoreError> {
        self.select(filter, Select::Items, None, |r| {
            let (at, id): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            Ok((Timestamp::from(at as u64), event_id(&id)?))
        })
        .await
    }

    /// Number of events matching `filter` (NIP-45 COUNT).
    pub async fn count(&self, filter: Filter) -> Result<u64, StoreError> {
        if query::matches_nothing(&filter) {
            return Ok(0);
        }
        self.read(move |conn| {
            let (sql, params) = query::build(&filter, Select::Count, None, None);
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(params), |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let path = self.inner.path.clone();
        self.read(move |conn| stats(conn, &path)).await
    }
}

/// Rows past a page's end that share its last `created_at` and are read to put that run of
/// ties in order. Ties are rare (a second of one author's or one thread's events); a run longer
/// than this (a flood of events stamped with one second) is left to SQLite's exact order.
const MAX_TIE_RUN: usize = 1_000;

/// The page [`Store::query_page`] returns, read in the tag index's order (newest first) with
/// the ties sorted here: rows are read until the limit or [`PAGE_BYTES`], then to the end of
/// the run of equal `created_at` they stopped in, sorted (newest first, lowest id first) and cut
/// to the limit, so the page holds exactly the rows the exact order would. None when that run
/// passes [`MAX_TIE_RUN`].
fn page_sorting_ties(
    conn: &rusqlite::Connection,
    filter: &Filter,
    limit: Option<usize>,
    after: Option<&Cursor>,
) -> Result<Option<Page>, StoreError> {
    let (sql, params) = query::build_time_ordered(filter, after);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut read: Vec<(i64, Vec<u8>, String)> = Vec::new();
    let (mut bytes, mut stop) = (0, None);
    while let Some(r) = rows.next()? {
        let created_at: i64 = r.get(0)?;
        if let Some((at, at_len)) = stop {
            if created_at != at {
                break;
            }
            if read.len() - at_len >= MAX_TIE_RUN {
                return Ok(None);
            }
        }
        let json: String = r.get(2)?;
        bytes += json.len();
        read.push((created_at, r.get(1)?, json));
        if stop.is_none() && (limit == Some(read.len()) || bytes >= PAGE_BYTES) {
            stop = Some((created_at, read.len()));
        }
    }
    read.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut page = Page::default();
    match limit {
        Some(l) if read.len() >= l => read.truncate(l),
        _ if bytes >= PAGE_BYTES => {
            page.next = read.last().map(|(created_at, id, _)| Cursor {
                created_at: *created_at,
                id: id.clone(),
            });
        }
        _ => {}
    }
    for (_, id, json) in read {
        page.rows.push((event_id(&id)?, json));
    }
    Ok(Some(page))
}

fn event_id(bytes: &[u8]) -> Result<EventId, StoreError> {
    EventId::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// JSON text one page of a query holds, about (a page stops at the row that passes it). A
/// REQ's answer is read and sent page by page, so a client that stops reading holds its
/// outbound queue and one page, not a whole filter's 500 events of up to 64 KiB (32 MiB);
/// a page of ordinary notes (~500 bytes) is 2,000 events, more than any filter's limit.
pub const PAGE_BYTES: usize = 1 << 20;

/// Events of one query page, and where the next page starts if there is one.
#[derive(Debug, Default)]
pub struct Page {
    pub rows: Vec<(EventId, String)>,
    pub next: Option<Cursor>,
}

/// Below this many events a batch is checked by one checker thread, above split across all.
const PARALLEL_CHECK: usize = 64;

/// Events handed to the checker threads.
struct CheckJob {
    events: Vec<Event>,
    reply: oneshot::Sender<Vec<Result<Checked, Rejection>>>,
}

/// The answers of the checker threads for one [`Store::check`], one per part, in order.
pub struct Checking(Vec<oneshot::Receiver<Vec<Result<Checked, Rejection>>>>);

/// Check jobs queued for the checker threads at most (senders wait beyond).
const CHECK_QUEUE: usize = 1_024;

/// One checker thread per core, sharing one queue; they end when the store is dropped. Returns
/// the queue and the number of threads.
fn start_checkers(limits: EventLimits) -> Result<(mpsc::Sender<CheckJob>, usize), StoreError> {
    let (tx, rx) = mpsc::channel::<CheckJob>(CHECK_QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("store-check-{i}"))
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(mut rx) => rx.blocking_recv(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { return };
                    // A check that panics refuses its batch and leaves the thread running.
                    let n = job.events.len();
                    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        check_chunk(job.events, &limits)
                    }))
                    .unwrap_or_else(|_| (0..n).map(|_| Err(Rejection::InvalidSignature)).collect());
                    let _ = job.reply.send(checked);
                }
            })
            .map_err(|e| StoreError::Write(format!("cannot start a checker thread: {e}")))?;
    }
    Ok((tx, threads))
}

fn check_chunk(events: Vec<Event>, limits: &EventLimits) -> Vec<Result<Checked, Rejection>> {
    events
        .into_iter()
        .map(|event| {
            let json = event.as_json();
            if rules::classify(event.kind.as_u16()) == rules::KindClass::Ephemeral {
                return Err(Rejection::Ephemeral);
            }
            rules::check(&event, json.len(), limits)?;
            Ok(Checked { event, json })
        })
        .collect()
}

#[cfg(test)]
mod tests;

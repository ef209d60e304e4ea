//! The station's own side of a sync: the embedded store, or an external relay (strfry or any
//! NIP-01 relay) reached over its websocket, where "imported" means the relay answered `OK true`,
//! or that relay fed by an import command (`strfry import`) and asked afterwards what it holds.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use nostr::prelude::{Event, EventId, Filter, Timestamp};
use serde::Serialize;
use tokio::sync::Mutex;

use super::refusal::Refusal;
use super::relay_client::{ClientError, RelayClient};
use crate::store::{Outcome, Store, StoreError};

/// Page size when reading an external local relay.
const LOCAL_PAGE: usize = 500;
/// Ids per `ids` filter when reading events back.
pub const IDS_PER_FILTER: usize = 250;

/// What an import did, counted only from the store's acknowledgements.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: u64,
    /// Older versions of replaceable/addressable events that the imported ones replaced.
    #[serde(default)]
    pub replaced: u64,
    /// Ids newly stored (for kind counts, unique pubkeys, viral content).
    #[serde(skip)]
    pub accepted: Vec<EventId>,
    pub duplicate: u64,
    /// Reason → count (invalid signature, deleted, too large, …).
    pub rejected: BTreeMap<String, u64>,
    /// Ids refused by the store (cached so that NIP-77 does not fetch them again).
    #[serde(skip)]
    pub rejected_ids: Vec<(EventId, Refusal)>,
}

impl ImportCounts {
    /// Count the store's outcomes for the events `ids` (same order).
    pub fn tally(&mut self, ids: Vec<EventId>, outcomes: Vec<Outcome>) {
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Inserted { replaced } => {
                    self.imported += 1;
                    self.replaced += u64::from(replaced);
                    self.accepted.push(id);
                }
                Outcome::Duplicate | Outcome::Superseded => self.duplicate += 1,
                Outcome::Rejected(r) => {
                    let refusal = Refusal::Rule(r);
                    self.reject(&refusal);
                    self.rejected_ids.push((id, refusal));
                }
            }
        }
    }

    /// Count one refusal for `reason`.
    pub fn reject(&mut self, reason: &Refusal) {
        *self.rejected.entry(reason.to_string()).or_insert(0) += 1;
    }

    /// Every refusal, whatever its reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn add(&mut self, other: ImportCounts) {
        self.imported += other.imported;
        self.replaced += other.replaced;
        self.accepted.extend(other.accepted);
        self.duplicate += other.duplicate;
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_insert(0) += v;
        }
        self.rejected_ids.extend(other.rejected_ids);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("local relay: {0}")]
    Relay(#[from] ClientError),
    #[error("local store: {0}")]
    Store(String),
}

/// How long a connection attempt to a possible local relay may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Does something already accept connections at `addr` (e.g. strfry on 127.0.0.1:7777)?
pub async fn probe(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The local side the sync engine reads and writes.
pub trait LocalStore: Send + Sync {
    /// `(created_at, id)` of every local event matching `filter` (the NIP-77 item set).
    fn items(
        &self,
        filter: &Filter,
    ) -> impl Future<Output = Result<Vec<(Timestamp, EventId)>, LocalError>> + Send;
    /// Events matching `filter` (contact lists, profiles).
    fn query(&self, filter: Filter) -> impl Future<Output = Result<Vec<Event>, LocalError>> + Send;
    /// The events with these ids (to upload what a peer lacks).
    fn events(
        &self,
        ids: &[EventId],
    ) -> impl Future<Output = Result<Vec<Event>, LocalError>> + Send;
    /// Store a batch; counts come from the store's acknowledgements only.
    fn import(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<ImportCounts, LocalError>> + Send;
    /// True when the store checks ids and signatures itself (the engine then need not).
    fn verifies(&self) -> bool {
        false
    }
}

/// The station's local relay, as the daemon found it at start.
#[derive(Clone)]
pub enum Station {
    /// The embedded store (the daemon serves it as a relay too).
    Embedded(Store),
    /// Another relay already answering at the local address (strfry, or any NIP-01 relay).
    External(String),
}

impl From<StoreError> for LocalError {
    fn from(e: StoreError) -> Self {
        LocalError::Store(e.to_string())
    }
}

/// The embedded store: imports are one transaction per batch, acknowledged after commit.
impl LocalStore for Store {
    async fn items(&self, filter: &Filter) -> Result<Vec<(Timestamp, EventId)>, LocalError> {
        Ok(Store::items(self, filter.clone()).await?)
    }

    async fn query(&self, filter: Filter) -> Result<Vec<Event>, LocalError> {
        let limit = filter.limit;
        Ok(Store::query(self, filter, limit).await?)
    }

    async fn events(&self, ids: &[EventId]) -> Result<Vec<Event>, LocalError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_FILTER) {
            out.extend(Store::query(self, Filter::new().ids(chunk.iter().copied()), None).await?);
        }
        Ok(out)
    }

    async fn import(&self, events: Vec<Event>) -> Result<ImportCounts, LocalError> {
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let outcomes = self.insert(events).await?;
        let mut counts = ImportCounts::default();
        counts.tally(ids, outcomes);
        Ok(counts)
    }

    fn verifies(&self) -> bool {
        true
    }
}

/// An external local relay (`--local-relay ws://127.0.0.1:7777`).
pub struct ExternalRelay {
    client: Mutex<RelayClient>,
}

impl ExternalRelay {
    pub async fn connect(url: &str, timeout: Duration) -> Result<ExternalRelay, LocalError> {
        Ok(ExternalRelay {
            client: Mutex::new(RelayClient::connect_url(url, timeout, timeout).await?),
        })
    }
}

impl LocalStore for ExternalRelay {
    async fn items(&self, filter: &Filter) -> Result<Vec<(Timestamp, EventId)>, LocalError> {
        let events = self
            .client
            .lock()
            .await
            .fetch_all(filter, LOCAL_PAGE)
            .await?;
        Ok(events.iter().map(|e| (e.created_at, e.id)).collect())
    }

    async fn query(&self, filter: Filter) -> Result<Vec<Event>, LocalError> {
        Ok(self
            .client
            .lock()
            .await
            .fetch_all(&filter, LOCAL_PAGE)
            .await?)
    }

    async fn events(&self, ids: &[EventId]) -> Result<Vec<Event>, LocalError> {
        let mut client = self.client.lock().await;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_FILTER) {
            out.extend(
                client
                    .query(Filter::new().ids(chunk.iter().copied()).limit(chunk.len()))
                    .await?,
            );
        }
        Ok(out)
    }

    async fn import(&self, events: Vec<Event>) -> Result<ImportCounts, LocalError> {
        let published = self.client.lock().await.publish(&events).await?;
        Ok(ImportCounts {
            imported: published.accepted,
            replaced: 0,
            accepted: published.accepted_ids,
            duplicate: published.duplicate,
            rejected: published.refused,
            rejected_ids: Vec::new(),
        })
    }
}

/// Longest an import command may take for one batch.
const IMPORT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Tail of the import command's stderr kept for the error message and the log.
const IMPORT_COMMAND_TAIL: usize = 4_096;

/// `--import-command` (`strfry import`): each batch is piped as JSON lines into the command, and
/// the local relay, asked before and after, tells which events were already there (duplicates)
/// and which the command stored. Reads go to the local relay as usual.
pub struct CommandImport<L> {
    reader: L,
    command: String,
}

impl<L: LocalStore> CommandImport<L> {
    pub fn new(reader: L, command: String) -> Self {
        CommandImport { reader, command }
    }

    async fn held(&self, ids: &[EventId]) -> Result<HashSet<EventId>, LocalError> {
        Ok(self
            .reader
            .events(ids)
            .await?
            .iter()
            .map(|e| e.id)
            .collect())
    }
}

impl<L: LocalStore> LocalStore for CommandImport<L> {
    async fn items(&self, filter: &Filter) -> Result<Vec<(Timestamp, EventId)>, LocalError> {
        self.reader.items(filter).await
    }

    async fn query(&self, filter: Filter) -> Result<Vec<Event>, LocalError> {
        self.reader.query(filter).await
    }

    async fn events(&self, ids: &[EventId]) -> Result<Vec<Event>, LocalError> {
        self.reader.events(ids).await
    }

    async fn import(&self, events: Vec<Event>) -> Result<ImportCounts, LocalError> {
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let before = self.held(&ids).await?;
        let fresh: Vec<&Event> = events.iter().filter(|e| !before.contains(&e.id)).collect();
        let mut counts = ImportCounts {
            duplicate: before.len() as u64,
            ..ImportCounts::default()
        };
        if fresh.is_empty() {
            return Ok(counts);
        }
        let summary = pipe_to(&self.command, &fresh).await?;
        tracing::debug!(command = %self.command, "{summary}");
        let fresh_ids: Vec<EventId> = fresh.iter().map(|e| e.id).collect();
        let after = self.held(&fresh_ids).await?;
        if after.is_empty() {
            // A command writing somewhere the relay does not read would otherwise make every
            // event look refused: that is a broken set-up, said as such.
            return Err(LocalError::Store(format!(
                "import command `{}` exited 0 but the local relay holds none of the {} events it \
                 was given (does it write to the relay's database?); last output: {summary}",
                self.command,
                fresh_ids.len()
            )));
        }
        for id in fresh_ids {
            if after.contains(&id) {
                counts.imported += 1;
                counts.accepted.push(id);
            } else {
                // Not remembered (`Refusal::lasting`): a write policy may accept it next run.
                counts.reject(&Refusal::ByImportCommand);
                counts.rejected_ids.push((id, Refusal::ByImportCommand));
            }
        }
        Ok(counts)
    }
}

/// Run `command` with `sh -c`, write `events` to its stdin as JSON lines, and wait for it (at most
/// [`IMPORT_COMMAND_TIMEOUT`]). Returns the last line it printed on stderr (strfry's `Done. …`).
async fn pipe_to(command: &str, events: &[&Event]) -> Result<String, LocalError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |what: String| LocalError::Store(format!("import command `{command}`: {what}"));
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let mut payload = String::with_capacity(events.len() * 512);
    for event in events {
        payload.push_str(&event.as_json());
        payload.push('\n');
    }
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    let write = async {
        if let Some(mut pipe) = stdin.take() {
            // A command that exits early closes the pipe: its exit status tells why.
            let _ = pipe.write_all(payload.as_bytes()).await;
        }
    };
    let read = async {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4_096];
        if let Some(pipe) = stderr.as_mut() {
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                let excess = tail.len().saturating_sub(IMPORT_COMMAND_TAIL);
                tail.drain(..excess);
            }
        }
        tail
    };
    let finished = tokio::time::timeout(IMPORT_COMMAND_TIMEOUT, async {
        let ((), tail) = tokio::join!(write, read);
        (child.wait().await, tail)
    })
    .await;
    let (status, tail) = finished.map_err(|_| {
        fail(format!(
            "no answer within {} s",
            IMPORT_COMMAND_TIMEOUT.as_secs()
        ))
    })?;
    let status = status.map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    let text = String::from_utf8_lossy(&tail);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned();
    if !status.success() {
        return Err(fail(format!("{status}: {last}")));
    }
    Ok(last)
}

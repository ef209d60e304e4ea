//! The station's own side of a sync: the embedded store, or an external relay (strfry or any
//! NIP-01 relay) reached over its websocket, where "imported" means the relay answered `OK true`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use nostr::prelude::{Event, EventId, Filter, Timestamp};
use serde::Serialize;
use tokio::sync::Mutex;

use super::client::{ClientError, RelayClient};
use crate::store::{Outcome, Store, StoreError};

/// Page size when reading an external local relay.
const LOCAL_PAGE: usize = 500;
/// Ids per `ids` filter when reading events back.
const IDS_PER_FILTER: usize = 250;

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
    pub rejected_ids: Vec<(EventId, String)>,
}

impl ImportCounts {
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
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Inserted { replaced } => {
                    counts.imported += 1;
                    counts.replaced += u64::from(replaced);
                    counts.accepted.push(id);
                }
                Outcome::Duplicate | Outcome::Superseded => counts.duplicate += 1,
                Outcome::Rejected(r) => {
                    *counts.rejected.entry(r.key().to_owned()).or_insert(0) += 1;
                    counts.rejected_ids.push((id, r.key().to_owned()));
                }
            }
        }
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

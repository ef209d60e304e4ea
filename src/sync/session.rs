//! One peer during a run: its connection (opened lazily, over the tunnel or a URL, re-opened with
//! backoff after a failure), its counters, and whether it speaks NIP-77.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nostr::prelude::{Event, EventId, Filter, Timestamp};

use super::discovery::{Endpoint, Peer};
use super::error::{NegOutcome, SyncError};
use super::options::SyncOptions;
use super::refusal::Refusal;
use super::relay_client::{ClientError, Published, Reconciliation, RelayClient};
use super::stats::{PeerStats, SyncMode};

/// First pause before reconnecting; doubled each retry.
const BACKOFF: Duration = Duration::from_millis(300);

/// What a session needs of its run: the options, and the node that opens `/x/strfry-…` streams.
pub struct Reach<'a> {
    pub options: &'a SyncOptions,
    pub node: Option<&'a crate::node::Node>,
}

pub struct Session {
    pub peer: Peer,
    client: Option<RelayClient>,
    pub stats: PeerStats,
    /// `Some(true)` once NIP-77 worked, `Some(false)` once it was refused.
    pub nip77: Option<bool>,
    /// The failure that ended the peer's part of the run.
    dead: bool,
    pub duplicate: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Contact lists seen in a dry run (nothing is stored then).
    pub contact_lists: Vec<Event>,
    /// Where the run's import log stood when this peer's reconciliation began: what was
    /// imported after it may be missing on the peer (the push pass).
    pub push_from: usize,
    /// Ids the peer is known to hold (its NIP-77 `need` for us, and what we uploaded).
    pub peer_has: std::collections::HashSet<nostr::prelude::EventId>,
    started: Instant,
}

impl Session {
    pub fn new(peer: Peer) -> Session {
        let stats = PeerStats {
            name: peer.name.clone(),
            endpoint: peer.endpoint.to_string(),
            ok: true,
            ..Default::default()
        };
        Session {
            peer,
            client: None,
            stats,
            nip77: None,
            dead: false,
            duplicate: 0,
            rejected: BTreeMap::new(),
            contact_lists: Vec::new(),
            push_from: 0,
            peer_has: std::collections::HashSet::new(),
            started: Instant::now(),
        }
    }

    /// [`Session::alive`], in the shape `Iterator::filter` takes.
    pub fn is_alive(session: &&mut Session) -> bool {
        session.alive()
    }

    pub fn alive(&self) -> bool {
        !self.dead
    }

    /// Remember the failure for the rest of the run.
    pub fn fail(&mut self, error: &SyncError) {
        self.stats.ok = false;
        self.stats.error = Some(error.to_string());
        self.dead = true;
        self.drop_client();
    }

    pub fn reject(&mut self, reason: &Refusal) {
        self.reject_n(&reason.to_string(), 1);
    }

    /// Count `n` refusals under `reason`, a counter key (the local relay's own words included).
    pub fn reject_n(&mut self, reason: &str, n: u64) {
        *self.rejected.entry(reason.to_owned()).or_insert(0) += n;
    }

    fn drop_client(&mut self) {
        if let Some(c) = self.client.take() {
            self.count(&c);
        }
    }

    /// Add a connection's traffic to the peer's numbers.
    fn count(&mut self, c: &RelayClient) {
        self.stats.bytes_in += c.bytes_in;
        self.stats.bytes_out += c.bytes_out;
        self.stats.round_trips += c.round_trips;
        self.stats.traffic.add(&c.traffic);
    }

    /// Close the connection and return the peer's numbers.
    pub async fn finish(mut self) -> PeerStats {
        if let Some(c) = self.client.take() {
            self.count(&c);
            c.close().await;
        }
        self.stats.mode = match self.nip77 {
            Some(true) => SyncMode::Nip77,
            Some(false) => SyncMode::Req,
            None => SyncMode::Unknown,
        };
        self.stats.duration_ms = self.started.elapsed().as_millis() as u64;
        self.stats
    }

    /// Run `op` on the connection; on failure reconnect (with backoff) and try again, up to
    /// `retries` times. A refusal (NIP-77 unsupported, CLOSED) is an answer, not a failure.
    async fn with_client(&mut self, sync: &Reach<'_>, op: Op<'_>) -> Result<Done, ClientError> {
        let mut last = None;
        for attempt in 0..=sync.options.retries {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF * 2u32.saturating_pow(attempt - 1)).await;
            }
            if self.client.is_none() {
                match connect(self.peer.endpoint.clone(), sync).await {
                    Ok(c) => self.client = Some(c),
                    Err(e) => {
                        tracing::debug!(peer = %self.peer.name, attempt, "connect failed: {e}");
                        last = Some(e);
                        continue;
                    }
                }
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            match op.run(client).await {
                Ok(v) => return Ok(v),
                Err(e @ (ClientError::NegUnsupported(_) | ClientError::Refused(_))) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer.name, attempt, "request failed: {e}");
                    self.drop_client();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ClientError::Closed))
    }

    pub async fn fetch_all(
        &mut self,
        sync: &Reach<'_>,
        filter: &Filter,
    ) -> Result<Vec<Event>, SyncError> {
        match self
            .with_client(sync, Op::FetchAll(filter, sync.options.page))
            .await?
        {
            Done::Events(events) => Ok(events),
            _ => unreachable!("FetchAll answers with events"),
        }
    }

    pub async fn query(
        &mut self,
        sync: &Reach<'_>,
        filter: Filter,
    ) -> Result<Vec<Event>, SyncError> {
        match self.with_client(sync, Op::Query(&filter)).await? {
            Done::Events(events) => Ok(events),
            _ => unreachable!("Query answers with events"),
        }
    }

    pub async fn reconcile(
        &mut self,
        sync: &Reach<'_>,
        filter: &Filter,
        items: &[(Timestamp, EventId)],
    ) -> Result<Reconciliation, NegOutcome> {
        match self.with_client(sync, Op::Reconcile(filter, items)).await {
            Ok(Done::Reconciled(r)) => Ok(r),
            Ok(_) => unreachable!("Reconcile answers with a reconciliation"),
            Err(ClientError::NegUnsupported(reason)) => Err(NegOutcome::Unsupported(reason)),
            Err(e) => Err(NegOutcome::Failed(e.into())),
        }
    }

    pub async fn publish(
        &mut self,
        sync: &Reach<'_>,
        events: &[Event],
    ) -> Result<Published, SyncError> {
        let published = match self.with_client(sync, Op::Publish(events)).await? {
            Done::Published(p) => p,
            _ => unreachable!("Publish answers with counts"),
        };
        let refused: u64 = published.refused.values().sum();
        self.stats.events_out += published.accepted + refused;
        self.stats.refused_out += refused;
        Ok(published)
    }
}

/// Open a relay connection to `endpoint` with the run's timeouts.
async fn connect(endpoint: Endpoint, sync: &Reach<'_>) -> Result<RelayClient, ClientError> {
    let (timeout, idle) = (sync.options.connect_timeout, sync.options.idle_timeout);
    RelayClient::open(&endpoint, sync.node, timeout, idle).await
}

/// A request that can be retried on a fresh connection.
enum Op<'a> {
    FetchAll(&'a Filter, usize),
    Query(&'a Filter),
    Reconcile(&'a Filter, &'a [(Timestamp, EventId)]),
    Publish(&'a [Event]),
}

/// Its answer.
enum Done {
    Events(Vec<Event>),
    Reconciled(Reconciliation),
    Published(Published),
}

impl Op<'_> {
    async fn run(&self, client: &mut RelayClient) -> Result<Done, ClientError> {
        Ok(match self {
            Op::FetchAll(filter, page) => Done::Events(client.fetch_all(filter, *page).await?),
            Op::Query(filter) => Done::Events(client.query((*filter).clone()).await?),
            Op::Reconcile(filter, items) => {
                Done::Reconciled(client.reconcile((*filter).clone(), items).await?)
            }
            Op::Publish(events) => Done::Published(client.publish(events).await?),
        })
    }
}

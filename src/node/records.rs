//! DHT records (Kubo's GET_VALUE / PUT_VALUE for IPNS, GET_PROVIDERS / ADD_PROVIDER for content)
//! on both tables: queries in flight with their callers, and the check of records other peers
//! put to us (server mode) before any is stored: valid IPNS records, never older than ours.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use libp2p::PeerId;
use libp2p::kad::{self, store::RecordStore};
use libp2p::swarm::behaviour::toggle::Toggle;
use tokio::sync::{mpsc, oneshot};

use super::routing::{Kad, Table};
use crate::ipfs::ipns::{self, IpnsError, IpnsRecord};

/// How long a GET_VALUE collects answers: Kubo's `name resolve` waits for 16 answers or its
/// timeout; ours keeps every answer that arrives within the DHT's own query timeout.
pub const RESOLVE_TIMEOUT: Duration = super::routing::FIND_PEER_TIMEOUT;
/// Answers kept per GET_VALUE (Kubo asks for 16, as the Amino DHT's "quorum" for IPNS).
pub const MAX_ANSWERS: usize = 16;
/// How long a resolve still waits for better answers once it holds a valid record. Answers
/// of peers that are up come within a round trip or two; without this bound one stalled
/// peer among the closest (a stopped station, a NAT mapping gone) holds every resolve until
/// the DHT gives up on it ([`RESOLVE_TIMEOUT`]), and the map's probes time out behind it.
pub const RESOLVE_SETTLE: Duration = Duration::from_secs(2);
/// Puts and gets in flight, over both tables; more callers get an error.
const MAX_QUERIES: usize = 64;
/// The key namespace we accept records in.
const IPNS_PREFIX: &[u8] = b"/ipns/";

/// A caller waiting for a put or a get, and what the tables have said so far.
enum Pending {
    Put {
        reply: Option<oneshot::Sender<Result<(), String>>>,
        tables: usize,
        error: Option<String>,
    },
    /// Each answer is sent as it arrives; the channel closes when both tables are done.
    Get {
        reply: mpsc::Sender<Vec<u8>>,
        tables: usize,
        sent: usize,
    },
    /// GET_PROVIDERS: answered once `limit` providers are found or both tables are done.
    Providers {
        reply: Option<oneshot::Sender<Vec<PeerId>>>,
        tables: usize,
        found: Vec<PeerId>,
        limit: usize,
    },
}

/// Queries in flight. One pending entry is shared by both tables' query ids.
#[derive(Default)]
pub struct Records {
    queries: HashMap<(Table, kad::QueryId), u64>,
    pending: HashMap<u64, Pending>,
    next: u64,
}

/// Why a put or get did not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the DHT is off (`[node] routing = \"none\"`)")]
    Disabled,
    #[error("{MAX_QUERIES} DHT record queries are already running; try again")]
    Busy,
    #[error("the record cannot be stored: {0}")]
    Store(String),
}

impl Records {
    /// Run the query on every enabled table; the pending id and how many tables run it.
    fn start(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        mut run: impl FnMut(&mut Kad) -> Result<kad::QueryId, String>,
    ) -> Result<(u64, usize), RecordError> {
        if self.pending.len() >= MAX_QUERIES {
            return Err(RecordError::Busy);
        }
        let id = self.next;
        self.next += 1;
        let (mut started, mut error) = (0, None);
        for (table, kad) in tables {
            let Some(kad) = kad.as_mut() else { continue };
            match run(kad) {
                Ok(query) => {
                    self.queries.insert((table, query), id);
                    started += 1;
                }
                Err(e) => error = Some(e),
            }
        }
        match (started, error) {
            (0, Some(e)) => Err(RecordError::Store(e)),
            (0, None) => Err(RecordError::Disabled),
            _ => Ok((id, started)),
        }
    }

    /// PUT_VALUE `value` under `key` to the closest peers of every table; `reply` gets Ok once
    /// one table stored it somewhere, else the last error.
    pub fn put(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        let record = kad::Record::new(key, value);
        let run = |kad: &mut Kad| {
            (kad.put_record(record.clone(), kad::Quorum::One)).map_err(|e| format!("{e:?}"))
        };
        self.start_put(tables, run, reply);
    }

    /// GET_VALUE `key` on every table; `reply` gets each value found (unchecked) as it comes,
    /// at most [`MAX_ANSWERS`] (a channel of that capacity), and closes once both tables are
    /// done (or at once, when none could start).
    pub fn get(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        key: Vec<u8>,
        reply: mpsc::Sender<Vec<u8>>,
    ) {
        let key = kad::RecordKey::new(&key);
        match self.start(tables, |kad: &mut Kad| Ok(kad.get_record(key.clone()))) {
            Ok((id, tables)) => {
                let pending = Pending::Get {
                    reply,
                    tables,
                    sent: 0,
                };
                self.pending.insert(id, pending);
            }
            Err(e) => tracing::warn!("DHT GET_VALUE not started: {e}"),
        }
    }

    /// GET_PROVIDERS `key` (a multihash) on every table; `reply` gets the providers found (at
    /// most `limit`), as soon as there are `limit`, else once both tables are done.
    pub fn providers(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        key: Vec<u8>,
        limit: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    ) {
        let key = kad::RecordKey::new(&key);
        match self.start(tables, |kad: &mut Kad| Ok(kad.get_providers(key.clone()))) {
            Ok((id, tables)) => {
                let pending = Pending::Providers {
                    reply: Some(reply),
                    tables,
                    found: Vec::new(),
                    limit,
                };
                self.pending.insert(id, pending);
            }
            Err(e) => {
                tracing::debug!("DHT GET_PROVIDERS not started: {e}");
                let _ = reply.send(Vec::new());
            }
        }
    }

    /// ADD_PROVIDER `key` (a multihash) to the closest peers of every table, kept in our own
    /// store too (and republished by Kad); `reply` as for a put.
    pub fn provide(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        key: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        let key = kad::RecordKey::new(&key);
        let run = |kad: &mut Kad| {
            kad.start_providing(key.clone())
                .map_err(|e| format!("{e:?}"))
        };
        self.start_put(tables, run, reply);
    }

    /// Start a put-like query (a record, a provider record) on both tables; `reply` gets its
    /// acknowledgement once the query ends, or the start error now.
    fn start_put(
        &mut self,
        tables: [(Table, &mut Toggle<Kad>); 2],
        run: impl FnMut(&mut Kad) -> Result<kad::QueryId, String>,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        match self.start(tables, run) {
            Ok((id, tables)) => {
                let pending = Pending::Put {
                    reply: Some(reply),
                    tables,
                    error: None,
                };
                self.pending.insert(id, pending);
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    /// Feed a Kad event; returns true when it belonged to one of our queries.
    pub fn on_event(&mut self, table: Table, event: &kad::Event) -> bool {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return false;
        };
        let Some(&pending_id) = self.queries.get(&(table, *id)) else {
            return false;
        };
        let finished = match (self.pending.get_mut(&pending_id), result) {
            (Some(Pending::Put { error, reply, .. }), kad::QueryResult::PutRecord(result)) => {
                put_answered(
                    reply,
                    error,
                    result.as_ref().map(|_| ()).map_err(|e| format!("{e:?}")),
                );
                true
            }
            (Some(Pending::Put { error, reply, .. }), kad::QueryResult::StartProviding(result)) => {
                put_answered(
                    reply,
                    error,
                    result.as_ref().map(|_| ()).map_err(|e| format!("{e:?}")),
                );
                true
            }
            (
                Some(Pending::Providers {
                    reply,
                    found,
                    limit,
                    ..
                }),
                kad::QueryResult::GetProviders(result),
            ) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
                    for peer in providers {
                        if found.len() < *limit && !found.contains(peer) {
                            found.push(*peer);
                        }
                    }
                }
                if found.len() >= *limit
                    && let Some(reply) = reply.take()
                {
                    let _ = reply.send(found.clone());
                }
                step.last
            }
            (Some(Pending::Get { reply, sent, .. }), kad::QueryResult::GetRecord(result)) => {
                if let Ok(kad::GetRecordOk::FoundRecord(found)) = result
                    && *sent < MAX_ANSWERS
                {
                    // The channel holds MAX_ANSWERS: this never finds it full; a caller that
                    // stopped listening (it settled) just drops the rest.
                    let _ = reply.try_send(found.record.value.clone());
                    *sent += 1;
                }
                step.last
            }
            _ => step.last,
        };
        if finished {
            self.queries.remove(&(table, *id));
            self.finish_table(pending_id);
        }
        true
    }

    /// One table is done with `id`: reply once both are.
    fn finish_table(&mut self, id: u64) {
        let done = match self.pending.get_mut(&id) {
            Some(
                Pending::Put { tables, .. }
                | Pending::Get { tables, .. }
                | Pending::Providers { tables, .. },
            ) => {
                *tables -= 1;
                *tables == 0
            }
            None => false,
        };
        if !done {
            return;
        }
        match self.pending.remove(&id) {
            Some(Pending::Put {
                reply: Some(reply),
                error,
                ..
            }) => {
                let _ = reply.send(Err(error.unwrap_or_else(|| "no peer stored it".into())));
            }
            Some(Pending::Providers {
                reply: Some(reply),
                found,
                ..
            }) => {
                let _ = reply.send(found);
            }
            // Dropping a Get's sender closes the caller's channel: no more answers.
            Some(
                Pending::Put { reply: None, .. }
                | Pending::Providers { reply: None, .. }
                | Pending::Get { .. },
            )
            | None => {}
        }
    }
}

/// A put's (or provide's) answer from one table: the first success replies at once; an error is
/// kept for the reply sent once every table is done.
fn put_answered(
    reply: &mut Option<oneshot::Sender<Result<(), String>>>,
    error: &mut Option<String>,
    result: Result<(), String>,
) {
    match result {
        Err(e) => *error = Some(e),
        Ok(()) => {
            if let Some(reply) = reply.take() {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// The event loop's side: records other peers put to us.
impl super::EventLoop {
    /// A record or provider record a peer put to us (filtering is on: nothing is stored yet).
    pub(super) fn on_inbound_request(&mut self, table: Table, request: kad::InboundRequest) {
        let behaviour = self.swarm.behaviour_mut();
        let kad = match table {
            Table::Wan => &mut behaviour.kad,
            Table::Lan => &mut behaviour.lan_kad,
        };
        let Some(kad) = kad.as_mut() else { return };
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                if let Err(e) = accept_inbound(kad, record) {
                    tracing::info!(peer = %source, ?table, "DHT record refused: {e}");
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => {
                use kad::store::RecordStore as _;
                if let Err(e) = kad.store_mut().add_provider(record) {
                    tracing::debug!(?table, "provider record not kept: {e:?}");
                }
            }
            _ => {}
        }
    }
}

/// Why a record put to us was refused.
#[derive(Debug, thiserror::Error)]
pub enum InboundRecordError {
    #[error("key is not /ipns/<peer id>")]
    NotIpns,
    #[error(transparent)]
    Invalid(#[from] IpnsError),
}

/// Check a record a peer PUT to us: an IPNS key, a record valid for that name, and not older
/// than the one we hold. Only then is it stored.
pub fn accept_inbound(kad: &mut Kad, record: kad::Record) -> Result<(), InboundRecordError> {
    let name = name_of(record.key.as_ref()).ok_or(InboundRecordError::NotIpns)?;
    let new = IpnsRecord::unmarshal(&record.value)?;
    new.validate(&name, Utc::now())?;
    if let Some(held) = kad.store_mut().get(&record.key)
        && let Ok(held) = IpnsRecord::unmarshal(&held.value)
    {
        new.check_newer_than(&held)?;
    }
    kad.store_mut()
        .put(record)
        .map_err(|e| IpnsError::Malformed(format!("store: {e:?}")))?;
    Ok(())
}

/// The peer a `/ipns/<peer id bytes>` key names.
fn name_of(key: &[u8]) -> Option<PeerId> {
    PeerId::from_bytes(key.strip_prefix(IPNS_PREFIX)?).ok()
}

/// The valid records among `values` for `name`, and the best of them.
pub fn best_valid(name: &PeerId, values: &[Vec<u8>]) -> (Option<IpnsRecord>, Vec<IpnsError>) {
    let now = Utc::now();
    let (mut valid, mut refused) = (Vec::new(), Vec::new());
    for value in values {
        match IpnsRecord::unmarshal(value).and_then(|r| r.validate(name, now).map(|()| r)) {
            Ok(record) => valid.push(record),
            Err(e) => refused.push(e),
        }
    }
    let best = ipns::best(&valid).map(|i| valid.swap_remove(i));
    (best, refused)
}

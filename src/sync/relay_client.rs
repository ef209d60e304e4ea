//! A Nostr relay client for the sync: one websocket (over TCP/TLS or over a libp2p tunnel stream)
//! with REQ-until-EOSE, complete pagination, NIP-77 reconciliation and pipelined EVENT/OK.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::prelude::{
    ClientMessage, Event, EventId, Filter, MatchEventOptions, RelayMessage, SubscriptionId,
    Timestamp,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::discovery::Endpoint;
use super::stats::Traffic;

/// Largest websocket message accepted from a peer: events are ≤ 64 KiB, NEG-MSG ≤ 2×nip77::FRAME_LIMIT.
const MAX_MESSAGE: usize = 1024 * 1024;
/// Rounds of NEG-MSG before we give up on a reconciliation (1 per ~15k differences).
const MAX_NEG_ROUNDS: usize = 1_000;
/// Ids a relay may make us need in one reconciliation: strfry's `maxSyncEvents` (and our relay's
/// `max_sync_events`), past which an honest relay refuses to reconcile at all. An honest relay
/// also lists each of our items at most once, so `have` never passes our own set.
const MAX_RECONCILE_NEED: usize = 1_000_000;
/// NEG-MSG hex one reconciliation may bring: an honest one names each difference once (64 hex
/// characters), so [`MAX_RECONCILE_NEED`] differences and their rounds' fingerprints fit twice.
const MAX_RECONCILE_BYTES: u64 = 128 * 1024 * 1024;
/// Pages per filter before pagination stops (500 × 20 000 = 10 M events: a runaway relay).
const MAX_PAGES: usize = 20_000;
/// How long a relay may take to answer NEG-OPEN before it is taken to lack NIP-77.
const NEG_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Events in flight when uploading (sent, OK not yet received).
const PUBLISH_WINDOW: usize = 200;
/// Events kept from one REQ: its `limit`, or this many for a filter without one (an ids chunk
/// or a chunk of authors' profiles is a few hundred). More are dropped, not kept.
const MAX_QUERY_EVENTS: usize = 20_000;
/// Bytes one REQ may bring before its EOSE: a full page of the largest events is 32 MiB. A
/// relay that sends more (endless events, never an EOSE) is dropped.
const MAX_QUERY_BYTES: u64 = 64 * 1024 * 1024;
/// Malformed messages tolerated on one connection before it is dropped.
const MAX_GARBAGE: u64 = 1_000;

/// Byte streams a relay connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?} without an answer")]
    Idle(Duration),
    #[error("connection closed by the relay")]
    Closed,
    #[error("websocket: {0}")]
    Ws(String),
    #[error("relay refused the subscription: {0}")]
    Refused(String),
    #[error("NIP-77 not supported: {0}")]
    NegUnsupported(String),
    #[error("NIP-77 failed: {0}")]
    Neg(String),
    #[error("too many malformed messages")]
    Garbage,
    #[error("the relay sent more than {0} bytes for one REQ without its EOSE")]
    Flood(u64),
}

/// Outcome of a NIP-77 reconciliation: what we have that the relay lacks, and the reverse.
#[derive(Debug, Default)]
pub struct Reconciliation {
    pub have: Vec<EventId>,
    pub need: Vec<EventId>,
}

/// Outcome of publishing events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    pub accepted: u64,
    pub duplicate: u64,
    pub refused: BTreeMap<String, u64>,
    /// Ids acknowledged with `OK true` and not duplicates: newly stored by the relay.
    pub accepted_ids: Vec<EventId>,
}

/// One websocket to one relay, with traffic counters.
pub struct RelayClient {
    ws: WebSocketStream<MaybeTlsStream<Box<dyn Io>>>,
    idle: Duration,
    next_sub: u64,
    /// Largest page this relay ever returned: a page smaller than this is complete.
    page_cap_seen: usize,
    /// Whether the relay's `until` includes its second (learned on the first split window).
    until_inclusive: Option<bool>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub traffic: Traffic,
    pub round_trips: u64,
    pub malformed: u64,
    /// Seconds whose events could not all be fetched (one author, one kind, more than a page).
    pub truncated_windows: u64,
    /// Events the relay sent for a REQ that its filter does not match (dropped).
    pub outside_filter: u64,
    /// When the relay last sent anything (a pong included): live links tell a silent relay
    /// from a dead one by it.
    pub last_frame: std::time::Instant,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

impl RelayClient {
    /// Connect to `url` (ws:// or wss://, TLS by rustls) with a connect timeout.
    pub async fn connect_url(
        url: &str,
        connect_timeout: Duration,
        idle: Duration,
    ) -> Result<RelayClient, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Connect(format!("bad URL {url}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Connect(format!("no host in {url}")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            Ok::<Box<dyn Io>, ClientError>(Box::new(tcp))
        };
        let io = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| ClientError::Connect(format!("timed out after {connect_timeout:?}")))??;
        RelayClient::handshake(url, io, connect_timeout, idle).await
    }

    /// Speak the relay protocol over an already-open byte stream (e.g. a `/x/strfry-…` tunnel).
    pub async fn over(
        io: Box<dyn Io>,
        connect_timeout: Duration,
        idle: Duration,
    ) -> Result<RelayClient, ClientError> {
        RelayClient::handshake("ws://127.0.0.1:7777/", io, connect_timeout, idle).await
    }

    async fn handshake(
        url: &str,
        io: Box<dyn Io>,
        connect_timeout: Duration,
        idle: Duration,
    ) -> Result<RelayClient, ClientError> {
        let handshake =
            tokio_tungstenite::client_async_tls_with_config(url, io, Some(ws_config()), None);
        let (ws, _) = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| {
                ClientError::Connect(format!(
                    "websocket handshake timed out after {connect_timeout:?}"
                ))
            })?
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(RelayClient {
            ws,
            idle,
            next_sub: 0,
            page_cap_seen: 0,
            until_inclusive: None,
            bytes_in: 0,
            bytes_out: 0,
            traffic: Traffic::default(),
            round_trips: 0,
            malformed: 0,
            truncated_windows: 0,
            outside_filter: 0,
            last_frame: std::time::Instant::now(),
        })
    }

    /// Open a relay connection to `endpoint`: a websocket over our `/x/strfry-<id>` stream
    /// (which needs `node`), or a URL.
    pub async fn open(
        endpoint: &Endpoint,
        node: Option<&crate::node::Node>,
        timeout: Duration,
        idle: Duration,
    ) -> Result<RelayClient, ClientError> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        match endpoint {
            Endpoint::Url(url) => RelayClient::connect_url(url, timeout, idle).await,
            Endpoint::Tunnel(peer) => {
                let node = node.ok_or_else(|| {
                    ClientError::Connect("no libp2p node to open the tunnel".into())
                })?;
                let protocol = libp2p::StreamProtocol::try_from_owned(format!("/x/strfry-{peer}"))
                    .map_err(|e| ClientError::Connect(e.to_string()))?;
                let stream = node
                    .open_stream(*peer, protocol)
                    .await
                    .map_err(|e| ClientError::Connect(e.to_string()))?;
                RelayClient::over(Box::new(stream.compat()), timeout, idle).await
            }
        }
    }

    /// Open a subscription that stays open after its EOSE (a live link); its events come
    /// from [`RelayClient::next_message`].
    pub async fn subscribe(&mut self, filters: Vec<Filter>) -> Result<SubscriptionId, ClientError> {
        let sub = self.subscription();
        self.send(&ClientMessage::req(sub.clone(), filters)).await?;
        Ok(sub)
    }

    /// Close a subscription opened by [`RelayClient::subscribe`].
    pub async fn unsubscribe(&mut self, sub: SubscriptionId) -> Result<(), ClientError> {
        self.send(&ClientMessage::close(sub)).await
    }

    /// The next relay message, waiting at most `wait` for any frame ([`ClientError::Idle`]
    /// then; [`RelayClient::last_frame`] says whether a pong came meanwhile).
    pub async fn next_message(
        &mut self,
        wait: Duration,
    ) -> Result<RelayMessage<'static>, ClientError> {
        let idle = std::mem::replace(&mut self.idle, wait);
        let message = self.recv().await;
        self.idle = idle;
        message
    }

    /// A websocket ping: the relay answers with a pong, which keeps [`RelayClient::last_frame`] fresh.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| ClientError::Ws(e.to_string()))
    }

    fn subscription(&mut self) -> SubscriptionId {
        self.next_sub += 1;
        SubscriptionId::new(format!("c{}", self.next_sub))
    }

    async fn send(&mut self, message: &ClientMessage<'_>) -> Result<(), ClientError> {
        let text = message.as_json();
        let n = text.len() as u64;
        self.bytes_out += n;
        match message {
            ClientMessage::Event(_) => self.traffic.events_out += n,
            ClientMessage::NegOpen { .. }
            | ClientMessage::NegMsg { .. }
            | ClientMessage::NegClose { .. } => self.traffic.reconcile_out += n,
            _ => self.traffic.requests_out += n,
        }
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Ws(e.to_string()))
    }

    /// The next relay message, skipping pings and malformed ones (counted).
    async fn recv(&mut self) -> Result<RelayMessage<'static>, ClientError> {
        loop {
            let frame = tokio::time::timeout(self.idle, self.ws.next())
                .await
                .map_err(|_| ClientError::Idle(self.idle))?;
            self.last_frame = std::time::Instant::now();
            let text = match frame {
                None => return Err(ClientError::Closed),
                Some(Err(e)) => return Err(ClientError::Ws(e.to_string())),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
                Some(Ok(_)) => continue,
            };
            let n = text.len() as u64;
            self.bytes_in += n;
            match RelayMessage::from_json(text.as_str()) {
                Ok(message) => {
                    match &message {
                        RelayMessage::Event { .. } => self.traffic.events_in += n,
                        RelayMessage::NegMsg { .. } | RelayMessage::NegErr { .. } => {
                            self.traffic.reconcile_in += n
                        }
                        RelayMessage::Ok { .. } => self.traffic.acks_in += n,
                        _ => self.traffic.other_in += n,
                    }
                    return Ok(message);
                }
                Err(e) => {
                    self.malformed += 1;
                    tracing::debug!("malformed relay message: {e}");
                    if self.malformed > MAX_GARBAGE {
                        return Err(ClientError::Garbage);
                    }
                }
            }
        }
    }

    /// `REQ` one filter and collect events until `EOSE`, then `CLOSE`. Events outside the
    /// filter are dropped (counted in `outside_filter`), and so are those past its limit.
    pub async fn query(&mut self, filter: Filter) -> Result<Vec<Event>, ClientError> {
        let sub = self.subscription();
        let keep = filter
            .limit
            .unwrap_or(MAX_QUERY_EVENTS)
            .min(MAX_QUERY_EVENTS);
        self.send(&ClientMessage::req(sub.clone(), vec![filter.clone()]))
            .await?;
        self.round_trips += 1;
        let (started, outside_before) = (self.bytes_in, self.outside_filter);
        let mut events = Vec::new();
        loop {
            let message = self.recv().await?;
            if self.bytes_in - started > MAX_QUERY_BYTES {
                return Err(ClientError::Flood(MAX_QUERY_BYTES));
            }
            match message {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } if *subscription_id == sub => {
                    if !filter.match_event(&event, MatchEventOptions::default()) {
                        self.outside_filter += 1;
                    } else if events.len() < keep {
                        events.push(event.into_owned());
                    }
                }
                RelayMessage::EndOfStoredEvents(id) if *id == sub => break,
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } if *subscription_id == sub => {
                    return Err(ClientError::Refused(message.into_owned()));
                }
                _ => {}
            }
        }
        let _ = self.send(&ClientMessage::close(sub)).await;
        if self.outside_filter > outside_before {
            tracing::warn!(
                dropped = self.outside_filter - outside_before,
                "the relay sent events outside the filter; dropped"
            );
        }
        self.page_cap_seen = self.page_cap_seen.max(events.len());
        Ok(events)
    }

    /// Every event matching `base` (its `since`/`until` bound the window), page by page with
    /// deduplication by id. After a full page, the page's oldest second is fetched on its own
    /// (split by authors, then kinds, while a piece still fills a page), so that the next page
    /// can start strictly below it whether the relay's `until` is inclusive (NIP-01, strfry)
    /// or exclusive (PyPI nostr-relay).
    pub async fn fetch_all(
        &mut self,
        base: &Filter,
        page: usize,
    ) -> Result<Vec<Event>, ClientError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let since = base.since.map(|t| t.as_secs());
        let mut until = base
            .until
            .map_or_else(|| Timestamp::now().as_secs(), |t| t.as_secs());
        for _ in 0..MAX_PAGES {
            let events = self
                .query(base.clone().until(Timestamp::from(until)).limit(page))
                .await?;
            let Some(oldest) = events.iter().map(|e| e.created_at.as_secs()).min() else {
                break;
            };
            let len = events.len();
            // Everything seen so far is at or above the last exhausted second, so a page below
            // it that brings nothing new comes from a relay that ignores `until`: stop.
            if keep_new(events, &mut seen, &mut out) == 0 || len < self.page_cap_seen.max(2) {
                break; // or a short page: the relay had nothing more
            }
            self.exhaust_second(base, oldest, page, &mut seen, &mut out)
                .await?;
            if oldest == 0 || since.is_some_and(|s| oldest <= s) {
                break;
            }
            // Below the exhausted second, in the relay's own `until` semantics.
            until = if self.until_inclusive == Some(false) {
                oldest
            } else {
                oldest - 1
            };
        }
        Ok(out)
    }

    /// Fetch all events of second `second` (known to hold at least one match), splitting the
    /// filter while a piece still fills a page. The first query also tells whether the relay's
    /// `until` is inclusive: `since = until = second` finds nothing on a relay where it is not.
    async fn exhaust_second(
        &mut self,
        base: &Filter,
        second: u64,
        page: usize,
        seen: &mut HashSet<EventId>,
        out: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let window = |inclusive: Option<bool>| {
            let end = if inclusive == Some(false) {
                second + 1
            } else {
                second
            };
            base.clone()
                .since(Timestamp::from(second))
                .until(Timestamp::from(end))
        };
        let mut queue = VecDeque::from([window(self.until_inclusive)]);
        while let Some(filter) = queue.pop_front() {
            let events = self.query(filter.clone().limit(page)).await?;
            if self.until_inclusive.is_none() {
                let inclusive = !events.is_empty();
                self.until_inclusive = Some(inclusive);
                if !inclusive {
                    tracing::debug!("relay treats `until` as exclusive; windows adjusted");
                    queue.push_back(window(Some(false)));
                    continue;
                }
            }
            let full = events.len() >= self.page_cap_seen.max(2);
            // Only new events justify a split (a relay ignoring the window repeats itself).
            if keep_new(events, seen, out) > 0 && full {
                match split(&filter) {
                    Some((a, b)) => queue.extend([a, b]),
                    None => {
                        self.truncated_windows += 1;
                        tracing::warn!(
                            second,
                            "more events in one second than a page for one author and kind; some may be missing"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// NIP-77: reconcile `items` (our side, for `filter`) with the relay.
    pub async fn reconcile(
        &mut self,
        filter: Filter,
        items: &[(Timestamp, EventId)],
    ) -> Result<Reconciliation, ClientError> {
        let (mut negentropy, sub) = self.neg_open(filter, items).await?;
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let mut received = 0u64;
        for round in 0..MAX_NEG_ROUNDS {
            self.round_trips += 1;
            let bytes = self.neg_round(&sub, round, &mut received).await?;
            let next = negentropy
                .reconcile_with_ids(&bytes, &mut have, &mut need)
                .map_err(neg_err)?;
            if need.len() > MAX_RECONCILE_NEED || have.len() > items.len() {
                return Err(ClientError::Neg(format!(
                    "the relay named more ids than a reconciliation holds ({} needed, \
                     {} of our {} listed)",
                    need.len(),
                    have.len(),
                    items.len()
                )));
            }
            match next {
                Some(next) => {
                    self.send(&ClientMessage::NegMsg {
                        subscription_id: std::borrow::Cow::Owned(sub.clone()),
                        message: std::borrow::Cow::Owned(hex::encode(next)),
                    })
                    .await?
                }
                None => return Ok(self.neg_close(sub, have, need).await),
            }
        }
        Err(ClientError::Neg(format!(
            "no agreement after {MAX_NEG_ROUNDS} rounds"
        )))
    }

    /// Our side's negentropy session over `items`, and NEG-OPEN sent with its first message.
    async fn neg_open(
        &mut self,
        filter: Filter,
        items: &[(Timestamp, EventId)],
    ) -> Result<(Negentropy<'static, NegentropyStorageVector>, SubscriptionId), ClientError> {
        let mut negentropy = crate::nip77::session(items).map_err(neg_err)?;
        let initial = negentropy.initiate().map_err(neg_err)?;
        let sub = self.subscription();
        self.send(&ClientMessage::NegOpen {
            subscription_id: std::borrow::Cow::Owned(sub.clone()),
            filter: std::borrow::Cow::Owned(filter),
            initial_message: std::borrow::Cow::Owned(hex::encode(initial)),
        })
        .await?;
        Ok((negentropy, sub))
    }

    /// The relay's NEG-MSG of this round, decoded; `received` counts the reconciliation's
    /// bytes so far, bounded by `MAX_RECONCILE_BYTES`.
    async fn neg_round(
        &mut self,
        sub: &SubscriptionId,
        round: usize,
        received: &mut u64,
    ) -> Result<Vec<u8>, ClientError> {
        let message = self.neg_answer(sub, round).await?;
        *received += message.len() as u64;
        if *received > MAX_RECONCILE_BYTES {
            return Err(ClientError::Neg(format!(
                "the relay sent more than {MAX_RECONCILE_BYTES} bytes of NEG-MSG"
            )));
        }
        hex::decode(&message).map_err(|e| ClientError::Neg(format!("NEG-MSG is not hex: {e}")))
    }

    /// Agreement: NEG-CLOSE (best effort) and the ids each side lacks.
    async fn neg_close(
        &mut self,
        sub: SubscriptionId,
        have: Vec<Id>,
        need: Vec<Id>,
    ) -> Reconciliation {
        let _ = self
            .send(&ClientMessage::NegClose {
                subscription_id: std::borrow::Cow::Owned(sub),
            })
            .await;
        let to_ids = |v: Vec<Id>| {
            v.into_iter()
                .map(|id| EventId::from_byte_array(id.to_bytes()))
                .collect()
        };
        Reconciliation {
            have: to_ids(have),
            need: to_ids(need),
        }
    }

    /// The relay's next NEG-MSG for `sub` (hex). A relay without NIP-77 may ignore NEG-OPEN
    /// silently (PyPI nostr-relay does): the first answer gets a shorter wait than the idle timeout.
    async fn neg_answer(
        &mut self,
        sub: &SubscriptionId,
        round: usize,
    ) -> Result<String, ClientError> {
        loop {
            let next = if round == 0 {
                let wait = NEG_OPEN_TIMEOUT.min(self.idle);
                tokio::time::timeout(wait, self.recv())
                    .await
                    .unwrap_or(Err(ClientError::Idle(wait)))
            } else {
                self.recv().await
            };
            match next {
                Ok(RelayMessage::NegMsg {
                    subscription_id,
                    message,
                }) if *subscription_id == *sub => return Ok(message.into_owned()),
                Ok(RelayMessage::NegErr {
                    subscription_id,
                    message,
                }) if *subscription_id == *sub => {
                    return Err(ClientError::NegUnsupported(message.into_owned()));
                }
                Ok(RelayMessage::Notice(text)) if round == 0 => {
                    return Err(ClientError::NegUnsupported(text.into_owned()));
                }
                Ok(RelayMessage::Closed {
                    subscription_id,
                    message,
                }) if *subscription_id == *sub => {
                    return Err(ClientError::NegUnsupported(message.into_owned()));
                }
                Ok(_) => {}
                Err(ClientError::Idle(d)) if round == 0 => {
                    return Err(ClientError::NegUnsupported(format!(
                        "no answer to NEG-OPEN in {d:?}"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Send `events` with `EVENT`, keeping up to [`PUBLISH_WINDOW`] in flight, and tally the `OK`s.
    pub async fn publish(&mut self, events: &[Event]) -> Result<Published, ClientError> {
        let mut result = Published::default();
        let mut pending: HashSet<EventId> = HashSet::new();
        let mut next = 0;
        // Messages that acknowledge nothing of ours (NOTICEs, OKs for unknown ids) do not count
        // as progress: without an awaited OK for this long, the relay is given up on.
        let mut progress = tokio::time::Instant::now();
        while next < events.len() || !pending.is_empty() {
            if progress.elapsed() > self.idle {
                return Err(ClientError::Idle(self.idle));
            }
            while next < events.len() && pending.len() < PUBLISH_WINDOW {
                pending.insert(events[next].id);
                self.send(&ClientMessage::event(events[next].clone()))
                    .await?;
                next += 1;
            }
            match self.recv().await? {
                RelayMessage::Ok {
                    event_id,
                    status,
                    message,
                } if pending.remove(&event_id) => {
                    progress = tokio::time::Instant::now();
                    if message.starts_with("duplicate") {
                        result.duplicate += 1;
                    } else if status {
                        result.accepted += 1;
                        result.accepted_ids.push(event_id);
                    } else {
                        let reason = message
                            .split(':')
                            .next()
                            .unwrap_or("refused")
                            .trim()
                            .to_owned();
                        *result
                            .refused
                            .entry(if reason.is_empty() {
                                "refused".into()
                            } else {
                                reason
                            })
                            .or_insert(0) += 1;
                    }
                }
                _ => {}
            }
        }
        self.round_trips += 1;
        Ok(result)
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// Append events not seen before; returns how many were new.
fn keep_new(events: Vec<Event>, seen: &mut HashSet<EventId>, out: &mut Vec<Event>) -> usize {
    let before = out.len();
    out.extend(events.into_iter().filter(|e| seen.insert(e.id)));
    out.len() - before
}

/// Halve a filter by authors, else by kinds; `None` when it names one author and one kind.
fn split(filter: &Filter) -> Option<(Filter, Filter)> {
    if let Some(authors) = filter.authors.as_ref().filter(|a| a.len() > 1) {
        let list: Vec<_> = authors.iter().copied().collect();
        let (a, b) = list.split_at(list.len() / 2);
        let with = |part: &[nostr::prelude::PublicKey]| Filter {
            authors: Some(part.iter().copied().collect()),
            ..filter.clone()
        };
        return Some((with(a), with(b)));
    }
    let kinds = filter.kinds.as_ref().filter(|k| k.len() > 1)?;
    let list: Vec<_> = kinds.iter().copied().collect();
    let (a, b) = list.split_at(list.len() / 2);
    let with = |part: &[nostr::prelude::Kind]| Filter {
        kinds: Some(part.iter().copied().collect()),
        ..filter.clone()
    };
    Some((with(a), with(b)))
}

/// A negentropy error as the client's.
fn neg_err(e: negentropy::Error) -> ClientError {
    ClientError::Neg(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{Keys, Kind};

    #[test]
    fn split_halves_authors_first_then_kinds() {
        let keys: Vec<_> = (0..4).map(|_| Keys::generate().public_key()).collect();
        let f = Filter::new()
            .authors(keys.clone())
            .kinds([Kind::TextNote, Kind::Metadata]);
        let (a, b) = split(&f).unwrap();
        assert_eq!(
            a.authors.as_ref().unwrap().len() + b.authors.as_ref().unwrap().len(),
            4
        );
        let one = Filter::new()
            .author(keys[0])
            .kinds([Kind::TextNote, Kind::Metadata]);
        let (a, b) = split(&one).unwrap();
        assert_eq!((a.kinds.unwrap().len(), b.kinds.unwrap().len()), (1, 1));
        assert!(split(&Filter::new().author(keys[0]).kind(Kind::TextNote)).is_none());
    }
}

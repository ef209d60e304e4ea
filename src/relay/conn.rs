//! One websocket client of the relay: NIP-01 (EVENT, REQ, CLOSE), NIP-45 COUNT and NIP-77
//! (NEG-*). Replies go through a bounded queue; a client that stops reading is disconnected.
//! Bad input gets `OK false`, `CLOSED`, `NEG-ERR` or `NOTICE`, and the connection stays up.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use negentropy::{Negentropy, NegentropyStorageVector};
use nostr::prelude::{ClientMessage, Event, EventId, Filter, MatchEventOptions};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::RelayConfig;
use super::http::Replay;
use super::limits::{Client, Gate};
use super::outbox::{Drain, Outbox};
use crate::store::rules::{self, KindClass};
use crate::store::{Checking, Store};

/// Longest subscription id (NIP-01 asks clients for at most 64 characters).
const MAX_SUB_ID: usize = 64;
/// Concurrent NIP-77 reconciliations per connection (each holds its item set in memory).
const MAX_NEG_SESSIONS: usize = 4;
/// Above `max_message_bytes` × this, the websocket layer itself drops the connection.
const HARD_LIMIT_FACTOR: usize = 8;
/// Verbs and ids quoted back in errors are cut to this length.
const QUOTE_MAX: usize = 64;

/// What a connection is served with: the store, the limits, and who the client is.
pub struct Context {
    pub store: Store,
    pub config: Arc<RelayConfig>,
    pub gate: Arc<Gate>,
    pub client: Client,
    pub fanout: Option<super::LiveFanout>,
}

/// The websocket of one client.
type Ws = tokio_tungstenite::WebSocketStream<Replay>;

pub async fn run(
    stream: Replay,
    peer: SocketAddr,
    context: Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Context {
        store,
        config,
        gate,
        client,
        fanout,
    } = context;
    let (sink, source) = accept(stream, &config).await?.split();
    let gone = CancellationToken::new();
    let (out, queue) = Outbox::new(
        config.outbound_queue,
        config.max_pending_outbound_bytes,
        gone.clone(),
    );
    let unacked_max = (config.outbound_queue / 2).max(1);
    let (ingest, ingest_queue) = mpsc::channel::<Ingest>(unacked_max);
    let ingester = ingest_in_order(
        store.clone(),
        ingest_queue,
        out.clone(),
        (gate.clone(), client.clone()),
    );
    let writer = write_out(sink, queue, gone.clone());
    let session = Session {
        store,
        config,
        out,
        subs: HashMap::new(),
        negs: HashMap::new(),
        unacked: Arc::new(Semaphore::new(unacked_max)),
        ingest,
        gate,
        client,
        fanout,
    };
    let reader = read_in(session, source, peer, (shutdown, gone));
    futures::future::join3(reader, writer, ingester).await;
    Ok(())
}

/// The websocket handshake, with the hard size limit above which the websocket layer itself
/// drops the connection.
async fn accept(stream: Replay, config: &RelayConfig) -> anyhow::Result<Ws> {
    let hard = config
        .max_message_bytes
        .saturating_mul(HARD_LIMIT_FACTOR)
        .max(1 << 20);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard));
    Ok(tokio_tungstenite::accept_async_with_config(stream, Some(ws_config)).await?)
}

/// Messages handed to the websocket between two flushes: a REQ's events leave in a few large
/// writes instead of one syscall (and one TCP segment) each. Bounded so that a steady stream
/// of live events is still flushed every few dozen messages; the websocket's own write buffer
/// (128 KiB) writes through on its own when a batch of large events passes it.
const MAX_BATCH: usize = 64;

/// Sends the outbox's messages in order until it closes (then closes the websocket) or the
/// connection is gone; a failed send marks it gone. Whatever is queued when one message is
/// taken goes out with it, in one flush.
async fn write_out(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    mut queue: Drain,
    gone: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = gone.cancelled() => return,
            m = queue.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let written = tokio::select! {
            _ = gone.cancelled() => return,
            r = write_batch(&mut sink, &mut queue, first) => r,
        };
        if written.is_err() {
            gone.cancel();
            return;
        }
    }
    let _ = sink.close().await;
}

/// Feed `first` and what else is queued (up to [`MAX_BATCH`]), then flush once; their bytes
/// leave the outbox's count once flushed.
async fn write_batch(
    sink: &mut futures::stream::SplitSink<Ws, Message>,
    queue: &mut Drain,
    first: Message,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (mut message, mut fed, mut cost) = (first, 0, 0);
    let result = loop {
        cost += Drain::cost(&message);
        fed += 1;
        if let Err(e) = sink.feed(message).await {
            break Err(e);
        }
        match queue.try_recv() {
            Some(next) if fed < MAX_BATCH => message = next,
            Some(next) => {
                // Over the batch: flush, then this one starts the next batch.
                let flushed = sink.flush().await;
                queue.written(cost);
                flushed?;
                (message, fed, cost) = (next, 0, 0);
            }
            None => break sink.flush().await,
        }
    };
    queue.written(cost);
    result
}

/// Serves the client's messages and the store's live events until the client leaves, idles
/// with nothing open, falls behind the live events, or the relay shuts down.
async fn read_in(
    mut session: Session,
    mut source: futures::stream::SplitStream<Ws>,
    peer: SocketAddr,
    (shutdown, gone): (CancellationToken, CancellationToken),
) {
    let mut live = session.store.subscribe();
    let idle = Duration::from_secs(session.config.idle_timeout_secs.max(1));
    let mut last_message = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                session.out.close();
                break;
            }
            _ = tokio::time::sleep_until(last_message + idle) => {
                if session.subs.is_empty() && session.negs.is_empty() {
                    tracing::debug!(%peer, "idle relay client closed");
                    session.out.close();
                    break;
                }
                last_message = tokio::time::Instant::now();
            }
            _ = gone.cancelled() => break,
            m = source.next() => {
                last_message = tokio::time::Instant::now();
                if !on_frame(&mut session, m, peer).await {
                    break;
                }
            }
            e = live.recv() => match e {
                Ok(event) => session.on_live(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(%peer, missed, "relay client too slow for live events; disconnecting");
                    gone.cancel();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// One websocket frame from the client, or the end of its stream; false when the connection
/// is over.
async fn on_frame(
    session: &mut Session,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    peer: SocketAddr,
) -> bool {
    match frame {
        Some(Ok(Message::Text(text))) => session.on_text(text.as_str()).await,
        Some(Ok(Message::Binary(_))) => {
            session
                .notice("invalid: binary messages are not supported")
                .await;
        }
        Some(Ok(Message::Close(_))) | None => return false,
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            tracing::debug!(%peer, "websocket error: {e}");
            return false;
        }
    }
    true
}

struct Session {
    store: Store,
    config: Arc<RelayConfig>,
    out: Outbox,
    subs: HashMap<String, Vec<Filter>>,
    negs: HashMap<String, Negentropy<'static, NegentropyStorageVector>>,
    /// Permits for events whose OK is not sent yet.
    unacked: Arc<Semaphore>,
    /// Events being checked, in arrival order, for [`ingest_in_order`].
    ingest: mpsc::Sender<Ingest>,
    /// The relay's quotas, and who this client is for them.
    gate: Arc<Gate>,
    client: Client,
    fanout: Option<super::LiveFanout>,
}

/// An event on its way to the store: its id, its permit, and its checks running.
struct Ingest {
    id: String,
    author: nostr::prelude::PublicKey,
    permit: tokio::sync::OwnedSemaphorePermit,
    checking: Checking,
}

/// Queue a connection's events for the writer in arrival order (so replacements and deletions
/// apply in order) as their checks finish, and answer each `OK` after commit; ends when the
/// connection's reader is gone.
async fn ingest_in_order(
    store: Store,
    mut queue: mpsc::Receiver<Ingest>,
    out: Outbox,
    quota: (Arc<Gate>, Client),
) {
    while let Some(Ingest {
        id,
        author,
        permit,
        checking,
    }) = queue.recv().await
    {
        let pending = match store.enqueue(checking).await {
            Ok(p) => p,
            Err(e) => {
                let message = json!(["OK", id, false, store_failed(e)]);
                out.send(message.to_string()).await;
                continue;
            }
        };
        let out = out.clone();
        let (gate, client) = quota.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (accepted, message) = match pending.wait().await {
                Ok(outcomes) => match outcomes.first() {
                    Some(outcome) => outcome.ok_message(),
                    None => (false, "error: the store gave no answer".into()),
                },
                Err(e) => (false, store_failed(e)),
            };
            if accepted {
                gate.stored(&client, &author);
            }
            out.send(json!(["OK", id, accepted, message]).to_string())
                .await;
        });
    }
}

/// The `OK false` message when the store itself failed.
fn store_failed(e: impl std::fmt::Display) -> String {
    format!("error: could not store the event: {e}")
}

fn quote(s: &str) -> String {
    s.chars().take(QUOTE_MAX).collect()
}

impl Session {
    /// Queue a reply, waiting for room (a client that makes none is disconnected).
    async fn send(&self, text: String) -> bool {
        self.out.send(text).await
    }

    async fn notice(&self, message: &str) {
        self.send(json!(["NOTICE", message]).to_string()).await;
    }

    async fn ok(&self, id: &str, accepted: bool, message: &str) {
        self.send(json!(["OK", id, accepted, message]).to_string())
            .await;
    }

    async fn closed(&self, sub: &str, message: &str) {
        self.send(json!(["CLOSED", sub, message]).to_string()).await;
    }

    async fn neg_err(&self, sub: &str, message: &str) {
        self.send(json!(["NEG-ERR", sub, message]).to_string())
            .await;
    }

    async fn on_text(&mut self, text: &str) {
        if text.len() > self.config.max_message_bytes {
            let message = format!(
                "invalid: message too large ({} bytes, max {})",
                text.len(),
                self.config.max_message_bytes
            );
            match event_id_of(text) {
                Some(id) => self.ok(&id, false, &message).await,
                None => self.notice(&message).await,
            }
            return;
        }
        match ClientMessage::from_json(text) {
            Ok(message) => self.on_message(message).await,
            Err(e) => self.on_malformed(text, &e.to_string()).await,
        }
    }

    /// Answer a message that did not parse in the most specific way NIP-01 allows.
    async fn on_malformed(&self, text: &str, error: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            self.notice(&format!("invalid: not JSON ({})", quote(error)))
                .await;
            return;
        };
        let items = value.as_array().map(Vec::as_slice).unwrap_or(&[]);
        let verb = items.first().and_then(Value::as_str);
        let sub = items
            .get(1)
            .and_then(Value::as_str)
            .filter(|s| s.len() <= MAX_SUB_ID);
        match (verb, sub) {
            (Some("EVENT"), _) => match event_id_of(text) {
                Some(id) => {
                    self.ok(&id, false, &format!("invalid: malformed event ({error})"))
                        .await
                }
                None => {
                    self.notice(&format!("invalid: malformed EVENT ({error})"))
                        .await
                }
            },
            (Some("REQ" | "COUNT"), Some(sub)) => {
                self.closed(sub, &format!("invalid: bad filter ({error})"))
                    .await;
            }
            (Some("NEG-OPEN" | "NEG-MSG"), Some(sub)) => {
                self.neg_err(sub, &format!("invalid: bad NEG message ({error})"))
                    .await;
            }
            (
                Some(
                    v @ ("REQ" | "COUNT" | "CLOSE" | "NEG-OPEN" | "NEG-MSG" | "NEG-CLOSE" | "AUTH"),
                ),
                _,
            ) => {
                self.notice(&format!("invalid: malformed {v} ({error})"))
                    .await
            }
            (Some(other), _) => {
                self.notice(&format!("invalid: unknown message type {:?}", quote(other)))
                    .await;
            }
            (None, _) => {
                self.notice("invalid: a message is a JSON array that starts with a verb")
                    .await;
            }
        }
    }

    async fn on_message(&mut self, message: ClientMessage<'_>) {
        match message {
            ClientMessage::Event(event) => self.on_event(event.into_owned()).await,
            ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                let filters = filters.into_iter().map(|f| f.into_owned()).collect();
                self.on_req(subscription_id.as_str(), filters).await;
            }
            ClientMessage::Count {
                subscription_id,
                filter,
            } => {
                let sub = subscription_id.as_str();
                match self.store.count(filter.into_owned()).await {
                    Ok(n) => {
                        self.send(json!(["COUNT", sub, {"count": n}]).to_string())
                            .await;
                    }
                    Err(e) => self.closed(sub, &format!("error: {e}")).await,
                }
            }
            ClientMessage::Close(sub) => {
                self.subs.remove(sub.as_str());
            }
            ClientMessage::Auth(_) => {
                self.notice("unsupported: this relay does not use AUTH")
                    .await
            }
            ClientMessage::NegOpen {
                subscription_id,
                filter,
                initial_message,
            } => {
                self.on_neg_open(
                    subscription_id.as_str(),
                    filter.into_owned(),
                    &initial_message,
                )
                .await;
            }
            ClientMessage::NegMsg {
                subscription_id,
                message,
            } => self.on_neg_msg(subscription_id.as_str(), &message).await,
            ClientMessage::NegClose { subscription_id } => {
                self.negs.remove(subscription_id.as_str());
            }
        }
    }

    async fn on_event(&self, event: Event) {
        let id = event.id.to_hex();
        if let Err(reason) = self.gate.allow_event(&self.client, &event.pubkey) {
            self.ok(&id, false, &reason).await;
            return;
        }
        if rules::classify(event.kind.as_u16()) == KindClass::Ephemeral {
            let size = event.as_json().len();
            match rules::check(&event, size, &self.store.limits()) {
                Ok(()) => {
                    self.gate.stored(&self.client, &event.pubkey);
                    self.store.relay_ephemeral(event);
                    self.ok(&id, true, "").await;
                }
                Err(r) => self.ok(&id, false, &r.reason()).await,
            }
            return;
        }
        // Checked on the store's checker threads, so that one client's events are checked in
        // parallel; queued and answered in arrival order by `ingest_in_order`. Events awaiting
        // their OK are bounded to half the outbound queue, so that a burst of OKs never looks
        // like a client that stopped reading.
        let Ok(permit) = self.unacked.clone().acquire_owned().await else {
            return;
        };
        let event_author = event.pubkey;
        let checking = match self.store.check(vec![event]).await {
            Ok(c) => c,
            Err(e) => {
                self.ok(&id, false, &store_failed(e)).await;
                return;
            }
        };
        let _ = self
            .ingest
            .send(Ingest {
                id,
                author: event_author,
                permit,
                checking,
            })
            .await;
    }

    async fn on_req(&mut self, sub: &str, filters: Vec<Filter>) {
        let config = self.config.clone();
        if sub.len() > MAX_SUB_ID {
            self.closed(
                &quote(sub),
                "invalid: subscription id longer than 64 characters",
            )
            .await;
            return;
        }
        if filters.len() > config.max_filters {
            self.closed(
                sub,
                &format!(
                    "invalid: too many filters ({}, max {})",
                    filters.len(),
                    config.max_filters
                ),
            )
            .await;
            return;
        }
        if filters.iter().any(|f| f.search.is_some()) {
            self.closed(sub, "unsupported: search (NIP-50) is not supported")
                .await;
            return;
        }
        // NIP-01: a REQ with an id in use replaces that subscription.
        self.subs.remove(sub);
        if self.subs.len() >= config.max_subscriptions {
            self.closed(
                sub,
                &format!(
                    "blocked: too many subscriptions (max {})",
                    config.max_subscriptions
                ),
            )
            .await;
            return;
        }
        // One filter's events need no de-duplication; several may match one event.
        let mut seen = (filters.len() > 1).then(HashSet::new);
        for filter in &filters {
            let limit = filter
                .limit
                .unwrap_or(config.max_limit)
                .min(config.max_limit);
            if !self.answer_filter(sub, filter, limit, seen.as_mut()).await {
                return;
            }
        }
        if self.send(json!(["EOSE", sub]).to_string()).await {
            self.subs.insert(sub.to_owned(), filters);
        }
    }

    /// Send the stored events of one filter of REQ `sub`, page by page (each page waits for
    /// room in the outbox before the next is read), skipping those in `seen`; false when the
    /// subscription is over (the client is gone, or the store failed and CLOSED was sent).
    async fn answer_filter(
        &self,
        sub: &str,
        filter: &Filter,
        limit: usize,
        mut seen: Option<&mut HashSet<EventId>>,
    ) -> bool {
        let (mut sent, mut after) = (0, None);
        let prefix = event_prefix(sub);
        while sent < limit {
            let page = match self
                .store
                .query_page(filter.clone(), Some(limit - sent), after.take())
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    self.closed(sub, &format!("error: {e}")).await;
                    return false;
                }
            };
            sent += page.rows.len();
            for (id, json) in page.rows {
                let new = seen.as_mut().is_none_or(|seen| seen.insert(id));
                if new && !self.send(with_prefix(&prefix, &json)).await {
                    return false;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        true
    }

    fn on_live(&self, event: &Event) {
        let mut json: Option<String> = None;
        let mut asked = false;
        for (sub, filters) in &self.subs {
            if filters
                .iter()
                .any(|f| f.match_event(event, MatchEventOptions::new()))
            {
                if !asked {
                    asked = true;
                    if let (Some(fanout), Client::Peer(peer)) = (&self.fanout, &self.client)
                        && !fanout(&event.id, peer)
                    {
                        return;
                    }
                }
                // Live events never wait: a client too slow for them is cut (bounded bytes).
                let json = json.get_or_insert_with(|| event.as_json());
                if !self.out.push(event_message(sub, json)) {
                    return;
                }
            }
        }
    }

    async fn on_neg_open(&mut self, sub: &str, filter: Filter, initial: &str) {
        self.negs.remove(sub);
        if sub.len() > MAX_SUB_ID {
            self.neg_err(
                &quote(sub),
                "invalid: subscription id longer than 64 characters",
            )
            .await;
            return;
        }
        if self.negs.len() >= MAX_NEG_SESSIONS {
            self.neg_err(
                sub,
                "blocked: too many reconciliations open on this connection",
            )
            .await;
            return;
        }
        let Ok(query) = hex::decode(initial) else {
            self.neg_err(sub, "invalid: NEG-OPEN message is not hex")
                .await;
            return;
        };
        let items = match self.store.items(filter).await {
            Ok(items) => items,
            Err(e) => {
                self.neg_err(sub, &format!("error: {e}")).await;
                return;
            }
        };
        let max = self.config.max_sync_events;
        if items.len() > max {
            self.neg_err(
                sub,
                &format!("blocked: too many records ({}, max {max})", items.len()),
            )
            .await;
            return;
        }
        let negentropy = match crate::nip77::session_with(&items, crate::nip77::RELAY_FRAME_LIMIT) {
            Ok(n) => n,
            Err(e) => {
                self.neg_err(sub, &format!("error: {e}")).await;
                return;
            }
        };
        self.negs.insert(sub.to_owned(), negentropy);
        self.reconcile(sub, &query).await;
    }

    async fn on_neg_msg(&mut self, sub: &str, message: &str) {
        if !self.negs.contains_key(sub) {
            self.neg_err(sub, "closed: no reconciliation open with this id")
                .await;
            return;
        }
        let Ok(query) = hex::decode(message) else {
            self.negs.remove(sub);
            self.neg_err(sub, "invalid: NEG-MSG message is not hex")
                .await;
            return;
        };
        self.reconcile(sub, &query).await;
    }

    async fn reconcile(&mut self, sub: &str, query: &[u8]) {
        let Some(negentropy) = self.negs.get_mut(sub) else {
            return;
        };
        match negentropy.reconcile(query) {
            Ok(reply) => {
                self.send(json!(["NEG-MSG", sub, hex::encode(reply)]).to_string())
                    .await;
            }
            Err(e) => {
                self.negs.remove(sub);
                self.neg_err(sub, &format!("invalid: {e}")).await;
            }
        }
    }
}

/// `["EVENT", sub, event]` from the event's stored JSON.
fn event_message(sub: &str, json: &str) -> String {
    with_prefix(&event_prefix(sub), json)
}

/// `["EVENT",<sub as JSON>,`: made once per REQ filter, not once per event.
fn event_prefix(sub: &str) -> String {
    format!("[\"EVENT\",{},", Value::from(sub))
}

/// `prefix`, the stored JSON, `]`: one allocation of the message's exact size.
fn with_prefix(prefix: &str, json: &str) -> String {
    let mut message = String::with_capacity(prefix.len() + json.len() + 1);
    message.push_str(prefix);
    message.push_str(json);
    message.push(']');
    message
}

/// The `id` of `["EVENT", {"id": …}]`, if the text carries a well-formed one.
fn event_id_of(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let id = value.get(1)?.get("id")?.as_str()?;
    EventId::from_hex(id).ok().map(|id| id.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_found_only_when_well_formed() {
        let id = "a".repeat(64);
        assert_eq!(
            event_id_of(&format!(r#"["EVENT",{{"id":"{id}"}}]"#)),
            Some(id)
        );
        assert_eq!(event_id_of(r#"["EVENT",{"id":"zz"}]"#), None);
        assert_eq!(event_id_of("not json"), None);
    }
}

//! One live link's task: connect (tunnel or URL, as the sync does), subscribe with the sync's
//! filters, store what comes, push the queued local events to a plain relay; on failure, wait
//! its backoff (doubling, bounded) and start again. Its figures are in its [`Link`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr::prelude::{Event, Filter, MatchEventOptions, RelayMessage, SubscriptionId, Timestamp};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::local::{Local, Stored};
use super::state::{Link, LinkState, Registry, Remote};
use crate::config::LiveConfig;
use crate::node::Node;
use crate::sync::discovery::{Endpoint, Peer};
use crate::sync::relay_client::{ClientError, RelayClient};

/// How long connecting to a link may take (a tunnel dials, then opens a stream).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent link is pinged this often...
const PING_EVERY: Duration = Duration::from_secs(15);
/// ...and given up when nothing at all (not even a pong) came for this long.
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// A pushed batch waits at most this long for its `OK`s.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Events pushed in one batch (pipelined, one `OK` each).
const PUSH_BATCH: usize = 200;
/// Filters per REQ (10 of the sync's, each twice), and REQs per link: relays allow 20
/// subscriptions per connection (strfry, ours), so 16 × 10 filters × 250 authors hold 40,000
/// authors; a larger N² set is the backfill's.
const FILTERS_PER_REQ: usize = 20;
const MAX_REQS: usize = 16;
/// A link that stayed up this long starts its next backoff from the minimum again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What every link task works with.
pub struct Shared {
    pub node: Node,
    pub local: Local,
    pub registry: Arc<Registry>,
    pub config: LiveConfig,
    /// Events with this in their content are spam, as in the sync.
    pub spam: Option<String>,
}

/// A link's task.
pub struct LinkTask {
    pub peer: Peer,
    pub link: Arc<Link>,
    pub shared: Arc<Shared>,
    pub filters: watch::Receiver<Vec<Filter>>,
    pub queue: mpsc::Receiver<Arc<Event>>,
}

/// Why a session ended.
enum End {
    Stopped,
    Failed(String),
}

impl LinkTask {
    /// Until `stop`: a session, then its backoff, again and again.
    pub async fn run(mut self, stop: CancellationToken) {
        let config = &self.shared.config;
        let min = Duration::from_millis(config.backoff_min_ms.max(1));
        let max = Duration::from_secs(config.backoff_max_secs).max(min);
        let mut backoff = min;
        loop {
            let started = Instant::now();
            let error = match self.session(&stop).await {
                End::Stopped => return,
                End::Failed(e) => e,
            };
            tracing::debug!(link = %self.link.name, "live link down: {error}");
            self.link.set_state(LinkState::Down);
            self.link.update(|s| s.last_error = Some(error));
            if started.elapsed() > STABLE_AFTER {
                backoff = min;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// One connection: subscribe, then serve the subscription and the push queue.
    async fn session(&mut self, stop: &CancellationToken) -> End {
        let was_down = self.link.status().down_since;
        let pulls = self.shared.config.dir.pulls();
        let mut down = if pulls {
            match self.connect(stop).await {
                Ok(Some(c)) => Some(c),
                Ok(None) => return End::Stopped,
                Err(e) => return End::Failed(e.to_string()),
            }
        } else {
            None
        };
        self.identify().await;
        let mut subs = Vec::new();
        if let Some(client) = down.as_mut()
            && let Err(e) = self.subscribe(client, &mut subs).await
        {
            return End::Failed(e.to_string());
        }
        let overlap = self.shared.config.overlap_secs;
        if was_down.is_some_and(|t| Timestamp::now().as_secs().saturating_sub(t) > overlap) {
            self.link.owe();
        }
        self.link.update(|s| s.connects += 1);
        self.link.set_state(LinkState::Live);
        let mut up: Option<RelayClient> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return End::Stopped,
                changed = self.filters.changed() => {
                    if changed.is_err() {
                        return End::Stopped;
                    }
                    if let Some(client) = down.as_mut()
                        && let Err(e) = self.resubscribe(client, &mut subs).await
                    {
                        return End::Failed(e.to_string());
                    }
                }
                message = next(down.as_mut()), if down.is_some() => {
                    if let Err(e) = self.on_message(down.as_mut(), message).await {
                        return End::Failed(e.to_string());
                    }
                }
                event = self.queue.recv() => {
                    let Some(event) = event else { return End::Stopped };
                    if let Err(e) = self.push(&mut up, event, stop).await {
                        return End::Failed(e.to_string());
                    }
                }
            }
        }
    }

    async fn connect(&self, stop: &CancellationToken) -> Result<Option<RelayClient>, ClientError> {
        self.link.set_state(LinkState::Connecting);
        let open = RelayClient::open(
            &self.peer.endpoint,
            Some(&self.shared.node),
            CONNECT_TIMEOUT,
            PING_EVERY,
        );
        tokio::select! {
            _ = stop.cancelled() => Ok(None),
            client = tokio::time::timeout(CONNECT_TIMEOUT * 2, open) => match client {
                Ok(client) => client.map(Some),
                Err(_) => Err(ClientError::Connect(format!("timed out after {:?}", CONNECT_TIMEOUT * 2))),
            },
        }
    }

    /// Who is at the other end: a constellation station (by its libp2p agent) pulls from us;
    /// anything else is a plain relay, pushed to. An explicit URL is a plain relay.
    async fn identify(&self) {
        let Some(peer) = self.link.peer else {
            self.link.update(|s| s.remote = Remote::Relay);
            return;
        };
        let info = self.shared.node.info().await.ok();
        let agent = info.as_ref().and_then(|i| {
            i.peers
                .iter()
                .find(|p| p.peer_id == peer.to_string())
                .and_then(|p| p.agent.clone())
        });
        let remote = match agent {
            Some(a) if a.starts_with("constellation/") => Remote::Station,
            Some(_) => Remote::Relay,
            None if matches!(self.peer.endpoint, Endpoint::Url(_)) => Remote::Relay,
            None => Remote::Unknown,
        };
        self.link.update(|s| s.remote = remote);
    }

    /// The REQs of the current filters. Each filter goes twice: `since` now minus the overlap
    /// (what was stored while we were connecting), and `limit 0` without `since` (every new
    /// event from now on, whatever its `created_at`: a live match ignores the overlap).
    async fn subscribe(
        &mut self,
        client: &mut RelayClient,
        subs: &mut Vec<SubscriptionId>,
    ) -> Result<(), ClientError> {
        let since = Timestamp::from(
            Timestamp::now()
                .as_secs()
                .saturating_sub(self.shared.config.overlap_secs),
        );
        let filters: Vec<Filter> = self
            .filters
            .borrow_and_update()
            .iter()
            .flat_map(|f| [f.clone().since(since), f.clone().limit(0)])
            .collect();
        for chunk in filters.chunks(FILTERS_PER_REQ).take(MAX_REQS) {
            subs.push(client.subscribe(chunk.to_vec()).await?);
        }
        Ok(())
    }

    async fn resubscribe(
        &mut self,
        client: &mut RelayClient,
        subs: &mut Vec<SubscriptionId>,
    ) -> Result<(), ClientError> {
        for sub in subs.drain(..) {
            client.unsubscribe(sub).await?;
        }
        self.subscribe(client, subs).await
    }

    async fn on_message(
        &self,
        client: Option<&mut RelayClient>,
        message: Result<RelayMessage<'static>, ClientError>,
    ) -> Result<(), ClientError> {
        match message {
            Ok(RelayMessage::Event { event, .. }) => {
                self.arrived(event.into_owned()).await;
                Ok(())
            }
            Ok(RelayMessage::Closed { message, .. }) => {
                Err(ClientError::Refused(message.into_owned()))
            }
            Ok(_) => Ok(()),
            Err(ClientError::Idle(_)) => {
                let Some(client) = client else { return Ok(()) };
                if client.last_frame.elapsed() > DEAD_AFTER {
                    return Err(ClientError::Idle(DEAD_AFTER));
                }
                if self.link.remote() == Remote::Unknown {
                    self.identify().await;
                }
                client.ping().await
            }
            Err(e) => Err(e),
        }
    }

    /// An event from the link: screened as the sync screens, stored, counted.
    async fn arrived(&self, event: Event) {
        let id = event.id;
        if !self.link.arrived(id) {
            return;
        }
        let matches = self
            .filters
            .borrow()
            .iter()
            .any(|f| f.match_event(&event, MatchEventOptions::default()));
        let spam = self
            .shared
            .spam
            .as_deref()
            .is_some_and(|p| event.content.contains(p));
        if !matches || spam {
            self.link.update(|s| s.refused += 1);
            return;
        }
        let created_ms = event.created_at.as_secs().saturating_mul(1000);
        let claimed = self.shared.registry.claim(id, &self.link.name);
        let stored = self.shared.local.store(event).await;
        if claimed && stored != Ok(Stored::New) {
            self.shared.registry.unclaim(&id);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.link.update(|s| match stored {
            Ok(Stored::New) => {
                s.stored += 1;
                s.lag_ms = Some(now_ms.saturating_sub(created_ms));
            }
            Ok(Stored::Duplicate) => s.duplicate += 1,
            Ok(Stored::Refused) => s.refused += 1,
            Err(e) => {
                tracing::warn!(link = %self.link.name, "cannot store a live event: {e}");
                s.refused += 1;
            }
        });
    }

    /// Push `first` and whatever else is queued, on the push connection (opened on demand).
    async fn push(
        &mut self,
        up: &mut Option<RelayClient>,
        first: Arc<Event>,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let mut batch = vec![(*first).clone()];
        while batch.len() < PUSH_BATCH {
            match self.queue.try_recv() {
                Ok(e) => batch.push((*e).clone()),
                Err(_) => break,
            }
        }
        if up.is_none() {
            match self.connect(stop).await? {
                Some(c) => *up = Some(c),
                None => return Ok(()),
            }
            self.link.set_state(LinkState::Live);
        }
        let Some(client) = up.as_mut() else {
            return Ok(());
        };
        let published = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            p = tokio::time::timeout(PUSH_TIMEOUT, client.publish(&batch)) => {
                p.map_err(|_| ClientError::Idle(PUSH_TIMEOUT))??
            }
        };
        let sent = batch.len() as u64;
        self.link.update(|s| s.events_out += sent);
        tracing::trace!(link = %self.link.name, accepted = published.accepted, "pushed");
        Ok(())
    }
}

/// The next message of the subscription (only polled while there is one).
async fn next(client: Option<&mut RelayClient>) -> Result<RelayMessage<'static>, ClientError> {
    match client {
        Some(c) => c.next_message(PING_EVERY).await,
        None => std::future::pending().await,
    }
}

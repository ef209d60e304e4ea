//! The station's own relay as the live links see it: where events they bring are stored (the
//! embedded store, or an external relay such as strfry), and the feed of events newly stored
//! there, which the plain-relay links push.

use std::sync::Arc;
use std::time::Duration;

use nostr::prelude::{Event, Filter, RelayMessage, Timestamp};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Outcome, Store};
use crate::sync::local::{ExternalRelay, LocalStore, Station};
use crate::sync::relay_client::RelayClient;

/// How long the local relay may take to accept a connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// New events of an external local relay kept for the dispatcher when it falls behind (as the
/// store's own broadcast buffer).
const FEED_BUFFER: usize = 8_192;
/// Pause before the external local relay is asked again after its feed failed.
const FEED_RETRY: Duration = Duration::from_secs(2);
/// Longest wait for a frame on the external local relay's feed before a ping.
const FEED_PING: Duration = Duration::from_secs(30);

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
    Refused,
}

/// The local relay.
pub enum Local {
    Embedded(Store),
    /// An external relay: events are published to it, and a subscription to it gives its new
    /// events.
    External {
        url: String,
        writer: Box<tokio::sync::OnceCell<ExternalRelay>>,
        feed: broadcast::Sender<Arc<Event>>,
    },
}

impl Local {
    pub fn new(station: Station) -> Local {
        match station {
            Station::Embedded(store) => Local::Embedded(store),
            Station::External(url) => Local::External {
                url,
                writer: Box::default(),
                feed: broadcast::channel(FEED_BUFFER).0,
            },
        }
    }

    /// Events newly stored locally from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        match self {
            Local::Embedded(store) => store.subscribe(),
            Local::External { feed, .. } => feed.subscribe(),
        }
    }

    /// Store one event brought by a link.
    pub async fn store(&self, event: Event) -> Result<Stored, String> {
        match self {
            Local::Embedded(store) => {
                let outcome = store.insert(vec![event]).await.map_err(|e| e.to_string())?;
                Ok(match outcome.first() {
                    Some(Outcome::Inserted { .. }) => Stored::New,
                    Some(Outcome::Duplicate | Outcome::Superseded) => Stored::Duplicate,
                    _ => Stored::Refused,
                })
            }
            Local::External { url, writer, .. } => {
                // An external relay is not trusted to check signatures for us.
                if crate::store::rules::check_signature(&event).is_err() {
                    return Ok(Stored::Refused);
                }
                let writer = writer
                    .get_or_try_init(|| ExternalRelay::connect(url, LOCAL_CONNECT_TIMEOUT))
                    .await
                    .map_err(|e| e.to_string())?;
                let counts = writer
                    .import(vec![event])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if counts.imported > 0 {
                    Stored::New
                } else if counts.duplicate > 0 {
                    Stored::Duplicate
                } else {
                    Stored::Refused
                })
            }
        }
    }

    /// For an external relay: keep a subscription to it (the live filters, from now on) and
    /// hand its events to [`Local::subscribe`]rs, until `stop`. Nothing to do for the store.
    pub async fn run_feed(
        &self,
        mut filters: watch::Receiver<Vec<Filter>>,
        stop: CancellationToken,
    ) {
        let Local::External { url, feed, .. } = self else {
            return;
        };
        loop {
            let current = filters.borrow_and_update().clone();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = filters.changed() => continue,
                result = feed_once(url, current, feed) => {
                    if let Err(e) = result {
                        tracing::warn!(%url, "live feed of the local relay: {e}");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(FEED_RETRY) => {}
            }
        }
    }
}

/// One subscription to the external local relay, forwarding its live events until it fails.
async fn feed_once(
    url: &str,
    filters: Vec<Filter>,
    feed: &broadcast::Sender<Arc<Event>>,
) -> Result<(), crate::sync::relay_client::ClientError> {
    let mut client = RelayClient::connect_url(url, LOCAL_CONNECT_TIMEOUT, FEED_PING).await?;
    let since = Timestamp::now();
    let filters = filters.into_iter().map(|f| f.since(since)).collect();
    client.subscribe(filters).await?;
    let mut stored = false;
    loop {
        match client.next_message(FEED_PING).await {
            Ok(RelayMessage::Event { event, .. }) if stored => {
                let _ = feed.send(Arc::new(event.into_owned()));
            }
            Ok(RelayMessage::EndOfStoredEvents(_)) => stored = true,
            Ok(RelayMessage::Closed { message, .. }) => {
                return Err(crate::sync::relay_client::ClientError::Refused(
                    message.into_owned(),
                ));
            }
            Ok(_) => {}
            Err(crate::sync::relay_client::ClientError::Idle(_))
                if client.last_frame.elapsed() < FEED_PING * 2 =>
            {
                client.ping().await?
            }
            Err(e) => return Err(e),
        }
    }
}

//! The embedded Nostr relay (NIP-01/09/11/45/77) over [`crate::store`]: the accept loop, its
//! limits, and the NIP-11 document. One task per connection ([`conn`]); shutdown is passed in.

mod conn;
pub mod http;
pub mod jsonl;
pub mod limits;
mod outbox;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::RelayConfig;
use crate::store::Store;

impl RelayConfig {
    pub fn event_limits(&self) -> crate::store::EventLimits {
        crate::store::EventLimits {
            max_event_bytes: self.max_event_bytes,
            max_tags: self.max_event_tags,
            max_future_secs: self.reject_newer_than_secs,
        }
    }

    /// The NIP-11 relay information document.
    pub fn nip11(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "description": self.description,
            "software": "constellation",
            "version": env!("CARGO_PKG_VERSION"),
            "supported_nips": [1, 9, 11, 45, 77],
            "limitation": {
                "max_message_length": self.max_message_bytes,
                "max_subscriptions": self.max_subscriptions,
                "max_filters": self.max_filters,
                "max_limit": self.max_limit,
                "max_event_tags": self.max_event_tags,
                "max_content_length": self.max_event_bytes,
                "auth_required": false,
                "payment_required": false,
            },
        })
    }
}

/// What the relay serves with: its store, limits, and the tunnels' origin lookup (to tell
/// swarm peers from the station's own loopback clients).
pub struct Served {
    pub store: Store,
    pub config: RelayConfig,
    pub origin: Option<limits::OriginLookup>,
    /// Asked before a live event goes to a swarm peer (the live links' rule: never back to
    /// the station it came from); `None` sends every live event.
    pub fanout: Option<LiveFanout>,
}

/// `fanout(event, peer)`: may this newly stored event go live to `peer`'s subscriptions?
/// False when `peer` is the station that brought it. Called once per event and connection.
pub type LiveFanout = Arc<dyn Fn(&nostr::prelude::EventId, &libp2p::PeerId) -> bool + Send + Sync>;

/// Serve `listener` until `shutdown`; every connection task is tracked by `tracker`.
pub async fn serve(
    listener: TcpListener,
    served: Served,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let config = Arc::new(served.config);
    let gate = limits::Gate::new(config.clone(), served.origin);
    let store = served.store;
    let fanout = served.fanout;
    http::accept_loop(
        listener,
        config.max_connections,
        "relay",
        shutdown.clone(),
        tracker,
        |stream, peer| {
            let context = conn::Context {
                store: store.clone(),
                config: config.clone(),
                client: gate.classify(peer),
                gate: gate.clone(),
                fanout: fanout.clone(),
            };
            handle(stream, peer, context, shutdown.clone())
        },
    )
    .await;
}

async fn handle(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    context: conn::Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Taken before the request head, so that clients stuck in their head count too.
    let _slot = match context.gate.admit(context.client.clone()) {
        Ok(slot) => slot,
        Err(reason) => {
            tracing::debug!(%peer, client = %context.client, "relay connection refused: {reason}");
            http::refuse(&stream, &reason);
            return Ok(());
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(head) = http::read_head(&mut stream, http::HEAD_TIMEOUT).await? else {
        return Ok(());
    };
    match http::classify(&head) {
        http::Head::WebSocket => {
            conn::run(http::Replay::new(head, stream), peer, context, shutdown).await
        }
        http::Head::Nip11 => {
            let body = context.config.nip11().to_string();
            Ok(http::respond(stream, "200 OK", "application/nostr+json", &body).await?)
        }
        http::Head::Other => {
            let body = format!(
                "{}: a Nostr relay. Connect with a websocket Nostr client; \
                 NIP-11 with Accept: application/nostr+json.\n",
                context.config.name
            );
            Ok(http::respond(stream, "200 OK", "text/plain; charset=utf-8", &body).await?)
        }
    }
}

/// Bind `served.config.listen` and serve in the background; returns the bound address.
pub async fn start(
    served: Served,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(&served.config.listen).await?;
    let addr = listener.local_addr()?;
    tracker.spawn(serve(listener, served, shutdown, tracker.clone()));
    Ok(addr)
}

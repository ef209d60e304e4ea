//! The embedded Nostr relay (NIP-01/09/11/45/77) over [`crate::store`]: the accept loop, its
//! limits, and the NIP-11 document. One task per connection ([`conn`]); shutdown is passed in.

mod conn;
pub mod http;
pub mod jsonl;

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

/// Serve `listener` until `shutdown`; every connection task is tracked by `tracker`.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    config: Arc<RelayConfig>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let max = config.max_connections;
    http::accept_loop(
        listener,
        max,
        "relay",
        shutdown.clone(),
        tracker,
        |stream, peer| {
            handle(
                stream,
                peer,
                store.clone(),
                config.clone(),
                shutdown.clone(),
            )
        },
    )
    .await;
}

async fn handle(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    store: Store,
    config: Arc<RelayConfig>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let Some(head) = http::read_head(&mut stream).await? else {
        return Ok(());
    };
    match http::classify(&head) {
        http::Head::WebSocket => {
            conn::run(
                http::Replay::new(head, stream),
                peer,
                store,
                config,
                shutdown,
            )
            .await
        }
        http::Head::Nip11 => {
            let body = config.nip11().to_string();
            Ok(http::respond(stream, "200 OK", "application/nostr+json", &body).await?)
        }
        http::Head::Other => {
            let body = format!(
                "{}: a Nostr relay. Connect with a websocket Nostr client; \
                 NIP-11 with Accept: application/nostr+json.\n",
                config.name
            );
            Ok(http::respond(stream, "200 OK", "text/plain; charset=utf-8", &body).await?)
        }
    }
}

/// Bind `config.listen` and serve in the background; returns the bound address.
pub async fn start(
    store: Store,
    config: RelayConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    tracker.spawn(serve(
        listener,
        store,
        Arc::new(config),
        shutdown,
        tracker.clone(),
    ));
    Ok(addr)
}

//! The status page: `GET /` (one self-contained HTML page that refreshes itself from the API) and
//! `GET /api/status` (JSON) on a loopback HTTP port. The daemon supplies the JSON through
//! [`StatusSource`] (its database figures from [`figures`]); this module serves it.

pub mod figures;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::relay::http;

/// The page: HTML, CSS, JS and SVG inline; no framework, no external asset.
const PAGE: &str = include_str!("page.html");
/// Concurrent HTTP clients. A browser tab or two and a probe need few, but a client stuck in
/// its request head holds a slot until [`HEAD_TIMEOUT`]: enough slots that a hundred such
/// clients leave room for honest ones (each costs a task and at most a 16 KiB head).
const MAX_CLIENTS: usize = 256;
/// A local client sends its request head at once; one that takes longer is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long building the JSON may take before the request fails.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// A value computed at most once per `ttl` and shared by every request in between: each open page
/// asks every 2 s, and the database figures (a count over the whole store) should not be
/// recomputed for each of them.
pub struct Cached<T> {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(std::time::Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Cached {
            ttl,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached value, or `compute`'s (requests arriving meanwhile wait for it, once).
    pub async fn get(&self, compute: impl Future<Output = T>) -> T {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return value.clone();
        }
        let value = compute.await;
        *slot = Some((std::time::Instant::now(), value.clone()));
        value
    }
}

/// What the page shows, as JSON.
pub trait StatusSource: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = serde_json::Value> + Send;
}

/// Bind `addr` and serve until `shutdown`; returns the bound address.
pub async fn start<S: StatusSource>(
    addr: &str,
    source: Arc<S>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracker.spawn(http::accept_loop(
        listener,
        MAX_CLIENTS,
        "status page",
        shutdown,
        tracker.clone(),
        move |stream, _| {
            let source = source.clone();
            async move { Ok(handle(stream, source).await?) }
        },
    ));
    Ok(bound)
}

/// The path of a request head's first line (`GET /path HTTP/1.1`), without its query.
pub fn path_of(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => Some(path.split('?').next().unwrap_or(path)),
        _ => None,
    }
}

async fn handle<S: StatusSource>(
    mut stream: tokio::net::TcpStream,
    source: Arc<S>,
) -> std::io::Result<()> {
    let Some(head) = http::read_head(&mut stream, HEAD_TIMEOUT).await? else {
        return Ok(());
    };
    match path_of(&head) {
        Some("/") | Some("/index.html") => {
            http::respond(stream, "200 OK", "text/html; charset=utf-8", PAGE).await
        }
        Some("/api/status") => {
            let body = match tokio::time::timeout(STATUS_TIMEOUT, source.status()).await {
                Ok(v) => v.to_string(),
                Err(_) => serde_json::json!({"error": "status timed out"}).to_string(),
            };
            http::respond(stream, "200 OK", "application/json", &body).await
        }
        Some(_) => http::respond(stream, "404 Not Found", "text/plain", "not found\n").await,
        None => http::respond(stream, "405 Method Not Allowed", "text/plain", "GET only\n").await,
    }
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn paths_are_read_from_get_lines_only() {
        assert_eq!(
            path_of(b"GET /api/status?x=1 HTTP/1.1\r\n\r\n"),
            Some("/api/status")
        );
        assert_eq!(path_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some("/"));
        assert_eq!(path_of(b"POST / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(path_of(b"\xff\xfe"), None);
    }
}

//! The HTTP side of the relay port: read the request head, then either hand the connection to
//! the websocket handshake (replaying the head) or answer NIP-11 / a short text page.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head accepted (browsers send ~1 KiB; websocket clients less).
const MAX_HEAD: usize = 16 * 1024;
/// A client that does not finish its request head in this time is dropped.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Back-off after a failed `accept` (e.g. out of file descriptors), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept on `listener` until `shutdown`, at most `max` connections at a time (more wait in
/// the kernel's queue), each handled by `handle` in a task tracked by `tracker`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max: usize,
    what: &'static str,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("{what} accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let task = handle(stream, peer);
        tracker.spawn(async move {
            let _permit = permit;
            if let Err(e) = task.await {
                tracing::debug!(%peer, "{what} connection ended: {e}");
            }
        });
    }
}

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    WebSocket,
    /// `Accept: application/nostr+json`.
    Nip11,
    Other,
}

/// Classify a request head (everything up to the blank line).
pub fn classify(head: &[u8]) -> Head {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect::<Vec<_>>()
    };
    if header("upgrade").iter().any(|v| v.contains("websocket")) {
        Head::WebSocket
    } else if header("accept")
        .iter()
        .any(|v| v.contains("application/nostr+json"))
    {
        Head::Nip11
    } else {
        Head::Other
    }
}

/// Refuse a connection at once with `503` and `reason` (best effort: never waits on the peer).
pub fn refuse(stream: &TcpStream, reason: &str) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Read the request head; `None` if the peer closed, sent too much, or took longer than
/// `deadline`.
pub async fn read_head(stream: &mut TcpStream, deadline: Duration) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(Some(()));
            }
            if head.len() > MAX_HEAD {
                return Ok(None);
            }
        }
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(Some(()))) => Ok(Some(head)),
        Ok(Ok(None)) | Err(_) => Ok(None),
        Ok(Err(e)) => Err(e),
    }
}

/// Answer a plain HTTP request and close.
pub async fn respond(
    mut stream: TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: *\r\n\
         Access-Control-Allow-Methods: GET, OPTIONS\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A TCP stream that first yields bytes already read from it (the request head).
pub struct Replay {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Replay {
    pub fn new(head: Vec<u8>, inner: TcpStream) -> Replay {
        Replay {
            head,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_classified_case_insensitively() {
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(ws), Head::WebSocket);
        let nip11 = b"GET / HTTP/1.1\r\nAccept: application/nostr+json\r\n\r\n";
        assert_eq!(classify(nip11), Head::Nip11);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n\r\n"), Head::Other);
        assert_eq!(classify(b"\xff\xfe garbage"), Head::Other);
    }
}

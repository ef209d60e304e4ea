//! The local control API: JSON request/response over a Unix socket (mode 0600) in the home folder.
//! One request per connection, one line each way. The CLI is the client; the daemon serves it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ForwardSpec, ListenSpec};
use crate::dragon::connect::Station;
use crate::tunnel::CloseFilter;

/// Largest request accepted: a `p2p listen` with a long allow-list is a few KiB. Read into a
/// buffer of at most this size, so that [`MAX_CONNECTIONS`] of them bound the memory (16 MiB).
const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Concurrent control connections: the CLI opens one per command, scripts a few at a time.
/// More wait in the socket's backlog (1,000 idle ones once took 150 MiB).
const MAX_CONNECTIONS: usize = 64;
/// How long what came after a request (the rest of one too long) is read and dropped after the answer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// A client that does not send its request line in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the CLI waits for an answer (a backfill of a large constellation takes minutes).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Everything the CLI can ask the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Id,
    SwarmConnect {
        addr: String,
    },
    SwarmPeers,
    /// `/ipfs/ping/1.0.0` round trips to a peer (connecting first if needed), as `ipfs ping`.
    Ping {
        peer: String,
        count: u32,
    },
    P2pListen {
        spec: ListenSpec,
        persist: bool,
    },
    P2pForward {
        spec: ForwardSpec,
        persist: bool,
    },
    P2pLs,
    P2pClose {
        filter: CloseFilter,
    },
    StreamLs,
    StreamClose {
        id: Option<u64>,
    },
    /// Run a backfill with the daemon's node (the CLI holds the run lock).
    Backfill {
        args: crate::sync::backfill::BackfillOptions,
    },
    /// DRAGON's report; `refresh` runs a publishing cycle first.
    Services {
        #[serde(default)]
        refresh: bool,
    },
    /// Forward a local port to a station's `/x/<slug>-<peer>` (the BRIEF port rule).
    Connect {
        slug: String,
        peer: Station,
        #[serde(default)]
        port: Option<u16>,
    },
    Disconnect {
        slug: String,
        peer: Station,
    },
    /// One swarm map cycle now (`swarm refresh`); answers its report.
    SwarmRefresh,
    /// How far the running swarm map cycle is (`swarm refresh`'s progress bar).
    SwarmProgress,
    /// Each live link's state and figures (`swarm map`, `constellation live`).
    LiveLinks,
}

/// The answer: `result` on success, a one-sentence `error` otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no daemon is running for this home ({path}); start one with `constellation daemon`")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {path} did not answer: {reason}")]
    Protocol { path: PathBuf, reason: String },
    #[error("{0}")]
    Refused(String),
}

/// What serves requests: the daemon implements this.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, String>> + Send;
}

/// Send one request to the daemon whose socket is `path`.
pub async fn call(path: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
    let protocol = |reason: String| ControlError::Protocol {
        path: path.to_owned(),
        reason,
    };
    let mut socket =
        UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::NotRunning {
                path: path.to_owned(),
                source,
            })?;
    let mut line = serde_json::to_vec(request).map_err(|e| protocol(e.to_string()))?;
    line.push(b'\n');
    let exchange = async {
        socket.write_all(&line).await?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| protocol("timed out".into()))?
        .map_err(|e| protocol(e.to_string()))?;
    let response: Response =
        serde_json::from_slice(&answer).map_err(|e| protocol(format!("bad answer: {e}")))?;
    match (response.result, response.error) {
        (_, Some(error)) => Err(ControlError::Refused(error)),
        (Some(result), None) => Ok(result),
        (None, None) => Ok(serde_json::Value::Null),
    }
}

/// Is a daemon answering on `path`?
pub async fn is_running(path: &Path) -> bool {
    UnixStream::connect(path).await.is_ok()
}

/// Bind the socket (removing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve requests until `shutdown`; each connection is one task on `tracker`.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: std::sync::Arc<H>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let socket = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        tracker.spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(socket, &*handler).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn answer<H: Handler>(socket: UnixStream, handler: &H) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let too_long = line.len() > MAX_REQUEST_BYTES;
    let parsed = if too_long {
        Err(format!(
            "bad request: longer than {} KiB",
            MAX_REQUEST_BYTES / 1024
        ))
    } else {
        serde_json::from_slice::<Request>(&line).map_err(|e| format!("bad request: {e}"))
    };
    drop(line);
    let response = match parsed {
        Ok(request) => match handler.handle(request).await {
            Ok(result) => Response {
                result: Some(result),
                error: None,
            },
            Err(error) => Response {
                result: None,
                error: Some(error),
            },
        },
        Err(error) => Response {
            result: None,
            error: Some(error),
        },
    };
    let mut bytes = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await?;
    // Read (and forget) what came after the request for a moment (the rest of one too long, or
    // bytes past its newline), so that closing with unread bytes does not reset the connection
    // before the client has read the answer. The CLI closes at once, which ends this at EOF.
    let mut rest = reader.into_inner().into_inner();
    let mut sink = [0u8; 8192];
    let drain = async {
        while rest.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    Ok(())
}

//! The Kubo RPC API (`/api/v0/…` on 127.0.0.1:5001), so a station's `ipfs` commands and
//! watchdogs talk to this daemon: where it listens, `<repo>/api`, and start/stop. The HTTP side
//! is [`server`], who may call is [`guard`], the endpoints are [`commands`].

pub mod call;
pub mod commands;
pub mod files;
pub mod gc;
pub mod guard;
pub mod ipfs;
pub mod keys;
pub mod multipart;
pub mod pin_set;
pub mod pins;
pub mod providing;
pub mod repo;
pub mod server;
pub mod tar;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::KuboApiConfig;
use crate::control::Handler;
use guard::Policy;
use repo::{ApiFile, RepoApi};

/// A failed call: go-ipfs-cmds' error code and message, or a 404 for an endpoint not served.
#[derive(Debug)]
pub struct Failure {
    pub code: wire::ErrorCode,
    pub message: String,
    pub not_found: bool,
}

impl Failure {
    pub fn normal(message: impl Into<String>) -> Failure {
        Failure {
            code: wire::ErrorCode::Normal,
            message: message.into(),
            not_found: false,
        }
    }
    pub fn client(message: impl Into<String>) -> Failure {
        Failure {
            code: wire::ErrorCode::Client,
            ..Failure::normal(message)
        }
    }
    pub fn not_found(message: String) -> Failure {
        Failure {
            not_found: true,
            ..Failure::client(message)
        }
    }
    pub fn of(error: impl std::fmt::Display) -> Failure {
        Failure::normal(error.to_string())
    }
    /// Kubo's status: 404 for a missing command, 400 for a client error, 500 otherwise.
    pub fn status(&self) -> u16 {
        match (self.not_found, self.code) {
            (true, _) => 404,
            (false, wire::ErrorCode::Client) => 400,
            (false, wire::ErrorCode::Normal) => 500,
        }
    }
}

/// A successful answer.
pub enum Reply {
    /// One JSON value (go-ipfs-cmds' `EmitOnce`), newline included.
    Json(Vec<u8>),
    /// Nothing emitted (`p2p listen`, `p2p forward`, `p2p stream close`).
    Empty,
    /// Newline-delimited JSON values as they come (`ping`, `routing findpeer`).
    Lines(tokio::sync::mpsc::Receiver<Vec<u8>>),
    /// Newline-delimited JSON values all known at once (`add`), sent as a chunked stream.
    Ndjson(Vec<u8>),
    /// Bytes, not JSON (`cat`: text/plain, `get`: a tar), as go-ipfs-cmds sends an
    /// `io.Reader` with `X-Stream-Output: 1`.
    Raw {
        content_type: &'static str,
        chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    },
}

/// One JSON value as the whole answer.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Reply {
    Reply::Json(line(value))
}

/// One JSON value and a newline, as Go's encoder writes it.
pub(crate) fn line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    bytes.push(b'\n');
    bytes
}

/// Where and how the API is served, resolved from `[kubo_api]` and the Kubo repo.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub allowed_origins: Vec<String>,
    pub authorizations: Vec<guard::Authorization>,
    /// The repo whose `api` file is written.
    pub repo: Option<PathBuf>,
}

impl Settings {
    /// `[kubo_api] listen`, else the repo's `Addresses.API`, else Kubo's default.
    pub fn resolve(config: &KuboApiConfig, repo: Option<&Path>) -> anyhow::Result<Settings> {
        let from_repo = match repo {
            Some(repo) => RepoApi::read(repo)?,
            None => RepoApi::default(),
        };
        let text = (config.listen.clone())
            .or_else(|| from_repo.listen())
            .unwrap_or_else(|| repo::DEFAULT_API.into());
        let listen = match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => crate::tunnel::addr::tcp_socket_addr(&text)
                .with_context(|| format!("the Kubo RPC API address {text:?}"))?,
        };
        Ok(Settings {
            listen,
            allowed_origins: from_repo.allowed_origins(),
            authorizations: from_repo.authorizations(),
            repo: repo.map(Path::to_owned),
        })
    }
}

/// The running API; [`Running::stop`] removes `<repo>/api`.
pub struct Running {
    pub addr: SocketAddr,
    api_file: Option<ApiFile>,
}

impl Running {
    /// Remove the API file (the server itself stops with the daemon's cancellation token).
    pub fn stop(self) {
        if let Some(file) = self.api_file {
            file.remove();
        }
    }
}

/// Bind the API, serve it on `tracker` until `shutdown`, and write `<repo>/api`.
pub async fn start<H: Handler>(
    settings: Settings,
    control: Arc<H>,
    ipfs: Arc<ipfs::Ipfs>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Running> {
    if !settings.listen.ip().is_loopback() {
        tracing::warn!(
            "the Kubo RPC API listens on {}, not loopback: whoever reaches it controls the node",
            settings.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the Kubo RPC API", settings.listen))?;
    let addr = listener.local_addr()?;
    let policy = Policy::new(
        &settings.allowed_origins,
        addr.port(),
        settings.authorizations.clone(),
    );
    let api = Arc::new(commands::Api::new(control, ipfs, tracker.clone()));
    tracker.spawn(server::serve(
        listener,
        api,
        policy,
        shutdown,
        tracker.clone(),
    ));
    let api_file = match &settings.repo {
        Some(repo) => Some(
            ApiFile::write(repo, addr)
                .with_context(|| format!("cannot write {}", repo.join("api").display()))?,
        ),
        None => None,
    };
    tracing::info!(
        "Kubo RPC API server listening on /ip4/{}/tcp/{}",
        addr.ip(),
        addr.port()
    );
    Ok(Running { addr, api_file })
}

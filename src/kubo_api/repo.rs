//! The Kubo repo's side of the API: `Addresses.API`, `API.HTTPHeaders` and `API.Authorizations`
//! from its `config`, and the `<repo>/api` file that tells the `ipfs` CLI where the API is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::guard::{Authorization, auth_header};
use crate::node::bootstrap::{BootstrapError, read_kubo_config};
use crate::tunnel::addr;

/// Kubo's default `Addresses.API`.
pub const DEFAULT_API: &str = "/ip4/127.0.0.1/tcp/5001";
/// How long the start-up check waits for an API named by an existing `<repo>/api` to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `<repo>/api` file read (a multiaddr is well under 100 bytes).
const MAX_API_FILE_BYTES: u64 = 4096;

/// What a Kubo repo's `config` says about the API.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RepoApi {
    addresses: Addresses,
    #[serde(rename = "API")]
    api: ApiSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Addresses {
    /// Kubo's `Strings`: one string or a list.
    #[serde(rename = "API")]
    api: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ApiSection {
    #[serde(rename = "HTTPHeaders")]
    http_headers: HashMap<String, Vec<String>>,
    authorizations: HashMap<String, AuthScope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AuthScope {
    auth_secret: String,
    allowed_paths: Vec<String>,
}

impl RepoApi {
    pub fn read(repo: &Path) -> Result<RepoApi, BootstrapError> {
        read_kubo_config(repo)
    }

    /// The first `Addresses.API` entry, if any.
    pub fn listen(&self) -> Option<String> {
        match self.addresses.api.as_ref()? {
            OneOrMany::One(a) => Some(a.clone()),
            OneOrMany::Many(list) => list.first().cloned(),
        }
    }

    /// `API.HTTPHeaders.Access-Control-Allow-Origin` (header names compared without case).
    pub fn allowed_origins(&self) -> Vec<String> {
        (self.api.http_headers.iter())
            .filter(|(name, _)| name.eq_ignore_ascii_case("Access-Control-Allow-Origin"))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect()
    }

    /// `API.Authorizations`, as header values; a secret of unknown type is skipped with a warning.
    pub fn authorizations(&self) -> Vec<Authorization> {
        let mut out = Vec::new();
        for (user, scope) in &self.api.authorizations {
            match auth_header(&scope.auth_secret) {
                Some(header) => out.push(Authorization {
                    header,
                    allowed_paths: scope.allowed_paths.clone(),
                }),
                None => {
                    tracing::warn!(%user, "API.Authorizations: unknown AuthSecret type, skipped")
                }
            }
        }
        out
    }
}

/// `<repo>/api` while the API runs; removed by [`ApiFile::remove`] or when dropped.
pub struct ApiFile {
    path: PathBuf,
}

impl ApiFile {
    /// Write the API's multiaddr (no newline, as Kubo), atomically (`atomic_file`).
    pub fn write(repo: &Path, bound: SocketAddr) -> std::io::Result<ApiFile> {
        let path = repo.join("api");
        let text = addr::socket_multiaddr(bound);
        crate::atomic_file::write(&path, text.as_bytes(), 0o600)?;
        Ok(ApiFile { path })
    }

    pub fn remove(self) {}
}

impl Drop for ApiFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove the API file: {e}");
        }
    }
}

/// Refuse to start when `<repo>/api` names an API that answers (a Kubo daemon or another of
/// ours uses the repo); a file nobody answers at is stale and will be replaced.
pub async fn check_not_in_use(repo: &Path) -> anyhow::Result<()> {
    let path = repo.join("api");
    match answering_api(repo).await? {
        Some((text, true)) => anyhow::bail!(
            "the Kubo repo {} is in use: its API file {} names {text}, which answers (a Kubo daemon or another constellation daemon runs on this repo; stop it first)",
            repo.display(),
            path.display(),
        ),
        Some((text, false)) => {
            tracing::warn!(path = %path.display(), "replacing a stale API file (nothing answers at {text})")
        }
        None => {}
    }
    Ok(())
}

/// Does a daemon (Kubo, or one of ours) serve `repo` now: its `api` file names an address that
/// answers? An absent, unreadable or stale file means no.
pub async fn api_answers(repo: &Path) -> bool {
    matches!(answering_api(repo).await, Ok(Some((_, true))))
}

/// The address `<repo>/api` names and whether it answers; `None` without a usable file.
async fn answering_api(repo: &Path) -> anyhow::Result<Option<(String, bool)>> {
    let path = repo.join("api");
    let text = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() <= MAX_API_FILE_BYTES => std::fs::read_to_string(&path)?,
        Ok(_) => anyhow::bail!(
            "{} is larger than {MAX_API_FILE_BYTES} bytes",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = text.trim().to_owned();
    let Ok(target) = addr::tcp_socket_addr(&text) else {
        tracing::warn!(path = %path.display(), "ignoring an API file that names no TCP address");
        return Ok(None);
    };
    let answers = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(target))
        .await
        .is_ok_and(|c| c.is_ok());
    Ok(Some((text, answers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_parts_of_a_kubo_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config"),
            r#"{"Addresses": {"API": ["/ip4/127.0.0.1/tcp/5002"]},
                "API": {"HTTPHeaders": {"Access-Control-Allow-Origin": ["https://webui.example"]},
                        "Authorizations": {"alice": {"AuthSecret": "bearer:tok",
                                                     "AllowedPaths": ["/api/v0"]}}}}"#,
        )
        .unwrap();
        let api = RepoApi::read(dir.path()).unwrap();
        assert_eq!(api.listen().as_deref(), Some("/ip4/127.0.0.1/tcp/5002"));
        assert_eq!(api.allowed_origins(), ["https://webui.example"]);
        assert_eq!(api.authorizations()[0].header, "Bearer tok");
        std::fs::write(
            dir.path().join("config"),
            r#"{"Addresses": {"API": "/ip4/127.0.0.1/tcp/7"}}"#,
        )
        .unwrap();
        let api = RepoApi::read(dir.path()).unwrap();
        assert_eq!(api.listen().as_deref(), Some("/ip4/127.0.0.1/tcp/7"));
        assert!(api.authorizations().is_empty());
    }

    #[test]
    fn api_file_holds_the_multiaddr_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let file = ApiFile::write(dir.path(), "127.0.0.1:5001".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("api")).unwrap();
        assert_eq!(text, "/ip4/127.0.0.1/tcp/5001");
        file.remove();
        assert!(!dir.path().join("api").exists());
    }
}

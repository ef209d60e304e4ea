//! Persisted tunnels (`p2p listen|forward --persist`): a JSON list of [`TunnelSpec`] in the home
//! folder, owned by one [`Persisted`] whose lock makes each read-change-write whole, rewritten
//! atomically, so tunnels come back after a restart (Kubo forgets them: kubo#5460).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{TunnelInfo, TunnelKind};
use crate::config::TunnelSpec;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a tunnel list: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Read the list; a missing file is an empty list.
fn load(path: &Path) -> Result<Vec<TunnelSpec>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PersistError::Parse {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(PersistError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn save(path: &Path, specs: &[TunnelSpec]) -> Result<(), PersistError> {
    let err = |source| PersistError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(specs).map_err(|e| err(std::io::Error::other(e)))?;
    crate::atomic_file::write(path, &bytes, 0o644).map_err(err)
}

/// The one owner of a `tunnels.json`: concurrent control requests change it one at a time, so
/// two `--persist` requests at once both land.
pub struct Persisted {
    path: PathBuf,
    /// Held across each load-change-save.
    changing: Mutex<()>,
}

impl Persisted {
    pub fn new(path: PathBuf) -> Persisted {
        Persisted {
            path,
            changing: Mutex::new(()),
        }
    }

    pub fn load(&self) -> Result<Vec<TunnelSpec>, PersistError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        load(&self.path)
    }

    /// Add `spec` (replacing an equal one).
    pub fn add(&self, spec: TunnelSpec) -> Result<(), PersistError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        add(&self.path, spec)
    }

    /// Forget the specs of closed tunnels.
    pub fn remove_closed(&self, closed: &[TunnelInfo]) -> Result<(), PersistError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        remove_closed(&self.path, closed)
    }
}

/// Add `spec` (replacing an equal one) and rewrite the file.
fn add(path: &Path, spec: TunnelSpec) -> Result<(), PersistError> {
    let mut specs = load(path)?;
    specs.retain(|s| s != &spec);
    specs.push(spec);
    save(path, &specs)
}

/// Remove the specs of closed tunnels and rewrite the file.
fn remove_closed(path: &Path, closed: &[TunnelInfo]) -> Result<(), PersistError> {
    let specs = load(path)?;
    let before = specs.len();
    let kept: Vec<TunnelSpec> = specs
        .into_iter()
        .filter(|s| !closed.iter().any(|c| describes(s, c)))
        .collect();
    if kept.len() != before {
        save(path, &kept)?;
    }
    Ok(())
}

/// Does `spec` describe the live tunnel `info`?
fn describes(spec: &TunnelSpec, info: &TunnelInfo) -> bool {
    match spec {
        TunnelSpec::Listen(l) => info.kind == TunnelKind::Listen && l.protocol == info.protocol,
        TunnelSpec::Forward(f) => {
            info.kind == TunnelKind::Forward
                && f.protocol == info.protocol
                && f.listen == info.listen_address
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ForwardSpec, ListenSpec};

    #[test]
    fn add_then_close_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnels.json");
        let listen = TunnelSpec::Listen(ListenSpec {
            protocol: "/x/a".into(),
            target: "/ip4/127.0.0.1/tcp/1".into(),
            report_peer_id: false,
            allow_custom_protocol: false,
            allow_peers: vec![],
        });
        let forward = TunnelSpec::Forward(ForwardSpec {
            protocol: "/x/b".into(),
            listen: "/ip4/127.0.0.1/tcp/2".into(),
            target: "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".into(),
            allow_custom_protocol: false,
        });
        add(&path, listen.clone()).unwrap();
        add(&path, forward.clone()).unwrap();
        add(&path, listen.clone()).unwrap();
        assert_eq!(load(&path).unwrap(), vec![forward.clone(), listen.clone()]);
        let closed = TunnelInfo {
            protocol: "/x/a".into(),
            listen_address: "/p2p/x".into(),
            target_address: "/ip4/127.0.0.1/tcp/1".into(),
            kind: TunnelKind::Listen,
            allow_peers: vec![],
        };
        remove_closed(&path, &[closed]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![forward]);
    }

    #[test]
    fn garbage_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnels.json");
        std::fs::write(&path, "{nope").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("tunnels.json")
        );
    }
}

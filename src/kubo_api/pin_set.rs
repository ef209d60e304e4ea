//! The pin set: `<home>/pins.json`, one owner (a mutex over the map), every change written
//! atomically before the call answers. Recursive and direct pins; indirect ones are not tracked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use cid::Cid;
use serde::{Deserialize, Serialize};

/// Pins kept: a station pins its own folder and a few files; the bound keeps the file small.
pub const MAX_PINS: usize = 10_000;
/// A pin file larger than this is not ours.
const MAX_PIN_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Kubo's pin types that we keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinKind {
    Recursive,
    Direct,
}

impl PinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Recursive => "recursive",
            PinKind::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pin {
    kind: PinKind,
    #[serde(default)]
    name: String,
}

/// Why the pin set failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pin file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the pin set is full ({MAX_PINS} pins)")]
    Full,
    #[error("not pinned or pinned indirectly")]
    NotPinned,
}

/// The pin set. The mutex owns the map, and every change is on disk before the call answers.
pub struct Pins {
    path: PathBuf,
    pins: Mutex<BTreeMap<String, Pin>>,
}

impl Pins {
    /// The set kept in `path` (empty when the file does not exist).
    pub fn open(path: PathBuf) -> Result<Pins, PinError> {
        let bad = |reason: String| PinError::File {
            path: path.clone(),
            reason,
        };
        let pins = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(bad(e.to_string())),
            Ok(meta) if meta.len() > MAX_PIN_FILE_BYTES => {
                return Err(bad(format!("over {MAX_PIN_FILE_BYTES} bytes")));
            }
            Ok(_) => {
                let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
                serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(Pins {
            path,
            pins: Mutex::new(pins),
        })
    }

    pub fn add(&self, cid: Cid, kind: PinKind, name: &str) -> Result<(), PinError> {
        self.change(|pins| {
            let key = key_of(&cid);
            if !pins.contains_key(&key) && pins.len() >= MAX_PINS {
                return Err(PinError::Full);
            }
            // A recursive pin covers a direct one; a direct pin never lowers a recursive one.
            let kind = match pins.get(&key) {
                Some(old) if old.kind == PinKind::Recursive => PinKind::Recursive,
                _ => kind,
            };
            pins.insert(
                key,
                Pin {
                    kind,
                    name: name.to_owned(),
                },
            );
            Ok(())
        })
    }

    pub fn remove(&self, cid: &Cid) -> Result<(), PinError> {
        self.change(|pins| {
            pins.remove(&key_of(cid))
                .map(drop)
                .ok_or(PinError::NotPinned)
        })
    }

    /// Every pin: (CID as pinned, kind, name).
    pub fn list(&self) -> Vec<(String, PinKind, String)> {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.iter()
            .map(|(cid, pin)| (cid.clone(), pin.kind, pin.name.clone()))
            .collect()
    }

    fn change(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, Pin>) -> Result<(), PinError>,
    ) -> Result<(), PinError> {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = pins.clone();
        edit(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| self.error(e.to_string()))?;
        crate::atomic_file::write(&self.path, &bytes, 0o600)
            .map_err(|e| self.error(e.to_string()))?;
        *pins = next;
        Ok(())
    }

    fn error(&self, reason: String) -> PinError {
        PinError::File {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Pins are keyed by the CID's text as Kubo prints it (v0 stays `Qm…`).
fn key_of(cid: &Cid) -> String {
    cid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_survive_reopening_and_recursive_is_never_lowered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let cid: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
            .parse()
            .unwrap();
        let pins = Pins::open(path.clone()).unwrap();
        pins.add(cid, PinKind::Recursive, "site").unwrap();
        pins.add(cid, PinKind::Direct, "site").unwrap();
        drop(pins);
        let pins = Pins::open(path.clone()).unwrap();
        assert_eq!(
            pins.list(),
            [(cid.to_string(), PinKind::Recursive, "site".to_string())]
        );
        pins.remove(&cid).unwrap();
        assert!(matches!(pins.remove(&cid), Err(PinError::NotPinned)));
        assert!(Pins::open(path).unwrap().list().is_empty());
    }
}

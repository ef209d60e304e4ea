//! Publishing IPNS names: the last record of each name we publish is kept on disk (one file per
//! name), so the next one gets a higher sequence number after a restart, as Kubo's datastore does.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;

use crate::ipfs::ipns::{IpnsError, IpnsRecord};
use crate::node::{Node, NodeError};

/// Names whose values `kept_values` reads at most: a station publishes two (its folder and
/// the map) and a few of its users' keys; more files than this are not ours.
const MAX_KEPT_NAMES: usize = crate::ipfs::keystore::MAX_KEYS;
/// A record file larger than this is not ours (ours are < 1 KiB, RSA keys included).
const MAX_RECORD_FILE_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("cannot keep the IPNS record in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot sign the IPNS record: {0}")]
    Record(#[from] IpnsError),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// What one publication produced: the record, and whether the DHT took it (a node with no peers
/// still keeps the record, and its next publication goes out).
#[derive(Debug)]
pub struct Published {
    pub name: PeerId,
    pub record: IpnsRecord,
    pub put: Result<(), NodeError>,
}

/// Our published names: `<dir>/<PeerID>.ipns` holds the last record of each. One owner: the
/// lock serialises publications, so two at once never reuse a sequence number.
pub struct Names {
    node: Node,
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl Names {
    pub fn new(node: Node, dir: PathBuf) -> Names {
        Names {
            node,
            dir,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Sign `value` (e.g. `/ipfs/<cid>`) with `key`, valid for `lifetime`, keep it on disk, then
    /// PUT it to the DHT. The sequence is the last one kept plus one; with none kept, one more
    /// than what the DHT holds (a wiped home must not publish below its old records).
    pub async fn publish(
        &self,
        key: &Keypair,
        value: &str,
        lifetime: Duration,
        ttl: Duration,
    ) -> Result<Published, NamesError> {
        let _one_at_a_time = self.lock.lock().await;
        let name = PeerId::from(key.public());
        let sequence = match self.last(&name)? {
            Some(last) => last.sequence().saturating_add(1),
            None => match self.node.resolve_ipns(name).await {
                Ok(found) => found.sequence().saturating_add(1),
                Err(_) => 0,
            },
        };
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        let validity = chrono::Utc::now()
            .checked_add_signed(lifetime)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let record = IpnsRecord::create(key, value.as_bytes(), sequence, validity, ttl)?;
        let path = self.path_of(&name);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::atomic_file::write(&path, &record.marshal(), 0o600))
            .map_err(|source| NamesError::Io { path, source })?;
        let put = self.node.put_ipns_for(name, &record).await;
        Ok(Published { name, record, put })
    }

    /// The last record we published for `name`, checked to be a record for `name` (it may have
    /// expired); `None` when we never published it.
    pub fn last(&self, name: &PeerId) -> Result<Option<IpnsRecord>, NamesError> {
        let path = self.path_of(name);
        let bytes = match crate::atomic_file::read_bounded(&path, MAX_RECORD_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NamesError::Io { path, source }),
        };
        let record = IpnsRecord::unmarshal(&bytes)?;
        match record.validate(name, chrono::Utc::now()) {
            Ok(()) | Err(IpnsError::Expired(_)) => Ok(Some(record)),
            Err(e) => Err(e.into()),
        }
    }

    /// The value of the last record of every name we publish (expired ones too): what the
    /// store must keep for the peers that fetch it (`repo gc`). Unreadable files are skipped.
    pub fn kept_values(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        (entries.flatten())
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name: PeerId = file.strip_suffix(".ipns")?.parse().ok()?;
                Some(self.last(&name).ok()??.value().to_vec())
            })
            .take(MAX_KEPT_NAMES)
            .collect()
    }

    fn path_of(&self, name: &PeerId) -> PathBuf {
        self.dir.join(format!("{name}.ipns"))
    }
}

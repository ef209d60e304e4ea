//! Our side of the map: keep `~/.zen/tmp/<ID>/` a station folder (a minimal `12345.json` and a
//! fresh moats when no Astroport writes them), add it as `ipfs add -rwq <folder>/*` does and
//! publish `/ipfs/<cid>` under our node key; publish the map under `MySwarm_<ID>` when we have it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::context::{Context, CycleReport, now_secs};
use super::station::{self, MOATS_FILE, OwnStation, STAOM_FILE, STATION_FILE, StationFile};
use crate::ipfs::unixfs::{self, FolderLimits, Hidden};

/// Entries of the whole map when we add it (one folder per station, a few files each).
const MAX_MAP_ADD_ENTRIES: usize = 100_000;
/// Largest key file read (`myswarm_secret.ipns` is a 119-byte PEM).
const MAX_KEY_FILE_BYTES: u64 = 8 * 1024;
/// PKCS#8 v1 header of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a publication did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot add {path}: {source}")]
    Add {
        path: PathBuf,
        #[source]
        source: Box<unixfs::BuildError>,
    },
    #[error("cannot publish: {0}")]
    Publish(#[from] crate::node::names::NamesError),
    #[error("{path} is not a PEM PKCS#8 Ed25519 key: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// Publish our folder when it changed or its record is past half its lifetime. With `refresh`
/// (a cycle) our `12345.json`/moats are rewritten first and the map is published too (with the key).
pub async fn publish_all(ctx: &Context, unsent: &Unsent, report: &mut CycleReport, refresh: bool) {
    match publish_own(ctx, unsent, refresh).await {
        Ok(value) => report.published = value,
        Err(e) => tracing::warn!("swarm map: our folder is not published: {e}"),
    }
    if !refresh {
        // Between cycles only our folder is checked; the map changes with a cycle.
        return;
    }
    let key = match find_myswarm_key(ctx) {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("swarm map: the map is not published: {e}");
            return;
        }
    };
    tracing::info!(source = %key.source, "swarm map: the map's key is {}", key.source);
    report.map_key = Some(key.source.to_string());
    let limits = FolderLimits {
        max_bytes: ctx.config.max_map_bytes,
        max_entries: MAX_MAP_ADD_ENTRIES,
        max_depth: ctx.config.max_station_depth as usize + 1,
        max_blocks: usize::MAX,
    };
    let swarm = ctx.zen.swarm().to_owned();
    match publish_folder(ctx, unsent, &key.key, &swarm, limits).await {
        Ok(value) => report.map_published = value,
        Err(e) => tracing::warn!("swarm map: the map is not published: {e}"),
    }
}

/// Refresh our folder's files (when ours) and publish it; the published value if it went out.
async fn publish_own(
    ctx: &Context,
    unsent: &Unsent,
    refresh: bool,
) -> Result<Option<String>, OwnError> {
    let own = ctx.zen.own().to_owned();
    std::fs::create_dir_all(&own).map_err(|source| OwnError::Write {
        path: own.clone(),
        source,
    })?;
    if refresh {
        write_station_files(ctx, &own)?;
    }
    let key = ctx.key.clone();
    publish_folder(ctx, unsent, &key, &own, FolderLimits::STATION).await
}

/// Write our minimal `12345.json` unless an Astroport's is there, and the moats when the file is
/// ours or no moats exists (Astroport refreshes its own).
fn write_station_files(ctx: &Context, own: &Path) -> Result<(), OwnError> {
    let existing = StationFile::read(own);
    let ours = match &existing {
        None => !own.join(STATION_FILE).exists(),
        Some(file) => file.generator.is_some(),
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = own.join(name);
        crate::atomic_file::write(&path, bytes, 0o644)
            .map_err(|source| OwnError::Write { path, source })
    };
    let now = now_secs();
    if ours {
        let g1swarm = find_myswarm_key(ctx)
            .ok()
            .flatten()
            .map(|found| PeerId::from(found.key.public()));
        let file = OwnStation {
            peer: ctx.node.peer_id(),
            hostname: hostname(),
            relay: ctx.config.my_relay.clone().or(ctx.relay_url.clone()),
            captain_hex: ctx.config.captain_hex.clone(),
            node_hex: ctx.config.node_hex.clone(),
            g1swarm,
            services: station::services_in(own),
        };
        write(STATION_FILE, &file.to_json(now))?;
    }
    if ours || station::read_moats(own).is_none() {
        write(MOATS_FILE, format!("{now}\n").as_bytes())?;
        write(
            STAOM_FILE,
            format!("{}\n", station::utc_date(now)).as_bytes(),
        )?;
    }
    Ok(())
}

/// Add `dir` (its entries wrapped, hidden names skipped, as `ipfs add -rwq dir/*`) into the
/// block store, then publish `/ipfs/<cid>` under `key` if the value changed or the last record
/// is past half its lifetime. The value, when published.
async fn publish_folder(
    ctx: &Context,
    unsent: &Unsent,
    key: &Keypair,
    dir: &Path,
    limits: FolderLimits,
) -> Result<Option<String>, OwnError> {
    let store = ctx.bitswap.store().clone();
    let path = dir.to_owned();
    let added = tokio::task::spawn_blocking(move || {
        unixfs::add_path(&path, &mut &*store, &limits, Hidden::Skip)
    })
    .await
    .unwrap_or_else(|e| Err(unixfs::BuildError::Tree(e.to_string())))
    .map_err(|source| OwnError::Add {
        path: dir.to_owned(),
        source: Box::new(source),
    })?;
    let value = format!("/ipfs/{}", added.root);
    let name = PeerId::from(key.public());
    let lifetime = Duration::from_secs(ctx.config.record_lifetime_secs);
    if !unsent.has(&name) && !due(ctx, &name, &value, lifetime)? {
        return Ok(None);
    }
    let ttl = Duration::from_secs(ctx.config.record_ttl_secs);
    let published = ctx.names.publish(key, &value, lifetime, ttl).await?;
    match &published.put {
        Ok(()) => {
            unsent.set(name, false);
            tracing::info!(%name, "swarm map: published /ipns/{name} -> {value}");
        }
        Err(e) => {
            unsent.set(name, true);
            tracing::warn!(%name, "swarm map: /ipns/{name} -> {value} kept, not yet in the DHT: {e}");
        }
    }
    Ok(Some(value))
}

/// The names whose last record the DHT did not take (no peer yet): published again at the next
/// check rather than at half their lifetime. One owner: the map, behind its mutex.
#[derive(Default)]
pub struct Unsent(std::sync::Mutex<std::collections::HashSet<PeerId>>);

impl Unsent {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<PeerId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn has(&self, name: &PeerId) -> bool {
        self.lock().contains(name)
    }
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }
    fn set(&self, name: PeerId, unsent: bool) {
        if unsent {
            self.lock().insert(name);
        } else {
            self.lock().remove(&name);
        }
    }
}

/// Is a publication of `value` under `name` due: a new value, or the last record past half
/// its lifetime (republished well before it expires)?
fn due(ctx: &Context, name: &PeerId, value: &str, lifetime: Duration) -> Result<bool, OwnError> {
    let Some(last) = ctx.names.last(name)? else {
        return Ok(true);
    };
    if last.value() != value.as_bytes() {
        return Ok(true);
    }
    let half = chrono::Duration::from_std(lifetime / 2).unwrap_or(chrono::Duration::MAX);
    let left = last.validity() - chrono::Utc::now();
    Ok(left < half)
}

/// The key our map is published under, and where it was found.
pub struct MySwarmKey {
    pub key: Keypair,
    pub source: KeySource,
}

/// Where the `MySwarm_<ID>` key came from: a Kubo-format keystore (where `_12345.sh`'s `ipfs key
/// import` puts it) or Astroport's PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Keystore { name: String, dir: PathBuf },
    PemFile(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Keystore { name, dir } => {
                write!(f, "{name} of the keystore {}", dir.display())
            }
            KeySource::PemFile(path) => write!(f, "the PEM file {}", path.display()),
        }
    }
}

/// The `MySwarm_<our ID>` key: in the keystores first (the Kubo repo's, then ours), as
/// `_12345.sh` finds it with `ipfs key list`, else in Astroport's `myswarm_secret.ipns`. A key
/// file of a keystore that does not read is logged and the next place is tried.
pub fn find_myswarm_key(ctx: &Context) -> Result<Option<MySwarmKey>, OwnError> {
    let name = format!("MySwarm_{}", ctx.node.peer_id());
    find_key(&ctx.keystores, &name, &ctx.zen.myswarm_key())
}

fn find_key(keystores: &[PathBuf], name: &str, pem: &Path) -> Result<Option<MySwarmKey>, OwnError> {
    for dir in keystores {
        match crate::ipfs::keystore::find_in(dir, name) {
            Ok(Some(key)) => {
                let (name, dir) = (name.to_owned(), dir.clone());
                let source = KeySource::Keystore { name, dir };
                return Ok(Some(MySwarmKey { key, source }));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(keystore = %dir.display(), "swarm map: {name}: {e}"),
        }
    }
    let key = read_myswarm_key(pem)?;
    let source = KeySource::PemFile(pem.to_owned());
    Ok(key.map(|key| MySwarmKey { key, source }))
}

/// The `MySwarm_<ID>` key from Astroport's `myswarm_secret.ipns` (PEM PKCS#8 Ed25519, what
/// `ipfs key import -f pem-pkcs8-cleartext` reads); `None` when the file does not exist.
pub fn read_myswarm_key(path: &Path) -> Result<Option<Keypair>, OwnError> {
    let bad = |reason: String| OwnError::Key {
        path: path.to_owned(),
        reason,
    };
    let bytes = match crate::atomic_file::read_bounded(path, MAX_KEY_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    crate::ipfs::keystore::decode_pem_key(&bytes)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// The PEM `read_myswarm_key` reads, for a key of ours (tests, `keygen -t ipfs` equivalents).
pub fn myswarm_key_pem(seed: &[u8; 32]) -> String {
    use base64::Engine as _;
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

/// This machine's host name (`myHostName`), else `localhost`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_pkcs8_ed25519_key_reads_back_as_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("myswarm_secret.ipns");
        assert!(read_myswarm_key(&path).unwrap().is_none());
        std::fs::write(&path, myswarm_key_pem(&[7u8; 32])).unwrap();
        let key = read_myswarm_key(&path).unwrap().unwrap();
        let mut seed = [7u8; 32];
        let expected = Keypair::ed25519_from_bytes(&mut seed).unwrap();
        assert_eq!(key.public(), expected.public());
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_myswarm_key(&path).is_err());
    }

    #[test]
    fn the_first_keystore_with_a_readable_key_wins_then_the_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        let (broken, good) = (dir.path().join("broken"), dir.path().join("good"));
        let pem = dir.path().join("myswarm_secret.ipns");
        let keystores = [broken.clone(), good.clone()];
        assert!(find_key(&keystores, "MySwarm_x", &pem).unwrap().is_none());
        assert!(!broken.exists(), "a lookup creates no keystore");
        std::fs::write(&pem, myswarm_key_pem(&[7u8; 32])).unwrap();
        let found = find_key(&keystores, "MySwarm_x", &pem).unwrap().unwrap();
        assert_eq!(found.source, KeySource::PemFile(pem.clone()));
        // boxo's file name for `MySwarm_x`; the first keystore's file is no key.
        for (dir, bytes) in [(&broken, b"not a key".to_vec()), (&good, key(9))] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("key_jv4vg53bojwv66a"), bytes).unwrap();
        }
        let found = find_key(&keystores, "MySwarm_x", &pem).unwrap().unwrap();
        let expected = KeySource::Keystore {
            name: "MySwarm_x".into(),
            dir: good,
        };
        assert_eq!(found.source, expected);
        assert_eq!(
            found.key.public(),
            Keypair::ed25519_from_bytes([9u8; 32]).unwrap().public()
        );
    }

    fn key(seed: u8) -> Vec<u8> {
        let key = Keypair::ed25519_from_bytes([seed; 32]).unwrap();
        key.to_protobuf_encoding().unwrap()
    }
}

//! What `migrate` looks at on a station before it acts (read only): the Kubo repo (identity,
//! swarm key, bootstrap, peering), the original sync (script, lock, stamp, logs), ports 4001/5001.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{NodeConfig, SyncFiles, home_dir};
use crate::node::bootstrap::FirstPeers;

/// How long a port probe waits (loopback answers at once or not at all).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest lock or stamp file read (a PID, a Unix time).
const MAX_SMALL_FILE: u64 = 64;

/// The original sync's logs in `~/.zen/strfry` (the trigger writes ours under the same names).
const RUN_LOG: &str = "constellation-backfill.log";
const ERROR_LOG: &str = "constellation-backfill.error.log";

/// One line of the report: what was looked at and what was found.
pub type Finding = (&'static str, String);

/// Identity, swarm key, bootstrap and peering of the Kubo repo at `repo`.
pub fn kubo_repo(repo: &Path) -> Vec<Finding> {
    let identity = match crate::identity::import_kubo(repo) {
        Ok(key) => format!(
            "{} ({:?} key) in {}",
            key.public().to_peer_id(),
            key.key_type(),
            repo.join("config").display()
        ),
        Err(e) => format!("none usable: {e}"),
    };
    let key_path = repo.join("swarm.key");
    let swarm_key = match crate::identity::load_swarm_key(&key_path) {
        Ok(psk) => format!("{} (fingerprint {})", key_path.display(), psk.fingerprint()),
        Err(_) if !key_path.exists() => format!("none at {} (public network)", key_path.display()),
        Err(e) => format!("unusable: {e}"),
    };
    let (bootstrap, peering) =
        match FirstPeers::resolve(&NodeConfig::default(), Some(repo), &home_dir()) {
            Ok(first) => (
                format!(
                    "{} addresses ({:?})",
                    first.bootstrap.value.len(),
                    first.bootstrap.source
                ),
                format!(
                    "{} peers ({:?})",
                    first.peering.value.len(),
                    first.peering.source
                ),
            ),
            Err(e) => (format!("unreadable: {e}"), format!("unreadable: {e}")),
        };
    vec![
        ("identity", identity),
        ("swarm key", swarm_key),
        ("bootstrap", bootstrap),
        ("peering", peering),
    ]
}

fn small_file(path: &Path) -> Option<String> {
    let bytes = crate::atomic_file::read_bounded(path, MAX_SMALL_FILE).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_owned())
}

fn size(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{} ({} bytes)", path.display(), m.len()),
        Err(_) => format!("{} (absent)", path.display()),
    }
}

/// The original sync: its script (`_12345.sh` still starts it hourly), lock, stamp and logs.
pub fn original_sync(zen: &Path, now: u64) -> Vec<Finding> {
    let files = SyncFiles::new(zen.to_owned());
    let script = files.original_backfill();
    let script = if script.exists() {
        format!(
            "{} present: _12345.sh still starts it hourly; the trigger must honour its lock and stamp",
            script.display()
        )
    } else {
        format!("{} absent", script.display())
    };
    let lock = files.backfill_lock();
    let lock = match small_file(&lock) {
        Some(pid)
            if !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && Path::new("/proc").join(&pid).exists() =>
        {
            format!("{} held by running pid {pid}", lock.display())
        }
        Some(pid) => format!("{} (stale, pid {pid:?} not running)", lock.display()),
        None => format!("{} (absent)", lock.display()),
    };
    let stamp = files.last_run();
    let stamp = match small_file(&stamp).and_then(|t| t.parse::<u64>().ok()) {
        Some(at) => format!(
            "{}: last run {} s ago",
            stamp.display(),
            now.saturating_sub(at)
        ),
        None => format!("{} (absent)", stamp.display()),
    };
    vec![
        ("original sync", script),
        ("sync lock", lock),
        ("last run", stamp),
        ("run log", size(&files.strfry_dir().join(RUN_LOG))),
        ("error log", size(&files.strfry_dir().join(ERROR_LOG))),
    ]
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), PROBE_TIMEOUT).is_ok()
}

/// `/var/lib/systemd/linger/<user>`: a user unit runs at boot without a login only then.
pub fn linger(user: &str) -> PathBuf {
    Path::new("/var/lib/systemd/linger").join(user)
}

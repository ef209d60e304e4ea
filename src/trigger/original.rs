//! Living next to Astroport's own sync: the lock of `backfill_constellation.sh` (`flock`, PID
//! inside) and the last-run stamp of `_12345.sh`, honoured and held as the originals do, so that
//! whichever sync starts first runs and the other skips.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `_12345.sh` starts no sync when its stamp is younger than this (its "50 minutes").
pub const LAST_RUN_MIN_SECS: u64 = 3_000;
/// Largest lock or stamp file read: a PID or a Unix time and a newline; more is not ours.
const SMALL_FILE_MAX: u64 = 64;

/// The original's lock, held for one run: `flock` on the file with our PID inside, so that
/// `_12345.sh` (which reads the PID) and `backfill_constellation.sh` (which also takes the
/// `flock -n`) both skip. Dropping it removes the file, as the original's `remove_lock` does.
pub struct OriginalLock {
    path: PathBuf,
    /// (device, inode) of the file we lock: only that file is removed on drop.
    identity: (u64, u64),
    _file: File,
}

impl OriginalLock {
    /// `Ok(Err(reason))` when the original sync runs (a live PID in the file, as `_12345.sh`
    /// checks) or holds the `flock` (as `backfill_constellation.sh` takes it).
    pub fn try_acquire(path: &Path) -> std::io::Result<Result<OriginalLock, String>> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        if let Some(pid) = read_number(path).filter(|p| *p != u64::from(std::process::id()))
            && Path::new(&format!("/proc/{pid}")).is_dir()
        {
            return Ok(Err(format!(
                "the original backfill_constellation.sh runs (PID {pid} in {})",
                path.display()
            )));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a valid, owned file descriptor has no memory effects.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(Err(format!(
                "another process holds the original sync's lock {}",
                path.display()
            )));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        let meta = file.metadata()?;
        Ok(Ok(OriginalLock {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            _file: file,
        }))
    }
}

impl Drop for OriginalLock {
    fn drop(&mut self) {
        // Still our file (the original's exit trap may have removed it, and a new run made its
        // own): only then remove it, before the flock goes with the descriptor.
        if std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The number in a small file (a PID, a Unix time), if it holds one.
fn read_number(path: &Path) -> Option<u64> {
    let bytes = crate::atomic_file::read_bounded(path, SMALL_FILE_MAX).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since `_12345.sh` (or we) last started a sync, from its stamp.
pub fn last_run_age(path: &Path) -> Option<u64> {
    read_number(path).map(|at| now().saturating_sub(at))
}

/// Write the stamp as `_12345.sh` does (`date +%s`), when a run starts.
pub fn stamp_last_run(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::atomic_file::write(path, format!("{}\n", now()).as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holds_our_pid_refuses_a_second_holder_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strfry/constellation-backfill.lock");
        let lock = OriginalLock::try_acquire(&path).unwrap().unwrap();
        assert_eq!(read_number(&path), Some(u64::from(std::process::id())));
        // Our own PID inside is not "the original runs"; the flock still refuses a second holder.
        let again = OriginalLock::try_acquire(&path).unwrap();
        assert!(again.is_err_and(|why| why.contains("holds the original sync's lock")));
        drop(lock);
        assert!(!path.exists());
        // A stale PID (no such process) is ignored, as the original does.
        std::fs::write(&path, "4194999\n").unwrap();
        assert!(OriginalLock::try_acquire(&path).unwrap().is_ok());
    }

    #[test]
    fn the_stamp_is_a_unix_time_and_its_age_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tmp/backfill_constellation.lastrun");
        assert_eq!(last_run_age(&path), None);
        stamp_last_run(&path).unwrap();
        assert!(last_run_age(&path).is_some_and(|age| age < 5));
        std::fs::write(&path, format!("{}\n", now() - 4_000)).unwrap();
        assert!(last_run_age(&path).is_some_and(|age| age >= 4_000));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(last_run_age(&path), None);
    }
}

//! Living next to Astroport's own sync: the lock of `backfill_constellation.sh` (`flock`, PID
//! inside) and `_12345.sh`'s last-run stamp, honoured and held so that whichever sync starts
//! first runs; and the run-log markers its `sync_report.sh` reads.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sync::stats::RunStats;

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

/// The original's names for the kind counts of its `SYNC_STATS:` line, those its
/// `sync_report.sh` adds into its groups.
const SYNC_STATS_KINDS: &[(&str, &[u16])] = &[
    ("dms", &[4]),
    ("videos", &[21, 22]),
    ("files", &[1063]),
    ("voice", &[1222, 1244]),
    ("did", &[30800]),
    ("ore_spaces", &[30312]),
    ("ore_meetings", &[30313]),
    ("oracle", &[30500, 30501, 30502, 30503]),
    ("economic_health", &[30850, 30851]),
    ("n2_memory", &[31910]),
    ("nip52_calendar", &[31922, 31923, 31924, 31925]),
    ("profiles", &[0]),
    ("text", &[1]),
    ("contacts", &[3]),
    ("reposts", &[6]),
    ("reactions", &[7]),
    ("blog", &[30023]),
    ("analytics", &[10000]),
    ("badge_awards", &[8]),
    ("badge_definitions", &[30009]),
];

/// The run-log lines the original's `sync_report.sh` reads (`SYNC_STATS`, `SYNC_PEERS`,
/// `SYNC_HEX`, `SYNC_PROFILES`, `SYNC_IMPORT`), so that it still reports on our runs.
pub fn report_markers(stats: &RunStats) -> Vec<String> {
    let mut kinds = format!("SYNC_STATS: events={}", stats.collected);
    for (name, list) in SYNC_STATS_KINDS {
        let n: u64 = list.iter().filter_map(|k| stats.kinds.get(k)).sum();
        kinds.push_str(&format!(" {name}={n}"));
    }
    vec![
        kinds,
        format!(
            "SYNC_PEERS: total={} success={}",
            stats.peers_contacted, stats.peers_ok
        ),
        format!("SYNC_HEX: count={}", stats.authors),
        format!(
            "SYNC_PROFILES: found={} missing={}",
            stats.profiles_found, stats.profiles_missing
        ),
        format!("SYNC_IMPORT: events={}", stats.imported),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markers_carry_the_originals_names() {
        let stats = RunStats {
            collected: 9,
            imported: 7,
            peers_contacted: 2,
            peers_ok: 1,
            authors: 5,
            kinds: [(1, 4), (21, 1), (22, 1), (30501, 1)].into_iter().collect(),
            ..RunStats::default()
        };
        let lines = report_markers(&stats);
        assert!(
            lines[0].starts_with("SYNC_STATS: events=9 dms=0 videos=2 "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains(" oracle=1 ") && lines[0].contains(" text=4 "));
        assert_eq!(lines[1], "SYNC_PEERS: total=2 success=1");
        assert_eq!(lines[4], "SYNC_IMPORT: events=7");
    }

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

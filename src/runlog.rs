//! Operators' log files, in the original's format (`[date] [LEVEL] message`, as
//! `backfill_constellation.sh` writes `~/.zen/strfry/constellation-backfill*.log`): appended,
//! reset per run or rotated by size (`file`, `file.1`, … `file.N`), and their size limits.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The original also removes rotated files up to `.10`, in case the count was lowered.
const ROTATED_SWEEP: usize = 10;
/// The original's limits: 10 MB × 3 rotated files…
pub const LOG_MAX_BYTES: u64 = 10 << 20;
pub const LOG_KEEP: usize = 3;
/// …or 5 MB × 2 on a small aarch64 box (less than 1 GiB of RAM: a Raspberry Pi Zero 2).
pub const SMALL_LOG_MAX_BYTES: u64 = 5 << 20;
pub const SMALL_LOG_KEEP: usize = 2;
/// `MemTotal` (kB) below which an aarch64 box is small, as the original tests it.
const SMALL_BOX_MEM_KB: u64 = 1_048_576;

/// The level of a line; `Warn` and `Error` also go to the error log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// The original's limits for this machine: `(max_bytes, keep)`.
pub fn default_limits() -> (u64, usize) {
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_kb(&text));
    limits_for(std::env::consts::ARCH, mem_kb)
}

fn limits_for(arch: &str, mem_kb: Option<u64>) -> (u64, usize) {
    if arch == "aarch64" && mem_kb.is_some_and(|kb| kb < SMALL_BOX_MEM_KB) {
        (SMALL_LOG_MAX_BYTES, SMALL_LOG_KEEP)
    } else {
        (LOG_MAX_BYTES, LOG_KEEP)
    }
}

fn mem_total_kb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// An append-only log file with size-based rotation.
pub struct RunLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
}

impl RunLog {
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> RunLog {
        RunLog {
            path,
            max_bytes: max_bytes.max(1024),
            keep: keep.max(1),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line `[date] [LEVEL] line` (local time, as the original); rotate first if it
    /// would pass the size limit, so that even one long run stays bounded.
    pub fn append(&self, level: Level, line: &str) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 + 40 > self.max_bytes {
            self.rotate()?;
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "[{now}] [{}] {line}", level.name())
    }

    /// Start the file again with `header` (the run log holds only the latest run).
    pub fn reset(&self, header: &str) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        std::fs::write(&self.path, format!("# {header} - {now}\n\n"))
    }

    /// Rotate when the file is past its limit (the original does it as each run starts).
    pub fn rotate_if_full(&self) -> std::io::Result<bool> {
        let full = std::fs::metadata(&self.path).is_ok_and(|m| m.len() > self.max_bytes);
        if full {
            self.rotate()?;
        }
        Ok(full)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self) -> std::io::Result<()> {
        for n in self.keep..=ROTATED_SWEEP.max(self.keep) {
            let _ = std::fs::remove_file(self.numbered(n));
        }
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().join("sync.log"), 1024, 2);
        for i in 0..100 {
            log.append(Level::Info, &format!("line {i} {}", "x".repeat(40)))
                .unwrap();
        }
        assert!(std::fs::metadata(log.path()).unwrap().len() <= 1024);
        assert!(dir.path().join("sync.log.1").exists());
        assert!(dir.path().join("sync.log.2").exists());
        assert!(!dir.path().join("sync.log.3").exists());
        let last = std::fs::read_to_string(log.path()).unwrap();
        let tail = last.lines().last().unwrap();
        assert!(
            tail.starts_with('[') && tail.contains("] [INFO] line 99 "),
            "{tail}"
        );
    }

    #[test]
    fn a_small_aarch64_box_gets_the_small_limits() {
        let meminfo = "MemTotal:         427636 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_kb(meminfo), Some(427_636));
        assert_eq!(limits_for("aarch64", Some(427_636)), (5 << 20, 2));
        assert_eq!(limits_for("aarch64", Some(4_000_000)), (10 << 20, 3));
        assert_eq!(limits_for("x86_64", Some(427_636)), (10 << 20, 3));
        assert_eq!(limits_for("aarch64", None), (10 << 20, 3));
    }
}

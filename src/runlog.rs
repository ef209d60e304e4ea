//! Operators' log files (the original `~/.zen/strfry/constellation_sync*.log`): one line per
//! event of a run, appended, rotated by size (`file`, `file.1`, … `file.N`).

use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Append `line` with a UTC timestamp; rotate first if it would pass the size limit.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 + 32 > self.max_bytes {
            self.rotate()?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{now} {line}")
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.numbered(self.keep));
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
            log.append(&format!("line {i} {}", "x".repeat(40))).unwrap();
        }
        assert!(std::fs::metadata(log.path()).unwrap().len() <= 1024);
        assert!(dir.path().join("sync.log.1").exists());
        assert!(dir.path().join("sync.log.2").exists());
        assert!(!dir.path().join("sync.log.3").exists());
        let last = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            last.trim_end()
                .ends_with(&format!("line 99 {}", "x".repeat(40)))
        );
    }
}

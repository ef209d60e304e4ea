//! Writing a file so that a reader sees the old content or the new, never half: a temporary file
//! beside it, written and fsynced, then renamed over it (and the folder fsynced); and reading one
//! back within a bound, so that a file someone else wrote cannot cost more than its bound.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Replace `path` with `bytes`; the file gets `mode` (e.g. 0o600 for a key, 0o755 for a script).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temporary(path);
    let result = write_synced(&tmp, bytes, mode)
        .inspect(|()| crash_point(path))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename is durable once the folder's entry is on disk; a failure here loses nothing
    // that a crash would not (the old or the new file is there).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Tests only (debug builds): abort the process between the synced temporary and the rename
/// when `CONSTELLATION_TEST_ABORT_BEFORE_RENAME` names this file, as a crash there would.
fn crash_point(path: &Path) {
    if cfg!(debug_assertions)
        && std::env::var_os("CONSTELLATION_TEST_ABORT_BEFORE_RENAME")
            .is_some_and(|name| Some(name.as_os_str()) == path.file_name())
    {
        std::process::abort();
    }
}

/// `<name>.tmp` in the same folder, so that the rename never crosses file systems.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_synced(tmp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)?;
    // `mode` at creation is masked by the umask, and an old temporary keeps its own mode.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// At most `max` bytes of `path`; a larger file is an error (`FileTooLarge`), not cut.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        super::write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn writing_into_a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("x");
        assert!(super::write(&path, b"new", 0o644).is_err());
        assert!(!path.exists());
    }
}

//! The on-disk block store: one file per block under a folder we own, written atomically (temp
//! file + rename), each block checked again on read, and a bound on the total bytes it holds.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;

use super::block::{Block, BlockSink, BlockSource, SinkError, SourceError};

/// Default bound on the bytes one store holds: the swarm map of a few hundred stations whose
/// folders are bounded at a few MiB each (see `unixfs::FolderLimits`), with room to spare.
pub const DEFAULT_STORE_BYTES: u64 = 1024 * 1024 * 1024;
/// Prefix of files being written; a crash leaves them behind and `open` removes them.
const TEMP_PREFIX: &str = ".tmp-";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A folder of blocks, one file per block named by its CIDv1 (so `Qm…` and `bafy…` of the same
/// dag-pb bytes share a file). The running total is the one piece of mutable state; the mutex
/// that owns it also serialises writers, so the bound is never passed by two racing puts.
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    max_bytes: u64,
    total: Mutex<u64>,
}

/// Distinguishes the temp files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlockStore {
    /// Open (or create, mode 0700) the store at `dir`, holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<BlockStore, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        set_private(dir).map_err(io)?;
        let mut total = 0;
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            total += entry.metadata().map_err(io)?.len();
        }
        Ok(BlockStore {
            dir: dir.to_owned(),
            max_bytes,
            total: Mutex::new(total),
        })
    }

    /// The folder of block files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bound on the bytes held.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes held now.
    pub fn total_bytes(&self) -> u64 {
        *self.lock_total()
    }

    pub fn has(&self, cid: &Cid) -> bool {
        self.path_of(cid).is_file()
    }

    /// The block, checked against `cid` again (a disk can rot); `None` when absent. A stored file
    /// that no longer matches is removed and reported as a bad block.
    pub fn get_local(&self, cid: &Cid) -> Result<Option<Block>, SourceError> {
        let path = self.path_of(cid);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SourceError::Io { cid: *cid, source }),
        };
        match Block::new(*cid, data) {
            Ok(block) => Ok(Some(block)),
            Err(bad) => {
                self.remove(cid);
                Err(bad.into())
            }
        }
    }

    /// The CIDs of every block held (from their file names), for `repo gc`.
    pub fn cids(&self) -> std::io::Result<Vec<Cid>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(cid) = name.to_str().and_then(|n| Cid::try_from(n).ok()) {
                out.push(cid);
            }
        }
        Ok(out)
    }

    /// Drop a block (absent is fine).
    pub fn remove(&self, cid: &Cid) {
        let mut total = self.lock_total();
        let path = self.path_of(cid);
        if let Ok(meta) = fs::metadata(&path)
            && fs::remove_file(&path).is_ok()
        {
            *total = total.saturating_sub(meta.len());
        }
    }

    fn lock_total(&self) -> std::sync::MutexGuard<'_, u64> {
        // A writer that panicked left a correct total (it is updated after the rename).
        self.total
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn path_of(&self, cid: &Cid) -> PathBuf {
        let v1 = cid.into_v1().unwrap_or(*cid);
        self.dir.join(v1.to_string())
    }

    fn write_atomically(&self, block: &Block, path: &Path) -> std::io::Result<()> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let written = fs::File::create_new(&temp).and_then(|mut file| file.write_all(block.data()));
        match written.and_then(|()| fs::rename(&temp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }
}

impl BlockSink for BlockStore {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        put_shared(self, block)
    }
}

impl BlockSink for &BlockStore {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        put_shared(self, block)
    }
}

/// Store a block once; a block already present costs nothing. Refused when the bound would pass.
fn put_shared(store: &BlockStore, block: Block) -> Result<(), SinkError> {
    let mut total = store.lock_total();
    let path = store.path_of(block.cid());
    if path.is_file() {
        return Ok(());
    }
    let need = block.data().len() as u64;
    if *total + need > store.max_bytes {
        return Err(SinkError::Full {
            need,
            bound: store.max_bytes,
        });
    }
    store
        .write_atomically(&block, &path)
        .map_err(|source| SinkError::Io {
            cid: *block.cid(),
            source,
        })?;
    *total += need;
    Ok(())
}

impl BlockSource for BlockStore {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        // Local files of at most MAX_BLOCK_BYTES: read in place rather than on a blocking thread.
        self.get_local(cid)?.ok_or(SourceError::Missing(*cid))
    }
}

fn set_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::block::{DAG_PB, RAW};

    fn block(text: &str) -> Block {
        Block::from_data(RAW, text.as_bytes().to_vec()).expect("block")
    }

    #[test]
    fn blocks_survive_reopening_and_cidv0_and_v1_share_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = BlockStore::open(dir.path(), 1024).expect("open");
        let v0 = Block::from_data(DAG_PB, b"\x0a\x02\x08\x01".to_vec()).expect("dir node");
        store.put(v0.clone()).expect("put");
        store.put(block("hello")).expect("put");
        drop(store);
        let store = BlockStore::open(dir.path(), 1024).expect("reopen");
        assert_eq!(store.total_bytes(), 4 + 5);
        let v1 = v0.cid().into_v1().expect("v1");
        let got = store.get_local(&v1).expect("read").expect("present");
        assert_eq!((got.cid(), got.data()), (&v1, v0.data()));
        assert_eq!(
            store.get_local(v0.cid()).expect("read").expect("present"),
            v0
        );
    }

    #[test]
    fn the_total_bound_refuses_a_block_and_duplicates_cost_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = BlockStore::open(dir.path(), 10).expect("open");
        store.put(block("12345")).expect("first");
        store.put(block("12345")).expect("duplicate");
        store.put(block("abcde")).expect("fills exactly");
        let err = store.put(block("x")).expect_err("over the bound");
        assert!(
            matches!(err, SinkError::Full { need: 1, bound: 10 }),
            "{err}"
        );
        store.remove(block("abcde").cid());
        assert_eq!(store.total_bytes(), 5);
        store.put(block("x")).expect("room again");
    }

    #[test]
    fn a_rotten_file_is_reported_and_removed_and_temp_files_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = BlockStore::open(dir.path(), 1024).expect("open");
        let b = block("good");
        store.put(b.clone()).expect("put");
        fs::write(store.path_of(b.cid()), b"evil").expect("rot");
        let err = store.get_local(b.cid()).expect_err("mismatch");
        assert!(matches!(err, SourceError::Block(_)), "{err}");
        assert!(!store.has(b.cid()));
        fs::write(dir.path().join(".tmp-1-1"), b"half").expect("crash leftover");
        let store = BlockStore::open(dir.path(), 1024).expect("reopen");
        assert_eq!(store.total_bytes(), 0);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}

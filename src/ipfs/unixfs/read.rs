//! Read a UnixFS DAG from a block source: a whole folder into a fresh temp folder that then
//! replaces the target in one rename (a crash leaves the previous copy), a folder's listing, a
//! path's CID. Names, sizes, depth and block counts are checked before anything is written.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use rust_unixfs::dir::{MaybeResolved, ShardedLookup, resolve};
use rust_unixfs::walk::{ContinuedWalk, FileSegment, Walker};

use super::limits::FolderLimits;
use crate::ipfs::block::{Block, BlockSource, RAW, SourceError};

/// Longest name a Linux file system takes (NAME_MAX); a longer one could never be written.
const MAX_NAME_BYTES: usize = 255;

/// What a folder read wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub files: usize,
    pub dirs: usize,
    pub bytes: u64,
    pub blocks: usize,
}

/// Why a DAG was refused or could not be read. Nothing is left of a refused folder.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("block {cid} is not valid UnixFS: {reason}")]
    Malformed { cid: Cid, reason: String },
    #[error(
        "refused name {name:?}: names may not be empty, `.`, `..`, hold `/` or NUL, or pass {MAX_NAME_BYTES} bytes"
    )]
    BadName { name: String },
    #[error("refused symlink {0:?}: a mirrored folder holds only files and folders")]
    Symlink(String),
    #[error("{path:?} passes the bound of {bound} {what}")]
    Limit {
        path: String,
        what: &'static str,
        bound: u64,
    },
    #[error("{0} is a file, not a folder")]
    NotAFolder(Cid),
    #[error("{0:?} not found")]
    NotFound(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Read the folder `root` into `target`, replacing what was there only once the whole folder is
/// written and checked. `target`'s parent is created if needed; nothing is written outside it.
pub async fn fetch_folder<S: BlockSource>(
    source: &S,
    root: &Cid,
    target: &Path,
    limits: &FolderLimits,
) -> Result<Fetched, ReadError> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| ReadError::Io {
        path: parent.to_owned(),
        source,
    })?;
    let temp = sibling(target, "new");
    fs::create_dir(&temp).map_err(|source| ReadError::Io {
        path: temp.clone(),
        source,
    })?;
    let mut folder = FolderWriter {
        root: temp.clone(),
        limits,
        fetched: Fetched::default(),
        open: None,
    };
    let walked = folder.walk(source, root).await;
    let done = walked.and_then(|()| replace_dir(&temp, target));
    if done.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    done.map(|()| folder.fetched)
}

/// The CID at `path` (`a/b.txt`, names split on `/`) below the folder `root`.
pub async fn resolve_path<S: BlockSource>(
    source: &S,
    root: &Cid,
    path: &str,
) -> Result<Cid, ReadError> {
    let mut cid = *root;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        cid = lookup(source, &cid, name)
            .await?
            .ok_or_else(|| ReadError::NotFound(path.to_owned()))?;
    }
    Ok(cid)
}

/// How a folder listing treats the names it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// A mirror's: each name checked as a fetch checks it (no `/`, `.`, `..`, NUL, at most
    /// NAME_MAX bytes), the entries sorted.
    Checked,
    /// `ipfs ls`'s: names as linked, a flat folder in its link order (Kubo prints them so), a
    /// HAMT's entries sorted (its buckets' order means nothing to a reader).
    AsLinked,
}

/// The entries (name, CID) of the folder `root` without reading below it (`ipfs ls`), flat or
/// HAMT, at most `max_entries` of them (more is refused) and each name checked as in a fetch.
pub async fn list_folder<S: BlockSource>(
    source: &S,
    root: &Cid,
    max_entries: usize,
) -> Result<Vec<(String, Cid)>, ReadError> {
    list_links(source, root, max_entries, Listing::Checked).await
}

/// The entries (name, CID) of the folder `root`, flat or HAMT (buckets flattened), at most
/// `max_entries` of them (more is refused), names and order as `listing` says.
pub async fn list_links<S: BlockSource>(
    source: &S,
    root: &Cid,
    max_entries: usize,
    listing: Listing,
) -> Result<Vec<(String, Cid)>, ReadError> {
    use rust_unixfs::dir::NodeDescription;
    let (mut entries, mut shards, mut blocks) = (Vec::new(), vec![(*root, true)], 0usize);
    let mut sharded_root = false;
    while let Some((cid, is_root)) = shards.pop() {
        blocks += 1;
        if blocks > max_entries.saturating_add(1) {
            return Err(limit_error("", "blocks", max_entries as u64 + 1));
        }
        let block = checked(source, &cid).await?;
        let (links, sharded) = match rust_unixfs::dir::describe(block.data()) {
            NodeDescription::Directory { links } if is_root => (links, false),
            NodeDescription::HamtShard { links } => (links, true),
            _ if is_root => return Err(ReadError::NotAFolder(cid)),
            _ => return Err(malformed(cid, "not a HAMT bucket")),
        };
        sharded_root |= is_root && sharded;
        for link in links {
            let name = if sharded {
                // Kubo's fanout of 256: two hex digits of bucket, then the name (none: a bucket).
                match link.name.get(HAMT_PREFIX_LEN..) {
                    Some("") => {
                        shards.push((link.target, false));
                        continue;
                    }
                    Some(name) => name.to_owned(),
                    None => return Err(malformed(cid, "HAMT link without its bucket prefix")),
                }
            } else {
                link.name
            };
            if listing == Listing::Checked {
                checked_depth(Path::new(&name))?;
                if name.contains('/') {
                    return Err(ReadError::BadName { name });
                }
            }
            if entries.len() >= max_entries {
                return Err(limit_error("", "entries", max_entries as u64));
            }
            entries.push((name, link.target));
        }
    }
    if listing == Listing::Checked || sharded_root {
        entries.sort();
    }
    Ok(entries)
}

/// Hex digits of bucket before each name in a HAMT link (fanout 256, as Kubo writes them).
const HAMT_PREFIX_LEN: usize = 2;

fn limit_error(path: &str, what: &'static str, bound: u64) -> ReadError {
    ReadError::Limit {
        path: path.to_owned(),
        what,
        bound,
    }
}

/// The CID linked as `name` in the directory (flat or HAMT) `dir`.
async fn lookup<S: BlockSource>(
    source: &S,
    dir: &Cid,
    name: &str,
) -> Result<Option<Cid>, ReadError> {
    let block = checked(source, dir).await?;
    let mut cache = None;
    let mut lookup: ShardedLookup<'static> =
        match resolve(block.data(), name, &mut cache).map_err(|e| malformed(*dir, e))? {
            MaybeResolved::Found(cid) => return Ok(Some(cid)),
            MaybeResolved::NotFound => return Ok(None),
            MaybeResolved::NeedToLoadMore(lookup) => lookup.with_owned_needle(),
        };
    loop {
        let next = *lookup.pending_links().0;
        let bucket = checked(source, &next).await?;
        match lookup
            .continue_walk(bucket.data(), &mut cache)
            .map_err(|e| malformed(next, e))?
        {
            MaybeResolved::Found(cid) => return Ok(Some(cid)),
            MaybeResolved::NotFound => return Ok(None),
            MaybeResolved::NeedToLoadMore(more) => lookup = more.with_owned_needle(),
        }
    }
}

/// A block from `source` whose structure rust-unixfs can read without panicking: every block
/// but a raw leaf is read as dag-pb.
pub(super) async fn checked<S: BlockSource>(source: &S, cid: &Cid) -> Result<Block, ReadError> {
    let block = source.get(cid).await?;
    if cid.codec() != RAW {
        super::shape::check_dag_pb(block.data()).map_err(|e| malformed(*cid, e))?;
    }
    Ok(block)
}

pub(super) fn malformed(cid: Cid, error: impl std::fmt::Display) -> ReadError {
    ReadError::Malformed {
        cid,
        reason: error.to_string(),
    }
}

/// Writes one folder under `root` (a fresh temp folder only we write into, with no symlink ever
/// created, so a checked relative path cannot leave it).
struct FolderWriter<'a> {
    root: PathBuf,
    limits: &'a FolderLimits,
    fetched: Fetched,
    /// The file being written and the bytes it announced.
    open: Option<(fs::File, PathBuf, u64)>,
}

impl FolderWriter<'_> {
    async fn walk<S: BlockSource>(&mut self, source: &S, root: &Cid) -> Result<(), ReadError> {
        let mut walker = Walker::new(*root, String::new());
        let mut cache = None;
        while walker.should_continue() {
            let next = *walker.pending_links().0;
            self.fetched.blocks += 1;
            if self.fetched.blocks > self.limits.max_blocks {
                return Err(self.limit("", "blocks", self.limits.max_blocks as u64));
            }
            let block = checked(source, &next).await?;
            match walker
                .next(block.data(), &mut cache)
                .map_err(|e| malformed(next, e))?
            {
                ContinuedWalk::Bucket(..) | ContinuedWalk::RootDirectory(..) => {}
                ContinuedWalk::Directory(_, path, _) => self.dir(path)?,
                ContinuedWalk::File(segment, _, path, _, size) => {
                    self.file(*root, &segment, path, size)?
                }
                ContinuedWalk::Symlink(_, _, path, _) => {
                    return Err(ReadError::Symlink(lossy(path)));
                }
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &Path) -> Result<(), ReadError> {
        let local = self.entry(path)?;
        self.fetched.dirs += 1;
        fs::create_dir(&local).map_err(|source| ReadError::Io {
            path: local,
            source,
        })
    }

    fn file(
        &mut self,
        root: Cid,
        segment: &FileSegment<'_>,
        path: &Path,
        size: u64,
    ) -> Result<(), ReadError> {
        if path.as_os_str().is_empty() {
            return Err(ReadError::NotAFolder(root));
        }
        if segment.is_first() {
            let local = self.entry(path)?;
            if self.fetched.bytes + size > self.limits.max_bytes {
                return Err(self.limit(&lossy(path), "bytes", self.limits.max_bytes));
            }
            let file = fs::File::create_new(&local).map_err(|source| ReadError::Io {
                path: local.clone(),
                source,
            })?;
            self.fetched.files += 1;
            self.open = Some((file, local, size));
        }
        let Some((file, local, announced)) = self.open.as_mut() else {
            return Err(ReadError::Malformed {
                cid: root,
                reason: "file bytes outside a file".into(),
            });
        };
        let bytes = segment.as_bytes();
        *announced =
            announced
                .checked_sub(bytes.len() as u64)
                .ok_or_else(|| ReadError::Malformed {
                    cid: root,
                    reason: format!("{} holds more bytes than its size says", local.display()),
                })?;
        self.fetched.bytes += bytes.len() as u64;
        if self.fetched.bytes > self.limits.max_bytes {
            return Err(self.limit(&lossy(path), "bytes", self.limits.max_bytes));
        }
        file.write_all(bytes).map_err(|source| ReadError::Io {
            path: local.clone(),
            source,
        })?;
        if segment.is_last() {
            self.open = None;
        }
        Ok(())
    }

    /// Count one entry and map its checked path below the temp root.
    fn entry(&mut self, path: &Path) -> Result<PathBuf, ReadError> {
        let depth = checked_depth(path)?;
        if depth > self.limits.max_depth {
            return Err(self.limit(
                &lossy(path),
                "levels of names",
                self.limits.max_depth as u64,
            ));
        }
        if self.fetched.files + self.fetched.dirs >= self.limits.max_entries {
            return Err(self.limit(&lossy(path), "entries", self.limits.max_entries as u64));
        }
        Ok(self.root.join(path))
    }

    fn limit(&self, path: &str, what: &'static str, bound: u64) -> ReadError {
        limit_error(path, what, bound)
    }
}

/// The number of names in a walker path, each checked: the walker joins link names with `/`
/// (and refuses a `/` inside one), so splitting on `/` gives back exactly the names.
fn checked_depth(path: &Path) -> Result<usize, ReadError> {
    let mut depth = 0;
    for name in path.as_os_str().as_bytes().split(|&b| b == b'/') {
        let bad = name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&0)
            || name.len() > MAX_NAME_BYTES;
        if bad {
            return Err(ReadError::BadName {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        depth += 1;
    }
    Ok(depth)
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Distinguishes the temp folders of concurrent reads in one process.
static SIBLING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.<name>.<what>-<pid>-<n>` beside `target` (same file system, so renames are atomic).
fn sibling(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = SIBLING_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.{what}-{}-{n}", std::process::id()))
}

/// Put the folder `new` at `target` in one step: a plain rename when `target` is absent, else an
/// exchange (`renameat2(RENAME_EXCHANGE)`) so no moment exists without a copy; the old copy is
/// then removed. File systems without the exchange get two renames.
fn replace_dir(new: &Path, target: &Path) -> Result<(), ReadError> {
    let io = |source| ReadError::Io {
        path: target.to_owned(),
        source,
    };
    if fs::symlink_metadata(target).is_err() {
        return fs::rename(new, target).map_err(io);
    }
    match exchange(new, target) {
        Ok(()) => {
            let _ = fs::remove_dir_all(new);
            Ok(())
        }
        Err(_) => {
            let old = sibling(target, "old");
            fs::rename(target, &old).map_err(io)?;
            fs::rename(new, target).map_err(io)?;
            let _ = fs::remove_dir_all(&old);
            Ok(())
        }
    }
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated C strings that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

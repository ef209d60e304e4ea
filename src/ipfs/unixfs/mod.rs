//! UnixFS over dag-pb: building folders with Kubo's `ipfs add` layout (same CIDs) and reading a
//! folder DAG from a [`BlockSource`](super::block::BlockSource) into a bounded local folder.

mod build;
pub mod dagpb;
mod read;

pub use build::{
    Added, BuildError, CHUNK_BYTES, HAMT_THRESHOLD_BYTES, Hidden, LINKS_PER_NODE, add_path,
};
pub use read::{Fetched, ReadError, cat_file, fetch_folder, list_folder};

/// Bounds on one folder, read or built. A station's folder holds a `12345.json`, a moats file and
/// a few `x_<slug>.sh` scripts: kilobytes. The defaults leave a large margin and still refuse a
/// hostile 1 GiB or 10,000-entry folder early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderLimits {
    /// File content bytes in the whole folder.
    pub max_bytes: u64,
    /// Files, folders and links in the whole folder.
    pub max_entries: usize,
    /// Names on the longest path below the root (`a/b/c` is 3).
    pub max_depth: usize,
    /// Blocks fetched for the whole folder (file chunks, tree nodes, HAMT buckets).
    pub max_blocks: usize,
}

impl FolderLimits {
    /// A station's folder (see the type's doc for why these sizes).
    pub const STATION: FolderLimits = FolderLimits {
        max_bytes: 16 * 1024 * 1024,
        max_entries: 1000,
        max_depth: 8,
        // 16 MiB of 256 KiB chunks is 64 leaves; the rest is room for folders and HAMT buckets.
        max_blocks: 4096,
    };
}

impl Default for FolderLimits {
    fn default() -> Self {
        FolderLimits::STATION
    }
}

#[cfg(test)]
mod tests;

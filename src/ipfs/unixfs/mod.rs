//! UnixFS over dag-pb: building folders with Kubo's `ipfs add` layout (same CIDs) and reading a
//! folder DAG from a [`BlockSource`](super::block::BlockSource) into a bounded local folder.

mod build;
pub mod dagpb;
mod limits;
pub mod node;
mod read;
mod shape;

pub use build::{
    Added, BuildError, CHUNK_BYTES, HAMT_THRESHOLD_BYTES, Hidden, LINKS_PER_NODE, add_path,
};
pub use limits::FolderLimits;
pub use read::{Fetched, ReadError, cat_file, fetch_folder, list_folder, resolve_path};

#[cfg(test)]
mod tests;

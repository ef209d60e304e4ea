//! UnixFS over dag-pb: building folders with Kubo's `ipfs add` layout (same CIDs) and reading a
//! folder DAG from a [`BlockSource`](super::block::BlockSource) into a bounded local folder.

mod build;
pub mod dagpb;
mod limits;
pub mod node;
mod read;
mod shape;
mod stream;

pub use build::{
    Added, BuildError, CHUNK_BYTES, HAMT_THRESHOLD_BYTES, Hidden, LINKS_PER_NODE, Layout,
    MAX_CHUNK_BYTES, add_path, add_path_as,
};
pub use limits::FolderLimits;
pub use read::{Fetched, Listing, ReadError, fetch_folder, list_folder, list_links, resolve_path};
pub use stream::{FILE_WINDOW_BLOCKS, FileStream, cat_file};

#[cfg(test)]
mod tests;

//! The IPFS data layer, independent of the swarm: blocks checked against their CIDs and their
//! bounded store, UnixFS (Kubo-identical CIDs when building, bounded when reading), IPNS records.
//! Bitswap, the DHT and the swarm map plug into these types through the node's handle.

pub mod block;
pub mod ipns;
pub mod keystore;
pub(crate) mod protobuf;
pub mod store;
pub mod unixfs;

pub use block::{Block, BlockError, BlockSink, BlockSource, MemoryBlocks, SinkError, SourceError};
pub use store::BlockStore;

//! Content-addressed blocks: a CID and bytes that hash to it, checked whenever bytes come from
//! outside (peer, disk), bounded by bitswap's block size; and the `BlockSource` readers walk.

use std::collections::HashMap;
use std::future::Future;

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

/// Largest block we accept or build: Kubo's bitswap refuses to send or take blocks above 2 MiB
/// (boxo `bitswap` / `ipfs add --chunker` maximum), so nothing larger can travel between stations.
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;
/// Multicodec of dag-pb (UnixFS nodes, and every CIDv0).
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw leaves (CIDv1 `bafk…`).
pub const RAW: u64 = 0x55;

/// Why bytes are not the block a CID names.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {cid} is {len} bytes, above the {MAX_BLOCK_BYTES}-byte bitswap limit")]
    TooLarge { cid: Cid, len: usize },
    #[error("block {cid} uses hash 0x{code:x}, which we do not verify (only sha2-256/512)")]
    UnsupportedHash { cid: Cid, code: u64 },
    #[error("block {cid} uses codec 0x{codec:x}; only dag-pb and raw blocks are handled")]
    UnsupportedCodec { cid: Cid, codec: u64 },
    #[error("block bytes do not hash to {cid}")]
    HashMismatch { cid: Cid },
}

/// A block whose bytes are known to hash to its CID (construction checks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Vec<u8>,
}

impl Block {
    /// Check untrusted `data` against `cid`: size bound, known codec and hash, matching digest.
    pub fn new(cid: Cid, data: Vec<u8>) -> Result<Block, BlockError> {
        if data.len() > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                cid,
                len: data.len(),
            });
        }
        if cid.codec() != DAG_PB && cid.codec() != RAW {
            return Err(BlockError::UnsupportedCodec {
                cid,
                codec: cid.codec(),
            });
        }
        let code = cid.hash().code();
        let hasher = match Code::try_from(code) {
            Ok(hasher @ (Code::Sha2_256 | Code::Sha2_512)) => hasher,
            _ => return Err(BlockError::UnsupportedHash { cid, code }),
        };
        if hasher.digest(&data) != *cid.hash() {
            return Err(BlockError::HashMismatch { cid });
        }
        Ok(Block { cid, data })
    }

    /// A block we made ourselves: CIDv0 for dag-pb (Kubo's default), CIDv1 for raw.
    pub fn from_data(codec: u64, data: Vec<u8>) -> Result<Block, BlockError> {
        let hash = Code::Sha2_256.digest(&data);
        // CIDv0 takes any sha2-256 multihash, so the v1 fallback never happens.
        let cid = match codec {
            DAG_PB => Cid::new_v0(hash).unwrap_or_else(|_| Cid::new_v1(DAG_PB, hash)),
            _ => Cid::new_v1(codec, hash),
        };
        Block::new(cid, data)
    }

    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// Why a source could not give a block.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("block {0} is not available")]
    Missing(Cid),
    #[error("bad block from the source: {0}")]
    Block(#[from] BlockError),
    #[error("reading block {cid}: {source}")]
    Io {
        cid: Cid,
        #[source]
        source: std::io::Error,
    },
}

/// Where a DAG walk gets its blocks: the on-disk store, bitswap, memory. A source returns only
/// [`Block`]s, so every byte a reader sees has been checked against the CID that named it.
pub trait BlockSource {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Block, SourceError>> + Send;
}

/// Where a builder puts the blocks it makes (the store, memory, or nowhere for `--only-hash`).
pub trait BlockSink {
    fn put(&mut self, block: Block) -> Result<(), SinkError>;
}

/// Why a sink refused a block.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("block store full: {need} more bytes would pass its bound of {bound}")]
    Full { need: u64, bound: u64 },
    #[error("writing block {cid}: {source}")]
    Io {
        cid: Cid,
        #[source]
        source: std::io::Error,
    },
}

/// Blocks held in memory, keyed by multihash so a CIDv0 and its CIDv1 name the same block.
#[derive(Default, Debug)]
pub struct MemoryBlocks {
    blocks: HashMap<Vec<u8>, Block>,
}

impl MemoryBlocks {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Every block, for a test or a caller that wants to move them into a store.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.values()
    }
}

impl BlockSink for MemoryBlocks {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        self.blocks.insert(block.cid().hash().to_bytes(), block);
        Ok(())
    }
}

impl BlockSource for MemoryBlocks {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        match self.blocks.get(&cid.hash().to_bytes()) {
            Some(block) => Ok(Block::new(*cid, block.data().to_vec())?),
            None => Err(SourceError::Missing(*cid)),
        }
    }
}

/// A sink that keeps nothing: `ipfs add --only-hash`.
pub struct OnlyHash;

impl BlockSink for OnlyHash {
    fn put(&mut self, _block: Block) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ipfs add` of an empty file (Kubo's well-known CID).
    const EMPTY_FILE: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
    /// Its dag-pb bytes: Data = UnixFS { Type: File, filesize: 0 }.
    const EMPTY_FILE_BYTES: &[u8] = &[0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];

    #[test]
    fn a_block_is_accepted_only_with_the_bytes_its_cid_names() {
        let cid: Cid = EMPTY_FILE.parse().expect("cid");
        let block = Block::new(cid, EMPTY_FILE_BYTES.to_vec()).expect("matching bytes");
        assert_eq!(block.cid().to_string(), EMPTY_FILE);
        let err = Block::new(cid, b"tampered".to_vec()).expect_err("other bytes");
        assert!(matches!(err, BlockError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn a_block_above_the_bitswap_limit_is_refused_before_hashing() {
        let cid: Cid = EMPTY_FILE.parse().expect("cid");
        let err = Block::new(cid, vec![0; MAX_BLOCK_BYTES + 1]).expect_err("too large");
        assert!(matches!(err, BlockError::TooLarge { len, .. } if len == MAX_BLOCK_BYTES + 1));
    }

    #[test]
    fn unknown_hashes_and_codecs_are_refused_not_trusted() {
        let identity = cid::multihash::Multihash::<64>::wrap(0x00, b"abc").expect("mh");
        let err = Block::new(Cid::new_v1(RAW, identity), b"abc".to_vec()).expect_err("identity");
        assert!(
            matches!(err, BlockError::UnsupportedHash { code: 0, .. }),
            "{err}"
        );
        let cbor = Cid::new_v1(0x71, Code::Sha2_256.digest(b"x"));
        let err = Block::new(cbor, b"x".to_vec()).expect_err("dag-cbor");
        assert!(
            matches!(err, BlockError::UnsupportedCodec { codec: 0x71, .. }),
            "{err}"
        );
    }

    #[test]
    fn built_blocks_get_cidv0_for_dag_pb_as_kubo() {
        let block = Block::from_data(DAG_PB, EMPTY_FILE_BYTES.to_vec()).expect("block");
        assert_eq!(block.cid().to_string(), EMPTY_FILE);
        let raw = Block::from_data(RAW, b"x".to_vec()).expect("raw");
        assert!(raw.cid().to_string().starts_with("bafk"), "{}", raw.cid());
    }
}

//! dag-pb nodes encoded field by field, with any names and UnixFS types: what a hostile peer
//! can send and the builder never makes (`..`, `/`, NUL names, symlinks, lying sizes), so the
//! reader's refusals can be shown on real blocks (unit tests, and hostile stations in tests/it).

use cid::Cid;

use crate::ipfs::block::{Block, BlockError, DAG_PB};
use crate::ipfs::protobuf::{LEN, VARINT, put_varint};

/// UnixFS `Data.Type` values (unixfs.proto).
pub const DIRECTORY: u64 = 1;
pub const FILE: u64 = 2;
pub const SYMLINK: u64 = 4;

fn put_len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_u64_field(out: &mut Vec<u8>, field: u64, value: u64) {
    put_varint(out, field << 3 | VARINT);
    put_varint(out, value);
}

/// A UnixFS `Data` message: type, inline bytes, announced file size, child block sizes.
pub fn unixfs_data(kind: u64, data: &[u8], filesize: Option<u64>, blocksizes: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64_field(&mut out, 1, kind);
    if !data.is_empty() {
        put_len_field(&mut out, 2, data);
    }
    if let Some(size) = filesize {
        put_u64_field(&mut out, 3, size);
    }
    for size in blocksizes {
        put_u64_field(&mut out, 4, *size);
    }
    out
}

/// A dag-pb node with `links` (CID, name; links first, as dag-pb encodes them) and `data`, as a
/// CIDv0 block.
pub fn node(links: &[(Cid, &[u8])], data: &[u8]) -> Result<Block, BlockError> {
    let mut out = Vec::new();
    for (cid, name) in links {
        let mut link = Vec::new();
        put_len_field(&mut link, 1, &cid.to_bytes());
        put_len_field(&mut link, 2, name);
        put_u64_field(&mut link, 3, 10);
        put_len_field(&mut out, 2, &link);
    }
    put_len_field(&mut out, 1, data);
    Block::from_data(DAG_PB, out)
}

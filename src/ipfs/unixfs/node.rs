//! One UnixFS node read shallowly (for `ls`, `add`'s events, pins): its kind, file size and
//! links, from the dag-pb and UnixFS protobufs. Pure parsing of one checked block.

use cid::Cid;

use crate::ipfs::block::{Block, RAW};
use crate::ipfs::protobuf::{self, LEN, VARINT};

/// UnixFS `Data.Type` (raw leaves count as files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Raw,
    Directory,
    File,
    Metadata,
    Symlink,
    HamtShard,
}

impl NodeKind {
    /// The number Kubo prints (`unixfs_pb.Data_DataType`).
    pub fn code(self) -> u8 {
        match self {
            NodeKind::Raw => 0,
            NodeKind::Directory | NodeKind::HamtShard => 1,
            NodeKind::File => 2,
            NodeKind::Metadata => 3,
            NodeKind::Symlink => 4,
        }
    }
}

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub cid: Cid,
    pub name: String,
    /// The bytes of the whole DAG below the link (`Tsize`).
    pub tsize: u64,
}

/// What one node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// File bytes (files, raw leaves), or the target's length (symlinks); 0 for folders.
    pub size: u64,
    /// The symlink target, else empty.
    pub target: String,
    pub links: Vec<Link>,
    /// This block's bytes plus its links' `Tsize`: the `Tsize` a parent gives it.
    pub tsize: u64,
}

/// Read `block` as a UnixFS node.
pub fn read(block: &Block) -> Result<Node, String> {
    if block.cid().codec() == RAW {
        let size = block.data().len() as u64;
        return Ok(Node {
            kind: NodeKind::Raw,
            size,
            target: String::new(),
            links: Vec::new(),
            tsize: size,
        });
    }
    let (links, data) = pb_node(block.data())?;
    let (kind, size, payload) = unixfs_data(data.unwrap_or_default())?;
    let target = match kind {
        NodeKind::Symlink => String::from_utf8_lossy(payload).into_owned(),
        _ => String::new(),
    };
    let tsize = block.data().len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
    let size = match kind {
        NodeKind::Symlink => target.len() as u64,
        NodeKind::Directory | NodeKind::HamtShard => 0,
        _ => size,
    };
    Ok(Node {
        kind,
        size,
        target,
        links,
        tsize,
    })
}

/// `PBNode { Data = 1; repeated PBLink Links = 2 }`.
fn pb_node(mut input: &[u8]) -> Result<(Vec<Link>, Option<&[u8]>), String> {
    let (mut links, mut data) = (Vec::new(), None);
    while !input.is_empty() {
        let tag = protobuf::varint(&mut input)?;
        match (tag >> 3, tag & 7) {
            (1, LEN) => data = Some(protobuf::length_delimited(&mut input)?),
            (2, LEN) => links.push(pb_link(protobuf::length_delimited(&mut input)?)?),
            (field, wire) => return Err(format!("dag-pb: unexpected field {field} (wire {wire})")),
        }
    }
    Ok((links, data))
}

/// `PBLink { bytes Hash = 1; string Name = 2; uint64 Tsize = 3 }`.
fn pb_link(mut input: &[u8]) -> Result<Link, String> {
    let (mut cid, mut name, mut tsize) = (None, String::new(), 0);
    while !input.is_empty() {
        let tag = protobuf::varint(&mut input)?;
        match (tag >> 3, tag & 7) {
            (1, LEN) => {
                let bytes = protobuf::length_delimited(&mut input)?;
                cid = Some(Cid::try_from(bytes).map_err(|e| format!("dag-pb link: {e}"))?);
            }
            (2, LEN) => {
                let bytes = protobuf::length_delimited(&mut input)?;
                name = String::from_utf8(bytes.to_vec())
                    .map_err(|_| "dag-pb link name is not UTF-8")?;
            }
            (3, VARINT) => tsize = protobuf::varint(&mut input)?,
            (field, wire) => {
                return Err(format!(
                    "dag-pb link: unexpected field {field} (wire {wire})"
                ));
            }
        }
    }
    Ok(Link {
        cid: cid.ok_or("dag-pb link without a hash")?,
        name,
        tsize,
    })
}

/// `Data { Type = 1; bytes Data = 2; uint64 filesize = 3; … }`: (kind, filesize, data).
fn unixfs_data(mut input: &[u8]) -> Result<(NodeKind, u64, &[u8]), String> {
    let (mut kind, mut size, mut payload) = (None, 0, &[][..]);
    while !input.is_empty() {
        let tag = protobuf::varint(&mut input)?;
        match (tag >> 3, tag & 7) {
            (1, VARINT) => {
                kind = Some(match protobuf::varint(&mut input)? {
                    0 => NodeKind::Raw,
                    1 => NodeKind::Directory,
                    2 => NodeKind::File,
                    3 => NodeKind::Metadata,
                    4 => NodeKind::Symlink,
                    5 => NodeKind::HamtShard,
                    other => return Err(format!("unknown UnixFS type {other}")),
                })
            }
            (2, LEN) => payload = protobuf::length_delimited(&mut input)?,
            (3, VARINT) => size = protobuf::varint(&mut input)?,
            (_, VARINT) => drop(protobuf::varint(&mut input)?),
            (_, LEN) => drop(protobuf::length_delimited(&mut input)?),
            (_, protobuf::FIXED64) => drop(protobuf::take(&mut input, 8)?),
            (_, protobuf::FIXED32) => drop(protobuf::take(&mut input, 4)?),
            (field, wire) => return Err(format!("UnixFS: unexpected field {field} (wire {wire})")),
        }
    }
    Ok((kind.ok_or("UnixFS data without a type")?, size, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::block::{BlockSource, DAG_PB, MemoryBlocks};
    use crate::ipfs::unixfs::{FolderLimits, Hidden, add_path};

    #[tokio::test]
    async fn a_built_folder_reads_back_with_its_links_kinds_and_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut blocks = MemoryBlocks::default();
        let added = add_path(
            dir.path(),
            &mut blocks,
            &FolderLimits::STATION,
            Hidden::Skip,
        )
        .unwrap();
        let root = read(&blocks.get(&added.root).await.unwrap()).unwrap();
        assert_eq!(root.kind, NodeKind::Directory);
        let names: Vec<_> = root.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub"]);
        let file = read(&blocks.get(&root.links[0].cid).await.unwrap()).unwrap();
        assert_eq!(
            (file.kind, file.size, file.tsize),
            (NodeKind::File, 5, root.links[0].tsize)
        );
        let empty = Block::from_data(DAG_PB, vec![0x0a, 0x02, 0x08, 0x01]).unwrap();
        assert_eq!(read(&empty).unwrap().kind, NodeKind::Directory);
        assert!(read(&Block::from_data(DAG_PB, vec![0xff]).unwrap()).is_err());
    }
}

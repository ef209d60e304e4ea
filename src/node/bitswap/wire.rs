//! The bitswap message (`message.proto` of go-bitswap, 1.0.0 to 1.2.0) as plain types with pure
//! decode/encode, and its framing: one unsigned-varint length, at most 4 MiB, then the protobuf.

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

use crate::ipfs::protobuf::{
    FIXED32, FIXED64, LEN, VARINT, length_delimited, put_varint, put_varint_field, take, varint,
};

/// Largest message read or written: go-bitswap's `maxMessageSize` (4 MiB), so one 2 MiB block
/// (our `MAX_BLOCK_BYTES`) always fits and a hostile length is refused before any allocation.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Wantlist entries, blocks or presences taken from one message: Kubo sends at most a few
/// hundred wants at once; the rest of a hostile message is dropped, not stored.
pub const MAX_ITEMS_PER_MESSAGE: usize = 1024;

/// `Message` fields.
const WANTLIST: u64 = 1;
const BLOCKS: u64 = 2;
const PAYLOAD: u64 = 3;
const PRESENCES: u64 = 4;
/// `Wantlist` fields.
const ENTRIES: u64 = 1;
const FULL: u64 = 2;
/// `Entry` fields.
const ENTRY_CID: u64 = 1;
const PRIORITY: u64 = 2;
const CANCEL: u64 = 3;
const WANT_TYPE: u64 = 4;
const SEND_DONT_HAVE: u64 = 5;
/// `Block` (payload) and `BlockPresence` fields.
const PREFIX: u64 = 1;
const DATA: u64 = 2;
const PRESENCE_CID: u64 = 1;
const PRESENCE_TYPE: u64 = 2;

/// What a wantlist entry asks for (1.2.0: `Have` asks only whether the peer has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WantType {
    Block,
    Have,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub cid: Cid,
    pub priority: i32,
    pub cancel: bool,
    pub want_type: WantType,
    pub send_dont_have: bool,
}

/// A peer's answer about one CID without the block (1.2.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

/// One decoded message. `blocks` carry the CID their sender's prefix names, computed from the
/// data; the receiver still checks each against the CID it wanted (`ipfs::Block::new`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub wantlist: Vec<Entry>,
    pub full: bool,
    pub blocks: Vec<(Cid, Vec<u8>)>,
    pub presences: Vec<(Cid, Presence)>,
}

/// Which field a block goes in: 1.0.0 has only bare CIDv0 data, 1.1.0+ a CID prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V100,
    V110,
}

fn err(what: impl Into<String>) -> String {
    what.into()
}

impl Message {
    pub fn decode(mut input: &[u8]) -> Result<Message, String> {
        let mut message = Message::default();
        while !input.is_empty() {
            let key = varint(&mut input)?;
            match (key >> 3, key & 7) {
                (WANTLIST, LEN) => message.decode_wantlist(length_delimited(&mut input)?)?,
                (BLOCKS, LEN) => {
                    let data = length_delimited(&mut input)?;
                    if message.blocks.len() < MAX_ITEMS_PER_MESSAGE {
                        let cid = Cid::new_v0(Code::Sha2_256.digest(data)).map_err(err_of)?;
                        message.blocks.push((cid, data.to_vec()));
                    }
                }
                (PAYLOAD, LEN) => {
                    let block = decode_payload(length_delimited(&mut input)?)?;
                    if message.blocks.len() < MAX_ITEMS_PER_MESSAGE {
                        message.blocks.extend(block);
                    }
                }
                (PRESENCES, LEN) => {
                    let presence = decode_presence(length_delimited(&mut input)?)?;
                    if message.presences.len() < MAX_ITEMS_PER_MESSAGE {
                        message.presences.push(presence);
                    }
                }
                (field, wire) => skip(&mut input, field, wire)?,
            }
        }
        Ok(message)
    }

    fn decode_wantlist(&mut self, mut input: &[u8]) -> Result<(), String> {
        while !input.is_empty() {
            let key = varint(&mut input)?;
            match (key >> 3, key & 7) {
                (ENTRIES, LEN) => {
                    let entry = decode_entry(length_delimited(&mut input)?)?;
                    if self.wantlist.len() < MAX_ITEMS_PER_MESSAGE {
                        self.wantlist.push(entry);
                    }
                }
                (FULL, VARINT) => self.full = varint(&mut input)? != 0,
                (field, wire) => skip(&mut input, field, wire)?,
            }
        }
        Ok(())
    }

    /// The framed message: varint length, then the protobuf.
    pub fn encode(&self, dialect: Dialect) -> Vec<u8> {
        let mut body = Vec::new();
        if !self.wantlist.is_empty() || self.full {
            let mut list = Vec::new();
            for entry in &self.wantlist {
                put_len(&mut list, ENTRIES, &encode_entry(entry));
            }
            put_varint_field(&mut list, FULL, self.full.then_some(1));
            put_len(&mut body, WANTLIST, &list);
        }
        for (cid, data) in &self.blocks {
            match dialect {
                Dialect::V100 => put_len(&mut body, BLOCKS, data),
                Dialect::V110 => {
                    let mut block = Vec::new();
                    put_len(&mut block, PREFIX, &prefix_of(cid));
                    put_len(&mut block, DATA, data);
                    put_len(&mut body, PAYLOAD, &block);
                }
            }
        }
        if dialect == Dialect::V110 {
            for (cid, presence) in &self.presences {
                let mut p = Vec::new();
                put_len(&mut p, PRESENCE_CID, &cid.to_bytes());
                let kind = match presence {
                    Presence::Have => None,
                    Presence::DontHave => Some(1),
                };
                put_varint_field(&mut p, PRESENCE_TYPE, kind);
                put_len(&mut body, PRESENCES, &p);
            }
        }
        let mut framed = Vec::with_capacity(body.len() + 5);
        put_varint(&mut framed, body.len() as u64);
        framed.extend_from_slice(&body);
        framed
    }
}

fn err_of(e: impl std::fmt::Display) -> String {
    err(e.to_string())
}

fn skip(input: &mut &[u8], field: u64, wire: u64) -> Result<(), String> {
    match wire {
        VARINT => drop(varint(input)?),
        FIXED64 => drop(take(input, 8)?),
        LEN => drop(length_delimited(input)?),
        FIXED32 => drop(take(input, 4)?),
        _ => return Err(format!("unknown wire type {wire} (field {field})")),
    }
    Ok(())
}

fn put_len(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn decode_entry(mut input: &[u8]) -> Result<Entry, String> {
    let mut entry = Entry {
        cid: Cid::default(),
        priority: 1,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    let mut cid = None;
    while !input.is_empty() {
        let key = varint(&mut input)?;
        match (key >> 3, key & 7) {
            (ENTRY_CID, LEN) => {
                cid = Some(Cid::try_from(length_delimited(&mut input)?).map_err(err_of)?)
            }
            (PRIORITY, VARINT) => entry.priority = varint(&mut input)? as i32,
            (CANCEL, VARINT) => entry.cancel = varint(&mut input)? != 0,
            (WANT_TYPE, VARINT) => {
                entry.want_type = match varint(&mut input)? {
                    0 => WantType::Block,
                    _ => WantType::Have,
                }
            }
            (SEND_DONT_HAVE, VARINT) => entry.send_dont_have = varint(&mut input)? != 0,
            (field, wire) => skip(&mut input, field, wire)?,
        }
    }
    entry.cid = cid.ok_or("wantlist entry without a CID")?;
    Ok(entry)
}

fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, ENTRY_CID, &entry.cid.to_bytes());
    put_varint_field(&mut out, PRIORITY, Some(entry.priority.max(0) as u64));
    put_varint_field(&mut out, CANCEL, entry.cancel.then_some(1));
    let have = entry.want_type == WantType::Have;
    put_varint_field(&mut out, WANT_TYPE, have.then_some(1));
    put_varint_field(&mut out, SEND_DONT_HAVE, entry.send_dont_have.then_some(1));
    out
}

/// A payload block: `None` when its hash function is one we do not compute (it is then
/// simply not a block we could have asked for).
fn decode_payload(mut input: &[u8]) -> Result<Option<(Cid, Vec<u8>)>, String> {
    let (mut prefix, mut data) = (None, None);
    while !input.is_empty() {
        let key = varint(&mut input)?;
        match (key >> 3, key & 7) {
            (PREFIX, LEN) => prefix = Some(length_delimited(&mut input)?),
            (DATA, LEN) => data = Some(length_delimited(&mut input)?),
            (field, wire) => skip(&mut input, field, wire)?,
        }
    }
    let (Some(mut prefix), Some(data)) = (prefix, data) else {
        return Err("payload block without prefix or data".into());
    };
    let version = varint(&mut prefix)?;
    let codec = varint(&mut prefix)?;
    let code = varint(&mut prefix)?;
    let Ok(hasher @ (Code::Sha2_256 | Code::Sha2_512)) = Code::try_from(code) else {
        return Ok(None);
    };
    let hash = hasher.digest(data);
    let cid = match version {
        0 => Cid::new_v0(hash).map_err(err_of)?,
        _ => Cid::new_v1(codec, hash),
    };
    Ok(Some((cid, data.to_vec())))
}

fn decode_presence(mut input: &[u8]) -> Result<(Cid, Presence), String> {
    let (mut cid, mut presence) = (None, Presence::Have);
    while !input.is_empty() {
        let key = varint(&mut input)?;
        match (key >> 3, key & 7) {
            (PRESENCE_CID, LEN) => {
                cid = Some(Cid::try_from(length_delimited(&mut input)?).map_err(err_of)?)
            }
            (PRESENCE_TYPE, VARINT) => {
                if varint(&mut input)? != 0 {
                    presence = Presence::DontHave;
                }
            }
            (field, wire) => skip(&mut input, field, wire)?,
        }
    }
    Ok((cid.ok_or("block presence without a CID")?, presence))
}

/// The CID prefix of go-cid: version, codec, hash code, hash length.
fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, cid.version() as u64);
    put_varint(&mut out, cid.codec());
    put_varint(&mut out, cid.hash().code());
    put_varint(&mut out, u64::from(cid.hash().size()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::Block;
    use crate::ipfs::block::{DAG_PB, RAW};

    fn body(framed: &[u8]) -> &[u8] {
        let mut input = framed;
        let len = varint(&mut input).expect("length");
        assert_eq!(len as usize, input.len());
        input
    }

    #[test]
    fn a_message_round_trips_in_both_dialects_with_cids_from_the_data() {
        let raw = Block::from_data(RAW, b"raw leaf".to_vec()).expect("raw");
        let pb = Block::from_data(DAG_PB, b"\x0a\x02\x08\x01".to_vec()).expect("dir");
        let message = Message {
            wantlist: vec![Entry {
                cid: *raw.cid(),
                priority: 7,
                cancel: false,
                want_type: WantType::Have,
                send_dont_have: true,
            }],
            full: true,
            blocks: vec![
                (*raw.cid(), raw.data().to_vec()),
                (*pb.cid(), pb.data().to_vec()),
            ],
            presences: vec![(*pb.cid(), Presence::DontHave)],
        };
        let decoded = Message::decode(body(&message.encode(Dialect::V110))).expect("decode");
        assert_eq!(decoded, message);
        let old = Message::decode(body(&message.encode(Dialect::V100))).expect("decode 1.0.0");
        // 1.0.0 has no presences, and a bare block is named by its CIDv0.
        assert!(old.presences.is_empty());
        assert_eq!(old.blocks[1].0, *pb.cid());
    }

    #[test]
    fn garbage_is_an_error_and_item_counts_are_capped() {
        let cid = *Block::from_data(RAW, b"x".to_vec()).expect("b").cid();
        let entry = Entry {
            cid,
            priority: 1,
            cancel: true,
            want_type: WantType::Block,
            send_dont_have: false,
        };
        let message = Message {
            wantlist: vec![entry; MAX_ITEMS_PER_MESSAGE + 10],
            ..Message::default()
        };
        let framed = message.encode(Dialect::V110);
        let decoded = Message::decode(body(&framed)).expect("decode");
        assert_eq!(decoded.wantlist.len(), MAX_ITEMS_PER_MESSAGE);
        let bytes = body(&framed);
        for cut in [1, 2, 3, 10, bytes.len() - 1] {
            assert!(Message::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            Message::decode(&[0x0a, 0x02, 0x0a, 0x00]).is_err(),
            "entry without a CID"
        );
    }
}

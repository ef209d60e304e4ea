//! The protobuf shape of a dag-pb node and its UnixFS data, checked before rust-unixfs reads
//! them: its quick-protobuf reader trusts nested lengths, and one that passes its message's end
//! makes it panic (an overflow, an index past the slice) or read past the message.

use crate::ipfs::protobuf::{FIXED32, FIXED64, LEN, VARINT, length_delimited, take, varint};

/// `PBNode` fields: `Data` (1) holds a UnixFS `Data` message, each `Links` (2) a `PBLink`.
const PB_DATA: u64 = 1;
const PB_LINKS: u64 = 2;
/// UnixFS `Data` fields: `blocksizes` (4) may be packed varints, `mtime` (8) a `UnixTime`.
const UNIXFS_BLOCKSIZES: u64 = 4;
const UNIXFS_MTIME: u64 = 8;

/// Check that every field of the node, of its links, of its UnixFS data and of that data's
/// `mtime` has a known wire type and stays inside its message. Says what is wrong otherwise.
pub fn check_dag_pb(node: &[u8]) -> Result<(), String> {
    fields(node, &mut |field, wire, body| match (field, wire) {
        (PB_LINKS, LEN) => fields(body, &mut leaf),
        (PB_DATA, LEN) => fields(body, &mut |field, wire, inner| match (field, wire) {
            (UNIXFS_MTIME, LEN) => fields(inner, &mut leaf),
            (UNIXFS_BLOCKSIZES, LEN) => packed_varints(inner),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

/// What to do with one field: its number, its wire type, its body (empty unless `LEN`).
type OnField<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<(), String> + 'a;

/// A field whose body (if any) is opaque bytes, not a message.
fn leaf(_: u64, _: u64, _: &[u8]) -> Result<(), String> {
    Ok(())
}

/// Walk one message's fields, giving each to `each` with its body (empty unless `LEN`).
fn fields(mut input: &[u8], each: &mut OnField) -> Result<(), String> {
    while !input.is_empty() {
        let key = varint(&mut input)?;
        let (field, wire) = (key >> 3, key & 7);
        let body = match wire {
            VARINT => varint(&mut input).map(|_| &[][..])?,
            FIXED64 => take(&mut input, 8).map(|_| &[][..])?,
            FIXED32 => take(&mut input, 4).map(|_| &[][..])?,
            LEN => length_delimited(&mut input)?,
            other => return Err(format!("field {field} has wire type {other}")),
        };
        each(field, wire, body)?;
    }
    Ok(())
}

fn packed_varints(mut input: &[u8]) -> Result<(), String> {
    while !input.is_empty() {
        varint(&mut input)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_dag_pb;

    #[test]
    fn kubo_nodes_pass_and_lengths_past_their_message_are_refused() {
        // An empty folder as Kubo writes it: Data { Type: Directory }.
        assert_eq!(check_dag_pb(&[0x0a, 0x02, 0x08, 0x01]), Ok(()));
        // A link (field 2) whose Hash (field 1) announces 34 bytes inside a 2-byte link.
        assert!(check_dag_pb(&[0x12, 0x02, 0x0a, 0x22]).is_err());
        // Data whose mtime (field 8) passes the Data message.
        assert!(check_dag_pb(&[0x0a, 0x03, 0x42, 0x05, 0x08]).is_err());
        // A group (wire type 3): not protobuf 3.
        assert!(check_dag_pb(&[0x0b]).is_err());
    }
}

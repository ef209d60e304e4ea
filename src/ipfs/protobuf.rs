//! Protobuf primitives shared by the hand-written wire types (IPNS entries, bitswap messages):
//! varints, length-delimited fields, wire types. Every reader is bounded by its input slice.

/// Protobuf wire types we meet.
pub const VARINT: u64 = 0;
pub const FIXED64: u64 = 1;
pub const LEN: u64 = 2;
pub const FIXED32: u64 = 5;

pub fn put_bytes_fields(out: &mut Vec<u8>, fields: &[(u64, &Option<Vec<u8>>)]) {
    for (field, bytes) in fields {
        if let Some(bytes) = bytes {
            put_varint(out, field << 3 | LEN);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    }
}

pub fn put_varint_field(out: &mut Vec<u8>, field: u64, value: Option<u64>) {
    if let Some(value) = value {
        put_varint(out, field << 3 | VARINT);
        put_varint(out, value);
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A base-128 varint of at most 10 bytes (a u64).
pub fn varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = input.split_first().ok_or("truncated varint")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

pub fn length_delimited<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = varint(input)?;
    let len = usize::try_from(len).map_err(|_| "length out of range".to_string())?;
    take(input, len)
}

pub fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if input.len() < len {
        return Err(format!("field of {len} bytes with {} left", input.len()));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

//! The `IpnsEntry` protobuf, encoded and decoded by hand: nine optional fields, bytes or varint.
//! Input is already bounded (10 KiB); unknown fields are skipped as protobuf requires.

use crate::ipfs::protobuf::{
    FIXED32, FIXED64, LEN, VARINT, length_delimited, put_bytes_fields, put_varint_field, take,
    varint,
};

/// Field numbers of `IpnsEntry` (IPNS spec, `ipns.proto`).
const VALUE: u64 = 1;
const SIGNATURE_V1: u64 = 2;
const VALIDITY_TYPE: u64 = 3;
const VALIDITY: u64 = 4;
const SEQUENCE: u64 = 5;
const TTL: u64 = 6;
const PUB_KEY: u64 = 7;
const SIGNATURE_V2: u64 = 8;
const DATA: u64 = 9;

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Entry {
    pub value: Option<Vec<u8>>,
    pub signature_v1: Option<Vec<u8>>,
    pub validity_type: Option<u64>,
    pub validity: Option<Vec<u8>>,
    pub sequence: Option<u64>,
    pub ttl: Option<u64>,
    pub pub_key: Option<Vec<u8>>,
    pub signature_v2: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
}

impl Entry {
    pub fn decode(mut input: &[u8]) -> Result<Entry, String> {
        let mut entry = Entry::default();
        while !input.is_empty() {
            let key = varint(&mut input)?;
            let (field, wire) = (key >> 3, key & 7);
            match (field, wire) {
                (VALIDITY_TYPE, VARINT) => entry.validity_type = Some(varint(&mut input)?),
                (SEQUENCE, VARINT) => entry.sequence = Some(varint(&mut input)?),
                (TTL, VARINT) => entry.ttl = Some(varint(&mut input)?),
                (_, LEN) => {
                    let bytes = Some(length_delimited(&mut input)?.to_vec());
                    match field {
                        VALUE => entry.value = bytes,
                        SIGNATURE_V1 => entry.signature_v1 = bytes,
                        VALIDITY => entry.validity = bytes,
                        PUB_KEY => entry.pub_key = bytes,
                        SIGNATURE_V2 => entry.signature_v2 = bytes,
                        DATA => entry.data = bytes,
                        VALIDITY_TYPE | SEQUENCE | TTL => {
                            return Err(format!("field {field} as bytes"));
                        }
                        _ => {}
                    }
                }
                (VALUE..=DATA, _) => return Err(format!("field {field} has wire type {wire}")),
                (_, VARINT) => drop(varint(&mut input)?),
                (_, FIXED64) => drop(take(&mut input, 8)?),
                (_, FIXED32) => drop(take(&mut input, 4)?),
                _ => return Err(format!("unknown wire type {wire} (field {field})")),
            }
        }
        Ok(entry)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let bytes = [(VALUE, &self.value), (SIGNATURE_V1, &self.signature_v1)];
        put_bytes_fields(&mut out, &bytes);
        put_varint_field(&mut out, VALIDITY_TYPE, self.validity_type);
        put_bytes_fields(&mut out, &[(VALIDITY, &self.validity)]);
        put_varint_field(&mut out, SEQUENCE, self.sequence);
        put_varint_field(&mut out, TTL, self.ttl);
        let rest = [
            (PUB_KEY, &self.pub_key),
            (SIGNATURE_V2, &self.signature_v2),
            (DATA, &self.data),
        ];
        put_bytes_fields(&mut out, &rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_unknown_fields_are_skipped() {
        let entry = Entry {
            value: Some(b"/ipfs/x".to_vec()),
            sequence: Some(300),
            data: Some(vec![1, 2]),
            ..Entry::default()
        };
        let mut bytes = entry.encode();
        bytes.extend_from_slice(&[0x50, 0x05, 0x5a, 0x01, 0xff]); // field 10 varint, field 11 bytes
        assert_eq!(Entry::decode(&bytes), Ok(entry));
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error_not_a_panic() {
        let bytes = Entry {
            data: Some(vec![7; 20]),
            ..Entry::default()
        }
        .encode();
        for cut in 0..bytes.len() {
            let _ = Entry::decode(&bytes[..cut]);
        }
        assert!(
            Entry::decode(&[0x4a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
            "length past the end"
        );
        assert!(
            Entry::decode(&[
                0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err(),
            "varint of 11 bytes"
        );
        assert!(Entry::decode(&[0x2a, 0x00]).is_err(), "sequence as bytes");
    }
}

//! IPNS records (IPFS spec "IPNS Record"): create V1+V2 records signed with a libp2p key,
//! marshal and unmarshal their protobuf (10 KiB bound), validate them fully against a name, and
//! choose the best of several. Written here: rust-ipns pins libp2p-identity 0.2 and no V2-only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ipld_core::ipld::Ipld;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};

/// Records above 10 KiB are invalid (spec "Record Size Limit"; Kubo and js refuse them too).
pub const MAX_RECORD_BYTES: usize = 10 * 1024;
/// What Astroport's `_12345.sh` publishes with: `ipfs name publish --lifetime 24h --ttl 30m`.
pub const STATION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const STATION_TTL: Duration = Duration::from_secs(30 * 60);
/// Prefix of the bytes a V2 signature covers (`"ipns-signature:" + data`).
const SIGNATURE_V2_PREFIX: &[u8] = b"ipns-signature:";
/// The only validity type: an end-of-life timestamp (`ValidityType.EOL = 0`).
const VALIDITY_EOL: u64 = 0;
/// libp2p inlines a public key in the PeerID when its protobuf encoding is at most this long
/// (Ed25519 yes, RSA no): only then may a record omit `pubKey`.
const MAX_INLINE_KEY_BYTES: usize = 42;
/// Namespace of IPNS routing keys in the DHT (`/ipns/` + the name's PeerID bytes).
const ROUTING_PREFIX: &[u8] = b"/ipns/";

/// Why a record is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpnsError {
    #[error("IPNS record is {0} bytes, above the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("IPNS record is malformed: {0}")]
    Malformed(String),
    #[error("IPNS record has no V2 signature or no data (V1-only records are no longer valid)")]
    NoSignatureV2,
    #[error("IPNS record's V1 field {0} differs from its signed CBOR data")]
    V1Mismatch(&'static str),
    #[error("IPNS record for {name}: {reason}")]
    WrongKey { name: PeerId, reason: String },
    #[error("IPNS record for {0}: the V2 signature does not verify")]
    BadSignature(PeerId),
    #[error("IPNS record expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("IPNS record (sequence {incoming}) is not newer than the one held (sequence {held})")]
    NotNewer { held: u64, incoming: u64 },
    #[error("signing the IPNS record: {0}")]
    Signing(String),
}

/// One IPNS record. Built by [`IpnsRecord::create`] or [`IpnsRecord::unmarshal`], which checks
/// its structure; [`IpnsRecord::validate`] checks it against a name and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpnsRecord {
    /// The signed CBOR fields (the truth for V2), and the raw CBOR they came from.
    value: Vec<u8>,
    validity: DateTime<Utc>,
    sequence: u64,
    ttl_ns: u64,
    data: Vec<u8>,
    signature_v2: Vec<u8>,
    pub_key: Option<Vec<u8>>,
    /// The V1 protobuf fields, when the record carries them (`v1Compatible`).
    v1: Option<V1Fields>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct V1Fields {
    value: Vec<u8>,
    validity: Vec<u8>,
    signature: Vec<u8>,
}

impl IpnsRecord {
    /// A V1+V2 record (what Kubo 0.22 publishes) for `value` (e.g. `/ipfs/Qm…`), valid until
    /// `validity`. The public key is embedded when the PeerID cannot inline it (RSA).
    pub fn create(
        key: &Keypair,
        value: &[u8],
        sequence: u64,
        validity: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<IpnsRecord, IpnsError> {
        let ttl_ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let validity_text = validity
            .to_rfc3339_opts(SecondsFormat::Nanos, true)
            .into_bytes();
        let data = cbor_data(value, &validity_text, sequence, ttl_ns)?;
        let sign = |bytes: &[u8]| {
            key.sign(bytes)
                .map_err(|e| IpnsError::Signing(e.to_string()))
        };
        let signature_v2 = sign(&[SIGNATURE_V2_PREFIX, &data].concat())?;
        let signature_v1 = sign(&[value, &validity_text, b"EOL"].concat())?;
        let public = key.public().encode_protobuf();
        let pub_key = (public.len() > MAX_INLINE_KEY_BYTES).then_some(public);
        let validity = parse_validity(&validity_text)?;
        let v1 = Some(V1Fields {
            value: value.to_vec(),
            validity: validity_text,
            signature: signature_v1,
        });
        Ok(IpnsRecord {
            value: value.to_vec(),
            validity,
            sequence,
            ttl_ns,
            data,
            signature_v2,
            pub_key,
            v1,
        })
    }

    /// Parse a record from the wire: size bound, protobuf, CBOR data, V1 fields equal to it.
    pub fn unmarshal(bytes: &[u8]) -> Result<IpnsRecord, IpnsError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(IpnsError::TooLarge(bytes.len()));
        }
        let mut entry = wire::Entry::decode(bytes).map_err(IpnsError::Malformed)?;
        let (Some(signature_v2), Some(data)) = (entry.signature_v2.take(), entry.data.take())
        else {
            return Err(IpnsError::NoSignatureV2);
        };
        let fields = CborFields::decode(&data)?;
        let validity = parse_validity(&fields.validity)?;
        let has_v1 =
            entry.value.is_some() || entry.validity.is_some() || entry.signature_v1.is_some();
        let v1 = if has_v1 {
            let v1 = V1Fields {
                value: entry.value.take().unwrap_or_default(),
                validity: entry.validity.take().unwrap_or_default(),
                signature: entry.signature_v1.take().unwrap_or_default(),
            };
            fields.check_v1(&v1, &entry)?;
            Some(v1)
        } else {
            None
        };
        let CborFields {
            value,
            sequence,
            ttl_ns,
            ..
        } = fields;
        Ok(IpnsRecord {
            value,
            validity,
            sequence,
            ttl_ns,
            data,
            signature_v2,
            pub_key: entry.pub_key.take(),
            v1,
        })
    }

    /// The protobuf bytes (what travels in DHT PUT_VALUE / GET_VALUE).
    pub fn marshal(&self) -> Vec<u8> {
        let v1 = self.v1.as_ref();
        wire::Entry {
            value: v1.map(|v| v.value.clone()),
            signature_v1: v1.map(|v| v.signature.clone()),
            validity: v1.map(|v| v.validity.clone()),
            validity_type: v1.map(|_| VALIDITY_EOL),
            sequence: v1.map(|_| self.sequence),
            ttl: v1.map(|_| self.ttl_ns),
            pub_key: self.pub_key.clone(),
            signature_v2: Some(self.signature_v2.clone()),
            data: Some(self.data.clone()),
        }
        .encode()
    }

    /// Full validation for the name `name` at `now`: the key is the name's (embedded, or inlined
    /// in an Ed25519 PeerID), the V2 signature verifies, and the validity has not passed.
    pub fn validate(&self, name: &PeerId, now: DateTime<Utc>) -> Result<(), IpnsError> {
        let key = self.public_key(name)?;
        if PeerId::from_public_key(&key) != *name {
            return Err(IpnsError::WrongKey {
                name: *name,
                reason: "signed by another key".into(),
            });
        }
        if !key.verify(
            &[SIGNATURE_V2_PREFIX, &self.data].concat(),
            &self.signature_v2,
        ) {
            return Err(IpnsError::BadSignature(*name));
        }
        if self.validity < now {
            return Err(IpnsError::Expired(self.validity));
        }
        Ok(())
    }

    fn public_key(&self, name: &PeerId) -> Result<PublicKey, IpnsError> {
        let wrong = |reason: String| IpnsError::WrongKey {
            name: *name,
            reason,
        };
        let bytes = match &self.pub_key {
            Some(embedded) => embedded.as_slice(),
            None if name.as_ref().code() == 0 => name.as_ref().digest(),
            None => {
                return Err(wrong(
                    "no embedded key, and the name does not inline one".into(),
                ));
            }
        };
        PublicKey::try_decode_protobuf(bytes).map_err(|e| wrong(format!("bad public key: {e}")))
    }

    /// True when `self` should replace `other` (same name, both valid): a higher sequence, or the
    /// same sequence and a later validity (spec "Record Selection"; Kubo's and js's selector).
    pub fn is_better_than(&self, other: &IpnsRecord) -> bool {
        (self.sequence, self.validity) > (other.sequence, other.validity)
    }

    /// Refuse an update that does not beat the record already held.
    pub fn check_newer_than(&self, held: &IpnsRecord) -> Result<(), IpnsError> {
        if self.is_better_than(held) {
            Ok(())
        } else {
            Err(IpnsError::NotNewer {
                held: held.sequence,
                incoming: self.sequence,
            })
        }
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn validity(&self) -> DateTime<Utc> {
        self.validity
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_ns)
    }

    /// Whether the record carries the V1 fields (Kubo before 0.19 reads only those).
    pub fn has_v1(&self) -> bool {
        self.v1.is_some()
    }
}

/// The best of several valid records for one name (first one on a full tie), as an index.
pub fn best(records: &[IpnsRecord]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, record) in records.iter().enumerate() {
        if best.is_none_or(|b| record.is_better_than(&records[b])) {
            best = Some(i);
        }
    }
    best
}

/// The DHT key a record for `name` is stored under.
pub fn routing_key(name: &PeerId) -> Vec<u8> {
    [ROUTING_PREFIX, &name.to_bytes()].concat()
}

/// Multicodec of `libp2p-key`, the codec of an IPNS name written as a CIDv1.
pub const LIBP2P_KEY: u64 = 0x72;

/// An IPNS name as users write it: a base58 PeerID (`12D3Koo…`, `Qm…`) or a CIDv1 with the
/// `libp2p-key` codec in any multibase (`k51…`, Kubo's default, or `bafz…`).
pub fn parse_name(text: &str) -> Result<PeerId, String> {
    if let Ok(peer) = text.parse::<PeerId>() {
        return Ok(peer);
    }
    let cid = cid::Cid::try_from(text).map_err(|e| format!("{text:?} is not an IPNS name: {e}"))?;
    if cid.codec() != LIBP2P_KEY {
        return Err(format!(
            "{text:?} is a CID, not an IPNS name (not libp2p-key)"
        ));
    }
    PeerId::from_multihash(*cid.hash()).map_err(|_| format!("{text:?} holds no PeerID"))
}

/// The CIDv1 (`libp2p-key`) of a name, for the multibase forms Kubo prints (`k51…`).
pub fn name_cid(name: &PeerId) -> cid::Cid {
    cid::Cid::new_v1(LIBP2P_KEY, *name.as_ref())
}

fn parse_validity(text: &[u8]) -> Result<DateTime<Utc>, IpnsError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| IpnsError::Malformed("validity is not UTF-8".into()))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| IpnsError::Malformed(format!("validity {text:?}: {e}")))
}

/// The DAG-CBOR `data` map the V2 signature covers.
fn cbor_data(
    value: &[u8],
    validity: &[u8],
    sequence: u64,
    ttl_ns: u64,
) -> Result<Vec<u8>, IpnsError> {
    let map = BTreeMap::from([
        ("Value".to_owned(), Ipld::Bytes(value.to_vec())),
        ("Validity".to_owned(), Ipld::Bytes(validity.to_vec())),
        (
            "ValidityType".to_owned(),
            Ipld::Integer(VALIDITY_EOL.into()),
        ),
        ("Sequence".to_owned(), Ipld::Integer(sequence.into())),
        ("TTL".to_owned(), Ipld::Integer(ttl_ns.into())),
    ]);
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map))
        .map_err(|e| IpnsError::Malformed(format!("encoding data: {e}")))
}

/// The five fields of the CBOR data (other keys are allowed by the spec and ignored).
struct CborFields {
    value: Vec<u8>,
    validity: Vec<u8>,
    sequence: u64,
    ttl_ns: u64,
}

impl CborFields {
    fn decode(data: &[u8]) -> Result<CborFields, IpnsError> {
        let bad = |what: &str| IpnsError::Malformed(format!("data: {what}"));
        // The decoder has a nesting depth limit, so a hostile 10 KiB of nested arrays is an error.
        let Ipld::Map(map) =
            serde_ipld_dagcbor::from_slice::<Ipld>(data).map_err(|e| bad(&e.to_string()))?
        else {
            return Err(bad("not a map"));
        };
        let bytes = |key: &str| match map.get(key) {
            Some(Ipld::Bytes(b)) => Ok(b.clone()),
            _ => Err(bad(&format!("{key} missing or not bytes"))),
        };
        let uint = |key: &str| match map.get(key) {
            Some(Ipld::Integer(n)) => {
                u64::try_from(*n).map_err(|_| bad(&format!("{key} out of range")))
            }
            _ => Err(bad(&format!("{key} missing or not an integer"))),
        };
        if uint("ValidityType")? != VALIDITY_EOL {
            return Err(bad("unsupported ValidityType (only EOL)"));
        }
        Ok(CborFields {
            value: bytes("Value")?,
            validity: bytes("Validity")?,
            sequence: uint("Sequence")?,
            ttl_ns: uint("TTL")?,
        })
    }

    /// A V1+V2 record's protobuf fields must say what the signed data says.
    fn check_v1(&self, v1: &V1Fields, entry: &wire::Entry) -> Result<(), IpnsError> {
        let checks = [
            ("value", v1.value == self.value),
            ("validity", v1.validity == self.validity),
            (
                "validityType",
                entry.validity_type.unwrap_or(VALIDITY_EOL) == VALIDITY_EOL,
            ),
            ("sequence", entry.sequence.unwrap_or(0) == self.sequence),
            ("ttl", entry.ttl.unwrap_or(0) == self.ttl_ns),
        ];
        match checks.iter().find(|(_, same)| !same) {
            Some((field, _)) => Err(IpnsError::V1Mismatch(field)),
            None => Ok(()),
        }
    }
}

mod wire;

#[cfg(test)]
mod tests;

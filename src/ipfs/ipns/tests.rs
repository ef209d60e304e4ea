//! Unit tests of IPNS records: round trips and each refusal, with Ed25519 keys made here (RSA and
//! the independent implementation are in the js interop tests, `tests/it/ipfs.rs`).

use super::wire::Entry;
use super::*;

const VALUE: &[u8] = b"/ipfs/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

fn signed(key: &Keypair, sequence: u64, hours: i64) -> IpnsRecord {
    let validity = Utc::now() + chrono::Duration::hours(hours);
    IpnsRecord::create(key, VALUE, sequence, validity, STATION_TTL).expect("create")
}

fn name(key: &Keypair) -> PeerId {
    key.public().to_peer_id()
}

/// Re-encode a record after changing its protobuf fields.
fn edited(record: &IpnsRecord, edit: impl FnOnce(&mut Entry)) -> Vec<u8> {
    let mut entry = Entry::decode(&record.marshal()).expect("decode");
    edit(&mut entry);
    entry.encode()
}

#[test]
fn a_record_round_trips_and_validates_for_its_name() {
    let key = Keypair::generate_ed25519();
    let record = signed(&key, 7, 24);
    let back = IpnsRecord::unmarshal(&record.marshal()).expect("unmarshal");
    assert_eq!(back, record);
    back.validate(&name(&key), Utc::now()).expect("valid");
    assert_eq!(
        (back.value(), back.sequence(), back.ttl()),
        (VALUE, 7, STATION_TTL)
    );
    assert!(
        back.has_v1() && back.pub_key.is_none(),
        "Ed25519 names inline the key"
    );
}

#[test]
fn an_expired_record_is_refused() {
    let key = Keypair::generate_ed25519();
    let record = signed(&key, 1, -1);
    let err = record
        .validate(&name(&key), Utc::now())
        .expect_err("expired");
    assert!(matches!(err, IpnsError::Expired(_)), "{err}");
}

#[test]
fn a_record_signed_by_another_key_is_refused() {
    let (key, other) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let record = signed(&other, 1, 24);
    let err = record
        .validate(&name(&key), Utc::now())
        .expect_err("wrong key");
    assert!(matches!(err, IpnsError::BadSignature(_)), "{err}");
    // Embedding the other key does not help: it does not hash to the name.
    let bytes = edited(&record, |e| {
        e.pub_key = Some(other.public().encode_protobuf())
    });
    let err = IpnsRecord::unmarshal(&bytes)
        .expect("parse")
        .validate(&name(&key), Utc::now())
        .expect_err("wrong key");
    assert!(matches!(err, IpnsError::WrongKey { .. }), "{err}");
}

#[test]
fn a_tampered_signature_or_v1_field_is_refused() {
    let key = Keypair::generate_ed25519();
    let record = signed(&key, 5, 24);
    let bytes = edited(&record, |e| {
        if let Some(sig) = e.signature_v2.as_mut() {
            sig[0] ^= 1;
        }
    });
    let err = IpnsRecord::unmarshal(&bytes)
        .expect("parse")
        .validate(&name(&key), Utc::now())
        .expect_err("bad sig");
    assert_eq!(err, IpnsError::BadSignature(name(&key)));
    let bytes = edited(&record, |e| e.sequence = Some(6));
    assert_eq!(
        IpnsRecord::unmarshal(&bytes),
        Err(IpnsError::V1Mismatch("sequence"))
    );
    let bytes = edited(&record, |e| e.value = Some(b"/ipfs/evil".to_vec()));
    assert_eq!(
        IpnsRecord::unmarshal(&bytes),
        Err(IpnsError::V1Mismatch("value"))
    );
}

#[test]
fn a_v2_only_record_is_valid_and_a_v1_only_record_is_not() {
    let key = Keypair::generate_ed25519();
    let record = signed(&key, 2, 24);
    let v2_only = edited(&record, |e| {
        (e.value, e.signature_v1, e.validity) = (None, None, None);
        (e.validity_type, e.sequence, e.ttl) = (None, None, None);
    });
    let parsed = IpnsRecord::unmarshal(&v2_only).expect("v2 only");
    parsed.validate(&name(&key), Utc::now()).expect("valid");
    assert_eq!(
        (parsed.value(), parsed.sequence(), parsed.has_v1()),
        (VALUE, 2, false)
    );
    let v1_only = edited(&record, |e| (e.signature_v2, e.data) = (None, None));
    assert_eq!(
        IpnsRecord::unmarshal(&v1_only),
        Err(IpnsError::NoSignatureV2)
    );
}

#[test]
fn oversized_and_hostile_records_are_errors_not_panics() {
    assert_eq!(
        IpnsRecord::unmarshal(&vec![0; MAX_RECORD_BYTES + 1]),
        Err(IpnsError::TooLarge(MAX_RECORD_BYTES + 1))
    );
    let key = Keypair::generate_ed25519();
    let record = signed(&key, 1, 24);
    // 5000 nested one-element arrays in the signed data.
    let nested = [vec![0x81; 5000], vec![0x00]].concat();
    let bytes = edited(&record, |e| e.data = Some(nested));
    assert!(matches!(
        IpnsRecord::unmarshal(&bytes),
        Err(IpnsError::Malformed(_))
    ));
    for cut in 0..record.marshal().len() {
        let _ = IpnsRecord::unmarshal(&record.marshal()[..cut]);
    }
}

#[test]
fn the_best_record_has_the_higher_sequence_then_the_later_validity() {
    let key = Keypair::generate_ed25519();
    let (old, newer, longer) = (signed(&key, 3, 24), signed(&key, 4, 1), signed(&key, 4, 48));
    assert_eq!(best(&[old.clone(), newer.clone(), longer.clone()]), Some(2));
    assert_eq!(best(&[newer.clone(), old.clone()]), Some(0));
    assert_eq!(best(&[]), None);
    assert_eq!(
        old.check_newer_than(&newer),
        Err(IpnsError::NotNewer {
            held: 4,
            incoming: 3
        })
    );
    assert_eq!(
        newer.check_newer_than(&newer),
        Err(IpnsError::NotNewer {
            held: 4,
            incoming: 4
        })
    );
    longer
        .check_newer_than(&newer)
        .expect("same sequence, later validity");
}

#[test]
fn the_routing_key_is_the_ipns_prefix_and_the_peer_id_bytes() {
    let key = Keypair::generate_ed25519();
    let routing = routing_key(&name(&key));
    assert_eq!(&routing[..6], b"/ipns/");
    assert_eq!(PeerId::from_bytes(&routing[6..]).ok(), Some(name(&key)));
}

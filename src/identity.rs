//! Identity: the node's libp2p keypair (generated, or imported from a Kubo repo) and the swarm key.
//! Everything read from disk is parsed here into typed values; errors name the file and the fault.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;

/// What can go wrong loading an identity or a swarm key; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: Identity.PrivKey belongs to {decoded}, but Identity.PeerID says {declared}; refusing to start"
    )]
    Mismatch {
        path: PathBuf,
        decoded: String,
        declared: String,
    },
}

fn invalid(path: &Path, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Load the node key from `path`, generating an Ed25519 key (mode 0600) when the file does not exist.
pub fn load_or_generate(path: &Path) -> Result<Keypair, IdentityError> {
    match std::fs::read(path) {
        Ok(bytes) => decode_private_key(&bytes).map_err(|reason| invalid(path, reason)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let encoded = keypair
                .to_protobuf_encoding()
                .map_err(|e| invalid(path, format!("cannot encode a new key: {e}")))?;
            write_private(path, &encoded)?;
            Ok(keypair)
        }
        Err(source) => Err(IdentityError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write `bytes` to `path` with mode 0600, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    crate::atomic_file::write(path, bytes, 0o600).map_err(|source| IdentityError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Decode a libp2p protobuf `PrivateKey` (the format of Kubo's `Identity.PrivKey`).
///
/// Kubo's early Ed25519 keys carry 96 bytes (private 32 + public 32 + public 32 again); the first
/// 64 are the key, which is what go-libp2p itself accepts.
pub fn decode_private_key(bytes: &[u8]) -> Result<Keypair, String> {
    let (key_type, data) = parse_private_key_proto(bytes)?;
    match (key_type, data.len()) {
        (KEY_TYPE_ED25519, 96) => {
            let mut key = data[..64].to_vec();
            libp2p::identity::ed25519::Keypair::try_from_bytes(&mut key)
                .map(Keypair::from)
                .map_err(|e| format!("bad legacy 96-byte Ed25519 key: {e}"))
        }
        _ => Keypair::from_protobuf_encoding(bytes).map_err(|e| format!("bad private key: {e}")),
    }
}

const KEY_TYPE_ED25519: u64 = 1;

/// The two fields of `message PrivateKey { KeyType Type = 1; bytes Data = 2; }`.
fn parse_private_key_proto(mut bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let (mut key_type, mut data) = (None, None);
    while !bytes.is_empty() {
        let tag = read_varint(&mut bytes)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => key_type = Some(read_varint(&mut bytes)?),
            (2, 2) => {
                let len = usize::try_from(read_varint(&mut bytes)?)
                    .map_err(|_| "key length overflows".to_string())?;
                if len > bytes.len() {
                    return Err("truncated key data".into());
                }
                data = Some(&bytes[..len]);
                bytes = &bytes[len..];
            }
            (field, wire) => {
                return Err(format!(
                    "unexpected protobuf field {field} (wire type {wire})"
                ));
            }
        }
    }
    match (key_type, data) {
        (Some(t), Some(d)) => Ok((t, d)),
        _ => Err("missing key type or key data".into()),
    }
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The `Identity` section of a Kubo `config` file.
#[derive(serde::Deserialize)]
struct KuboConfig {
    #[serde(rename = "Identity")]
    identity: KuboIdentity,
}

#[derive(serde::Deserialize)]
struct KuboIdentity {
    #[serde(rename = "PeerID")]
    peer_id: String,
    #[serde(rename = "PrivKey")]
    priv_key: String,
}

/// Import the identity of the Kubo repo at `repo` (its `config` file), checking that the key
/// really belongs to `Identity.PeerID`.
pub fn import_kubo(repo: &Path) -> Result<Keypair, IdentityError> {
    let path = repo.join("config");
    let text = std::fs::read_to_string(&path).map_err(|source| IdentityError::Read {
        path: path.clone(),
        source,
    })?;
    let config: KuboConfig = serde_json::from_str(&text).map_err(|e| {
        invalid(
            &path,
            format!("not a Kubo config ({})", shorten_message(&e.to_string())),
        )
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(config.identity.priv_key.trim())
        .map_err(|e| invalid(&path, format!("Identity.PrivKey is not base64: {e}")))?;
    let keypair = decode_private_key(&raw)
        .map_err(|reason| invalid(&path, format!("Identity.PrivKey: {reason}")))?;
    let decoded = keypair.public().to_peer_id();
    if decoded.to_string() != config.identity.peer_id.trim() {
        return Err(IdentityError::Mismatch {
            path,
            decoded: decoded.to_string(),
            declared: shorten(&config.identity.peer_id),
        });
    }
    Ok(keypair)
}

/// Read a swarm key file: `/key/swarm/psk/1.0.0/` then `/base16/`, `/base64/` or `/bin/`.
pub fn load_swarm_key(path: &Path) -> Result<PreSharedKey, IdentityError> {
    let bytes = std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_swarm_key(&bytes).map_err(|reason| invalid(path, reason))
}

/// Parse the content of a `swarm.key` (pure; see [`load_swarm_key`]).
pub fn parse_swarm_key(bytes: &[u8]) -> Result<PreSharedKey, String> {
    let (header, rest) = split_line(bytes);
    if trim(header) != b"/key/swarm/psk/1.0.0/" {
        return Err("first line must be /key/swarm/psk/1.0.0/".into());
    }
    let (encoding, body) = split_line(rest);
    let key: Vec<u8> = match trim(encoding) {
        b"/base16/" => hex::decode(trim(body)).map_err(|e| format!("bad /base16/ key: {e}"))?,
        b"/base64/" => base64::engine::general_purpose::STANDARD
            .decode(trim(body))
            .map_err(|e| format!("bad /base64/ key: {e}"))?,
        b"/bin/" => body.to_vec(),
        other => {
            return Err(format!(
                "unknown encoding {:?} (expected /base16/, /base64/ or /bin/)",
                shorten(&String::from_utf8_lossy(other))
            ));
        }
    };
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| format!("key is {} bytes, expected 32", key.len()))?;
    Ok(PreSharedKey::new(key))
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// `LIBP2P_FORCE_PNET=1`: refuse to run without a swarm key, as go-libp2p does.
pub fn pnet_forced() -> bool {
    std::env::var("LIBP2P_FORCE_PNET").is_ok_and(|v| v.trim() == "1")
}

/// Longest PeerID text accepted: base58 Ed25519 ids are 52 characters, RSA `Qm…` ids 46, CIDv1
/// spellings about 60. Longer text is refused before decoding (base58 decoding is quadratic: a
/// 256 KiB "id" in a mirrored 12345.json cost half a second of CPU).
pub const MAX_PEER_ID_LEN: usize = 128;
/// Untrusted text quoted back in an error is cut to this many characters.
pub const QUOTE_MAX: usize = 80;

/// `text` cut to [`QUOTE_MAX`] characters (with `…` when cut), for error messages.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Longest error message about untrusted text (a parser's message may quote the whole input).
pub const MESSAGE_MAX: usize = 240;
/// Characters kept from the end of a cut message: parsers put the position (`at line L column
/// C`) there.
const MESSAGE_TAIL: usize = 60;

/// A parser's error message cut to about [`MESSAGE_MAX`] characters: its start and its end.
pub fn shorten_message(message: &str) -> String {
    let count = message.chars().count();
    if count <= MESSAGE_MAX {
        return message.to_owned();
    }
    let head: String = message.chars().take(MESSAGE_MAX - MESSAGE_TAIL).collect();
    let tail: String = message.chars().skip(count - MESSAGE_TAIL).collect();
    format!("{head}…{tail}")
}

/// A text that is not a PeerID (quoted shortened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a PeerID")]
pub struct BadPeerId(String);

/// A base58 (or CID) PeerID, bounded in length before it is decoded.
pub fn parse_peer_id(text: &str) -> Result<libp2p::PeerId, BadPeerId> {
    let bad = || BadPeerId(shorten(text));
    if text.len() > MAX_PEER_ID_LEN {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO_KEY: &str = "/key/swarm/psk/1.0.0/\n/base16/\n0000000000000000000000000000000000000000000000000000000000000000\n";

    #[test]
    fn swarm_key_formats_decode_to_the_same_key() {
        let raw = [7u8; 32];
        let b16 = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", hex::encode(raw));
        let b64 = format!(
            "/key/swarm/psk/1.0.0/\n/base64/\n{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let mut bin = b"/key/swarm/psk/1.0.0/\n/bin/\n".to_vec();
        bin.extend_from_slice(&raw);
        let expected = PreSharedKey::new(raw);
        assert!(parse_swarm_key(b16.as_bytes()).unwrap() == expected);
        assert!(parse_swarm_key(b64.as_bytes()).unwrap() == expected);
        assert!(parse_swarm_key(&bin).unwrap() == expected);
    }

    #[test]
    fn zero_key_fingerprint_matches_go_libp2p() {
        let key = parse_swarm_key(ZERO_KEY.as_bytes()).unwrap();
        // go-libp2p and rust-libp2p compute the same fingerprint (salsa20 keystream + shake128).
        assert_eq!(key.fingerprint().to_string().len(), 32);
        assert!(key == PreSharedKey::new([0; 32]));
    }

    #[test]
    fn malformed_swarm_keys_say_what_is_wrong() {
        let short = "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n";
        assert!(
            parse_swarm_key(short.as_bytes())
                .unwrap_err()
                .contains("2 bytes")
        );
        let bad = "/key/swarm/psk/1.0.0/\n/base32/\nabcd\n";
        assert!(
            parse_swarm_key(bad.as_bytes())
                .unwrap_err()
                .contains("unknown encoding")
        );
        assert!(
            parse_swarm_key(b"hello")
                .unwrap_err()
                .contains("first line")
        );
        assert!(parse_swarm_key(b"").is_err());
    }

    #[test]
    fn generated_key_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let first = load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_generate(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
    }

    /// A Kubo repo whose config declares `id` with the private key `proto` imports as `id`.
    fn assert_imports_as(proto: &[u8], id: libp2p::PeerId) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config"),
            kubo_config(&id.to_string(), proto),
        )
        .unwrap();
        assert_eq!(import_kubo(dir.path()).unwrap().public().to_peer_id(), id);
    }

    fn kubo_config(peer_id: &str, key: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        format!(r#"{{"Identity":{{"PeerID":"{peer_id}","PrivKey":"{b64}"}},"Bootstrap":[]}}"#)
    }

    #[test]
    fn kubo_import_gives_the_declared_peer_id_for_each_key_type() {
        let keys = [
            Keypair::generate_ed25519(),
            Keypair::generate_secp256k1(),
            Keypair::generate_ecdsa(),
        ];
        for key in keys {
            assert_imports_as(
                &key.to_protobuf_encoding().unwrap(),
                key.public().to_peer_id(),
            );
        }
    }

    #[test]
    fn kubo_import_accepts_rsa_keys_of_qm_peers() {
        let der = include_bytes!("../tests/fixtures/rsa-2048.pkcs1.der");
        let mut proto = vec![0x08, 0x00, 0x12];
        let mut len = der.len();
        while len >= 0x80 {
            proto.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        proto.push(len as u8);
        proto.extend_from_slice(der);
        let key = decode_private_key(&proto).unwrap();
        let id = key.public().to_peer_id();
        assert!(id.to_string().starts_with("Qm"), "{id}");
        assert_imports_as(&proto, id);
    }

    #[test]
    fn kubo_import_accepts_legacy_96_byte_ed25519() {
        let key = libp2p::identity::ed25519::Keypair::generate();
        let mut data = key.to_bytes().to_vec();
        data.extend_from_slice(&key.public().to_bytes());
        assert_eq!(data.len(), 96);
        let mut proto = vec![0x08, 0x01, 0x12, 96];
        proto.extend_from_slice(&data);
        let id = Keypair::from(key).public().to_peer_id();
        assert_imports_as(&proto, id);
    }

    #[test]
    fn kubo_import_refuses_a_key_that_is_not_the_declared_peer() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519().public().to_peer_id();
        let dir = tempfile::tempdir().unwrap();
        let cfg = kubo_config(&other.to_string(), &key.to_protobuf_encoding().unwrap());
        std::fs::write(dir.path().join("config"), cfg).unwrap();
        let err = import_kubo(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("refusing to start") && err.contains(&other.to_string()),
            "{err}"
        );
    }

    #[test]
    fn kubo_import_names_the_file_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), "{ not json").unwrap();
        let err = import_kubo(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config") && err.contains("not a Kubo config"),
            "{err}"
        );
        let cfg = r#"{"Identity":{"PeerID":"x","PrivKey":"!!!"}}"#;
        std::fs::write(dir.path().join("config"), cfg).unwrap();
        let err = import_kubo(dir.path()).unwrap_err().to_string();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn over_long_peer_ids_are_refused_quickly_and_quoted_short() {
        let id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        assert_eq!(parse_peer_id(id).expect("valid").to_string(), id);
        let huge = "1".repeat(1 << 20);
        let started = std::time::Instant::now();
        let err = parse_peer_id(&huge).expect_err("1 MiB is no PeerID");
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        assert!(err.to_string().len() < 120, "{err}");
        assert!(parse_peer_id("notapeer").is_err());
    }
}

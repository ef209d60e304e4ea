//! Kubo's keystore on disk (boxo `keystore.FSKeystore`): `<dir>/key_<base32 of the name>` holds
//! a libp2p protobuf private key, so Kubo and we share one folder; `self` is the node key.
//! Generate (ed25519, secp256k1, RSA), import (libp2p protobuf, PEM PKCS#8), remove, rename.

use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use libp2p::PeerId;
use libp2p::identity::Keypair;

/// The name of the node key, which is not a file of the keystore.
pub const SELF_KEY: &str = "self";
/// Longest key name. `key_` + its base32 must fit a file name (255 bytes): 156 bytes would;
/// Astroport's longest names (`MySwarm_<PeerID>`, a G1 pubkey) are under 64.
pub const MAX_KEY_NAME_BYTES: usize = 128;
/// A key file larger than this is not a key (an RSA-4096 key is about 2.4 KiB).
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;
/// Keys listed at most; a keystore beyond this is not one a station made (it holds a few).
pub const MAX_KEYS: usize = 4096;
/// boxo's prefix of key file names.
const FILE_PREFIX: &str = "key_";
/// libp2p's `KeyType` numbers in the protobuf `PrivateKey`.
const KEY_TYPE_RSA: u8 = 0;
/// Kubo's `key gen --type=rsa` size when `--size` is not given (`DefaultRSALen`), and
/// go-libp2p's floor (`MinRsaKeyBits`): smaller keys are refused, as there.
const DEFAULT_RSA_BITS: usize = 2048;
const MIN_RSA_BITS: usize = 2048;
/// Our ceiling: go-libp2p takes up to 8192 bits, but generating one takes minutes on a
/// Raspberry Pi (seconds for 4096) while holding the API call; no station key is larger.
const MAX_RSA_BITS: usize = 4096;

/// Why a keystore operation failed; the messages are Kubo's where Kubo has one.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key name must be at least one character")]
    EmptyName,
    #[error("invalid key name {0:?}: no `/`, NUL, `.` or `..`, at most {MAX_KEY_NAME_BYTES} bytes")]
    BadName(String),
    #[error("cannot {0} key with name 'self'")]
    SelfKey(&'static str),
    #[error("key with name '{0}' already exists")]
    Exists(String),
    #[error("no key named {0} was found")]
    NotFound(String),
    #[error("unrecognized key type: {0}")]
    UnknownType(String),
    #[error("rsa keys must be >= {MIN_RSA_BITS} bits to be useful")]
    RsaTooSmall,
    #[error(
        "rsa keys of {0} bits are refused: at most {MAX_RSA_BITS} (a larger one takes minutes to generate on a small board)"
    )]
    RsaTooLarge(usize),
    #[error("generating the RSA key failed: {0}")]
    RsaGeneration(String),
    #[error("unrecognized import format: {0}")]
    UnknownFormat(String),
    #[error("{0}")]
    BadKey(String),
    #[error("keystore {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A checked key name (not `self`: that one is [`SELF_KEY`], handled by [`Keystore`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(name: &str) -> Result<KeyName, KeyError> {
        if name.is_empty() {
            return Err(KeyError::EmptyName);
        }
        let bad = name.len() > MAX_KEY_NAME_BYTES
            || name.contains(['/', '\0'])
            || name == "."
            || name == "..";
        if bad {
            return Err(KeyError::BadName(name.to_owned()));
        }
        Ok(KeyName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// boxo's file name: `key_` + lowercase unpadded RFC 4648 base32 of the name.
    fn file_name(&self) -> String {
        let encoded = data_encoding::BASE32_NOPAD.encode(self.0.as_bytes());
        format!("{FILE_PREFIX}{}", encoded.to_ascii_lowercase())
    }

    /// The name a file of the keystore holds, if it is a key file.
    fn from_file_name(file: &str) -> Option<KeyName> {
        let encoded = file.strip_prefix(FILE_PREFIX)?.to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(encoded.as_bytes())
            .ok()?;
        KeyName::parse(&String::from_utf8(bytes).ok()?).ok()
    }
}

/// What `key gen --type [--size]` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Secp256k1,
    /// An RSA key of this many modulus bits.
    Rsa {
        bits: usize,
    },
}

impl KeyType {
    /// `--type` and `--size` (Kubo reads the size for RSA only, 2048 when not given).
    pub fn parse(text: &str, size: Option<usize>) -> Result<KeyType, KeyError> {
        match text {
            "ed25519" => Ok(KeyType::Ed25519),
            "secp256k1" => Ok(KeyType::Secp256k1),
            "rsa" => {
                let bits = size.unwrap_or(DEFAULT_RSA_BITS);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::RsaTooSmall);
                }
                if bits > MAX_RSA_BITS {
                    return Err(KeyError::RsaTooLarge(bits));
                }
                Ok(KeyType::Rsa { bits })
            }
            other => Err(KeyError::UnknownType(other.to_owned())),
        }
    }
}

/// `key import --format`: Kubo's two cleartext formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Libp2pProtobuf,
    PemPkcs8,
}

impl ImportFormat {
    pub fn parse(text: &str) -> Result<ImportFormat, KeyError> {
        match text {
            "libp2p-protobuf-cleartext" => Ok(ImportFormat::Libp2pProtobuf),
            "pem-pkcs8-cleartext" => Ok(ImportFormat::PemPkcs8),
            other => Err(KeyError::UnknownFormat(other.to_owned())),
        }
    }
}

/// One key as `key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub peer: PeerId,
}

/// The keystore folder and the node key. The folder is the only state, and boxo's rules (a put
/// never overwrites: the file is linked into place, which fails when the name exists) keep two
/// writers, ours or Kubo's, from clobbering each other.
#[derive(Clone)]
pub struct Keystore {
    dir: PathBuf,
    node_key: Keypair,
}

impl Keystore {
    /// The keystore at `dir` (created, mode 0700, when missing), `self` being `node_key`.
    pub fn open(dir: &Path, node_key: Keypair) -> Result<Keystore, KeyError> {
        use std::os::unix::fs::DirBuilderExt as _;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => return Err(io(dir, source)),
        }
        Ok(Keystore {
            dir: dir.to_owned(),
            node_key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `self` first, then the keystore's keys sorted by name (as Kubo lists them); files that
    /// are not readable keys are skipped with a warning.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let entry = entry.map_err(|e| io(&self.dir, e))?;
            if let Some(name) = entry.file_name().to_str().and_then(KeyName::from_file_name) {
                names.push(name);
            }
            if names.len() >= MAX_KEYS {
                tracing::warn!(
                    "keystore {}: listing the first {MAX_KEYS} keys",
                    self.dir.display()
                );
                break;
            }
        }
        names.sort();
        let mut out = vec![KeyInfo {
            name: SELF_KEY.into(),
            peer: self.node_key.public().to_peer_id(),
        }];
        for name in names {
            match self.read(&name) {
                Ok(key) => out.push(KeyInfo {
                    name: name.0,
                    peer: key.public().to_peer_id(),
                }),
                Err(e) => tracing::warn!("keystore: skipping key {:?}: {e}", name.0),
            }
        }
        Ok(out)
    }

    /// The key called `name` (`self`: the node key).
    pub fn get(&self, name: &str) -> Result<Keypair, KeyError> {
        if name == SELF_KEY {
            return Ok(self.node_key.clone());
        }
        self.read(&KeyName::parse(name)?)
    }

    /// The key `ipfs name publish --key` names: a key name, or the PeerID of one of our keys.
    pub fn find(&self, name_or_id: &str) -> Result<Keypair, KeyError> {
        match self.get(name_or_id) {
            Err(KeyError::NotFound(_) | KeyError::BadName(_)) => {}
            other => return other,
        }
        let wanted = crate::ipfs::ipns::parse_name(name_or_id)
            .map_err(|_| KeyError::NotFound(name_or_id.to_owned()))?;
        let info = (self.list()?.into_iter())
            .find(|k| k.peer == wanted)
            .ok_or_else(|| KeyError::NotFound(name_or_id.to_owned()))?;
        self.get(&info.name)
    }

    /// `key gen`: a new key of `kind` under `name`.
    pub fn generate(&self, name: &str, kind: KeyType) -> Result<PeerId, KeyError> {
        let name = self.new_name(name, "create")?;
        let key = match kind {
            KeyType::Ed25519 => Keypair::generate_ed25519(),
            KeyType::Secp256k1 => Keypair::generate_secp256k1(),
            KeyType::Rsa { bits } => {
                let bytes = generate_rsa(bits)?;
                self.put(&name, &bytes)?;
                return crate::identity::decode_private_key(&bytes)
                    .map(|key| key.public().to_peer_id())
                    .map_err(|e| KeyError::RsaGeneration(e.to_string()));
            }
        };
        let bytes = (key.to_protobuf_encoding()).map_err(|e| KeyError::BadKey(e.to_string()))?;
        self.put(&name, &bytes)?;
        Ok(key.public().to_peer_id())
    }

    /// `key import`: `data` in `format`, stored as a libp2p protobuf key under `name`.
    pub fn import(
        &self,
        name: &str,
        format: ImportFormat,
        data: &[u8],
    ) -> Result<PeerId, KeyError> {
        let name = self.new_name(name, "import")?;
        let (key, bytes) = match format {
            ImportFormat::Libp2pProtobuf => {
                let key = crate::identity::decode_private_key(data).map_err(|e| {
                    if data.starts_with(b"-----BEGIN") {
                        KeyError::BadKey("unexpected PEM block for format=libp2p-protobuf-cleartext: try again with format=pem-pkcs8-cleartext".into())
                    } else {
                        KeyError::BadKey(format!(
                            "unable to unmarshall format=libp2p-protobuf-cleartext: {e}"
                        ))
                    }
                })?;
                // Re-encoded as Kubo does (a legacy 96-byte Ed25519 key becomes 64); RSA,
                // which libp2p cannot encode, is kept as given.
                let bytes = key.to_protobuf_encoding().unwrap_or_else(|_| data.to_vec());
                (key, bytes)
            }
            ImportFormat::PemPkcs8 => pem::decode_private_key(data)?,
        };
        self.put(&name, &bytes)?;
        Ok(key.public().to_peer_id())
    }

    /// `key rm`: the removed key's PeerID.
    pub fn remove(&self, name: &str) -> Result<PeerId, KeyError> {
        if name == SELF_KEY {
            return Err(KeyError::SelfKey("remove"));
        }
        let name = KeyName::parse(name)?;
        let peer = self.read(&name)?.public().to_peer_id();
        let path = self.dir.join(name.file_name());
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        Ok(peer)
    }

    /// `key rename`: the key's PeerID and whether `new` was overwritten (`force`).
    pub fn rename(&self, old: &str, new: &str, force: bool) -> Result<(PeerId, bool), KeyError> {
        if old == SELF_KEY {
            return Err(KeyError::SelfKey("rename"));
        }
        if new == SELF_KEY {
            return Err(KeyError::SelfKey("overwrite"));
        }
        let (old, new) = (KeyName::parse(old)?, KeyName::parse(new)?);
        let from = self.dir.join(old.file_name());
        let key = self
            .read(&old)
            .map_err(|_| KeyError::NotFound(old.0.clone()))?;
        let peer = key.public().to_peer_id();
        if old == new {
            return Ok((peer, false));
        }
        let to = self.dir.join(new.file_name());
        let overwrite = force && to.exists();
        if !force && to.exists() {
            return Err(KeyError::Exists(new.0));
        }
        std::fs::rename(&from, &to).map_err(|e| io(&to, e))?;
        Ok((peer, overwrite))
    }

    /// A name for a new key: checked, not `self`, not taken.
    fn new_name(&self, name: &str, what: &'static str) -> Result<KeyName, KeyError> {
        if name == SELF_KEY {
            return Err(KeyError::SelfKey(what));
        }
        let name = KeyName::parse(name)?;
        if self.dir.join(name.file_name()).exists() {
            return Err(KeyError::Exists(name.0));
        }
        Ok(name)
    }

    fn read(&self, name: &KeyName) -> Result<Keypair, KeyError> {
        read_key(&self.dir, name)
    }

    /// Write a new key file, mode 0600: a temp file, synced, then linked to its name (which
    /// fails if the name exists, as boxo's `O_EXCL` does), so no reader sees half a key.
    fn put(&self, name: &KeyName, bytes: &[u8]) -> Result<(), KeyError> {
        let path = self.dir.join(name.file_name());
        let temp = self
            .dir
            .join(format!(".tmp-{}-{}", name.file_name(), std::process::id()));
        let written = (std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600))
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::hard_link(&temp, &path));
        let _ = std::fs::remove_file(&temp);
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(KeyError::Exists(name.0.clone())),
            Err(e) => Err(io(&path, e)),
        }
    }
}

/// A new RSA key of `bits` as go-libp2p stores one: the protobuf `PrivateKey` whose `Data` is
/// the PKCS#1 DER (`x509.MarshalPKCS1PrivateKey`), public exponent 65537. Checked by reading
/// it back through libp2p before anything is written.
fn generate_rsa(bits: usize) -> Result<Vec<u8>, KeyError> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let failed = |e: &dyn std::fmt::Display| KeyError::RsaGeneration(e.to_string());
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| failed(&e))?;
    let der = key.to_pkcs1_der().map_err(|e| failed(&e))?;
    let bytes = private_key_protobuf(KEY_TYPE_RSA, der.as_bytes());
    crate::identity::decode_private_key(&bytes).map_err(|e| failed(&e))?;
    Ok(bytes)
}

/// `message PrivateKey { KeyType Type = 1; bytes Data = 2; }`.
fn private_key_protobuf(key_type: u8, data: &[u8]) -> Vec<u8> {
    use crate::ipfs::protobuf::{put_bytes_fields, put_varint_field};
    let mut out = Vec::with_capacity(data.len() + 8);
    put_varint_field(&mut out, 1, Some(key_type.into()));
    put_bytes_fields(&mut out, &[(2, &Some(data.to_vec()))]);
    out
}

/// The key `name` of the keystore at `dir`, read without opening the keystore (which would
/// create the folder): `None` when the folder or the key is not there. The swarm map looks up
/// `MySwarm_<ID>` this way, in Kubo's keystore as in ours.
pub fn find_in(dir: &Path, name: &str) -> Result<Option<Keypair>, KeyError> {
    match read_key(dir, &KeyName::parse(name)?) {
        Ok(key) => Ok(Some(key)),
        Err(KeyError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key file of `name` in `dir`, bounded and decoded.
fn read_key(dir: &Path, name: &KeyName) -> Result<Keypair, KeyError> {
    let path = dir.join(name.file_name());
    let bytes = match crate::atomic_file::read_bounded(&path, MAX_KEY_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(KeyError::NotFound(name.0.clone()));
        }
        Err(e) if e.kind() == ErrorKind::FileTooLarge => {
            return Err(KeyError::BadKey(format!(
                "{}: over {MAX_KEY_FILE_BYTES} bytes, not a key",
                path.display()
            )));
        }
        Err(e) => return Err(io(&path, e)),
    };
    crate::identity::decode_private_key(&bytes).map_err(|e| {
        KeyError::BadKey(format!(
            "cannot deserialize private key file {}: {e}",
            path.display()
        ))
    })
}

fn io(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A private key from a `PRIVATE KEY` PEM block (PKCS#8 Ed25519 or RSA), as `ipfs key import -f
/// pem-pkcs8-cleartext` reads it (Astroport's `myswarm_secret.ipns` is one).
pub fn decode_pem_key(data: &[u8]) -> Result<Keypair, KeyError> {
    pem::decode_private_key(data).map(|(key, _)| key)
}

/// `pem-pkcs8-cleartext`: a `PRIVATE KEY` PEM block holding PKCS#8 (Ed25519 or RSA, what
/// `openssl genpkey` and `ipfs key export -f pem-pkcs8-cleartext` write).
mod pem {
    use base64::Engine as _;
    use libp2p::identity::Keypair;

    use super::{KEY_TYPE_RSA, KeyError};

    /// DER of the OID 1.3.101.112 (Ed25519).
    const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    /// DER of the OID 1.2.840.113549.1.1.1 (rsaEncryption).
    pub(super) const OID_RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];

    /// The key and its libp2p protobuf encoding.
    pub fn decode_private_key(data: &[u8]) -> Result<(Keypair, Vec<u8>), KeyError> {
        let der = pem_block(data)?;
        let (algorithm, private) =
            pkcs8(&der).ok_or_else(|| bad("parsing PKCS8 format: malformed DER"))?;
        if algorithm.starts_with(OID_ED25519) {
            let (tag, seed, _) = tlv(private).ok_or_else(|| bad("bad Ed25519 key"))?;
            let mut seed = (tag == 0x04)
                .then(|| seed.to_vec())
                .ok_or_else(|| bad("bad Ed25519 key"))?;
            let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut seed)
                .map_err(|e| bad(&format!("bad Ed25519 key: {e}")))?;
            let key = Keypair::from(libp2p::identity::ed25519::Keypair::from(secret));
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| bad(&e.to_string()))?;
            return Ok((key, bytes));
        }
        if algorithm.starts_with(OID_RSA) {
            let mut pkcs8 = der.clone();
            let key = Keypair::rsa_from_pkcs8(&mut pkcs8)
                .map_err(|e| bad(&format!("bad RSA key: {e}")))?;
            // libp2p's RSA PrivateKey.Data is the PKCS#1 key, which PKCS#8 wraps.
            return Ok((key, super::private_key_protobuf(KEY_TYPE_RSA, private)));
        }
        Err(bad("only Ed25519 and RSA PKCS#8 keys can be imported"))
    }

    fn bad(reason: &str) -> KeyError {
        KeyError::BadKey(reason.to_owned())
    }

    fn pem_block(data: &[u8]) -> Result<Vec<u8>, KeyError> {
        let text =
            std::str::from_utf8(data).map_err(|_| bad("PEM block not found in input data"))?;
        let begin = "-----BEGIN PRIVATE KEY-----";
        let start = text
            .find(begin)
            .ok_or_else(|| match text.find("-----BEGIN ") {
                Some(_) => bad("expected PRIVATE KEY type in PEM block"),
                None => bad("PEM block not found in input data"),
            })?;
        let body = &text[start + begin.len()..];
        let end = body
            .find("-----END PRIVATE KEY-----")
            .ok_or_else(|| bad("PEM block not terminated"))?;
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(&format!("bad PEM base64: {e}")))
    }

    /// PKCS#8 `PrivateKeyInfo`: (the algorithm identifier's content, the private key octets).
    fn pkcs8(der: &[u8]) -> Option<(&[u8], &[u8])> {
        let (0x30, info, _) = tlv(der)? else {
            return None;
        };
        let (0x02, _, rest) = tlv(info)? else {
            return None;
        };
        let (0x30, algorithm, rest) = tlv(rest)? else {
            return None;
        };
        let (0x04, private, _) = tlv(rest)? else {
            return None;
        };
        Some((algorithm, private))
    }

    /// One DER element: (tag, content, what follows). Lengths are checked against the input.
    fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |n, &b| n << 8 | usize::from(b));
            rest = &rest[count..];
            len
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ks = Keystore::open(&dir.path().join("keystore"), Keypair::generate_ed25519())
            .expect("open");
        (dir, ks)
    }

    #[test]
    fn file_names_are_boxos_base32_of_the_name() {
        // boxo: "key_" + lowercase unpadded base32 ("foo" is MZXW6).
        assert_eq!(KeyName::parse("foo").unwrap().file_name(), "key_mzxw6");
        assert_eq!(
            KeyName::from_file_name("key_mzxw6"),
            Some(KeyName("foo".into()))
        );
        assert_eq!(KeyName::from_file_name("foo"), None);
        for bad in [
            "",
            "a/b",
            ".",
            "..",
            "a\0b",
            &"x".repeat(MAX_KEY_NAME_BYTES + 1),
        ] {
            assert!(KeyName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_rsa_key_is_generated_as_go_libp2p_stores_one() {
        let (_dir, ks) = store();
        let peer = ks
            .generate("r", KeyType::Rsa { bits: 2048 })
            .expect("gen rsa");
        assert!(
            peer.to_base58().starts_with("Qm"),
            "RSA ids hash the key: {peer}"
        );
        let bytes = std::fs::read(ks.dir().join("key_oi")).expect("key file");
        // PrivateKey { Type: RSA (0), Data: PKCS#1 RSAPrivateKey, a DER SEQUENCE }.
        assert_eq!(&bytes[..2], &[0x08, 0x00]);
        let der = &bytes[bytes.iter().position(|&b| b == 0x30).expect("DER")..];
        let pkcs8_wrapped = [
            &[0x30, 0x82][..],
            &((der.len() + 22) as u16).to_be_bytes(),
            &[0x02, 0x01, 0x00, 0x30, 0x0d],
            pem::OID_RSA,
            &[0x05, 0x00, 0x04, 0x82],
            &(der.len() as u16).to_be_bytes(),
            der,
        ]
        .concat();
        let again = Keypair::rsa_from_pkcs8(&mut pkcs8_wrapped.clone()).expect("PKCS#1 inside");
        assert_eq!(again.public().to_peer_id(), peer);
        assert_eq!(ks.get("r").expect("read back").public().to_peer_id(), peer);
        assert_eq!(ks.list().expect("list")[1].peer, peer);
    }

    #[test]
    fn generated_keys_are_listed_after_self_read_back_renamed_and_removed() {
        let (_dir, ks) = store();
        let b = ks.generate("b", KeyType::Ed25519).expect("gen b");
        let a = ks.generate("a", KeyType::Secp256k1).expect("gen a");
        assert!(matches!(
            ks.generate("a", KeyType::Ed25519),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            ks.generate("self", KeyType::Ed25519),
            Err(KeyError::SelfKey(_))
        ));
        assert!(matches!(
            KeyType::parse("rsa", Some(1024)),
            Err(KeyError::RsaTooSmall)
        ));
        assert!(matches!(
            KeyType::parse("rsa", Some(8192)),
            Err(KeyError::RsaTooLarge(8192))
        ));
        assert_eq!(
            KeyType::parse("rsa", None).unwrap(),
            KeyType::Rsa { bits: 2048 }
        );
        let names: Vec<_> = ks
            .list()
            .unwrap()
            .into_iter()
            .map(|k| (k.name, k.peer))
            .collect();
        let me = ks.get("self").unwrap().public().to_peer_id();
        assert_eq!(
            names,
            [("self".into(), me), ("a".into(), a), ("b".into(), b)]
        );
        let file = ks.dir().join("key_mi");
        let mode = std::fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(ks.find(&b.to_string()).unwrap().public().to_peer_id(), b);
        assert_eq!(ks.rename("b", "c", false).unwrap(), (b, false));
        assert!(matches!(
            ks.rename("c", "a", false),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(ks.rename("c", "a", true).unwrap(), (b, true));
        assert_eq!(ks.remove("a").unwrap(), b);
        assert!(matches!(ks.remove("a"), Err(KeyError::NotFound(_))));
        assert!(matches!(ks.remove("self"), Err(KeyError::SelfKey(_))));
        assert_eq!(ks.list().unwrap().len(), 1);
    }

    #[test]
    fn imports_take_kubos_two_formats_and_refuse_garbage() {
        let (_dir, ks) = store();
        let key = Keypair::generate_ed25519();
        let proto = key.to_protobuf_encoding().unwrap();
        let id = ks
            .import("p", ImportFormat::Libp2pProtobuf, &proto)
            .expect("protobuf");
        assert_eq!(id, key.public().to_peer_id());
        assert_eq!(std::fs::read(ks.dir().join("key_oa")).unwrap(), proto);
        // `openssl genpkey -algorithm ED25519` of the RFC 8410 example key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let id = ks
            .import("pem", ImportFormat::PemPkcs8, pem.as_bytes())
            .expect("pem");
        let mut seed =
            hex::decode("d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842")
                .unwrap();
        let expected = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut seed).unwrap();
        let expected = Keypair::from(libp2p::identity::ed25519::Keypair::from(expected));
        assert_eq!(id, expected.public().to_peer_id());
        assert!(
            ks.import("x", ImportFormat::Libp2pProtobuf, b"junk")
                .is_err()
        );
        assert!(
            ks.import("x", ImportFormat::Libp2pProtobuf, pem.as_bytes())
                .is_err()
        );
        assert!(
            ks.import(
                "x",
                ImportFormat::PemPkcs8,
                b"-----BEGIN PRIVATE KEY-----\n!!\n"
            )
            .is_err()
        );
        assert!(ImportFormat::parse("pem").is_err());
        assert_eq!(ks.list().unwrap().len(), 3);
    }
}

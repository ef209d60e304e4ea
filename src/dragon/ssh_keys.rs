//! SSH keys, parsed and bounded: one `authorized_keys` line (ssh-ed25519 only, as
//! `DRAGON_p2p_ssh.sh` accepts), the keys of each trust source, and the PeerID an ed25519 SSH
//! key stands for (the Y level of `tools/ssh_to_g1ipfs.py`). Pure: no files, no sockets.

use base64::Engine as _;
use nostr::prelude::{Event, Kind};

use crate::identity::shorten;

/// The one key type trusted: the original keeps only `ssh-ed25519` lines of every source.
pub const ED25519: &str = "ssh-ed25519";
/// Longest key line accepted: an ed25519 line is ~100 characters, plus a comment.
const MAX_KEY_LINE: usize = 1024;
/// Longest comment kept after the key (a host or mail name, an `uplanet:` tag).
const MAX_COMMENT: usize = 200;
/// The SSH wire blob of an ed25519 key: length-prefixed type name, length-prefixed 32 bytes.
const ED25519_BLOB_LEN: usize = 4 + ED25519.len() + 4 + 32;
/// The captains' economic-health events that carry their `ssh_pub` tag.
pub const CAPTAIN_KIND: Kind = Kind::Custom(30850);
/// Captains heard from in this window are trusted (the original's `--since 9 days`).
pub const CAPTAIN_WINDOW_SECS: u64 = 9 * 86_400;
/// Most kind-30850 events read per refresh (the original's `--limit 300`).
pub const CAPTAIN_EVENTS_LIMIT: usize = 300;
/// Characters of UPLANETG1PUB in the `uplanet:` tag of a captain's line (as the original).
const UPLANET_TAG_LEN: usize = 8;

/// One key line: `ssh-ed25519 <base64> [comment]`, never with options in front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    blob: String,
    comment: String,
}

/// Why a key line was refused (shown with where it came from).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("longer than {MAX_KEY_LINE} bytes")]
    TooLong,
    #[error("not an ssh-ed25519 key: {0:?}")]
    NotEd25519(String),
    #[error("its key is not valid base64 of an ed25519 key")]
    BadBlob,
}

impl SshKey {
    /// Parse one line; options before the type, other key types and malformed keys are refused.
    pub fn parse(line: &str) -> Result<SshKey, BadKey> {
        let line = line.trim();
        if line.len() > MAX_KEY_LINE {
            return Err(BadKey::TooLong);
        }
        let mut words = line.splitn(3, char::is_whitespace);
        let (kind, blob) = (words.next().unwrap_or_default(), words.next());
        if kind != ED25519 {
            return Err(BadKey::NotEd25519(shorten(kind)));
        }
        let blob = blob.ok_or(BadKey::BadBlob)?.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| BadKey::BadBlob)?;
        let prefix = &Self::ed25519([0; 32], "").blob_bytes()[..ED25519_BLOB_LEN - 32];
        if bytes.len() != ED25519_BLOB_LEN || !bytes.starts_with(prefix) {
            return Err(BadKey::BadBlob);
        }
        let comment: String = (words.next().unwrap_or_default().trim().chars())
            .filter(|c| !c.is_control())
            .take(MAX_COMMENT)
            .collect();
        Ok(SshKey {
            blob: blob.to_owned(),
            comment,
        })
    }

    /// The key line of a raw ed25519 public key (the SSH wire blob, base64).
    pub fn ed25519(public: [u8; 32], comment: &str) -> SshKey {
        let mut blob = Vec::with_capacity(ED25519_BLOB_LEN);
        blob.extend_from_slice(&(ED25519.len() as u32).to_be_bytes());
        blob.extend_from_slice(ED25519.as_bytes());
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&public);
        SshKey {
            blob: base64::engine::general_purpose::STANDARD.encode(blob),
            comment: comment
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_COMMENT)
                .collect(),
        }
    }

    fn blob_bytes(&self) -> Vec<u8> {
        (base64::engine::general_purpose::STANDARD.decode(&self.blob)).unwrap_or_default()
    }

    /// The 32 bytes of the public key.
    fn public_bytes(&self) -> Option<[u8; 32]> {
        self.blob_bytes()
            .get(ED25519_BLOB_LEN - 32..)?
            .try_into()
            .ok()
    }

    /// The libp2p PeerID of this key (`12D3KooW…`): a station whose node key is its SSH key
    /// (`ssh_to_g1ipfs.py` gives the same id) is at the Y level.
    pub fn peer_id(&self) -> Option<libp2p::PeerId> {
        let key =
            libp2p::identity::ed25519::PublicKey::try_from_bytes(&self.public_bytes()?).ok()?;
        Some(libp2p::identity::PublicKey::from(key).to_peer_id())
    }

    /// The same key with `tag` added to its comment.
    pub fn tagged(mut self, tag: &str) -> SshKey {
        self.comment = if self.comment.is_empty() {
            tag.to_owned()
        } else {
            format!("{} {tag}", self.comment)
        };
        self
    }

    /// The key itself, without its comment: two lines with the same key are the same trust.
    pub fn key(&self) -> String {
        format!("{ED25519} {}", self.blob)
    }

    /// The `authorized_keys` line.
    pub fn line(&self) -> String {
        if self.comment.is_empty() {
            self.key()
        } else {
            format!("{} {}", self.key(), self.comment)
        }
    }
}

/// The keys of a text of key lines (A_boostrap_ssh.txt, a player's ssh.pub): blank and `#`
/// lines are skipped, a bad line is one warning naming `source:line`.
pub fn keys_in(source: &str, text: &str) -> (Vec<SshKey>, Vec<String>) {
    let (mut keys, mut warnings) = (Vec::new(), Vec::new());
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match SshKey::parse(line) {
            Ok(key) => keys.push(key),
            Err(e) => warnings.push(format!("{source}:{}: key refused: {e}", index + 1)),
        }
    }
    (keys, warnings)
}

/// The value of the first tag named `name`.
fn tag<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.tags.iter().find_map(|t| {
        let t = t.as_slice();
        (t.first().map(String::as_str) == Some(name))
            .then(|| t.get(1).map(String::as_str))
            .flatten()
    })
}

/// The `ssh_pub` of same-UPlanet captains: kind-30850 events whose `swarm_id` is `uplanet`
/// (UPLANETG1PUB) and whose `station` is not `own_station`, with a valid signature (the
/// original imports into strfry with `--no-verify`, so the relay may hold forgeries), newest
/// first. Each line gets `uplanet:<first 8 of UPLANETG1PUB>`, as the original tags them.
pub fn captain_keys(
    events: &[Event],
    uplanet: &str,
    own_station: &str,
) -> (Vec<SshKey>, Vec<String>) {
    let mut events: Vec<&Event> = events.iter().filter(|e| e.kind == CAPTAIN_KIND).collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    let uplanet_tag: String = uplanet.chars().take(UPLANET_TAG_LEN).collect();
    let (mut keys, mut warnings) = (Vec::new(), Vec::new());
    for event in events {
        if tag(event, "swarm_id") != Some(uplanet) || tag(event, "station") == Some(own_station) {
            continue;
        }
        let Some(ssh_pub) = tag(event, "ssh_pub") else {
            continue;
        };
        if event.verify().is_err() {
            warnings.push(format!("kind 30850 {}: bad signature, ignored", event.id));
            continue;
        }
        match SshKey::parse(ssh_pub) {
            Ok(key) => keys.push(key.tagged(&format!("uplanet:{uplanet_tag}"))),
            Err(e) => warnings.push(format!("kind 30850 {}: ssh_pub refused: {e}", event.id)),
        }
    }
    (keys, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_for(key: [u8; 32], comment: &str) -> String {
        SshKey::ed25519(key, comment).line()
    }

    #[test]
    fn only_well_formed_ed25519_lines_are_keys() {
        let keypair = libp2p::identity::ed25519::Keypair::generate();
        let good = line_for(keypair.public().to_bytes(), "fred@nexus");
        let key = SshKey::parse(&good).unwrap();
        assert_eq!(key.line(), good);
        let peer = libp2p::identity::PublicKey::from(keypair.public()).to_peer_id();
        assert_eq!(key.peer_id(), Some(peer));
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 x";
        assert!(matches!(SshKey::parse(rsa), Err(BadKey::NotEd25519(_))));
        let options = format!("command=\"/bin/sh\" {good}");
        assert!(SshKey::parse(&options).is_err(), "options are refused");
        let short = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeh x";
        assert_eq!(SshKey::parse(short), Err(BadKey::BadBlob));
        let long = format!("{good} {}", "x".repeat(MAX_KEY_LINE));
        assert_eq!(SshKey::parse(&long), Err(BadKey::TooLong));
        let control = line_for([7; 32], "a\u{7}b");
        assert!(SshKey::parse(&control).unwrap().line().ends_with(" ab"));
    }

    #[test]
    fn key_texts_skip_comments_and_name_bad_lines() {
        let text = format!("# bootstrap\n\n{}\nnot a key\n", line_for([1; 32], "a"));
        let (keys, warnings) = keys_in("A_boostrap_ssh.txt", &text);
        assert_eq!(keys.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("A_boostrap_ssh.txt:4:"),
            "{warnings:?}"
        );
    }
}

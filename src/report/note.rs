//! The report as a Nostr note, as `sync_report.sh` sends it since 2025-10: kind 1, signed by the
//! station's "UMAP 0.00" key (Astroport's `keygen -t nostr "${UPLANETNAME}0.00" …`), with an
//! `expiration` tag one hour ahead; sent only after a run that imported or failed something.

use std::path::Path;

use nostr::prelude::{Event, EventBuilder, FinalizeEvent, Keys, Kind, SecretKey, Tag, Timestamp};
use sha2::Digest;

use crate::sync::stats::{RunStats, RunStatus};

/// The note expires this long after it is sent (the original's `--ephemeral 3600`).
pub const NOTE_LIFETIME_SECS: u64 = 3_600;
/// `UPLANETNAME` when the station has no swarm key: the public ORIGIN swarm's (my.sh).
pub const ORIGIN_UPLANETNAME: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";
/// Duniter's scrypt parameters, as keygen reads them (no `~/.config/dpgpid/keygen.conf`):
/// N = 4096 (2^12), r = 16, p = 1, a 32-byte seed.
const SCRYPT_LOG_N: u8 = 12;
const SCRYPT_R: u32 = 16;
const SCRYPT_P: u32 = 1;
/// Largest key or swarm-key file read (an nsec line, or the three lines of a swarm key).
const KEY_FILE_MAX: u64 = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("scrypt: {0}")]
    Scrypt(String),
    #[error("the derived key is not a secp256k1 secret key: {0}")]
    Key(String),
    #[error("cannot read the note key {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no nsec1… key")]
    NoNsec(std::path::PathBuf),
    #[error("signing the note: {0}")]
    Sign(String),
}

/// The key Astroport's `tools/keygen -t nostr "$name0.00" "$name0.00"` prints: the Ed25519 seed
/// of Duniter's credentials (scrypt of the password, salted with the user name: both are the
/// same string here), hashed with SHA-256, is the secp256k1 secret key.
pub fn umap_keys(uplanet_name: &str) -> Result<Keys, NoteError> {
    let credential = format!("{uplanet_name}0.00");
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        .map_err(|e| NoteError::Scrypt(e.to_string()))?;
    let mut seed = [0u8; 32];
    scrypt::scrypt(
        credential.as_bytes(),
        credential.as_bytes(),
        &params,
        &mut seed,
    )
    .map_err(|e| NoteError::Scrypt(e.to_string()))?;
    let secret = sha2::Sha256::digest(seed);
    let secret = SecretKey::from_slice(&secret).map_err(|e| NoteError::Key(e.to_string()))?;
    Ok(Keys::new(secret))
}

/// `UPLANETNAME` as Astroport's `my.sh` sets it: the last line of the Kubo swarm key
/// (`tail -n 1 ~/.ipfs/swarm.key`), else the ORIGIN name. `$UPLANETNAME`, when set, wins.
pub fn uplanet_name(swarm_key: &Path) -> String {
    if let Some(name) = std::env::var("UPLANETNAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return name.trim().to_owned();
    }
    crate::atomic_file::read_bounded(swarm_key, KEY_FILE_MAX)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| last_line(&text))
        .unwrap_or_else(|| ORIGIN_UPLANETNAME.to_owned())
}

/// `tail -n 1` inside `$(…)`: the last line, without its newline; `None` when empty.
fn last_line(text: &str) -> Option<String> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let last = body.rsplit('\n').next()?.trim_end_matches('\n');
    (!last.is_empty()).then(|| last.to_owned())
}

/// The key of an nsec file: `nsec1…` alone, or among Astroport's `NSEC=nsec1…; NPUB=…;` fields.
pub fn keys_from_file(path: &Path) -> Result<Keys, NoteError> {
    let bytes =
        crate::atomic_file::read_bounded(path, KEY_FILE_MAX).map_err(|source| NoteError::Read {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&bytes);
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| word.starts_with("nsec1"))
        .find_map(|word| Keys::parse(word).ok())
        .ok_or_else(|| NoteError::NoNsec(path.to_owned()))
}

/// Is there anything to say? The original stays silent after a run that imported nothing and
/// failed nothing.
pub fn worth_sending(run: &RunStats) -> bool {
    run.imported > 0 || run.peers_failed > 0
}

/// The summary of `run`: peers, pubkeys, events, profiles, groups, failures, the report's link.
pub fn content(run: &RunStats, station: &str, link: Option<&str>) -> String {
    let icon = match run.status() {
        RunStatus::Ok => "✅",
        RunStatus::Partial => "⚠️",
        RunStatus::Failure => "❌",
    };
    let group = |name: &str| run.groups.get(name).copied().unwrap_or(0);
    let mut text = format!(
        "{icon} Constellation sync — {station}\n\n\
         📡 Peers {}/{}   🔑 {} pubkeys\n\
         📥 {} collected → {} imported\n\
         👤 Profiles: {} found, {} missing\n\n\
         📊 Social (0,1,3,6,7): {}\n🔒 DMs (4): {}\n🎬 Media (21,22,…): {}\n\
         🤝 Cooperative: {}\n🏠 Station (30800): {}\n📝 Content: {}\n",
        run.peers_ok,
        run.peers_contacted,
        run.authors,
        run.collected,
        run.imported,
        run.profiles_found,
        run.profiles_missing,
        group("social"),
        group("private"),
        group("media"),
        group("cooperative"),
        group("station"),
        group("content"),
    );
    if run.peers_failed > 0 {
        text.push_str(&format!("⚠️ Failures: {}\n", run.peers_failed));
    }
    text.push_str("\n#UPlanet #Constellation #NOSTR");
    if let Some(link) = link {
        text.push_str(&format!("\n🔗 {link}"));
    }
    text
}

/// The signed kind-1 note, expiring [`NOTE_LIFETIME_SECS`] after `now`.
pub fn note(keys: &Keys, content: String, now: Timestamp) -> Result<Event, NoteError> {
    let expires = now.as_secs() + NOTE_LIFETIME_SECS;
    let expiration = Tag::parse(["expiration".to_owned(), expires.to_string()])
        .map_err(|e| NoteError::Sign(e.to_string()))?;
    EventBuilder::new(Kind::TextNote, content)
        .tag(expiration)
        .custom_created_at(now)
        .finalize(keys)
        .map_err(|e| NoteError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from `interop/keygen/umap_key.py` (Python's hashlib.scrypt and coincurve).
    #[test]
    fn the_umap_key_matches_the_independent_vectors() {
        for (name, secret, pubkey) in [
            (
                ORIGIN_UPLANETNAME,
                "4eca4c2eddf74b12802b19625327d9d4a15dbc626cd2fbab6177568c8530844f",
                "8bb9b6de8c08df00a753eb23ce6b17975a1b914cb6054003403ae3772f7a732d",
            ),
            (
                "UPlanet \u{1e9e} test",
                "3bc79282419a3f631df00992ebea472c15c1a7f6590f1766f65887cdd3459b40",
                "41a2872cb27880fd036e85d06981398e1aeca3aec20d578aa760a815c077c7e4",
            ),
        ] {
            let keys = umap_keys(name).unwrap();
            assert_eq!(keys.secret_key().to_secret_hex(), secret, "{name}");
            assert_eq!(keys.public_key().to_hex(), pubkey, "{name}");
        }
    }

    #[test]
    fn tail_n_1_takes_the_last_line_of_a_swarm_key() {
        let key = "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n";
        assert_eq!(last_line(key).as_deref(), Some("abcd"));
        assert_eq!(last_line("abcd").as_deref(), Some("abcd"));
        assert_eq!(last_line("a\n\n"), None);
        assert_eq!(last_line(""), None);
    }

    #[test]
    fn the_note_expires_an_hour_later_and_is_signed() {
        let keys = Keys::generate();
        let now = Timestamp::from(1_700_000_000);
        let event = note(&keys, "hello".into(), now).unwrap();
        assert!(event.verify().is_ok());
        assert_eq!(event.kind, Kind::TextNote);
        let tag: Vec<&str> = event
            .tags
            .iter()
            .next()
            .unwrap()
            .as_slice()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(tag, ["expiration", "1700003600"]);
    }

    #[test]
    fn an_idle_run_says_nothing() {
        let mut run = RunStats::default();
        assert!(!worth_sending(&run));
        run.peers_failed = 1;
        assert!(worth_sending(&run));
        run.peers_failed = 0;
        run.imported = 3;
        assert!(worth_sending(&run));
    }
}

//! The authors a station syncs: local MULTIPASS accounts, friends of friends, peers' captains and
//! nodes, geographic keys — then N² from their contact lists. Invalid lines are counted, not fatal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use nostr::prelude::{Event, Kind, PublicKey};
use serde::Serialize;

use super::discovery::parse_hex_pubkey;
use crate::config::SyncFiles;

/// Files read under a source folder at most (flashmem trees can be large).
const MAX_FILES_PER_SOURCE: usize = 100_000;
/// Folder depth walked under a source folder.
const MAX_DEPTH: usize = 8;
/// Authors kept after N²; a runaway contact graph must not make REQs unbounded.
pub const MAX_AUTHORS: usize = 50_000;

/// Where the author lists live (all configurable; defaults follow Astroport's paths).
#[derive(Debug, Clone)]
pub struct AuthorSources {
    /// `~/.zen/game/nostr/*/HEX`
    pub multipass_dir: PathBuf,
    /// `~/.zen/strfry/amisOfAmis.txt`: read only (Astroport's other jobs write it)
    pub amis_file: PathBuf,
    /// `~/.zen/flashmem/**/HEX`
    pub geokeys_dir: PathBuf,
}

impl AuthorSources {
    pub fn astroport(zen: &Path) -> AuthorSources {
        AuthorSources {
            multipass_dir: zen.join("game/nostr"),
            amis_file: SyncFiles::new(zen.to_owned()).amis_of_amis(),
            geokeys_dir: zen.join("flashmem"),
        }
    }
}

/// What each source gave, for `--stats` and the report.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SourceCounts {
    pub multipass: usize,
    pub amis: usize,
    pub peers: usize,
    pub geokeys: usize,
    pub invalid_lines: usize,
}

/// Collect the base author set.
pub fn collect(
    sources: &AuthorSources,
    peer_pubkeys: &[PublicKey],
) -> (BTreeSet<PublicKey>, SourceCounts) {
    let mut counts = SourceCounts::default();
    let mut all = BTreeSet::new();
    let mut add =
        |keys: Vec<PublicKey>, invalid: usize, slot: &mut usize, counts_invalid: &mut usize| {
            *counts_invalid += invalid;
            *slot += keys.len();
            all.extend(keys);
        };
    let (keys, bad) = hex_files(&sources.multipass_dir, 1);
    add(keys, bad, &mut counts.multipass, &mut counts.invalid_lines);
    let (keys, bad) = lines_of(&sources.amis_file);
    add(keys, bad, &mut counts.amis, &mut counts.invalid_lines);
    let (keys, bad) = hex_files(&sources.geokeys_dir, MAX_DEPTH);
    add(keys, bad, &mut counts.geokeys, &mut counts.invalid_lines);
    // Parsed (and their invalid ones dropped) when the station files were read.
    add(
        peer_pubkeys.to_vec(),
        0,
        &mut counts.peers,
        &mut counts.invalid_lines,
    );
    (all, counts)
}

/// Pubkeys of a text file, one per line (`#` comments and blanks ignored).
fn lines_of(path: &Path) -> (Vec<PublicKey>, usize) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), 0);
    };
    let (mut keys, mut bad) = (Vec::new(), 0);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match parse_hex_pubkey(line) {
            Some(k) => keys.push(k),
            None => bad += 1,
        }
    }
    (keys, bad)
}

/// Every file named `HEX` under `dir` up to `depth` folders down.
fn hex_files(dir: &Path, depth: usize) -> (Vec<PublicKey>, usize) {
    let (mut keys, mut bad, mut seen) = (Vec::new(), 0, 0);
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((folder, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_FILES_PER_SOURCE {
                tracing::warn!(
                    "stopped reading {} after {MAX_FILES_PER_SOURCE} entries",
                    dir.display()
                );
                return (keys, bad);
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && level < depth {
                stack.push((path, level + 1));
            } else if kind.is_file() && entry.file_name() == "HEX" {
                let (k, b) = lines_of(&path);
                keys.extend(k);
                bad += b;
            }
        }
    }
    (keys, bad)
}

/// The latest contact list (kind 3) of each author among `events` → their follows.
pub fn follows(events: &[Event]) -> HashMap<PublicKey, BTreeSet<PublicKey>> {
    let mut latest: HashMap<PublicKey, &Event> = HashMap::new();
    for event in events.iter().filter(|e| e.kind == Kind::ContactList) {
        let author = event.pubkey;
        match latest.get(&author) {
            Some(prev)
                if (prev.created_at, std::cmp::Reverse(prev.id))
                    >= (event.created_at, std::cmp::Reverse(event.id)) => {}
            _ => {
                latest.insert(author, event);
            }
        }
    }
    latest
        .into_iter()
        .map(|(author, event)| {
            let friends = event
                .tags
                .iter()
                .filter(|t| t.kind() == "p")
                .filter_map(|t| t.content().and_then(parse_hex_pubkey))
                .collect();
            (author, friends)
        })
        .collect()
}

/// Result of the N² expansion.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expansion {
    pub base: usize,
    pub friends: usize,
    pub friends_of_friends: usize,
    /// Authors not in the base set (new connections discovered).
    pub discovered: usize,
}

/// Add the follows of `of` (from `contacts`) to `authors`, bounded by [`MAX_AUTHORS`];
/// returns the newly added.
pub fn expand(
    authors: &mut BTreeSet<PublicKey>,
    of: &BTreeSet<PublicKey>,
    contacts: &HashMap<PublicKey, BTreeSet<PublicKey>>,
) -> BTreeSet<PublicKey> {
    let mut added = BTreeSet::new();
    for author in of {
        for friend in contacts.get(author).into_iter().flatten() {
            if authors.len() >= MAX_AUTHORS {
                return added;
            }
            if authors.insert(*friend) {
                added.insert(*friend);
            }
        }
    }
    added
}

/// Write the author set to `path` atomically (temp file + rename), one hex key per line.
pub fn write_atomically(path: &Path, authors: &BTreeSet<PublicKey>) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut text = String::with_capacity(authors.len() * 65);
    for a in authors {
        text.push_str(&a.to_hex());
        text.push('\n');
    }
    crate::atomic_file::write(path, text.as_bytes(), 0o644)
}

/// Count per kind for stats (`BTreeMap` keeps the report ordered).
pub fn count_kinds<'a>(events: impl Iterator<Item = &'a Event>) -> BTreeMap<u16, u64> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.kind.as_u16()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Tag};

    fn hex(n: u8) -> String {
        format!("{:02x}", n).repeat(32)
    }

    fn key(n: u8) -> PublicKey {
        PublicKey::from_hex(&hex(n)).unwrap()
    }

    #[test]
    fn sources_are_read_and_invalid_lines_counted() {
        let dir = tempfile::tempdir().unwrap();
        let zen = dir.path();
        let sources = AuthorSources::astroport(zen);
        std::fs::create_dir_all(zen.join("game/nostr/alice@x")).unwrap();
        // A peer's invalid key is dropped when its station file is read; a HEX line here is not.
        std::fs::write(
            zen.join("game/nostr/alice@x/HEX"),
            format!("{}\nzz\n", hex(1)),
        )
        .unwrap();
        std::fs::create_dir_all(zen.join("strfry")).unwrap();
        std::fs::write(
            &sources.amis_file,
            format!("# friends\n{}\nnot-hex\n\n{}\n", hex(2), hex(1)),
        )
        .unwrap();
        std::fs::create_dir_all(zen.join("flashmem/a/b")).unwrap();
        std::fs::write(zen.join("flashmem/a/b/HEX"), hex(3)).unwrap();
        let (all, counts) = collect(&sources, &[key(4)]);
        assert_eq!(all.len(), 4);
        assert_eq!(
            counts,
            SourceCounts {
                multipass: 1,
                amis: 2,
                peers: 1,
                geokeys: 1,
                invalid_lines: 2
            }
        );
    }

    #[test]
    fn latest_contact_list_wins_and_expansion_is_bounded_to_new_keys() {
        let keys = Keys::generate();
        let old = EventBuilder::new(Kind::ContactList, "")
            .tags([Tag::public_key(Keys::generate().public_key())])
            .custom_created_at(nostr::prelude::Timestamp::from(100))
            .finalize(&keys)
            .unwrap();
        let friend = Keys::generate().public_key();
        let new = EventBuilder::new(Kind::ContactList, "")
            .tags([Tag::public_key(friend)])
            .custom_created_at(nostr::prelude::Timestamp::from(200))
            .finalize(&keys)
            .unwrap();
        let contacts = follows(&[new, old]);
        let me = keys.public_key();
        assert_eq!(contacts[&me], BTreeSet::from([friend]));
        let mut authors = BTreeSet::from([me]);
        let added = expand(&mut authors, &BTreeSet::from([me]), &contacts);
        assert_eq!(added, BTreeSet::from([friend]));
        assert_eq!(authors.len(), 2);
    }

    #[test]
    fn atomic_write_leaves_one_key_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strfry/amisOfAmis.txt");
        write_atomically(&path, &BTreeSet::from([key(1), key(2)])).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", hex(1), hex(2))
        );
        assert!(!path.with_extension("txt.tmp").exists());
    }
}

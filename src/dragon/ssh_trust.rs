//! SSH trust, as `DRAGON_p2p_ssh.sh` rebuilds it every hour: `~/.ssh/authorized_keys` gets the
//! bootstrap keys, the players' `ssh.pub` and same-UPlanet captains' `ssh_pub`, in one marked
//! block (lines outside it untouched, written atomically); and the station's `x/y/z_ssh.pub`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nostr::prelude::Event;
use serde::Serialize;

use super::ssh_keys::{self, SshKey};
use crate::atomic_file;

/// First line of the block we own in authorized_keys.
pub const BLOCK_BEGIN: &str =
    "# BEGIN constellation DRAGON (managed block: edits inside are replaced)";
/// Last line of the block.
pub const BLOCK_END: &str = "# END constellation DRAGON";
/// Longest authorized_keys read: a real one is a few KiB; a bigger one is left alone.
const MAX_AUTHORIZED_KEYS_BYTES: u64 = 1024 * 1024;
/// Longest key source read (A_boostrap_ssh.txt, a player's ssh.pub, id_ed25519.pub).
const MAX_SOURCE_BYTES: u64 = 256 * 1024;
/// Players' folders read: a station has a handful; a crowd is cut here.
const MAX_PLAYERS: usize = 1024;
/// Keys in the block: beyond this, the rest are dropped with a warning (sshd reads every line
/// on every login).
const MAX_TRUSTED_KEYS: usize = 1024;
/// How long `gpg --export-ssh-key` may take (a smartcard may be asked).
const GPG_TIMEOUT: Duration = Duration::from_secs(10);

/// Why authorized_keys was not updated.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {what}; not touching it")]
    BrokenBlock { path: PathBuf, what: &'static str },
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
}

/// Where the trusted keys come from, and where they go.
#[derive(Debug, Clone)]
pub struct TrustPaths {
    /// `~/.ssh/authorized_keys`.
    pub authorized_keys: PathBuf,
    /// `~/.zen/Astroport.ONE/A_boostrap_ssh.txt`.
    pub bootstrap: PathBuf,
    /// `~/.zen/game/players/` (each `<player>/ssh.pub`).
    pub players: PathBuf,
}

/// What one refresh found and did (printed by `ssh-keys`, logged by the daemon).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrustReport {
    pub bootstrap: usize,
    pub players: usize,
    pub captains: usize,
    /// The block's lines (keys already trusted outside the block are not repeated).
    pub block: Vec<String>,
    pub changed: bool,
    pub warnings: Vec<String>,
}

/// Read a bounded text file; a missing one is `None`.
fn read_text(path: &Path, max: u64) -> Result<Option<String>, std::io::Error> {
    match atomic_file::read_bounded(path, max) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The keys of one source file (missing: none; unreadable: a warning).
fn keys_of_file(path: &Path, warnings: &mut Vec<String>) -> Vec<SshKey> {
    match read_text(path, MAX_SOURCE_BYTES) {
        Ok(Some(text)) => {
            let (keys, bad) = ssh_keys::keys_in(&path.display().to_string(), &text);
            warnings.extend(bad);
            keys
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            warnings.push(format!("cannot read {}: {e}", path.display()));
            Vec::new()
        }
    }
}

/// Every `<players>/*/ssh.pub`, in name order, at most [`MAX_PLAYERS`] folders.
fn player_keys(players: &Path, warnings: &mut Vec<String>) -> Vec<SshKey> {
    let Ok(entries) = std::fs::read_dir(players) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    if dirs.len() > MAX_PLAYERS {
        warnings.push(format!(
            "{}: only the first {MAX_PLAYERS} players are read",
            players.display()
        ));
        dirs.truncate(MAX_PLAYERS);
    }
    (dirs.iter())
        .flat_map(|d| keys_of_file(&d.join("ssh.pub"), warnings))
        .collect()
}

/// The trusted keys, in the original's order (bootstrap, players, captains), each key once.
pub fn trusted_keys(
    paths: &TrustPaths,
    captain_events: &[Event],
    uplanet: Option<&str>,
    own_station: &str,
) -> (Vec<SshKey>, TrustReport) {
    let mut report = TrustReport::default();
    let bootstrap = keys_of_file(&paths.bootstrap, &mut report.warnings);
    let players = player_keys(&paths.players, &mut report.warnings);
    let captains = match uplanet {
        Some(uplanet) => {
            let (keys, bad) = ssh_keys::captain_keys(captain_events, uplanet, own_station);
            report.warnings.extend(bad);
            keys
        }
        None => {
            report
                .warnings
                .push("UPLANETG1PUB unknown: no captain keys (set [dragon] uplanet_g1pub)".into());
            Vec::new()
        }
    };
    (report.bootstrap, report.players, report.captains) =
        (bootstrap.len(), players.len(), captains.len());
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<SshKey> = (bootstrap.into_iter().chain(players).chain(captains))
        .filter(|k| seen.insert(k.key()))
        .collect();
    if keys.len() > MAX_TRUSTED_KEYS {
        report.warnings.push(format!(
            "only the first {MAX_TRUSTED_KEYS} keys are trusted"
        ));
        keys.truncate(MAX_TRUSTED_KEYS);
    }
    (keys, report)
}

/// `existing` with our block holding `keys` (those not already trusted outside the block);
/// every line outside the block is kept byte for byte. No keys: the block goes away.
pub fn merge_block(existing: &str, keys: &[SshKey]) -> Result<(String, Vec<String>), &'static str> {
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let is = |l: &str, marker: &str| l.trim_end_matches(['\n', '\r']) == marker;
    let begins: Vec<usize> = (0..lines.len())
        .filter(|&i| is(lines[i], BLOCK_BEGIN))
        .collect();
    let ends: Vec<usize> = (0..lines.len())
        .filter(|&i| is(lines[i], BLOCK_END))
        .collect();
    let (before, after) = match (begins.as_slice(), ends.as_slice()) {
        ([], []) => (&lines[..], &lines[lines.len()..]),
        ([b], [e]) if b < e => (&lines[..*b], &lines[e + 1..]),
        ([_], [_]) => return Err("the block's end comes before its start"),
        (b, e) if b.len() > 1 || e.len() > 1 => return Err("it has more than one managed block"),
        _ => return Err("the managed block has a start without an end, or an end without a start"),
    };
    let outside: std::collections::HashSet<String> = (before.iter().chain(after))
        .filter_map(|l| SshKey::parse(l).ok())
        .map(|k| k.key())
        .collect();
    let block: Vec<String> = (keys.iter())
        .filter(|k| !outside.contains(&k.key()))
        .map(SshKey::line)
        .collect();
    let mut text: String = before.concat();
    if !block.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(BLOCK_BEGIN);
        text.push('\n');
        for line in &block {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(BLOCK_END);
        text.push('\n');
    }
    text.push_str(&after.concat());
    Ok((text, block))
}

/// Put `keys` into the block of `path` (temp + fsync + rename; mode 0600); `Ok(true)` when the
/// file changed. A file whose block is broken is left as it is.
pub fn write_block(path: &Path, keys: &[SshKey]) -> Result<(bool, Vec<String>), TrustError> {
    let existing = match atomic_file::read_bounded(path, MAX_AUTHORIZED_KEYS_BYTES) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| TrustError::BrokenBlock {
            path: path.to_owned(),
            what: "it is not UTF-8 (rewriting it would change lines outside the block)",
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(TrustError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let (text, block) = merge_block(&existing, keys).map_err(|what| TrustError::BrokenBlock {
        path: path.to_owned(),
        what,
    })?;
    if text == existing {
        return Ok((false, block));
    }
    let write = |source| TrustError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(write)?;
        }
    }
    atomic_file::write(path, text.as_bytes(), 0o600).map_err(write)?;
    Ok((true, block))
}

/// The station's own keys in its published folder, as the original: `y_ssh.pub` when
/// `~/.ssh/id_ed25519.pub` is the node's own key (Y level), else `x_ssh.pub` (and no y);
/// `z_ssh.pub` from `gpg --export-ssh-key <current player>` when gpg gives one.
pub async fn write_station_keys(
    ssh_dir: &Path,
    game: &Path,
    own_folder: &Path,
    node: &libp2p::PeerId,
) -> Vec<String> {
    let mut notes = Vec::new();
    let id = ssh_dir.join("id_ed25519.pub");
    let text = read_text(&id, MAX_SOURCE_BYTES).ok().flatten();
    if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
        match SshKey::parse(text.lines().next().unwrap_or_default()) {
            Ok(key) if key.peer_id().as_ref() == Some(node) => {
                notes.push(put(&own_folder.join("y_ssh.pub"), Some(&key.line())));
            }
            Ok(key) => {
                notes.push(put(&own_folder.join("y_ssh.pub"), None));
                notes.push(put(&own_folder.join("x_ssh.pub"), Some(&key.line())));
            }
            Err(e) => notes.push(format!("{}: {e}", id.display())),
        }
    }
    let player = read_text(&game.join("players").join(".current").join(".player"), 1024)
        .ok()
        .flatten();
    let z = match player.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(player) => gpg_ssh_key(player).await,
        None => None,
    };
    notes.push(put(
        &own_folder.join("z_ssh.pub"),
        z.as_ref().map(|k| k.line()).as_deref(),
    ));
    notes.retain(|n| !n.is_empty());
    notes
}

/// Write `text` to `path` (or remove it with `None`); a note for the report when it changed.
fn put(path: &Path, text: Option<&str>) -> String {
    let name = path.display();
    match text {
        Some(text) => {
            let text = format!("{text}\n");
            if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
                return String::new();
            }
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| atomic_file::write(path, text.as_bytes(), 0o644));
            match written {
                Ok(()) => format!("wrote {name}"),
                Err(e) => format!("cannot write {name}: {e}"),
            }
        }
        None => match std::fs::remove_file(path) {
            Ok(()) => format!("removed {name}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!("cannot remove {name}: {e}"),
        },
    }
}

/// `gpg --export-ssh-key <player>`: its key, if gpg answers one in time.
async fn gpg_ssh_key(player: &str) -> Option<SshKey> {
    if player.starts_with('-') || player.len() > 320 {
        return None;
    }
    let run = tokio::process::Command::new("gpg")
        .args(["--export-ssh-key", player])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GPG_TIMEOUT, run).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| SshKey::parse(text.lines().next()?).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, comment: &str) -> SshKey {
        SshKey::ed25519([n; 32], comment)
    }

    #[test]
    fn the_block_replaces_itself_and_keeps_every_other_line() {
        let own = key(1, "me@laptop").line();
        let existing = format!("# my keys\n{own}\nno newline at the end");
        let (once, block) = merge_block(&existing, &[key(1, "dup"), key(2, "a")]).unwrap();
        assert_eq!(
            block,
            [key(2, "a").line()],
            "a key trusted outside is not repeated"
        );
        assert!(
            once.starts_with(&format!("{existing}\n{BLOCK_BEGIN}\n")),
            "{once}"
        );
        let edited = format!("{once}after\n");
        let (twice, _) = merge_block(&edited, &[key(3, "b")]).unwrap();
        assert_eq!(
            twice,
            format!(
                "{existing}\n{BLOCK_BEGIN}\n{}\n{BLOCK_END}\nafter\n",
                key(3, "b").line()
            )
        );
        let (gone, _) = merge_block(&twice, &[]).unwrap();
        assert_eq!(gone, format!("{existing}\nafter\n"));
    }

    #[test]
    fn a_broken_block_is_refused() {
        for text in [
            format!("{BLOCK_BEGIN}\nx\n"),
            format!("{BLOCK_END}\n{BLOCK_BEGIN}\n"),
            format!("{BLOCK_BEGIN}\n{BLOCK_END}\n{BLOCK_BEGIN}\n{BLOCK_END}\n"),
        ] {
            assert!(merge_block(&text, &[key(1, "")]).is_err(), "{text}");
        }
    }
}

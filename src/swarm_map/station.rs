//! The files of a station's folder as the map reads and writes them: `_MySwarm.moats` (epoch
//! seconds), the `12345.json` fields the map uses, and the minimal `12345.json` we write when no
//! Astroport does. Pure parsing and encoding; every field read is untrusted.

use std::path::Path;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::atomic_file::read_bounded;

/// `_MySwarm.moats`: the epoch second the station last refreshed its folder.
pub const MOATS_FILE: &str = "_MySwarm.moats";
/// `_MySwarm.staom`: the same moment as `date -u` prints it (Astroport reads it into `date`).
pub const STAOM_FILE: &str = "_MySwarm.staom";
pub const STATION_FILE: &str = "12345.json";
/// `_12345.sh` reads `head -c 20` of the moats; a real one is 10 digits and a newline. A larger
/// file is no moats (and the probe refuses it without reading more).
pub const MAX_MOATS_BYTES: u64 = 20;
/// Largest `12345.json` read from a mirrored folder (the backfill's bound too).
pub const MAX_STATION_FILE_BYTES: u64 = crate::sync::discovery::MAX_STATION_FILE;
/// The `version` Astroport's `_12345.sh` writes today; ours says the same layout.
const STATION_FILE_VERSION: &str = "12345.0.2";
/// Marks a `12345.json` we wrote, so we keep rewriting ours and never touch Astroport's.
pub const GENERATOR: &str = concat!("constellation ", env!("CARGO_PKG_VERSION"));

/// What the probe of `/ipns/<ID>/_MySwarm.moats` says about a peer (`is_astroport_node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A number: an Astroport station, refreshed at this epoch second.
    Station(u64),
    /// Nothing came (no record, no block, empty file): no verdict, retried next cycle.
    Unreachable(String),
    /// Something else came: not a station. It is disconnected and logged.
    Intruder(String),
}

/// Classify the bytes of a moats file: digits (around whitespace) are a station, nothing is
/// unreachable, anything else is an intruder.
pub fn classify_moats(bytes: &[u8]) -> Probe {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return Probe::Unreachable("empty _MySwarm.moats".into());
    }
    match text.parse::<u64>() {
        Ok(moats) if text.bytes().all(|b| b.is_ascii_digit()) => Probe::Station(moats),
        _ => Probe::Intruder(format!(
            "_MySwarm.moats is not a number: {:?}",
            crate::identity::shorten(text)
        )),
    }
}

/// The moats of a folder on disk (a mirrored station, or ours), if it holds a number.
pub fn read_moats(dir: &Path) -> Option<u64> {
    let bytes = read_bounded(&dir.join(MOATS_FILE), MAX_MOATS_BYTES).ok()?;
    match classify_moats(&bytes) {
        Probe::Station(moats) => Some(moats),
        _ => None,
    }
}

/// Age of a moats at `now`; a moats in the future by more than [`MAX_CLOCK_SKEW_SECS`] has no
/// age (a station cannot stay fresh forever by writing a far future).
pub fn moats_age(moats: u64, now: u64) -> Option<u64> {
    if moats > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return None;
    }
    Some(now.saturating_sub(moats))
}

/// Clocks of stations differ; an hour ahead is still a plausible moats.
pub const MAX_CLOCK_SKEW_SECS: u64 = 3600;

/// The fields of a mirrored `12345.json` the map shows and follows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StationFile {
    pub ipfsnodeid: Option<String>,
    pub hostname: Option<String>,
    #[serde(rename = "myRELAY")]
    pub my_relay: Option<String>,
    /// `<gateway>/ipns/<MySwarm key>`: the IPNS name of the station's own map.
    pub g1swarm: Option<String>,
    /// `ssh,strfry,…`: the slugs of its `x_<slug>.sh` scripts.
    pub dragon_services: Option<String>,
    /// Set when we wrote the file (see [`GENERATOR`]).
    pub generator: Option<String>,
}

impl StationFile {
    /// Parse `<dir>/12345.json`; a missing, oversized or malformed file gives `None`.
    pub fn read(dir: &Path) -> Option<StationFile> {
        let bytes = read_bounded(&dir.join(STATION_FILE), MAX_STATION_FILE_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The IPNS name of the station's map: the last path element of `g1swarm`, when it is a
    /// PeerID (`_12345.sh`: `rev | cut -d / -f 1 | rev`).
    pub fn g1swarm_name(&self) -> Option<PeerId> {
        let text = self.g1swarm.as_deref()?.trim().trim_end_matches('/');
        let last = text.rsplit('/').next()?;
        crate::identity::parse_peer_id(last).ok()
    }
}

/// What we put in our minimal `12345.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnStation {
    pub peer: PeerId,
    pub hostname: String,
    /// Our relay's URL (`ws://127.0.0.1:<port>` is reached through `/x/strfry-<ID>`).
    pub relay: Option<String>,
    pub captain_hex: Option<String>,
    pub node_hex: Option<String>,
    /// The IPNS name of our map, when we have a `MySwarm_<ID>` key.
    pub g1swarm: Option<PeerId>,
    /// Slugs of the `x_<slug>.sh` in our folder, sorted.
    pub services: Vec<String>,
}

/// The minimal `12345.json`, in Astroport's field names.
#[derive(Serialize)]
struct OwnFile<'a> {
    version: &'a str,
    created: String,
    date: String,
    hostname: &'a str,
    ipfsnodeid: String,
    #[serde(rename = "myRELAY")]
    my_relay: &'a str,
    g1station: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    g1swarm: Option<String>,
    #[serde(rename = "captainHEX", skip_serializing_if = "Option::is_none")]
    captain_hex: Option<&'a str>,
    #[serde(rename = "NODEHEX", skip_serializing_if = "Option::is_none")]
    node_hex: Option<&'a str>,
    dragon_services: String,
    generator: &'a str,
}

impl OwnStation {
    /// The file's bytes at `now` (epoch seconds).
    pub fn to_json(&self, now: u64) -> Vec<u8> {
        let file = OwnFile {
            version: STATION_FILE_VERSION,
            created: now.to_string(),
            date: utc_date(now),
            hostname: &self.hostname,
            ipfsnodeid: self.peer.to_string(),
            my_relay: self.relay.as_deref().unwrap_or(""),
            g1station: format!("/ipns/{}", self.peer),
            g1swarm: self.g1swarm.map(|k| format!("/ipns/{k}")),
            captain_hex: self.captain_hex.as_deref(),
            node_hex: self.node_hex.as_deref(),
            dragon_services: self.services.join(","),
            generator: GENERATOR,
        };
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The slugs of the `x_<slug>.sh` scripts in `dir`, sorted (`dragon_services`).
pub fn services_in(dir: &Path) -> Vec<String> {
    let mut slugs: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let slug = name.strip_prefix("x_")?.strip_suffix(".sh")?;
            (!slug.is_empty()).then(|| slug.to_owned())
        })
        .collect();
    slugs.sort();
    slugs
}

/// `date -u`'s layout (`Wed Dec  2 00:42:58 UTC 2026`), which Astroport keeps in `_MySwarm.staom`.
pub fn utc_date(epoch: u64) -> String {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(epoch as i64, 0).unwrap_or_default();
    at.format("%a %b %e %H:%M:%S UTC %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_a_station_nothing_is_unreachable_the_rest_intruders() {
        assert_eq!(classify_moats(b"1764636178\n"), Probe::Station(1764636178));
        assert!(matches!(classify_moats(b" \n"), Probe::Unreachable(_)));
        assert!(matches!(classify_moats(b"-5"), Probe::Intruder(_)));
        assert!(matches!(classify_moats(b"12e4"), Probe::Intruder(_)));
        assert!(matches!(
            classify_moats(b"<html>hello</html>"),
            Probe::Intruder(_)
        ));
        assert_eq!(moats_age(100, 160), Some(60));
        assert_eq!(moats_age(100 + MAX_CLOCK_SKEW_SECS + 1, 100), None);
    }

    #[test]
    fn g1swarm_gives_the_last_path_element_when_it_is_a_peer_id() {
        let key = PeerId::random();
        let file = StationFile {
            g1swarm: Some(format!("http://127.0.0.1:8080/ipns/{key}/")),
            ..StationFile::default()
        };
        assert_eq!(file.g1swarm_name(), Some(key));
        let bad = StationFile {
            g1swarm: Some("http://127.0.0.1:8080/ipns/".into()),
            ..StationFile::default()
        };
        assert_eq!(bad.g1swarm_name(), None);
    }

    #[test]
    fn our_minimal_file_reads_back_as_a_station_file_the_backfill_accepts() {
        let peer = PeerId::random();
        let own = OwnStation {
            peer,
            hostname: "box".into(),
            relay: Some("ws://127.0.0.1:7777".into()),
            captain_hex: None,
            node_hex: None,
            g1swarm: Some(peer),
            services: vec!["ssh".into(), "strfry".into()],
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATION_FILE), own.to_json(1_700_000_000)).unwrap();
        let back = StationFile::read(dir.path()).unwrap();
        assert_eq!(back.ipfsnodeid, Some(peer.to_string()));
        assert_eq!(back.dragon_services.as_deref(), Some("ssh,strfry"));
        assert_eq!(back.generator.as_deref(), Some(GENERATOR));
        assert_eq!(back.g1swarm_name(), Some(peer));
        assert_eq!(utc_date(1_700_000_000), "Tue Nov 14 22:13:20 UTC 2023");
    }
}

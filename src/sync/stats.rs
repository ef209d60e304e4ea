//! Numbers of one sync run and of each peer in it: what the report and `--stats` show.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kinds;

/// Bytes by message class: where a run's traffic goes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Traffic {
    /// `EVENT`s received (downloads).
    pub events_in: u64,
    /// `NEG-MSG` / `NEG-ERR` received.
    pub reconcile_in: u64,
    /// `OK`s received (answers to our uploads).
    pub acks_in: u64,
    /// `EOSE`, `CLOSED`, `NOTICE`, … received.
    pub other_in: u64,
    /// `EVENT`s sent (uploads).
    pub events_out: u64,
    /// `NEG-OPEN` / `NEG-MSG` / `NEG-CLOSE` sent.
    pub reconcile_out: u64,
    /// `REQ` / `CLOSE` sent.
    pub requests_out: u64,
}

impl Traffic {
    pub fn add(&mut self, other: &Traffic) {
        self.events_in += other.events_in;
        self.reconcile_in += other.reconcile_in;
        self.acks_in += other.acks_in;
        self.other_in += other.other_in;
        self.events_out += other.events_out;
        self.reconcile_out += other.reconcile_out;
        self.requests_out += other.requests_out;
    }
}

/// How a peer was reconciled. Its text (`nip77`, `req`, empty when it was never reached) is what
/// the history, the report and the JSON output have always shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMode {
    /// Not decided: the peer failed before any reconciliation.
    #[default]
    #[serde(rename = "")]
    Unknown,
    /// NIP-77 negentropy, both ways.
    #[serde(rename = "nip77")]
    Nip77,
    /// Complete REQ paging (the peer refused NIP-77, or `--req-only`).
    #[serde(rename = "req")]
    Req,
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            SyncMode::Unknown => "",
            SyncMode::Nip77 => "nip77",
            SyncMode::Req => "req",
        })
    }
}

/// One peer's part of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStats {
    pub name: String,
    pub endpoint: String,
    pub mode: SyncMode,
    pub ok: bool,
    pub error: Option<String>,
    /// Events received from the peer (before filtering).
    pub events_in: u64,
    /// Of those, newly stored locally.
    pub imported: u64,
    /// Events we sent it that it lacked (NIP-77 upload).
    pub events_out: u64,
    /// Of those, refused by the peer.
    pub refused_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub round_trips: u64,
    #[serde(default)]
    pub traffic: Traffic,
    pub duration_ms: u64,
}

/// How a run went: every contacted peer synced, some did, or none. Its text (`OK`, `Partial`,
/// `Failure`) is what the history, the report and the JSON output have always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    #[serde(rename = "OK")]
    Ok,
    Partial,
    Failure,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RunStatus::Ok => "OK",
            RunStatus::Partial => "Partial",
            RunStatus::Failure => "Failure",
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunStats {
    pub run_id: i64,
    /// Unix seconds.
    pub started_at: u64,
    pub duration_ms: u64,
    pub days: u64,
    pub dry_run: bool,
    pub peers: Vec<PeerStats>,
    pub peers_contacted: u64,
    pub peers_ok: u64,
    pub peers_failed: u64,
    /// Events received from all peers.
    pub collected: u64,
    pub imported: u64,
    pub duplicate: u64,
    /// Reason → count, for events received but not stored.
    pub rejected: BTreeMap<String, u64>,
    pub uploaded: u64,
    pub upload_refused: u64,
    /// Kind → imported count.
    pub kinds: BTreeMap<u16, u64>,
    /// Group → imported count.
    pub groups: BTreeMap<String, u64>,
    /// Authors synced (base + N²).
    pub authors: u64,
    /// Authors found by N² that were not in the base set.
    pub discovered: u64,
    /// Distinct pubkeys among imported events.
    pub unique_pubkeys: u64,
    pub profiles_found: u64,
    pub profiles_missing: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub round_trips: u64,
    #[serde(default)]
    pub traffic: Traffic,
    pub truncated_windows: u64,
    /// Pubkeys from each author source.
    pub sources: super::authors::SourceCounts,
    /// Ids and their engagement (reposts + reactions) among imported events, most first.
    pub viral: Vec<(String, u64)>,
    /// Station files skipped, with reasons.
    pub skipped_peers: Vec<String>,
}

impl RunStats {
    /// `OK` (every peer synced), `Partial` (some failed) or `Failure` (none did, or no peer).
    pub fn status(&self) -> RunStatus {
        match (self.peers_ok, self.peers_failed) {
            (_, 0) if self.peers_contacted > 0 => RunStatus::Ok,
            (0, _) => RunStatus::Failure,
            _ => RunStatus::Partial,
        }
    }

    pub fn count_kind(&mut self, kind: u16) {
        *self.kinds.entry(kind).or_insert(0) += 1;
        *self
            .groups
            .entry(kinds::group_of(kind).to_owned())
            .or_insert(0) += 1;
    }

    pub fn reject(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.rejected.entry(reason.to_owned()).or_insert(0) += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reflects_peer_outcomes() {
        let mut s = RunStats::default();
        assert_eq!(s.status().to_string(), "Failure");
        s.peers_contacted = 2;
        s.peers_ok = 2;
        assert_eq!(s.status().to_string(), "OK");
        s.peers_ok = 1;
        s.peers_failed = 1;
        assert_eq!(s.status().to_string(), "Partial");
        s.peers_ok = 0;
        s.peers_failed = 2;
        assert_eq!(s.status().to_string(), "Failure");
    }
}

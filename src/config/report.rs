//! `[report]`: where the sync reports are saved, the station name they show, and the Nostr note
//! that tells the constellation about each run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[report]`: where reports are saved, and the note.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Default: `<home>/reports`.
    pub dir: Option<PathBuf>,
    /// Shown in the title (default: the machine's hostname).
    pub station: Option<String>,
    /// Also publish each run's summary as a kind-1 note, as `sync_report.sh` does (signed by the
    /// UMAP 0.00 key, expiring after an hour, not sent after an idle run).
    pub note: bool,
    /// An nsec file to sign the note with instead of the UMAP 0.00 key derived from
    /// `UPLANETNAME` (`nsec1…`, or Astroport's `NSEC=nsec1…;` line).
    pub note_key: Option<PathBuf>,
    /// The relay the note goes to; default the station's relay (`ws://` + `[relay] listen`).
    pub note_relay: Option<String>,
    /// Put before `/ipfs/<CID>` in the note's link to the report (e.g. `http://127.0.0.1:8080`).
    pub gateway: Option<String>,
}

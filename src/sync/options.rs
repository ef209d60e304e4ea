//! What one sync run does: the backfill flags and the trigger map onto [`SyncOptions`].

use std::path::PathBuf;
use std::time::Duration;

pub struct SyncOptions {
    /// Window in days (`0` = everything).
    pub days: u64,
    pub no_dms: bool,
    pub verify: bool,
    pub profiles: bool,
    pub dry_run: bool,
    /// Events whose content contains this are spam (`Hello NOSTR visitor.` by default).
    pub spam_phrase: Option<String>,
    /// Peers reconciled at the same time.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// A relay silent this long (no EOSE, no NEG-MSG) is given up.
    pub idle_timeout: Duration,
    /// Reconnections per peer after a failure, with exponential backoff.
    pub retries: u32,
    /// Public relays asked for missing profiles (kind 0) after the peers.
    pub fallback_relays: Vec<String>,
    /// Events per REQ page (relays cap at 500).
    pub page: usize,
    /// Authors per filter (128 KiB frames hold ~1,900 keys; stay well below).
    pub author_chunk: usize,
    /// Where to write the N² author set (our own file, never `amisOfAmis.txt`), unless dry-run.
    pub amis_out: Option<PathBuf>,
    /// REQ paging even with peers that speak NIP-77 (comparisons, debugging).
    pub req_only: bool,
    /// Upload to NIP-77 peers what they lack (off: download only).
    pub upload: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            days: 1,
            no_dms: false,
            verify: true,
            profiles: true,
            dry_run: false,
            spam_phrase: Some("Hello NOSTR visitor.".into()),
            concurrency: 4,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retries: 2,
            fallback_relays: Vec::new(),
            page: 500,
            author_chunk: 250,
            amis_out: None,
            req_only: false,
            upload: true,
        }
    }
}

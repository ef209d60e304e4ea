//! `[relay]`: the embedded relay's address, identity and limits, with strfry's defaults.

use serde::{Deserialize, Serialize};

/// strfry's defaults (`maxEventSize`, `maxNumTags`): the largest event and most tags stored.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 65_536;
pub const DEFAULT_MAX_TAGS: usize = 2_000;

/// Limits and identity of the relay (`[relay]` in config.toml). Defaults follow strfry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address of the embedded relay.
    pub listen: String,
    /// NIP-11 name and description.
    pub name: String,
    pub description: String,
    /// Most events returned per filter (strfry's `maxFilterLimit`).
    pub max_limit: usize,
    /// Most filters in one REQ.
    pub max_filters: usize,
    /// Most open subscriptions per connection.
    pub max_subscriptions: usize,
    /// Largest websocket message accepted; larger ones get a NOTICE and are dropped.
    pub max_message_bytes: usize,
    /// Most concurrent connections; more wait in the accept queue.
    pub max_connections: usize,
    /// Messages queued for a client; a client that does not read this many is disconnected.
    pub outbound_queue: usize,
    /// Most records in one NIP-77 reconciliation (strfry's `maxSyncEvents`).
    pub max_sync_events: usize,
    /// A connection with no open subscription that sends nothing for this long is closed
    /// (also ends clients stuck halfway through a frame).
    pub idle_timeout_secs: u64,
    /// Largest event and most tags stored.
    pub max_event_bytes: usize,
    pub max_event_tags: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: "127.0.0.1:7777".into(),
            name: "constellation".into(),
            description: "Embedded relay of an Astroport / UPlanet station".into(),
            max_limit: 500,
            max_filters: 200,
            max_subscriptions: 20,
            max_message_bytes: 131_072,
            max_connections: 1_024,
            outbound_queue: 4_096,
            max_sync_events: 1_000_000,
            idle_timeout_secs: 600,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_event_tags: DEFAULT_MAX_TAGS,
        }
    }
}

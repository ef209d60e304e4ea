//! `[relay]`: the embedded relay's address, identity and limits, with strfry's defaults.

use serde::{Deserialize, Serialize};

/// strfry's defaults (`maxEventSize`, `maxNumTags`): the largest event and most tags stored.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 65_536;
pub const DEFAULT_MAX_TAGS: usize = 2_000;
/// strfry's `rejectEventsNewerThanSeconds`: a clock a few minutes fast is fine; an event dated
/// years ahead would outlive every replacement and sit outside every NIP-77 time range.
pub const DEFAULT_MAX_FUTURE_SECS: u64 = 900;
/// Bytes queued for one client and not yet taken by its socket. strfry's
/// `maxPendingOutboundBytes` is 32 MiB because strfry cuts a client the moment it passes the
/// bound, so the bound must hold a whole maximal filter (500 events of 64 KiB) or an honest
/// client asking for one would be cut. Ours makes a REQ's answer wait for room (read in 1 MiB
/// pages, `store::PAGE_BYTES`), so the bound only has to hold live events, which never wait:
/// 4 MiB is 64 events of the largest size or thousands of ordinary notes, and sixteen stalled
/// clients may queue 64 MiB on a Pi where strfry's bound would let them queue 512.
pub const DEFAULT_MAX_PENDING_OUTBOUND_BYTES: usize = 4 << 20;

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
    /// Bytes queued for a client and not yet taken by its socket (strfry's
    /// `maxPendingOutboundBytes`; see [`DEFAULT_MAX_PENDING_OUTBOUND_BYTES`]). A live event that
    /// would pass it cuts the connection at once; replies to the client's own requests wait
    /// for room instead, for at most a few seconds, then the client is cut.
    pub max_pending_outbound_bytes: usize,
    /// Most records in one NIP-77 reconciliation (strfry's `maxSyncEvents`).
    pub max_sync_events: usize,
    /// A connection with no open subscription that sends nothing for this long is closed
    /// (also ends clients stuck halfway through a frame).
    pub idle_timeout_secs: u64,
    /// Largest event and most tags stored.
    pub max_event_bytes: usize,
    pub max_event_tags: usize,
    /// Events dated more than this many seconds ahead are refused (strfry's
    /// `rejectEventsNewerThanSeconds`).
    pub reject_newer_than_secs: u64,
    /// Connections from one IP address that is not loopback (nostr-rs-relay and strfry leave
    /// this to a proxy; a station often has none).
    pub max_connections_per_ip: usize,
    /// Connections from one swarm peer through `/x/strfry-<id>` (a station's sync needs a few).
    pub max_connections_per_peer: usize,
    /// Slots of `max_connections` that only the station's own clients (loopback, not through a
    /// tunnel) may take, so that the sync and the CLI get in while outsiders hold the rest.
    pub reserved_local_connections: usize,
    /// Events accepted per minute from one IP address that is not loopback.
    pub events_per_minute_per_ip: u32,
    /// Events stored per minute by one author, over every outside client.
    pub events_per_minute_per_pubkey: u32,
    /// Events accepted per minute from one swarm peer (its sync pushes what we lack: thousands).
    pub events_per_minute_per_peer: u32,
    /// Apply the outside limits to loopback clients too (off: the station's own sync imports
    /// thousands of events a minute from 127.0.0.1).
    pub limit_loopback: bool,
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
            max_pending_outbound_bytes: DEFAULT_MAX_PENDING_OUTBOUND_BYTES,
            max_sync_events: 1_000_000,
            idle_timeout_secs: 600,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_event_tags: DEFAULT_MAX_TAGS,
            reject_newer_than_secs: DEFAULT_MAX_FUTURE_SECS,
            max_connections_per_ip: 32,
            max_connections_per_peer: 32,
            reserved_local_connections: 64,
            events_per_minute_per_ip: 600,
            events_per_minute_per_pubkey: 300,
            events_per_minute_per_peer: 20_000,
            limit_loopback: false,
        }
    }
}

//! NIP-77 (negentropy) as both sides use it: one frame limit, and the sealed item set that the
//! relay answers from and the sync initiates from.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::prelude::{EventId, Timestamp};

/// Largest NEG-MSG payload the sync client produces, in bytes before hex: 100,000 hex
/// characters plus the envelope stay under strfry's (and our relay's) 128 KiB inbound
/// websocket messages.
pub const FRAME_LIMIT: u64 = 50_000;
/// Largest NEG-MSG payload our relay answers with: strfry's (its `RelayNegentropy` answers with
/// 500,000-byte frames), so a reconciliation with us takes no more round trips than with it.
/// Clients read such a message (~1 MB of hex): strfry's, and ours (`relay_client`'s 1 MiB).
pub const RELAY_FRAME_LIMIT: u64 = 500_000;

/// The sync client's side of a reconciliation over `items` (created_at, id), [`FRAME_LIMIT`].
pub fn session(
    items: &[(Timestamp, EventId)],
) -> Result<Negentropy<'static, NegentropyStorageVector>, negentropy::Error> {
    session_with(items, FRAME_LIMIT)
}

/// A reconciliation over `items` whose messages stay under `frame_limit` bytes.
pub fn session_with(
    items: &[(Timestamp, EventId)],
    frame_limit: u64,
) -> Result<Negentropy<'static, NegentropyStorageVector>, negentropy::Error> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (at, id) in items {
        storage.insert(at.as_secs(), Id::from_byte_array(id.to_bytes()))?;
    }
    storage.seal()?;
    Negentropy::owned(storage, frame_limit)
}

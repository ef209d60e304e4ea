//! NIP-77 (negentropy) as both sides use it: one frame limit, and the sealed item set that the
//! relay answers from and the sync initiates from.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::prelude::{EventId, Timestamp};

/// Largest NEG-MSG payload produced, in bytes before hex: 100,000 hex characters plus the
/// envelope stay under strfry's (and our relay's) 128 KiB websocket messages.
pub const FRAME_LIMIT: u64 = 50_000;

/// A reconciliation over `items` (created_at, id), with [`FRAME_LIMIT`].
pub fn session(
    items: &[(Timestamp, EventId)],
) -> Result<Negentropy<'static, NegentropyStorageVector>, negentropy::Error> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (at, id) in items {
        storage.insert(at.as_secs(), Id::from_byte_array(id.to_bytes()))?;
    }
    storage.seal()?;
    Negentropy::owned(storage, FRAME_LIMIT)
}

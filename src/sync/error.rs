//! Why one peer's sync failed, and how a NIP-77 attempt ended. The text of a [`SyncError`] is
//! the peer's `error` in the history and the report.

use super::local::LocalError;
use super::relay_client::ClientError;

/// A failure that ends a peer's part of the run: its connection, or the local side.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Peer(#[from] ClientError),
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// How a NIP-77 attempt ended, when it did not reconcile.
#[derive(Debug)]
pub enum NegOutcome {
    /// The peer does not speak NIP-77 (its reason): fall back to REQ paging.
    Unsupported(String),
    Failed(SyncError),
}

impl From<SyncError> for NegOutcome {
    fn from(e: SyncError) -> Self {
        NegOutcome::Failed(e)
    }
}

impl From<LocalError> for NegOutcome {
    fn from(e: LocalError) -> Self {
        NegOutcome::Failed(e.into())
    }
}

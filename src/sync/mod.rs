//! The constellation sync (backfill): discover peers, expand authors to friends of friends (N²),
//! reconcile every peer (NIP-77 both ways, else complete REQ paging), filter, store, count.

mod accounting;
pub mod authors;
pub mod backfill;
pub mod discovery;
mod engine;
mod error;
pub mod history;
pub mod kinds;
pub mod local;
mod options;
pub mod profiles;
pub mod refusal;
pub mod relay_client;
mod rounds;
mod session;
pub mod stats;

pub use engine::{Engine, RunOutcome, sync_filters, sync_kinds};
pub use error::SyncError;
pub use options::SyncOptions;

//! Why an event store operation failed: its own module, so that the writer thread and the
//! store's handle both reach it without importing each other.

use super::schema::SchemaError;

/// Errors of the event store, with their source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("event store query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("event store write failed: {0}")]
    Write(String),
    #[error("the event store is closed")]
    Closed,
    #[error("cannot write the export: {0}")]
    Output(#[source] std::io::Error),
    #[error("a stored event cannot be read back: {0}")]
    Corrupt(String),
}

//! The embedded Nostr relay (NIP-01/09/11/77) over [`crate::store`]. (Being built: issue 4.)

pub mod cli;

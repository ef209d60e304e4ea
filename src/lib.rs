//! constellation: one binary for an Astroport / UPlanet station.
//!
//! Module map (imports point down this list, never up):
//! - [`cli`]: clap definitions and dispatch to the modules below; no logic.
//! - [`logging`]: tracing subscriber set-up shared by every subcommand.
//! - [`config`]: `config.toml`, the home folder and environment overrides.
//! - [`identity`]: the node key (generated or imported from Kubo) and the swarm key.
//! - [`store`]: the SQLite event store (one writer task) used by the embedded relay and the sync.
//! - [`relay`]: the embedded Nostr relay (NIP-01/09/11/77) over [`store`].

pub mod cli;
pub mod config;
pub mod identity;
pub mod logging;
pub mod relay;
pub mod store;

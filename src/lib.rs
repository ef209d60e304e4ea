//! constellation: one binary for an Astroport / UPlanet station.
//!
//! Module map (imports point down this list, never up):
//! - [`cli`]: clap definitions and dispatch to the modules below; no logic.
//! - [`trigger`]: the hourly job: checks, lock, backfill, report, mail; the daemon's schedule.
//! - [`report`]: the sync report (HTML with SVG charts, text) from the history, and its mail.
//! - [`runlog`]: the operators' log files, rotated by size.
//! - [`backfill`]: the `backfill` command: flags, run lock, and recording a run.
//! - [`client`]: the CLI side of daemon commands (`init`, `id`, `swarm`, `p2p`) and their output.
//! - [`demo`]: `constellation demo`, the seed's picture with real daemons on loopback.
//! - [`daemon`]: wires identity, node, tunnels, relay and the control API; owns shutdown.
//! - [`control`]: the local JSON API over a Unix socket, shared by CLI and daemon.
//! - [`logging`]: tracing subscriber set-up shared by every subcommand.
//! - [`config`]: `config.toml`, the home folder and environment overrides.
//! - [`identity`]: the node key (generated or imported from Kubo) and the swarm key.
//! - [`node`]: the libp2p swarm (one owning task) and its cloneable handle.
//! - [`tunnel`]: Kubo-style `/x/` listeners and forwards, their streams and limits.
//! - [`store`]: the SQLite event store (one writer thread, one checker thread per core) used by
//!   the embedded relay and the sync.
//! - [`sync`]: the constellation backfill: discovery, N², NIP-77 / REQ paging, import, stats.
//! - [`relay`]: the embedded Nostr relay (NIP-01/09/11/45/77) over [`store`], and its JSON-lines
//!   import/export (the format of `strfry import`/`export`).
//! - [`status`]: the loopback status page and `/api/status`, fed by the daemon.
//! - [`dragon`]: publish the station's services as `/x/` tunnels, client scripts, connect.

pub mod backfill;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod dragon;
pub mod identity;
pub mod logging;
pub mod node;
pub mod relay;
pub mod report;
pub mod runlog;
pub mod status;
pub mod store;
pub mod sync;
pub mod trigger;
pub mod tunnel;

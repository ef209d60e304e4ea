//! constellation: one binary for an Astroport / UPlanet station.
//!
//! Module map (imports point down this list, never up):
//! - [`cli`]: clap definitions and dispatch, the one context (home, config, runtime) it passes
//!   down; one file per command family and its output.
//! - [`demo`]: `constellation demo`, the seed's picture with real daemons on loopback.
//! - [`daemon`]: wires identity, node, tunnels, relay, status and the control API; owns shutdown.
//! - [`live`]: live links to every station (subscription with the sync's filter, pushes to
//!   plain relays), their bounded queues, backoff and figures; the backfill repairs the rest.
//! - [`swarm_map`]: the hourly map cycle of `_12345.sh` without Kubo (probe, mirror into
//!   `~/.zen/tmp/swarm/`, `g1swarm` hop, cleanup) and the IPNS publication of our own folder.
//! - [`kubo_api`]: the Kubo RPC API (`/api/v0/…` on 127.0.0.1:5001) over the control operations
//!   and the node, so a station's `ipfs` commands keep working; `<repo>/api`.
//! - [`migrate`]: `constellation migrate`, taking over from Kubo on a station (checks, Kubo
//!   stopped and masked, its repo linked, config.toml, our unit).
//! - [`install`]: the systemd units and the cron line that keep a station running.
//! - [`trigger`]: the hourly job: checks, locks (ours and the original sync's), backfill, report,
//!   mail, the Nostr note; the backfill flags.
//! - [`status`]: the loopback status page and `/api/status`, and the figures it shows.
//! - [`report`]: the sync report (HTML with SVG charts, text) from the history, and its mail.
//! - [`runlog`]: the operators' log files, rotated by size.
//! - [`control`]: the local JSON API over a Unix socket, shared by CLI and daemon.
//! - [`dragon`]: publish the station's services as `/x/` tunnels, client scripts, connect; the
//!   SSH trust (the authorized_keys block, x/y/z_ssh.pub).
//! - [`relay`]: the embedded Nostr relay (NIP-01/09/11/45/77) over [`store`], and its JSON-lines
//!   import/export (the format of `strfry import`/`export`).
//! - [`sync`]: the constellation backfill: one run (options, engine, N² rounds, profiles,
//!   accounting), discovery, NIP-77 / REQ paging through the relay client, the local side,
//!   refusals, stats, history.
//! - [`tunnel`]: Kubo-style `/x/` listeners and forwards, their streams and limits.
//! - [`store`]: the SQLite event store (one writer thread, one checker thread per core) used by
//!   the embedded relay and the sync.
//! - [`node`]: the libp2p swarm (one owning task), its cloneable handle, its start-up options;
//!   the Kad DHT and its IPNS records, bitswap, the first peers (config, Kubo repo, Astroport
//!   lists, /dnsaddr), the keeper.
//! - [`ipfs`]: blocks and their bounded store, UnixFS build (Kubo's CIDs) and read, IPNS records,
//!   the keystore (Kubo's format).
//! - [`identity`]: the node key (generated or imported from Kubo) and the swarm key.
//! - [`nip77`]: NIP-77 as the relay and the sync both speak it: one frame limit, the item set.
//! - [`signal`]: SIGINT/SIGTERM, watched before the ready line of the long-running commands.
//! - [`logging`]: tracing subscriber set-up shared by every subcommand.
//! - [`atomic_file`]: a leaf: temp file, fsync, rename; every state file is written through it.
//! - [`config`]: a leaf: `config.toml`, one plain struct per section, the home folder.

pub mod atomic_file;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod dragon;
pub mod identity;
pub mod install;
pub mod ipfs;
pub mod kubo_api;
pub mod live;
pub mod logging;
pub mod migrate;
pub mod nip77;
pub mod node;
pub mod relay;
pub mod report;
pub mod runlog;
pub mod signal;
pub mod status;
pub mod store;
pub mod swarm_map;
pub mod sync;
pub mod trigger;
pub mod tunnel;

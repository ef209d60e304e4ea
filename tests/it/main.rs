//! Integration tests: real daemons as processes on loopback, real peers (Kubo, relays, sshd).
//! One test binary keeps link time down; each area is a module.

mod bitswap;
mod common;
mod crash;
mod demo;
mod dht;
mod dht_hostile;
mod dragon;
mod dropin;
mod faults;
mod hostile;
mod ipfs;
mod keeper;
mod kubo;
mod kubo_api;
mod kubo_api_content;
mod kubo_api_ipfs;
mod kubo_api_providers;
mod live;
mod migrate;
mod nat;
mod relay;
mod report;
mod security;
mod ssh_trust;
mod strfry;
mod swarm_map;
mod swarm_map_hostile;
mod sync;
mod tunnel;

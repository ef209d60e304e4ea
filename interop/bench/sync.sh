#!/usr/bin/env bash
# Sync benchmark (issue 5): a loopback constellation of our relays, NIP-77 vs REQ, and scaling.
#   interop/bench/sync.sh [--peers 5] [--per-peer 20000] [--scaling 10,20,40]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin constellation --example sync_bench
exec target/release/examples/sync_bench --bin target/release/constellation "$@"

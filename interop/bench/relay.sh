#!/usr/bin/env bash
# Relay benchmark (issue 4): our embedded relay vs nostr-sdk's LocalRelay, same client, one run.
# Builds the release binary and the bench example, then prints a markdown table.
#   interop/bench/relay.sh [--events 100000]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin constellation --example relay_bench
exec target/release/examples/relay_bench --bin target/release/constellation \
  --python "${CONSTELLATION_PYTHON:-.venv/bin/python}" "$@"

#!/usr/bin/env bash
# Relay benchmark (issues 4, 21): our embedded relay vs strfry (and nostr-sdk LocalRelay with
# --localrelay), same client, one run.
# Builds the release binary and the bench example, then prints a markdown table.
#   interop/bench/relay.sh [--events 100000]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin constellation --example relay_bench
exec target/release/examples/relay_bench --bin target/release/constellation \
  --strfry "${CONSTELLATION_STRFRY:-../shared/peers/strfry/strfry}" \
  --python "${CONSTELLATION_PYTHON:-.venv/bin/python}" "$@"

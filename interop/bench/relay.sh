#!/usr/bin/env bash
# Relay benchmark (issues 4, 21): our embedded relay vs strfry (and nostr-sdk LocalRelay with
# --localrelay), same client, one run.
# Builds the release binary and the bench example, then prints two markdown tables (queries,
# then stalled readers). Not run in CI; each size is one command:
#   interop/bench/relay.sh --events 100000          # ~3 min on the 2-core VM (built)
#   interop/bench/relay.sh --events 1000000         # 1M: ~20 min, ~3 GB of disk in /tmp
# Options: --baseline PATH (another build of ours as a third column), --stalled N (default 16,
# 0 skips), --localrelay (nostr-sdk's LocalRelay as a column).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin constellation --example relay_bench
exec target/release/examples/relay_bench --bin target/release/constellation \
  --strfry "${CONSTELLATION_STRFRY:-../shared/peers/strfry/strfry}" \
  --python "${CONSTELLATION_PYTHON:-.venv/bin/python}" "$@"

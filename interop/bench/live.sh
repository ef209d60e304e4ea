#!/usr/bin/env bash
# Live propagation benchmark (issue 20): 10 daemons on loopback, 1,000 events at random stations,
# latency to the last station (median, p99, max) against the hourly-only figure.
#   interop/bench/live.sh [--stations 10] [--events 1000] [--rate 100]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin constellation --example live_bench
exec target/release/examples/live_bench --bin target/release/constellation "$@"

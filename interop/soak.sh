#!/usr/bin/env bash
# Soak (issue 19): three daemons on loopback, 20 tunnels, 5 relay clients, a sync a minute.
#   interop/soak.sh [--minutes 10]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin constellation --example soak
exec target/release/examples/soak --bin target/release/constellation "$@"

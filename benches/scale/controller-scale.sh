#!/usr/bin/env bash
# The controller at scale, through its API: 1,000 fake agents (one process) and the release
# controller, on the memory store (the baseline) and on redb. Prints the time to register the
# servers, a health round's spread, creates per second with the p50/p99 of one create, the
# controller's RSS, and the time of the first and the last page of accounts.
#
#   benches/scale/controller-scale.sh [SERVERS] [ACCOUNTS] [CLIENTS]   (defaults 1000 100000 8)
set -euo pipefail
cd "$(dirname "$0")/../.."
servers=${1:-1000}
accounts=${2:-100000}
clients=${3:-8}
cargo build --release --locked -p enconf-bin --bin enconf-controller -p enconf-benches --bin controller-scale
# A listener per fake agent, and their connections.
ulimit -n "$(ulimit -Hn)"
exec target/release/controller-scale --controller target/release/enconf-controller \
  --servers "$servers" --accounts "$accounts" --clients "$clients" --stores memory,redb

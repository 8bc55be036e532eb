#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs the whole suite.
# This is the README's test command, and exactly what .ci/run calls.
#
# Besides our Python dependencies it installs the real Faktory server (built from source with
# Go, cached outside the repo) plus redis-server, which Faktory starts itself; the protocol
# conformance tests run every case against it too. It exports FAKTORY_BIN for the tests.
# Everything is skipped when already installed. Under CI=true any install failure fails this
# script; elsewhere it prints a warning and the real-Faktory tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."

FAKTORY_VERSION="${FAKTORY_VERSION:-1.9.4}"
FAKTORY_CACHE="${FAKTORY_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faktory_py}"

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

in_ci() { [ "${CI:-}" = "true" ]; }

# Runs "$@"; on failure: exit under CI, otherwise warn and return 1.
try_install() {
    local what=$1
    shift
    if "$@"; then
        return 0
    fi
    if in_ci; then
        echo "tests/run.sh: installing $what failed" >&2
        exit 1
    fi
    echo "tests/run.sh: WARNING: installing $what failed; tests against the real Faktory will be skipped" >&2
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "tests/run.sh: need root for: $*" >&2
        return 1
    fi
}

install_redis() {
    command -v redis-server >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || { echo "tests/run.sh: no apt-get to install redis-server" >&2; return 1; }
    as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null &&
        command -v redis-server >/dev/null 2>&1
}

faktory_ok() {  # is $1 a working faktory binary of $FAKTORY_VERSION?
    [ -x "$1" ] && "$1" -v 2>&1 | grep -qx "Faktory $FAKTORY_VERSION"
}

install_faktory() {
    local bin=$1 go tmp dir
    faktory_ok "$bin" && return 0
    go=$(command -v go || echo /usr/local/go/bin/go)
    [ -x "$go" ] || { echo "tests/run.sh: Go is not installed" >&2; return 1; }
    mkdir -p "$(dirname "$bin")"
    tmp=$(mktemp -d)
    # The usual way. `go install pkg@version` also asks the module proxy for the module's version
    # list (deprecation check), which some proxies/mirrors refuse; then build the same module at
    # the same version from its own go.mod/go.sum instead.
    echo "tests/run.sh: building Faktory $FAKTORY_VERSION (one-off, takes a few minutes)" >&2
    if GOBIN="$tmp" "$go" install "github.com/contribsys/faktory/cmd/faktory@v$FAKTORY_VERSION" 2>"$tmp/err"; then
        mv "$tmp/faktory" "$bin.tmp.$$"
    else
        sed 's/^/  go install: /' "$tmp/err" >&2
        dir=$(cd "$tmp" && "$go" mod download -json "github.com/contribsys/faktory@v$FAKTORY_VERSION" |
            sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') &&
            [ -n "$dir" ] &&
            (cd "$dir" && GOFLAGS=-mod=readonly "$go" build -trimpath -o "$bin.tmp.$$" ./cmd/faktory) ||
            { rm -rf "$tmp" "$bin.tmp.$$"; return 1; }
    fi
    rm -rf "$tmp"
    mv -f "$bin.tmp.$$" "$bin"
    faktory_ok "$bin"
}

if [ -n "${FAKTORY_BIN:-}" ] && faktory_ok "$FAKTORY_BIN"; then
    : # a binary supplied by the caller
else
    FAKTORY_BIN="$FAKTORY_CACHE/bin/faktory-$FAKTORY_VERSION"
    if ! { try_install redis-server install_redis && try_install "Faktory $FAKTORY_VERSION" install_faktory "$FAKTORY_BIN"; }; then
        FAKTORY_BIN=""
    fi
fi
if [ -n "$FAKTORY_BIN" ] && ! command -v redis-server >/dev/null 2>&1; then
    try_install redis-server install_redis || FAKTORY_BIN=""
fi
if [ -n "$FAKTORY_BIN" ]; then
    export FAKTORY_BIN FAKTORY_VERSION
else
    unset FAKTORY_BIN
fi

exec python3 -m pytest "$@"

#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, checks the import rules, then
# runs the whole suite in 3 processes (and, without arguments, the real-client tests again in
# the other process mode, at the end).
# This is the README's test command, and exactly what .ci/run calls.
#
# Besides our Python dependencies it installs the real Faktory server (built from source with
# Go, cached outside the repo) plus redis-server, which Faktory starts itself; the protocol
# conformance tests run every case against it too. The Redis-backend tests start redis-server
# too, as masters, replicas and (`redis-server --sentinel`: no redis-sentinel package needed)
# a Sentinel. It exports FAKTORY_BIN for the tests.
# Debian's chromium is installed for the web UI's browser tests (Playwright drives it; no
# `playwright install`), and Debian's prometheus for the /metrics tests (a real Prometheus
# scrapes a server; promtool checks a scrape). Everything is skipped when already installed. Under CI=true any
# install failure fails this script; elsewhere it prints a warning and the tests that need
# the missing tool skip.
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
    echo "tests/run.sh: WARNING: installing $what failed; the tests that need it will be skipped" >&2
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

missing_debian_packages() {  # redis-server (the real Faktory starts it), chromium (browser tests),
    # prometheus (its server scrapes /metrics in a test; promtool checks a scrape)
    command -v redis-server >/dev/null 2>&1 || echo redis-server
    [ -x /usr/bin/chromium ] || echo chromium
    { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || echo prometheus
}

install_debian_packages() {  # one apt-get update, one apt-get install, only for what is missing
    local missing
    missing=$(missing_debian_packages)
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || { echo "tests/run.sh: no apt-get to install" $missing >&2; return 1; }
    # shellcheck disable=SC2086  # one word per package
    as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null &&
        [ -z "$(missing_debian_packages)" ]
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

try_install "redis-server, chromium and prometheus" install_debian_packages || true

if [ -n "${FAKTORY_BIN:-}" ] && faktory_ok "$FAKTORY_BIN"; then
    : # a binary supplied by the caller
else
    FAKTORY_BIN="$FAKTORY_CACHE/bin/faktory-$FAKTORY_VERSION"
    try_install "Faktory $FAKTORY_VERSION" install_faktory "$FAKTORY_BIN" || FAKTORY_BIN=""
fi
if [ -n "$FAKTORY_BIN" ] && ! command -v redis-server >/dev/null 2>&1; then
    FAKTORY_BIN=""  # the warning about redis-server was printed above
fi
if [ -n "$FAKTORY_BIN" ]; then
    export FAKTORY_BIN FAKTORY_VERSION
else
    unset FAKTORY_BIN
fi

# The import rules of the layers (pyproject.toml [tool.importlinter]): a violation fails the run.
lint-imports --no-cache
# The suite mostly waits (for clients, servers and their timers: run in one process it kept
# about a fifth of 2 cores busy, for 17 minutes), so pytest-xdist runs it in 3 processes, one
# test file in each at a time (`--dist loadfile`: a module's server fixture starts once);
# `-n 0` among the arguments runs it in this process.
PARALLEL=(-n 3 --dist loadfile)
python3 -m pytest "${PARALLEL[@]}" "$@"

# A whole-suite run (no arguments) then runs every real-client test (tests/interop: the client
# harnesses, the Python, Ruby, cron, throttle and kill -9 tests, the protocol cases against
# faktory_py on its journal) once more with the clients served by two connection processes
# (`--io-processes`, README "Connection processes"): every guarantee holds in both modes.
# About 2.5 minutes on a 2-core machine.
if [ $# -eq 0 ]; then
    FAKTORY_PY_IO_PROCESSES=2 python3 -m pytest "${PARALLEL[@]}" tests/interop \
        -k "not faktory-$FAKTORY_VERSION and not on_redis and not through_a_standby"
fi

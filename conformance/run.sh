#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against
# `netstat-mcp serve --http` on a free loopback port.
#
#   conformance/run.sh                 # all server scenarios; fails on any unexpected result
#   conformance/run.sh --scenario tools-list
#
# Scenarios in conformance/baseline.txt need the reference server's fixture tools, prompts or
# resources (or a capability netstat-mcp does not offer) and are expected to fail; the suite
# exits non-zero if any other scenario fails, or if a baseline scenario starts passing.
#
# Needs Node >= 22. If `node` is older or missing, `npm install node@22` puts one in
# target/conformance/node (npm must exist). Environment:
#   NETSTAT_MCP_BIN       the binary to test (default: build and use target/debug/netstat-mcp)
#   CONFORMANCE_VERSION   the suite's npm version (default below)
set -euo pipefail
cd "$(dirname "$0")/.."

version="${CONFORMANCE_VERSION:-0.1.16}"
work="target/conformance"
mkdir -p "$work"

# --- Node >= 22 -------------------------------------------------------------------------
node_major() { node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
if [ "$(node_major || echo 0)" -lt 22 ] 2>/dev/null || ! command -v node >/dev/null; then
    if [ ! -x "$work/node/node_modules/.bin/node" ]; then
        echo "run.sh: node $(node --version 2>/dev/null || echo missing) is older than 22; installing node@22 into $work/node" >&2
        npm install --silent --no-audit --no-fund --prefix "$work/node" node@22 >&2
    fi
    export PATH="$PWD/$work/node/node_modules/.bin:$PATH"
fi
if [ "$(node_major || echo 0)" -lt 22 ]; then
    echo "run.sh: still no node >= 22 on PATH (got $(node --version 2>/dev/null || echo none))" >&2
    exit 2
fi

# --- the server -------------------------------------------------------------------------
bin="${NETSTAT_MCP_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --quiet
    bin="target/debug/netstat-mcp"
fi
log="$work/server.log"
NO_COLOR=1 RUST_LOG="${RUST_LOG:-netstat_mcp=info}" \
    "$bin" serve --http 127.0.0.1:0 2>"$log" &
server_pid=$!
stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
    fi
}
trap stop_server EXIT

# The server logs the address it bound (port 0 → a free port); wait for it, bounded.
url=""
for _ in $(seq 1 100); do
    addr=$(grep -oE 'serving MCP over streamable HTTP addr=127\.0\.0\.1:[0-9]+' "$log" 2>/dev/null \
        | grep -oE '127\.0\.0\.1:[0-9]+' | head -n1 || true)
    if [ -n "$addr" ]; then
        url="http://$addr/mcp"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: the server exited before it was ready:" >&2
        cat "$log" >&2
        exit 2
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "run.sh: the server did not report its address within 10 s; its log:" >&2
    cat "$log" >&2
    exit 2
fi
echo "run.sh: testing $url with @modelcontextprotocol/conformance@$version on node $(node --version)" >&2

# --- the suite --------------------------------------------------------------------------
expected="$work/expected-failures.yml"
{
    echo "server:"
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' conformance/baseline.txt | grep -v '^$' | sed 's/^/  - /'
} >"$expected"

status=0
npx --yes "@modelcontextprotocol/conformance@$version" server \
    --url "$url" --expected-failures "$expected" --output-dir "$work/results" "$@" || status=$?

# --- the server stops cleanly on SIGTERM ------------------------------------------------
trap - EXIT
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
if [ "$server_status" -ne 0 ]; then
    echo "run.sh: the server exited with status $server_status after SIGTERM; its log: $log" >&2
    status=1
fi
exit "$status"

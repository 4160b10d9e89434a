#!/usr/bin/env bash
# The cost of a metrics scrape against one listing with owners, side by side in one hyperfine
# run, with N loopback connections held by examples/loadgen. Writes the "Metrics" section of
# BENCHMARKS.md.
#
#   bench/metrics.sh            # N = 50000
#   bench/metrics.sh 10000
#
# Commands timed (each a whole process, so each pays the same start-up):
#   - `netstat-mcp connections --limit 0 --json`: every socket with owners (the listing);
#   - `netstat-mcp metrics`: one exposition from the same snapshot (the gauges);
#   - `curl` of `/metrics` from `serve --http --metrics --record`: the gauges plus the
#     counters, whose snapshot carries tcp_info.
# Needs root (or sudo) to install hyperfine, curl and time if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-50000}
BIN=$ROOT/target/release/netstat-mcp
LOADGEN=$ROOT/target/release/examples/loadgen
OUT=${BENCH_OUT:-$ROOT/target/bench}/metrics
log() { printf '[metrics %s] %s\n' "$(date +%T)" "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building (release)"
cargo build --release --bins --examples >&2
mkdir -p "$OUT"

LG=; SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    [ -n "$SERVER" ] && wait "$SERVER" 2>/dev/null || true
    [ -n "$LG" ] && kill "$LG" 2>/dev/null || true
    [ -n "$LG" ] && wait "$LG" 2>/dev/null || true
}
trap cleanup EXIT

"$LOADGEN" --connections "$N" --hold-secs 1800 --setup-secs 180 --no-stdin > "$OUT/loadgen.out" &
LG=$!
for _ in $(seq 1 1800); do
    grep -q '^READY ' "$OUT/loadgen.out" && break
    kill -0 "$LG" 2>/dev/null || { log "loadgen exited before READY"; exit 1; }
    sleep 0.1
done
grep -q '^READY ' "$OUT/loadgen.out" || { log "loadgen not READY"; exit 1; }
log "$(cat "$OUT/loadgen.out")"

export NETSTAT_MCP_BENCH_TOKEN=metrics-bench-token-0123456789
"$BIN" serve --http 127.0.0.1:0 --token-env NETSTAT_MCP_BENCH_TOKEN --metrics --record \
    2> "$OUT/server.err" &
SERVER=$!
ADDR=
for _ in $(seq 1 600); do
    ADDR=$(grep -o 'serving MCP over streamable HTTP addr=[^ ]*' "$OUT/server.err" | cut -d= -f2 || true)
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { log "the server did not start"; cat "$OUT/server.err" >&2; exit 1; }
# The server's memory before any scrape (its recorder running), to tell a scrape's own share.
sleep 2
SERVER_BEFORE=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
SCRAPE="curl -sf -o /dev/null -H 'Authorization: Bearer $NETSTAT_MCP_BENCH_TOKEN' http://$ADDR/metrics"

/usr/bin/time -f '%M' -o "$OUT/mem.list" "$BIN" connections --limit 0 --json > /dev/null
/usr/bin/time -f '%M' -o "$OUT/mem.metrics" "$BIN" metrics > /dev/null
hyperfine --style basic --warmup 1 --runs 7 --export-json "$OUT/hyperfine.json" \
    --command-name listing "$BIN connections --limit 0 --json" \
    --command-name metrics "$BIN metrics" \
    --command-name scrape-record "$SCRAPE" > "$OUT/hyperfine.txt"
SERVER_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")

SECTION=$(python3 - "$OUT" "$N" "$SERVER_RSS" "$SERVER_BEFORE" <<'PY'
import json, sys, time, os
out, n, server_rss, server_before = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {r["command"]: r for r in json.load(open(f"{out}/hyperfine.json"))["results"]}
def med(name): return runs[name]["median"]
listing = med("listing")
mem = {k: int(open(f"{out}/mem.{k}").read().split()[-1]) for k in ("list", "metrics")}
rows = [
    ("`connections --limit 0 --json` (every socket with owners)", listing, None),
    ("`metrics` (the gauges, one snapshot with owners)", med("metrics"), 1.2),
    ("`/metrics` of `serve --metrics --record` (gauges and counters, snapshot with tcp_info)", med("scrape-record"), 1.2),
]
lines = [
    "<!-- metrics:begin -->",
    "## Metrics (`/metrics`, `netstat-mcp metrics`)",
    "",
    f"`bench/metrics.sh {n}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, kernel {os.uname().release}, "
    f"{os.cpu_count()} cores): {n:,} loopback connections held by examples/loadgen, the three commands "
    "timed in one hyperfine run (7 runs each, medians); the scrape is a `curl` against a running server.",
    "",
    "| command | median | vs the listing | limit | met |",
    "|---|---:|---:|---:|---|",
]
for label, t, limit in rows:
    ratio = t / listing
    met = "" if limit is None else ("✓" if ratio <= limit else "✗")
    lim = "" if limit is None else f"≤ {limit}×"
    lines.append(f"| {label} | {t*1000:.0f} ms | {ratio:.2f}× | {lim} | {met} |")
lines += [
    "",
    f"Peak memory: `connections --json` {mem['list']/1024:.1f} MiB, `metrics` {mem['metrics']/1024:.1f} MiB; "
    f"the `--record` server peaked at {int(server_before)/1024:.1f} MiB before any scrape (its recorder: ring, "
    f"table of live sockets, starting counters) and at {int(server_rss)/1024:.1f} MiB after them, so a scrape "
    f"adds at most {(int(server_rss)-int(server_before))/1024:.1f} MiB.",
    "<!-- metrics:end -->",
]
print("\n".join(lines))
PY
)
python3 - "$ROOT/BENCHMARKS.md" "$SECTION" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
pattern = re.compile(r"<!-- metrics:begin -->.*?<!-- metrics:end -->", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _m: section, text)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w", encoding="utf-8").write(text)
PY
log "wrote the Metrics section of BENCHMARKS.md"
cat "$OUT/hyperfine.txt" >&2

#!/usr/bin/env bash
# CPU cost of the recorder (`netstat-mcp serve --record`): idle, and while connections open
# and close at a steady rate. Writes the "Recorder" section of BENCHMARKS.md.
#
#   bench/recorder.sh                # 20 s idle, 20 s at 1000 connections/s closed at once,
#                                    # 20 s at 1000/s each held 300 ms (owner lookups)
#   SECS=60 RATE=2000 HOLD_MS=100 bench/recorder.sh
#
# The recorder and the churn run in a network namespace of their own (destroy notifications
# and dumps are per namespace), so other work on the machine does not count. CPU is the
# recorder process's utime+stime from /proc/<pid>/stat over the window, as a share of one core.
# Needs root (ip netns), python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECS:-20}
RATE=${RATE:-1000}
BIN=$ROOT/target/release/netstat-mcp
OUT=${BENCH_OUT:-$ROOT/target/bench}
NS=nm-bench-rec-$$
log() { printf '[recorder %s] %s\n' "$(date +%T)" "$*" >&2; }

log "building (release)"
cargo build --release --bins >&2
mkdir -p "$OUT"

ip netns add "$NS"
FIFO=$(mktemp -u)
mkfifo "$FIFO"
SERVER=
cleanup() {
    exec 3>&- 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    [ -n "$SERVER" ] && wait "$SERVER" 2>/dev/null || true
    rm -f "$FIFO"
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns exec "$NS" ip link set lo up

# The server reads MCP from the fifo; holding its write end open keeps it serving.
ip netns exec "$NS" "$BIN" serve --record <"$FIFO" >/dev/null 2>"$OUT/recorder.log" &
SERVER=$!
exec 3>"$FIFO"
for _ in $(seq 100); do
    grep -qs '^nm-watch$' /proc/"$SERVER"/task/*/comm && break
    sleep 0.1
done
grep -qs '^nm-watch$' /proc/"$SERVER"/task/*/comm || { log "recorder did not start"; cat "$OUT/recorder.log" >&2; exit 1; }

TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' /proc/"$SERVER"/stat; }
cpu() { # ticks-before ticks-after start-time end-time -> percent of one core
    awk -v a="$1" -v b="$2" -v s0="$3" -v s1="$4" -v t="$TCK" \
        'BEGIN { printf "%.2f", (b - a) * 100 / (t * (s1 - s0)) }'
}

log "idle for $SECS s"
sleep 1
t0=$(ticks); s0=$(date +%s.%N)
sleep "$SECS"
t1=$(ticks); s1=$(date +%s.%N)
IDLE=$(cpu "$t0" "$t1" "$s0" "$s1")
log "idle: $IDLE% of one core"

log "churn at $RATE connections/s for $SECS s"
t0=$(ticks); s0=$(date +%s.%N)
CHURN=$(ip netns exec "$NS" python3 bench/churn.py --rate "$RATE" --secs "$SECS")
t1=$(ticks); s1=$(date +%s.%N)
LOADED=$(cpu "$t0" "$t1" "$s0" "$s1")
log "loaded: $LOADED% of one core ($CHURN)"

HOLD=${HOLD_MS:-300}
log "churn at $RATE connections/s, each held $HOLD ms, for $SECS s"
t0=$(ticks); s0=$(date +%s.%N)
CHURN_HELD=$(ip netns exec "$NS" python3 bench/churn.py --rate "$RATE" --secs "$SECS" --hold-ms "$HOLD")
t1=$(ticks); s1=$(date +%s.%N)
HELD=$(cpu "$t0" "$t1" "$s0" "$s1")
RSS=$(awk '/VmRSS/ {print $2}' /proc/"$SERVER"/status)
log "held: $HELD% of one core ($CHURN_HELD), RSS ${RSS} KiB"

verdict() { awk -v v="$1" -v l="$2" 'BEGIN { print (v < l) ? "✓" : "✗" }'; }
SECTION=$(cat <<MD
<!-- recorder:begin -->
## Recorder (\`serve --record\`)

\`bench/recorder.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) cores): the
recorder in a network namespace of its own with its default settings (capacity 100,000,
listings every 250 ms, destroy notifications on), CPU of its process over ${SECS} s as a share of
one core. Each connection is four events (open and close of both ends).

| load | CPU (one core) | target | met |
|---|---:|---:|---|
| idle | ${IDLE}% | < 5% | $(verdict "$IDLE" 5) |
| ${RATE} connections/s, closed at once ($(echo "$CHURN" | sed 's/ /, /g')) | ${LOADED}% | < 25% | $(verdict "$LOADED" 25) |
| ${RATE} connections/s, each held ${HOLD} ms, so listings see them and owners are looked up ($(echo "$CHURN_HELD" | sed 's/ /, /g')) | ${HELD}% | < 25% | $(verdict "$HELD" 25) |

Resident memory after both churns: ${RSS} KiB.
<!-- recorder:end -->
MD
)
python3 - "$ROOT/BENCHMARKS.md" "$SECTION" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
try:
    text = open(path, encoding="utf-8").read()
except FileNotFoundError:
    text = "# Benchmarks\n"
pattern = re.compile(r"<!-- recorder:begin -->.*?<!-- recorder:end -->", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _m: section, text)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w", encoding="utf-8").write(text)
PY
log "wrote the Recorder section of BENCHMARKS.md"

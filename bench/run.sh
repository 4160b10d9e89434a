#!/usr/bin/env bash
# netstat-mcp against ss, netstat and lsof, with N loopback TCP connections held open.
#
#   bench/run.sh                 # N = 1000 10000 50000 (about 15 minutes on 2 cores)
#   bench/run.sh 1000            # a quick run
#   BENCH_OUT=/tmp/b bench/run.sh 1000 10000
#   BASE_REV=main bench/run.sh   # also time an older build ("netstat-mcp-base") side by side
#   NETNS=0 bench/run.sh         # skip the every-namespace phase (default: 20 namespaces)
#
# For each N it starts examples/loadgen (2N ESTABLISHED sockets + listeners + 100 UDP sockets),
# waits for its READY line, then for each scenario:
#   - runs every command once and checks it returned the same sockets (count check);
#   - measures its peak memory with /usr/bin/time;
#   - times all the scenario's commands in one hyperfine run (--export-json).
# Then bench/report.py turns the results into BENCHMARKS.md (medians, ratios to ss).
# Needs root (or sudo) to install hyperfine/time/lsof/net-tools/iproute2 if missing, and to see
# the owners of every socket.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_OUT:-$ROOT/target/bench}
if [ $# -gt 0 ]; then NS=("$@"); else NS=(1000 10000 50000); fi
UDP=100
BIN=$ROOT/target/release/netstat-mcp
LOADGEN=$ROOT/target/release/examples/loadgen
NSBENCH=$ROOT/target/release/examples/nsbench
# The every-namespace phase: NETNS namespaces of our own, each with a loadgen of NETNS_CONN
# connections, beside a host loadgen of NETNS_HOST connections.
NETNS=${NETNS:-20}
NETNS_CONN=${NETNS_CONN:-500}
NETNS_HOST=${NETNS_HOST:-10000}
# An older build to time side by side (a git revision), e.g. the commit before a change.
BASE_REV=${BASE_REV:-}
BASE_BIN=""
ROUNDTRIP=$ROOT/target/release/examples/mcp_roundtrip
REPORT=$ROOT/bench/report.py

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -x /usr/bin/time ] || missing+=(time)
command -v lsof >/dev/null || missing+=(lsof)
command -v netstat >/dev/null || missing+=(net-tools)
command -v ss >/dev/null || missing+=(iproute2)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building (release)"
cargo build --release --examples --bins >&2
if [ -n "$BASE_REV" ]; then
    log "building $BASE_REV (release) as netstat-mcp-base"
    base_src=$ROOT/target/bench-base/src
    rm -rf "$base_src"; mkdir -p "$base_src"
    git -C "$ROOT" archive "$BASE_REV" | tar -x -C "$base_src"
    # Built like the main build (examples too), so both binaries get the same dependency
    # features and compare like for like.
    cargo build --release --examples --bins --manifest-path "$base_src/Cargo.toml" \
        --target-dir "$ROOT/target/bench-base/target" >&2
    BASE_BIN=$ROOT/target/bench-base/target/release/netstat-mcp
    BASE_DESC=$(git -C "$ROOT" describe --always "$BASE_REV")
fi

# What the netstat-mcp build offers (the CLI may be older or newer than this script).
HAVE_CLI=0; HAVE_NO_OWNERS=0
if "$BIN" connections --help 2>/dev/null | grep -q -- '--proto'; then HAVE_CLI=1; fi
if "$BIN" connections --help 2>/dev/null | grep -q -- '--no-owners'; then HAVE_NO_OWNERS=1; fi
HAVE_HEALTH=0
if "$BIN" health --help >/dev/null 2>&1; then HAVE_HEALTH=1; fi
[ $HAVE_CLI = 1 ] || log "netstat-mcp has no 'connections' subcommand yet: its rows are skipped"

rm -rf "$OUT"
mkdir -p "$OUT"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "kernel=$(uname -r)"
    echo "nproc=$(nproc)"
    echo "memory=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ss=$(ss -V 2>&1 | head -1)"
    echo "netstat=$(netstat -V 2>&1 | head -1)"
    echo "lsof=$(lsof -v 2>&1 | awk '/revision/ {print $NF; exit}')"
    echo "hyperfine=$(hyperfine --version)"
    echo "netstat_mcp=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "netstat_mcp_base=${BASE_DESC:-}"
    echo "netns=$NETNS"
    echo "netns_conn=$NETNS_CONN"
    echo "netns_host=$NETNS_HOST"
    echo "rustc=$(rustc -V)"
    echo "somaxconn=$(cat /proc/sys/net/core/somaxconn)"
    echo "port_range=$(tr '\t' ' ' < /proc/sys/net/ipv4/ip_local_port_range)"
    echo "nofile=$(ulimit -Hn)"
} > "$OUT/meta.env"

# --- load generator ----------------------------------------------------------------------
LG_PID=""
stop_loadgen() {
    if [ -n "$LG_PID" ]; then
        kill -TERM "$LG_PID" 2>/dev/null || true
        wait "$LG_PID" 2>/dev/null || true
        LG_PID=""
    fi
}
trap stop_loadgen EXIT INT TERM

start_loadgen() { # N dir -> sets PORT IDLE
    local n=$1 dir=$2
    "$LOADGEN" --connections "$n" --udp "$UDP" --hold-secs 1800 --setup-secs 180 --no-stdin \
        > "$dir/loadgen.out" &
    LG_PID=$!
    local i
    for i in $(seq 1 1800); do # up to 180 s, checking every 0.1 s
        if grep -q '^READY ' "$dir/loadgen.out"; then break; fi
        if ! kill -0 "$LG_PID" 2>/dev/null; then
            log "loadgen exited before READY"; LG_PID=""; exit 1
        fi
        sleep 0.1
    done
    grep -q '^READY ' "$dir/loadgen.out" || { log "loadgen not READY in 180 s"; exit 1; }
    PORT=$(grep -o ' port=[0-9]*' "$dir/loadgen.out" | cut -d= -f2)
    IDLE=$(grep -o ' idle_port=[0-9]*' "$dir/loadgen.out" | cut -d= -f2)
    ss -s > "$dir/ss-s.txt"
}

# --- one scenario ------------------------------------------------------------------------
# scenario DIR NAME N MODE PORT EXPECTED -- label kind command [label kind command ...]
# MODE: list (sockets with PORT at either end) or local (sockets whose local port is PORT).
# kind: how report.py counts the output (ss, netstat, lsof, json).
scenario() {
    local dir=$1 name=$2 n=$3 mode=$4 port=$5 expected=$6; shift 7
    local args=() label kind cmd warmup runs
    case $n in
        [0-9]|[0-9][0-9]|[0-9][0-9][0-9]|[0-9][0-9][0-9][0-9]) warmup=2; runs=10 ;;
        *) if [ "$n" -le 20000 ]; then warmup=1; runs=5; else warmup=0; runs=3; fi ;;
    esac
    log "N=$n $name"
    while [ $# -gt 0 ]; do
        label=$1 kind=$2 cmd=$3; shift 3
        # Count check (also warms the caches) and peak memory.
        bash -c "$cmd" > "$dir/$name.$label.out" 2>/dev/null || true
        python3 "$REPORT" count --kind "$kind" --mode "$mode" --port "$port" \
            "$dir/$name.$label.out" \
            | awk -v s="$name" -v l="$label" -v e="$expected" '{print s "\t" l "\t" $1 "\t" $2 "\t" e}' \
            >> "$dir/counts.tsv"
        /usr/bin/time -f '%M' -o "$dir/$name.$label.mem" bash -c "$cmd >/dev/null 2>&1" || true
        printf '%s\t%s\t%s\n' "$name" "$label" "$(tail -1 "$dir/$name.$label.mem")" >> "$dir/mem.tsv"
        printf '%s\t%s\n' "$label" "${cmd//$ROOT\//}" >> "$dir/$name.cmds"
        args+=(--command-name "$label" "$cmd")
    done
    # --shell=none: no shell start-up to subtract, so millisecond commands are timed exactly;
    # pipelines are spelled `bash -c "..."` and so pay one bash start (about 1 ms) themselves.
    # Failures are not fatal here: the count check above is what judges each tool's output.
    hyperfine --style basic --shell=none --warmup "$warmup" --runs "$runs" --ignore-failure \
        --export-json "$dir/$name.json" "${args[@]}" > "$dir/$name.hyperfine.txt"
}

mcp() { # DIR N LABEL TOOL ARGS
    local dir=$1 n=$2 label=$3 tool=$4 targs=$5 calls=50
    [ "$n" -gt 20000 ] && calls=20
    if "$ROUNDTRIP" --server "$BIN" --tool "$tool" --args "$targs" --calls "$calls" --warmup 3 \
        > "$dir/mcp.$label.json" 2> "$dir/mcp.$label.err"; then
        log "N=$n mcp $label: $(cat "$dir/mcp.$label.json")"
    else
        log "N=$n mcp $label failed: $(tail -1 "$dir/mcp.$label.err")"
        rm -f "$dir/mcp.$label.json"
    fi
}

for n in "${NS[@]}"; do
    dir=$OUT/$n
    mkdir -p "$dir"
    log "N=$n: starting loadgen"
    start_loadgen "$n" "$dir"
    log "N=$n: $(cat "$dir/loadgen.out")"
    : > "$dir/counts.tsv"; : > "$dir/mem.tsv"
    all=$((2 * n + 1)) # the loaded port's listener + both ends of each connection

    cmds=()
    [ $HAVE_CLI = 1 ] && cmds+=(netstat-mcp json "$BIN connections --proto tcp --limit 0 --json")
    [ -n "$BASE_BIN" ] && cmds+=(netstat-mcp-base json "$BASE_BIN connections --proto tcp --limit 0 --json")
    cmds+=(ss ss "ss -tanp" netstat netstat "netstat -tanp" lsof lsof "lsof -nP -iTCP")
    scenario "$dir" list_owners "$n" list "$PORT" "$all" -- "${cmds[@]}"

    cmds=()
    [ $HAVE_NO_OWNERS = 1 ] && cmds+=(netstat-mcp json "$BIN connections --proto tcp --limit 0 --json --no-owners")
    [ -n "$BASE_BIN" ] && cmds+=(netstat-mcp-base json "$BASE_BIN connections --proto tcp --limit 0 --json --no-owners")
    cmds+=(ss ss "ss -tan" netstat netstat "netstat -tan")
    scenario "$dir" list_no_owners "$n" list "$PORT" "$all" -- "${cmds[@]}"

    for which in idle loaded; do
        if [ $which = idle ]; then p=$IDLE; exp=1; else p=$PORT; exp=$((n + 1)); fi
        cmds=()
        [ $HAVE_CLI = 1 ] && cmds+=(netstat-mcp json "$BIN port $p --proto tcp --json")
        [ -n "$BASE_BIN" ] && cmds+=(netstat-mcp-base json "$BASE_BIN port $p --proto tcp --json")
        cmds+=(ss ss "ss -tanp 'sport = :$p'"
               netstat netstat "bash -c \"netstat -tanp | awk '\\\$4 ~ /:$p\\\$/'\""
               lsof lsof "lsof -nP -iTCP:$p")
        scenario "$dir" "port_$which" "$n" local "$p" "$exp" -- "${cmds[@]}"
    done

    if [ $HAVE_HEALTH = 1 ]; then
        # Connection health over every connected socket, every row (so rows can be counted
        # against ss's), without and with owners.
        conn=$((2 * n))
        # As the tool answers (the default): the summary over every socket, the 20 worst rows;
        # counted by the answer's connection_count.
        scenario "$dir" health_default_no_owners "$n" list "$PORT" "$conn" -- \
            netstat-mcp health "$BIN health --json --no-owners" \
            ss ss "ss -tin state connected"
        scenario "$dir" health_default_owners "$n" list "$PORT" "$conn" -- \
            netstat-mcp health "$BIN health --json" \
            ss ss "ss -tinp state connected"
        scenario "$dir" health_no_owners "$n" list "$PORT" "$conn" -- \
            netstat-mcp json "$BIN health --limit 0 --json --no-owners" \
            ss ss "ss -tin state connected"
        scenario "$dir" health_owners "$n" list "$PORT" "$conn" -- \
            netstat-mcp json "$BIN health --limit 0 --json" \
            ss ss "ss -tinp state connected"
        # CPU (user + system) of a 5 s traffic window against a 5 s watch, at the same load.
        /usr/bin/time -f '%U %S' -o "$dir/cpu.traffic" "$BIN" top --duration 5 --json > /dev/null 2>&1 || true
        /usr/bin/time -f '%U %S' -o "$dir/cpu.watch" "$BIN" watch --duration 5 --json > /dev/null 2>&1 || true
        log "N=$n cpu: traffic $(tail -1 "$dir/cpu.traffic"), watch $(tail -1 "$dir/cpu.watch")"
    fi

    if [ $HAVE_CLI = 1 ]; then
        # Each tool with its default arguments, as an agent calls it.
        mcp "$dir" "$n" query query_network_connections '{}'
        mcp "$dir" "$n" port_idle check_port_occupation "{\"port\":$IDLE}"
        mcp "$dir" "$n" port_loaded check_port_occupation "{\"port\":$PORT}"
        mcp "$dir" "$n" netstat netstat '{}'
        mcp "$dir" "$n" list_hosts list_hosts '{}'
        [ $HAVE_HEALTH = 1 ] && mcp "$dir" "$n" health connection_health '{}'
    fi
    stop_loadgen
done

# --- every network namespace ------------------------------------------------------------
# NETNS namespaces of our own (named nmb<pid>x<i>, deleted at the end), each with lo up and a
# loadgen on the same loaded port as the host's, so one port counts every namespace's rows.
NS_NAMES=(); NS_PIDS=()
stop_netns() {
    local p
    for p in "${NS_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    NS_PIDS=()
    for p in "${NS_NAMES[@]}"; do ip netns delete "$p" 2>/dev/null || true; done
    NS_NAMES=()
}
trap 'stop_loadgen; stop_netns' EXIT INT TERM

if [ "$NETNS" -gt 0 ] && [ "$(id -u)" = 0 ]; then
    dir=$OUT/netns
    mkdir -p "$dir"
    : > "$dir/counts.tsv"; : > "$dir/mem.tsv"
    log "every namespace: host loadgen N=$NETNS_HOST, $NETNS namespaces x $NETNS_CONN connections"
    start_loadgen "$NETNS_HOST" "$dir"
    for i in $(seq 1 "$NETNS"); do
        name=nmb$$x$i
        ip netns add "$name"; NS_NAMES+=("$name")
        ip -n "$name" link set lo up
        ip netns exec "$name" "$LOADGEN" --connections "$NETNS_CONN" --udp 10 --port "$PORT" \
            --hold-secs 1800 --setup-secs 120 --no-stdin > "$dir/loadgen.$i.out" &
        NS_PIDS+=($!)
    done
    for i in $(seq 1 "$NETNS"); do
        for _ in $(seq 1 1200); do
            grep -q '^READY ' "$dir/loadgen.$i.out" 2>/dev/null && break
            sleep 0.1
        done
        grep -q '^READY ' "$dir/loadgen.$i.out" || { log "namespace loadgen $i not READY"; exit 1; }
    done
    all=$((2 * NETNS_HOST + 1 + NETNS * (2 * NETNS_CONN + 1)))
    ns_list="${NS_NAMES[*]}"
    cmds=(netstat-mcp json "$BIN connections --proto tcp --limit 0 --json --all-netns"
          ss ss "bash -c 'ss -tanp; for n in $ns_list; do ip netns exec \$n ss -tanp; done'"
          netstat netstat "bash -c 'netstat -tanp; for n in $ns_list; do ip netns exec \$n netstat -tanp; done'")
    scenario "$dir" netns_all "$NETNS" list "$PORT" "$all" -- "${cmds[@]}"
    # scope=host with the namespaces around: only the host's sockets, no slower than before.
    host_all=$((2 * NETNS_HOST + 1))
    cmds=(netstat-mcp json "$BIN connections --proto tcp --limit 0 --json")
    [ -n "$BASE_BIN" ] && cmds+=(netstat-mcp-base json "$BASE_BIN connections --proto tcp --limit 0 --json")
    cmds+=(ss ss "ss -tanp")
    scenario "$dir" netns_host "$NETNS" list "$PORT" "$host_all" -- "${cmds[@]}"
    "$NSBENCH" --runs 7 > "$dir/nsbench.json" 2> "$dir/nsbench.err" \
        && log "nsbench: $(cat "$dir/nsbench.json")" \
        || log "nsbench failed: $(tail -1 "$dir/nsbench.err")"
    stop_netns
    stop_loadgen
elif [ "$NETNS" -gt 0 ]; then
    log "skipping the every-namespace phase: it needs root (ip netns add, setns)"
fi

python3 "$REPORT" render --out "$OUT" --markdown "$ROOT/BENCHMARKS.md"
log "wrote $ROOT/BENCHMARKS.md (raw results in $OUT)"

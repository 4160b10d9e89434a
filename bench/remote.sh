#!/usr/bin/env bash
# Remote port check on a loaded host: filters that travel (ss 'sport = :P', or awk over
# /proc/net) against the netstat -tunapW path, over our own SSH client, in one run.
#
#   bench/remote.sh              # 50,000 connections (100,000 sockets), 10 runs per path
#   bench/remote.sh 20000 5      # N connections, runs
#
# The "remote host" is a network namespace this script makes (its own veth pair and
# addresses in 10.254.0.0/16, an unreachable route for the rest of its /24), with its own
# sshd (root login by a key made here) and examples/loadgen holding N loopback connections
# inside it. Everything is removed on exit (sshd and loadgen killed by pid, namespace
# deleted). Prints a markdown table (for BENCHMARKS.md) and the raw JSON to
# target/bench-remote/. Needs root.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-50000}
RUNS=${2:-10}
OUT=$ROOT/target/bench-remote
BIN_DIR=$ROOT/target/release
log() { printf '[bench-remote %s] %s\n' "$(date +%T)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, sshd)" >&2; exit 1; }
for tool in ip ss netstat sshd ssh-keygen awk; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing: $tool" >&2; exit 1; }
done

log "building (release)"
cargo build --release --examples --bins >&2

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/netstat-mcp-bench-remote.XXXXXX)
chmod 755 "$WORK"
NS="nm-bench-$$"
IDX=$(( $$ % 250 + 1 ))
NET="10.254.$IDX"
OURS="$NET.1"
THEIRS="$NET.2"
VETH_R="nmbr$$"
VETH_N="nmbn$$"
SSHD_PID=""
LOADGEN_PID=""

cleanup() {
    [ -n "$LOADGEN_PID" ] && kill "$LOADGEN_PID" 2>/dev/null || true
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    ip route del unreachable "$NET.0/24" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if ip route show | grep -q "^10\.254\.$IDX\."; then
    echo "10.254.$IDX.0/24 is in use here; rerun (another pid picks another subnet)" >&2
    exit 1
fi

log "namespace $NS at $THEIRS"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip link add "$VETH_R" type veth peer name "$VETH_N"
ip link set "$VETH_N" netns "$NS"
ip addr add "$OURS/30" dev "$VETH_R"
ip link set "$VETH_R" up
ip -n "$NS" addr add "$THEIRS/30" dev "$VETH_N"
ip -n "$NS" link set "$VETH_N" up
ip route add unreachable "$NET.0/24"

ssh-keygen -q -t ed25519 -N '' -C '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
chmod 644 "$WORK/authorized_keys"
mkdir -p /run/sshd
cat > "$WORK/sshd_config" <<EOF
ListenAddress $THEIRS:22
HostKey $WORK/host_key
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
MaxSessions 20
LogLevel INFO
EOF
ip netns exec "$NS" /usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2> "$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 1 500); do grep -q "Server listening" "$WORK/sshd.log" && break; sleep 0.02; done
grep -q "Server listening" "$WORK/sshd.log" || { cat "$WORK/sshd.log" >&2; exit 1; }
echo "$THEIRS $(cut -d' ' -f1,2 "$WORK/host_key.pub")" > "$WORK/known_hosts"

log "loadgen: $N connections inside the namespace"
ip netns exec "$NS" "$BIN_DIR/examples/loadgen" --connections "$N" --hold-secs 3600 \
    --no-stdin > "$WORK/ready" 2> "$WORK/loadgen.log" &
LOADGEN_PID=$!
for _ in $(seq 1 6000); do grep -q '^READY' "$WORK/ready" && break; kill -0 "$LOADGEN_PID" || break; sleep 0.05; done
READY=$(grep '^READY' "$WORK/ready" || true)
[ -n "$READY" ] || { cat "$WORK/loadgen.log" >&2; exit 1; }
log "$READY"
PORT=$(sed -n 's/.* port=\([0-9]*\).*/\1/p' <<< "$READY")
IDLE=$(sed -n 's/.* idle_port=\([0-9]*\).*/\1/p' <<< "$READY")

cat > "$WORK/config.toml" <<EOF
[ssh]
known_hosts = "$WORK/known_hosts"
command_timeout_secs = 300
connect_timeout_secs = 30

[[remote_hosts]]
name = "loaded"
host = "$THEIRS"
username = "root"
key_file = "$WORK/client_key"
EOF

SOCKETS=$(ip netns exec "$NS" ss -tanH | wc -l)
log "the host holds $SOCKETS TCP sockets"
for p in "$IDLE" "$PORT"; do
    log "port $p: $RUNS runs per path"
    "$BIN_DIR/examples/remote_bench" --config "$WORK/config.toml" --host loaded --port "$p" \
        --runs "$RUNS" > "$OUT/port-$p.json"
done

python3 - "$OUT" "$IDLE" "$PORT" "$SOCKETS" "$N" <<'PY'
import json, sys
out, idle, loaded, sockets, n = sys.argv[1:]
print(f"Remote host: a network namespace with its own sshd, {int(n):,} loopback connections "
      f"({int(sockets):,} TCP sockets) held by examples/loadgen; our SSH client, one warm "
      f"session; medians of the runs.\n")
print("| port (sockets on it) | path | remote command | median ms | min–max ms | bytes per call | × netstat time | × netstat bytes |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for port, label in ((idle, "idle listener"), (loaded, "loaded port")):
    r = json.load(open(f"{out}/port-{port}.json"))
    base = r["netstat"]
    rows = [
        ("filters travel", f"`{r['filtered_command']}`", r["filtered"]),
        ("filters travel, no ss", "awk over /proc/net + fd scan", r["awk"]),
        ("netstat path", "`netstat -tunapW`, filtered here", base),
    ]
    counts = {x[2]["sockets_on_port"] for x in rows}
    agree = "✓" if len(counts) == 1 else f"✗ {sorted(counts)}"
    for name, cmd, s in rows:
        print(f"| {port} {label} ({s['sockets_on_port']:,}) {agree} | {name} | {cmd} | {s['median_ms']:.1f} | "
              f"{s['min_ms']:.1f}–{s['max_ms']:.1f} | {s['bytes_per_call']:,} | "
              f"{s['median_ms']/base['median_ms']:.3f} | {s['bytes_per_call']/max(base['bytes_per_call'],1):.4f} |")
PY

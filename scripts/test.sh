#!/usr/bin/env bash
# Runs the whole test suite, first installing what it needs on a Debian or Ubuntu machine:
# the tests talk to real components (ss, netstat, lsof, a real sshd, network namespaces,
# nftables, other users) and never skip one that is missing. Run it as root (the tests create
# network namespaces, cgroups and a test user); extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# command (or path) -> the Debian package that brings it
needs=(
    "ss iproute2" "ip iproute2" "netstat net-tools" "lsof lsof"
    "/usr/sbin/sshd openssh-server" "ssh-keygen openssh-client" "ssh-agent openssh-client"
    "useradd passwd" "chpasswd passwd" "unshare util-linux" "setpriv util-linux" "nsenter util-linux"
    "runuser util-linux" "ps procps" "python3 python3" "mawk mawk" "nft nftables"
    "prometheus prometheus" "promtool prometheus"
    "prometheus-node-exporter prometheus-node-exporter" "/usr/bin/time time"
)
missing=()
for pair in "${needs[@]}"; do
    read -r cmd pkg <<< "$pair"
    if [[ $cmd == /* ]]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "scripts/test.sh: need root (or sudo) to install ${missing[*]}" >&2; exit 2; }
        as_root=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" apt-get install -y -q "${missing[@]}"
fi
exec cargo test "$@"

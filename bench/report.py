#!/usr/bin/env python3
"""Count checks and the BENCHMARKS.md report for bench/run.sh.

    report.py count --kind ss|netstat|lsof|json --mode list|local --port P FILE
        prints "<rows> <owned>": the sockets in FILE (one tool's output) that have port P at
        either end (mode list) or as their local port (mode local), and how many of them carry
        an owner (pid/program). lsof prints one line per process holding a socket, so its
        sockets are counted once each by their address pair.

    report.py render --out DIR --markdown BENCHMARKS.md
        reads DIR/meta.env and DIR/<N>/{*.json,counts.tsv,mem.tsv,mcp.*.json} written by
        bench/run.sh and writes the report: medians, ratios to ss, peak memory, count checks,
        and the targets of issue 6 at the largest N.
"""

import argparse
import json
import os
import re
import sys

TOOLS = ["netstat-mcp", "netstat-mcp-base", "ss", "netstat", "lsof"]

SCENARIOS = [
    ("list_owners", "1. List all TCP sockets with owners"),
    ("list_no_owners", "2. List all TCP sockets without owners"),
    ("port_idle", "3. Who holds an idle listening port"),
    ("port_loaded", "4. Who holds the loaded port (N accepted sockets)"),
    ("health_default_no_owners", "H1. Connection health as the tool answers (summary over every connected socket, the 20 worst rows), without owners"),
    ("health_default_owners", "H2. Connection health as the tool answers, with owners"),
    ("health_no_owners", "H3. Connection health of every connected socket, every row printed, without owners"),
    ("health_owners", "H4. Connection health of every connected socket, every row printed, with owners"),
]

NETNS_SCENARIOS = [
    ("netns_all", "A. List every namespace's TCP sockets with owners (`--all-netns`; ss and netstat run once per namespace)"),
    ("netns_host", "B. The host's TCP sockets with owners while the namespaces exist (scope host)"),
]



# Where bench/remote.sh's section of BENCHMARKS.md starts.
REMOTE_MARKER = "<!-- bench/remote.sh: remote port check -->"

def port_of(addr):
    """The port of 'ip:port', '[v6]:port' or '*:port'; None for '*' or unreadable."""
    head, sep, tail = addr.rpartition(":")
    if not sep or not tail.isdigit():
        return None
    return int(tail)


def rows_ss(lines):
    for line in lines:
        if line[:1].isspace():
            continue  # a detail line (ss -i, -m) of the socket above
        f = line.split()
        if len(f) < 5 or f[0] == "State":
            continue
        yield port_of(f[3]), port_of(f[4]), "users:(" in line, None


def rows_netstat(lines):
    for line in lines:
        f = line.split()
        if len(f) < 5 or not f[0].startswith("tcp"):
            continue
        owned = len(f) >= 7 and f[6] != "-"
        yield port_of(f[3]), port_of(f[4]), owned, None


def rows_lsof(lines):
    seen = set()
    for line in lines:
        f = line.split()
        if len(f) < 9 or f[0] == "COMMAND":
            continue
        name = " ".join(f[8:])
        key = (f[5], name)  # DEVICE is the socket's inode: one socket, one key
        if key in seen:
            continue
        seen.add(key)
        pair = re.sub(r"\s*\([A-Z_0-9]+\)$", "", name)
        local, _, remote = pair.partition("->")
        yield port_of(local), port_of(remote) if remote else None, True, name


def find_list(obj, key):
    """The list under `key` at the top, under 'data', or the object itself if it is a list."""
    if isinstance(obj, list):
        return obj
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get(key), list):
        return obj[key]
    data = obj.get("data")
    if isinstance(data, dict) and isinstance(data.get(key), list):
        return data[key]
    return []


def rows_json(text):
    try:
        obj = json.loads(text)
    except ValueError:
        return
    items = find_list(obj, "connections") or find_list(obj, "occupations")
    for item in items:
        if not isinstance(item, dict):
            continue
        yield item.get("local_port"), item.get("foreign_port"), item.get("pid") is not None, None


def count(kind, mode, port, path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    if kind == "health":
        # The 20 worst rows are shown; connection_count counts every socket the summary
        # covers, and every shown row with a pid means owners were named.
        try:
            data = json.loads(text).get("data") or {}
        except ValueError:
            return 0, 0
        shown = data.get("connections") or []
        count = data.get("connection_count", 0)
        return count, count if shown and all(r.get("pid") is not None for r in shown) else 0
    if kind == "json":
        rows = rows_json(text)
    else:
        rows = {"ss": rows_ss, "netstat": rows_netstat, "lsof": rows_lsof}[kind](text.splitlines())
    matched = owned = 0
    for local, remote, has_owner, _ in rows:
        if local == port or (mode == "list" and remote == port):
            matched += 1
            owned += int(bool(has_owner))
    return matched, owned


# --- report ---------------------------------------------------------------------------------


def read_env(path):
    meta = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep:
                    meta[key] = value
    return meta


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n").split("\t") for line in fh if line.strip()]


def fmt_ms(seconds):
    ms = seconds * 1000.0
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def load_n(out, n, scenarios=SCENARIOS):
    d = os.path.join(out, n)
    result = {"scenarios": {}, "counts": {}, "mem": {}, "mcp": {}}
    for key, _ in scenarios:
        path = os.path.join(d, key + ".json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                result["scenarios"][key] = {
                    r["command"]: r for r in json.load(fh).get("results", [])
                }
    for row in read_tsv(os.path.join(d, "counts.tsv")):
        if len(row) >= 5:
            result["counts"][(row[0], row[1])] = (int(row[2]), int(row[3]), int(row[4]))
    for row in read_tsv(os.path.join(d, "mem.tsv")):
        if len(row) >= 3 and row[2].strip().isdigit():
            result["mem"][(row[0], row[1])] = int(row[2])
    for label in ("traffic", "watch"):
        path = os.path.join(d, "cpu." + label)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                words = fh.read().split()
            try:
                result.setdefault("cpu", {})[label] = float(words[-2]) + float(words[-1])
            except (ValueError, IndexError):
                pass
    path = os.path.join(d, "nsbench.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            try:
                result["nsbench"] = json.load(fh)
            except ValueError:
                pass
    for label in MCP_LABELS:
        path = os.path.join(d, f"mcp.{label}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                result["mcp"][label] = json.load(fh)
    return result


def median(res, scenario, tool):
    r = res["scenarios"].get(scenario, {}).get(tool)
    return None if r is None else r["median"]


def render(out, markdown):
    meta = read_env(os.path.join(out, "meta.env"))
    ns = sorted((e for e in os.listdir(out) if e.isdigit()), key=int)
    results = {n: load_n(out, n) for n in ns}
    lines = [
        "# Benchmarks: netstat-mcp vs ss, netstat and lsof",
        "",
        "Generated by `bench/run.sh` (rerun it to reproduce; `bench/run.sh 1000` for a quick run).",
        "For each N, `examples/loadgen` holds N loopback TCP connections (both ends, so 2N",
        f"ESTABLISHED sockets, plus its listeners) and 100 UDP sockets; every tool is timed in the",
        "same run with hyperfine, so the **ratios to ss** are the numbers to compare across machines.",
        "",
        f"- Date: {meta.get('date', '?')}",
        f"- Machine: {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), "
        f"{meta.get('memory', '?')} RAM, Linux {meta.get('kernel', '?')}, "
        f"load average at start {meta.get('loadavg', '?')}",
        f"- Versions: netstat-mcp {meta.get('netstat_mcp', '?')} ({meta.get('rustc', '?')})"
        + (f", base build (netstat-mcp-base) {meta['netstat_mcp_base']}" if meta.get("netstat_mcp_base") else "")
        + "; "
        f"{meta.get('ss', '?')}; {meta.get('netstat', '?')}; lsof {meta.get('lsof', '?')}; "
        f"{meta.get('hyperfine', '?')}",
        f"- Kernel limits: somaxconn {meta.get('somaxconn', '?')}, ephemeral ports "
        f"{meta.get('port_range', '?')}, open files (hard) {meta.get('nofile', '?')}",
        "",
        "Times are hyperfine medians in ms (wall clock, output discarded); memory is the peak",
        "resident set (`/usr/bin/time`, largest process of the pipeline). *Rows* is the number",
        "of sockets on the loaded/idle port found in the tool's own output (*owned*: with a",
        "pid/program); a ✗ marks a tool that did not return the expected sockets.",
        "",
    ]
    for n in ns:
        res = results[n]
        lines += [f"## N = {int(n):,} connections", ""]
        lines += scenario_tables(out, n, res, SCENARIOS)
        if res["mcp"]:
            lines += [
                "### 5. MCP answers: each tool with default arguments (server running, stdio)",
                "",
                "Round trip of `tools/call`, and the size of the result's text block (what a "
                "client hands to the model; budget 24 KiB, the `netstat` tool's own cap 64 KiB).",
                "",
                "| tool | arguments | calls | median ms | p90 ms | text bytes | count |",
                "|---|---|---:|---:|---:|---:|---|",
            ]
            for label in MCP_LABELS:
                m = res["mcp"].get(label)
                if m:
                    size = m.get("text_bytes")
                    size_s = "?" if size is None else f"{size:,}{'' if within_budget(label, m) else ' ✗'}"
                    count = m.get("rows")
                    count_s = "–" if label in ("netstat",) else (
                        f"{count:,} {'✓' if mcp_rows_ok(label, m, n) else '✗'}"
                        if isinstance(count, int) else "✗"
                    )
                    lines.append(
                        f"| {m['tool']} | `{json.dumps(m['arguments'])}` | {m['calls']} "
                        f"| {m['median_ms']:.2f} | {m['p90_ms']:.2f} | {size_s} | {count_s} |"
                    )
            lines.append("")
    netns = load_n(out, "netns", NETNS_SCENARIOS) if os.path.isdir(os.path.join(out, "netns")) else None
    if netns and netns["scenarios"]:
        lines += [
            f"## Every network namespace: {meta.get('netns', '?')} namespaces",
            "",
            f"Each of {meta.get('netns', '?')} namespaces of our own holds a loadgen of "
            f"{meta.get('netns_conn', '?')} connections on the host's loaded port, beside the host's "
            f"loadgen of {meta.get('netns_host', '?')}; *rows* count that port's sockets in every "
            "namespace. `ss` and `netstat` see one namespace each, so they run once per "
            "namespace (`ip netns exec`), which is what an operator types today.",
            "",
        ]
        lines += scenario_tables(out, "netns", netns, NETNS_SCENARIOS)
        nb = netns.get("nsbench")
        if nb:
            lines += [
                "In-process breakdown (`examples/nsbench`, medians of "
                f"{nb.get('runs')} runs, {nb.get('namespaces')} namespaces, {nb.get('sockets'):,} TCP sockets): "
                f"a listing of every namespace with owners took **{nb.get('all_ms')} ms**; dumping "
                f"each namespace from a thread already inside it took {nb.get('dumps_ms')} ms in all, "
                f"and one owner scan over all their sockets {nb.get('scan_ms')} ms: "
                f"**{nb.get('ratio')}×** the sum of the parts.",
                "",
            ]
    if ns:
        lines += targets(results[ns[-1]], ns[-1], results)
        lines += owner_targets(results[ns[-1]], ns[-1], netns)
        lines += health_targets(results[ns[-1]], ns[-1])
    text = "\n".join(lines).rstrip() + "\n"
    # bench/recorder.sh and bench/remote.sh own their sections: keep them across runs of this
    # report (the recorder's between its markers, the remote one from its marker to the end or
    # to the recorder's section).
    try:
        with open(markdown, encoding="utf-8") as fh:
            old = fh.read()
        begin, end = old.find("<!-- recorder:begin -->"), old.find("<!-- recorder:end -->")
        if 0 <= begin < end:
            text += "\n" + old[begin:end + len("<!-- recorder:end -->")] + "\n"
        if REMOTE_MARKER in old:
            start = old.index(REMOTE_MARKER)
            stop = begin if start < begin else len(old)
            text += "\n" + old[start:stop].rstrip() + "\n"
    except FileNotFoundError:
        pass
    with open(markdown, "w", encoding="utf-8") as fh:
        fh.write(text)


def scenario_tables(out, n, res, scenarios):
    """One table per scenario: every tool's median, ratio to ss, memory and count check."""
    lines = []
    for key, title in scenarios:
        runs = res["scenarios"].get(key)
        if not runs:
            continue
        base = median(res, key, "ss")
        lines += [
            f"### {title}",
            "",
            "| tool | command | median ms | min–max ms | × ss | peak MiB | rows (owned) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for tool in TOOLS:
            r = runs.get(tool)
            if r is None:
                continue
            ratio = f"{r['median'] / base:.3f}" if base else "–"
            mem = res["mem"].get((key, tool))
            mem_s = f"{mem / 1024:.1f}" if mem is not None else "–"
            c = res["counts"].get((key, tool))
            if c is None:
                check = "–"
            else:
                rows, owned, expected = c
                ok = rows == expected and (key.endswith("no_owners") or owned == rows)
                check = f"{rows:,} ({owned:,}) {'✓' if ok else '✗ expected ' + format(expected, ',')}"
            lines.append(
                f"| {tool} | `{command_text(out, n, key, tool)}` "
                f"| {fmt_ms(r['median'])} | {fmt_ms(r['min'])}–{fmt_ms(r['max'])} "
                f"| {ratio} | {mem_s} | {check} |"
            )
        lines.append("")
    return lines


def owner_targets(res, n, netns):
    """Issue 12's targets: owner details and the host path against the base build, and the
    every-namespace listing against its parts."""

    def vs_base(r, key):
        a, b = median(r, key, "netstat-mcp"), median(r, key, "netstat-mcp-base")
        return None if a is None or not b else a / b

    rows = []

    def add(name, value, limit):
        if value is None:
            rows.append(f"| {name} | not measured | ≤ {limit}× | – |")
        else:
            rows.append(f"| {name} | {value:.3f}× | ≤ {limit}× | {'✓' if value <= limit else '✗'} |")

    add(f"owner details: list with owners vs the base build, N = {int(n):,}", vs_base(res, "list_owners"), 1.10)
    add("scope host: list without owners vs the base build", vs_base(res, "list_no_owners"), 1.05)
    add("scope host: idle port check vs the base build", vs_base(res, "port_idle"), 1.05)
    a, b = res["mem"].get(("list_owners", "netstat-mcp")), res["mem"].get(("list_owners", "netstat-mcp-base"))
    add("peak memory, list with owners vs the base build", None if a is None or not b else a / b, 1.05)
    nb = (netns or {}).get("nsbench")
    add("scope all (20 namespaces) vs per-namespace dumps + one owner scan", nb.get("ratio") if nb else None, 1.5)
    if netns:
        add("scope host with the namespaces around vs the base build", vs_base(netns, "netns_host"), 1.10)
    return [
        f"## Targets (issue 12: owners, containers, every namespace)",
        "",
        "The base build is the revision named above as `netstat-mcp-base` (`BASE_REV`), timed in",
        "the same hyperfine runs.",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|---|",
        *rows,
        "",
    ]


def health_targets(res, n):
    """Issue 19's targets: connection health against ss -tin(p), a plain listing against the
    base build, and a traffic window's CPU against a watch's."""
    rows = []

    def add(name, value, limit):
        if value is None:
            rows.append(f"| {name} | not measured | ≤ {limit}× | – |")
        else:
            rows.append(f"| {name} | {value:.3f}× | ≤ {limit}× | {'✓' if value <= limit else '✗'} |")

    def ratio(key, a, b):
        x, y = median(res, key, a), median(res, key, b)
        return None if x is None or not y else x / y

    add(f"health (the tool's answer) without owners vs `ss -tin`, N = {int(n):,}", ratio("health_default_no_owners", "netstat-mcp", "ss"), 0.5)
    add("health (the tool's answer) with owners vs `ss -tinp`", ratio("health_default_owners", "netstat-mcp", "ss"), 0.1)
    add("health printing every row without owners vs `ss -tin`", ratio("health_no_owners", "netstat-mcp", "ss"), 0.5)
    add("health printing every row with owners vs `ss -tinp`", ratio("health_owners", "netstat-mcp", "ss"), 0.1)
    add("plain listing without owners vs the base build", ratio("list_no_owners", "netstat-mcp", "netstat-mcp-base"), 1.05)
    add("plain listing with owners vs the base build", ratio("list_owners", "netstat-mcp", "netstat-mcp-base"), 1.05)
    cpu = res.get("cpu", {})
    t, w = cpu.get("traffic"), cpu.get("watch")
    add(
        f"CPU of `top --duration 5` vs `watch --duration 5` ({t if t is not None else '?'} s vs {w if w is not None else '?'} s)",
        None if t is None or not w else t / w,
        1.0,
    )
    return [
        "## Targets (issue 19: connection health and traffic)",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|---|",
        *rows,
        "",
    ]


_COMMANDS = {}


def command_text(out, n, key, tool):
    """The exact command line of `tool` in a scenario, from hyperfine's text output."""
    if (n, key) not in _COMMANDS:
        cmds = {}
        path = os.path.join(out, n, key + ".cmds")
        if os.path.exists(path):
            for row in read_tsv(path):
                if len(row) >= 2:
                    cmds[row[0]] = row[1]
        _COMMANDS[(n, key)] = cmds
    text = _COMMANDS[(n, key)].get(tool, tool)
    return text.replace(out, "$OUT").replace("|", "\\|")


MCP_LABELS = ("query", "port_idle", "port_loaded", "netstat", "list_hosts", "health")
BUDGET = 24 * 1024
NETSTAT_BUDGET = 64 * 1024


def within_budget(label, m):
    """Whether an MCP answer's text block fits its budget."""
    size = m.get("text_bytes")
    if not isinstance(size, int):
        return False
    return size <= (NETSTAT_BUDGET if label == "netstat" else BUDGET)


def mcp_rows_ok(label, m, n):
    """Whether an MCP result saw the loadgen's sockets: all of them, or the port's owners."""
    rows = m.get("rows")
    if not isinstance(rows, int):
        return False
    n = int(n)
    if label == "query":
        return rows >= 2 * n + 1  # connection_count: every socket, loadgen's among them
    if label == "health":
        return rows >= 2 * n  # connection_count: every connected socket
    if label == "list_hosts":
        return rows >= 0
    return rows == (1 if label == "port_idle" else n + 1)


def targets(res, n, results):
    """Issue 6's targets, checked at the largest N of this run (MCP: at every N)."""

    def ratio(key, tool, base_tool):
        a, b = median(res, key, tool), median(res, key, base_tool)
        return None if a is None or not b else a / b

    rows = []

    def checked(key):
        """Whether netstat-mcp returned the expected sockets in this scenario."""
        c = res["counts"].get((key, "netstat-mcp"))
        if c is None:
            return False
        found, owned, expected = c
        return found == expected and (key == "list_no_owners" or owned == found)

    def add(name, value, limit, unit, key=None):
        target = f"≤ {limit}×" if unit == "×" else f"< {limit} {unit}"
        if value is None:
            rows.append(f"| {name} | not measured | {target} | – |")
            return
        ok = value <= limit if unit == "×" else value < limit
        shown = f"{value:.3f}×" if unit == "×" else f"{value:.2f} {unit}"
        if key is not None and not checked(key):
            verdict = "✗ (wrong rows)"
        else:
            verdict = "✓" if ok else "✗"
        rows.append(f"| {name} | {shown} | {target} | {verdict} |")

    add(
        "list with owners vs `ss -tanp`",
        ratio("list_owners", "netstat-mcp", "ss"),
        0.15,
        "×",
        "list_owners",
    )
    add(
        "list with owners vs `netstat -tanp`",
        ratio("list_owners", "netstat-mcp", "netstat"),
        0.12,
        "×",
        "list_owners",
    )
    add(
        "list without owners vs `ss -tan`",
        ratio("list_no_owners", "netstat-mcp", "ss"),
        0.6,
        "×",
        "list_no_owners",
    )
    idle = median(res, "port_idle", "netstat-mcp")
    add("idle port with owner", None if idle is None else idle * 1000, 10, "ms", "port_idle")
    add(
        "loaded port vs `ss -tanp 'sport = :P'`",
        ratio("port_loaded", "netstat-mcp", "ss"),
        0.2,
        "×",
        "port_loaded",
    )
    idle_runs = [(k, r["mcp"]["port_idle"]) for k, r in results.items() if "port_idle" in r["mcp"]]
    worst = max((m["median_ms"] for _, m in idle_runs), default=None)
    rows_ok = bool(idle_runs) and all(mcp_rows_ok("port_idle", m, k) for k, m in idle_runs)
    add("MCP check_port_occupation, idle port (worst N)", worst, 5, "ms")
    if worst is not None and not rows_ok:
        rows[-1] = rows[-1].rsplit("|", 2)[0] + "| ✗ (wrong rows) |"
    a, b = res["mem"].get(("list_owners", "netstat-mcp")), res["mem"].get(("list_owners", "ss"))
    add(
        "peak memory, list with owners vs `ss -tanp`",
        None if a is None or not b else a / b,
        1.0,
        "×",
        "list_owners",
    )
    mcp_rows = []

    def add_mcp(name, label, limit_ms):
        m = res["mcp"].get(label)
        if m is None:
            mcp_rows.append(f"| {name} | not measured | ≤ {limit_ms} ms | – |")
            return
        ok = m["median_ms"] <= limit_ms
        verdict = "✓" if ok else "✗"
        if not mcp_rows_ok(label, m, n):
            verdict = "✗ (wrong count)"
        mcp_rows.append(f"| {name} | {m['median_ms']:.1f} ms | ≤ {limit_ms} ms | {verdict} |")

    add_mcp("MCP default listing `query_network_connections {}`", "query", 150)
    add_mcp("MCP port check on the loaded port", "port_loaded", 300)
    measured = [(label, m) for label, m in res["mcp"].items() if label in MCP_LABELS]
    if measured:
        largest = max(measured, key=lambda lm: lm[1].get("text_bytes") or 0)
        all_ok = all(within_budget(label, m) for label, m in measured)
        mcp_rows.append(
            f"| every default answer within budget (largest: {largest[0]}, "
            f"{(largest[1].get('text_bytes') or 0):,} bytes) | "
            f"{sum(within_budget(l, m) for l, m in measured)} of {len(measured)} | all | "
            f"{'✓' if all_ok else '✗'} |"
        )
    return [
        f"## Targets (issue 6) at N = {int(n):,}",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|---|",
        *rows,
        "",
        f"## Targets (issue 11: answers sized for an agent) at N = {int(n):,}",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|---|",
        *mcp_rows,
        "",
    ]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count")
    c.add_argument("--kind", choices=["ss", "netstat", "lsof", "json", "health"], required=True)
    c.add_argument("--mode", choices=["list", "local"], required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("file")
    r = sub.add_parser("render")
    r.add_argument("--out", required=True)
    r.add_argument("--markdown", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "count":
        rows, owned = count(args.kind, args.mode, args.port, args.file)
        print(rows, owned)
    else:
        render(args.out, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

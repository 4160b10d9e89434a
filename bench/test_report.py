#!/usr/bin/env python3
"""Unit tests of bench/report.py's count check, on output captured from the real tools.

Run: python3 bench/test_report.py (also run by `cargo test`, tests/loadgen.rs).
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

# ss -tanp (iproute2 6.1.0), Debian 12, while loadgen held connections to port 39427.
SS_TANP = """\
State      Recv-Q Send-Q             Local Address:Port        Peer Address:Port Process
LISTEN     0      4096                   127.0.0.1:39427            0.0.0.0:*     users:(("loadgen",pid=31912,fd=3),("loadgen",pid=31914,fd=3))
LISTEN     0      4096                   127.0.0.1:35825            0.0.0.0:*     users:(("loadgen",pid=31912,fd=4))
ESTAB      0      0                      127.0.0.1:39427          127.0.0.2:41234 users:(("loadgen",pid=31914,fd=9))
ESTAB      0      0                      127.0.0.2:41234          127.0.0.1:39427 users:(("loadgen",pid=31918,fd=7))
TIME-WAIT  0      0                      127.0.0.1:43210          127.0.0.1:39427
ESTAB      0      0                          [::1]:22                 [::1]:39427   users:(("sshd",pid=10,fd=5))
"""

# netstat -tanp (net-tools 2.10).
NETSTAT_TANP = """\
Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
tcp        0      0 127.0.0.1:39427         0.0.0.0:*               LISTEN      31912/loadgen
tcp        0      0 127.0.0.1:39427         127.0.0.2:41234         ESTABLISHED 31914/loadgen
tcp        0      0 127.0.0.2:41234         127.0.0.1:39427         ESTABLISHED 31918/loadgen
tcp        0      0 127.0.0.1:43210         127.0.0.1:39427         TIME_WAIT   -
tcp6       0      0 ::1:39427               :::*                    LISTEN      77/other
"""

# lsof -nP -iTCP (lsof 4.95.0): the shared listener shows once per holding process.
LSOF = """\
COMMAND   PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME
loadgen 31912 root    3u  IPv4 644120      0t0  TCP 127.0.0.1:39427 (LISTEN)
loadgen 31914 root    3u  IPv4 644120      0t0  TCP 127.0.0.1:39427 (LISTEN)
loadgen 31914 root    9u  IPv4 644200      0t0  TCP 127.0.0.1:39427->127.0.0.2:41234 (ESTABLISHED)
loadgen 31918 root    7u  IPv4 644201      0t0  TCP 127.0.0.2:41234->127.0.0.1:39427 (ESTABLISHED)
my\\x20srv 9056 root   3u  IPv6  17001      0t0  TCP [::1]:394270 (LISTEN)
"""


def count(kind, mode, port, text):
    with tempfile.NamedTemporaryFile("w", suffix=".out", delete=False) as fh:
        fh.write(text)
    try:
        return report.count(kind, mode, port, fh.name)
    finally:
        os.unlink(fh.name)


class CountCheck(unittest.TestCase):
    def test_ss_list_counts_both_ends_and_owners(self):
        # listener, accepted end, client end, TIME-WAIT (no owner), [::1]:22 -> :39427
        self.assertEqual(count("ss", "list", 39427, SS_TANP), (5, 4))

    def test_ss_local_counts_only_the_local_port(self):
        self.assertEqual(count("ss", "local", 39427, SS_TANP), (2, 2))

    def test_netstat_dash_means_no_owner(self):
        self.assertEqual(count("netstat", "list", 39427, NETSTAT_TANP), (5, 4))
        self.assertEqual(count("netstat", "local", 39427, NETSTAT_TANP), (3, 3))

    def test_lsof_counts_a_shared_socket_once_and_ports_exactly(self):
        self.assertEqual(count("lsof", "list", 39427, LSOF), (3, 3))
        self.assertEqual(count("lsof", "local", 39427, LSOF), (2, 2))

    def test_json_reads_connections_or_occupations_at_top_or_under_data(self):
        conns = [
            {"local_port": 39427, "foreign_port": None, "pid": 1},
            {"local_port": 41234, "foreign_port": 39427, "pid": None},
            {"local_port": 22, "foreign_port": 5000, "pid": 2},
        ]
        self.assertEqual(count("json", "list", 39427, json.dumps({"connections": conns})), (2, 1))
        envelope = {"success": True, "data": {"occupations": conns[:1]}}
        self.assertEqual(count("json", "local", 39427, json.dumps(envelope)), (1, 1))
        self.assertEqual(count("json", "list", 39427, "not json"), (0, 0))


class Targets(unittest.TestCase):
    def test_a_fast_tool_with_wrong_rows_does_not_meet_a_target(self):
        res = {
            "scenarios": {"port_idle": {"netstat-mcp": {"median": 0.001}}},
            "counts": {("port_idle", "netstat-mcp"): (0, 0, 1)},
            "mem": {},
            "mcp": {},
        }
        table = "\n".join(report.targets(res, "1000", {"1000": res}))
        self.assertIn("| idle port with owner | 1.00 ms | < 10 ms | ✗ (wrong rows) |", table)

    def test_mcp_rows_check(self):
        self.assertTrue(report.mcp_rows_ok("port_loaded", {"rows": 1001}, "1000"))
        self.assertFalse(report.mcp_rows_ok("port_loaded", {"rows": 500}, "1000"))
        self.assertTrue(report.mcp_rows_ok("query", {"rows": 2050}, "1000"))
        self.assertFalse(report.mcp_rows_ok("port_idle", {"rows": None}, "1000"))

    def test_answer_budget(self):
        self.assertTrue(report.within_budget("query", {"text_bytes": 24 * 1024}))
        self.assertFalse(report.within_budget("query", {"text_bytes": 24 * 1024 + 1}))
        self.assertTrue(report.within_budget("netstat", {"text_bytes": 60 * 1024}))
        self.assertFalse(report.within_budget("port_loaded", {}))


if __name__ == "__main__":
    unittest.main()

"""IPVS's defences on a running director: `pylvs sysctl` as sysctl(8) on /proc/sys/net/ipv4/vs,
the automatic modes switched by the host's real memory, drop_packet under real connections."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

TABLES = """
[sysctl]
amemthresh = 2147483647
drop_entry = 1
drop_packet = 3
am_droprate = 2
"""
"""No host has 8 TiB of free pages: the automatic modes must switch on."""


def pylvs(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("workers", [1, 2])
def test_sysctl_automatic_modes_and_drop_packet_on_a_running_director(make_lab, workers):
    run = make_lab(2, "rr", workers=workers, tables=TABLES)
    sock = run.lab.control_socket
    shown = pylvs("sysctl", "--socket", sock)
    assert shown.returncode == 0
    assert "net.ipv4.vs.am_droprate = 2\n" in shown.stdout
    deadline = time.monotonic() + 10
    while "= 2" not in pylvs("sysctl", "--socket", sock, "drop_entry").stdout:
        assert time.monotonic() < deadline, "drop_entry did not switch to 2 on low memory"
        time.sleep(0.2)
    answers = run.answers(3)  # every other new connection's SYN is dropped: curl sends again
    assert sum(answers.values()) == 3 and set(answers) <= set(run.lab.server_names)
    status = json.loads(pylvs("status", "--socket", sock, "--json").stdout)
    assert status["counters"]["defense_dropped_packets"] >= 1
    assert status["connections"] >= 3 and status["max_connections"] > 0
    written = pylvs("sysctl", "--socket", sock, "-w", "net.ipv4.vs.drop_packet=0")
    assert (written.returncode, written.stdout) == (0, "net.ipv4.vs.drop_packet = 0\n")
    refused = pylvs("sysctl", "--socket", sock, "-w", "secure_tcp=9")
    assert refused.returncode == 255
    assert refused.stderr == 'sysctl: setting key "net.ipv4.vs.secure_tcp": Invalid argument\n'
    assert "net.ipv4.vs.secure_tcp = 0" in pylvs("sysctl", "--socket", sock).stdout

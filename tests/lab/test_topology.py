"""`pylvs lab dr` as a user runs it: the demo works and leaves nothing behind, also on Ctrl-C.

Each test looks only at what its own lab made: the namespaces and /run files named with the
prefix the lab prints, so another pylvs on the host cannot make it fail."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers.labs import running_lab

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab builds network namespaces: run as root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "curl", "ss")),
                       reason="needs iproute2, nftables and curl (scripts/install.sh)"),
]


def run_prefix(output: str) -> str:
    found = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", output, re.M)
    assert found, f"the lab did not say what it names:\n{output}"
    return found.group(1)


def left_behind(prefix: str) -> list[str]:
    """This run's namespaces and /run files that still exist."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]
    return names + [f"/run/{n}" for n in os.listdir("/run") if n.startswith(prefix)]


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_lab_demonstrates_and_cleans_up(mode):
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", mode, "--servers", "2",
                             "--requests", "4"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answers: rs1=2, rs2=2" in result.stdout
    assert "TCP sockets for the VIP in its own stack: 0" in result.stdout
    assert "IPVS connection entries" in result.stdout
    assert f"{mode.upper()} works" in result.stdout
    assert left_behind(run_prefix(result.stdout)) == []


def test_lab_interrupted_removes_everything():
    proc, seen = running_lab("dr", "--servers", "2", "--requests", "1000", until=3)
    prefix = run_prefix(seen)
    assert left_behind(prefix)  # it was running: its namespaces exist
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert left_behind(prefix) == []


def test_lab_refuses_unknown_scheduler_before_building_anything():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--scheduler", "nosuch"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown scheduler 'nosuch'" in result.stderr
    assert result.stdout == ""  # not even the lab's first line: it named and built nothing


def test_ha_lab_keeps_the_download_through_a_kill_9_and_cleans_up():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--ha", "--servers",
                             "2"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "director 2 already has the connection from its sync daemon" in out
    assert "ESTABLISHED 192.168.1.5:" in out
    assert "kill -9 director 1 (the MASTER)" in out
    assert "director 1's host holds no VIP" in out
    assert "download finished: 3,000,000 bytes, intact (sha256 matches)" in out
    assert "VRRP instance 51 on eth0: MASTER, priority 100, VIPs held" in out
    assert left_behind(run_prefix(out)) == []


def test_ha_is_a_dr_lab():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "nat", "--ha"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--ha builds a DR lab" in result.stderr

"""`pylvs lab dr` as a user runs it: the demo works and leaves nothing behind, also on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab builds network namespaces: run as root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "curl", "ss")),
                       reason="needs iproute2, nftables and curl (scripts/install.sh)"),
]


def lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("pylvs-")}


def lab_sockets() -> set[str]:
    return {name for name in os.listdir("/run") if name.startswith("pylvs-")}


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_lab_demonstrates_and_cleans_up(mode):
    before = lab_namespaces(), lab_sockets()
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", mode, "--servers", "2",
                             "--requests", "4"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answers: rs1=2, rs2=2" in result.stdout
    assert "TCP sockets for the VIP in its own stack: 0" in result.stdout
    assert "IPVS connection entries" in result.stdout
    assert f"{mode.upper()} works" in result.stdout
    assert (lab_namespaces(), lab_sockets()) == before


def test_lab_interrupted_removes_everything():
    before = lab_namespaces(), lab_sockets()
    proc = subprocess.Popen([sys.executable, "-m", "pylvs", "lab", "dr", "--servers", "2",
                             "--requests", "1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("request   3:"):
            break
    assert lab_namespaces() != before[0]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert (lab_namespaces(), lab_sockets()) == before


def test_lab_refuses_unknown_scheduler_before_building_anything():
    before = lab_namespaces()
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--scheduler", "nosuch"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown scheduler 'nosuch'" in result.stderr
    assert lab_namespaces() == before


def test_ha_lab_keeps_the_download_through_a_kill_9_and_cleans_up():
    before = lab_namespaces(), lab_sockets()
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
    assert (lab_namespaces(), lab_sockets()) == before


def test_ha_is_a_dr_lab():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "nat", "--ha"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--ha builds a DR lab" in result.stderr

"""`pylvs check` and `pylvs run`'s pre-flight in a network namespace of the run (issue 26): a
good config exits 0 and changes nothing (addresses, links, nftables read before and after), a
misspelt interface exits 2 naming the file and the key from both commands, and a keepalived.conf
without a vrrp_instance runs on the interface its real servers are routed through, saying so.
The shipped unit does not restart a refused config (RestartPreventExitStatus=2)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylvs.shell import control
from tests.test_examples import SYSTEM_UNITS, unit, verify

GOOD = """[director]
interface = "eth0"
control_socket = "{dir}/pylvs.sock"
offload = "xdp"

[[virtual_server]]
address = "10.70.0.100:80"
scheduler = "rr"
  [[virtual_server.real_server]]
  address = "10.70.0.11:80"
  [[virtual_server.real_server]]
  address = "10.71.0.12:80"
"""
LVS_ONLY = """! as Debian's LVS samples: no vrrp_instance to name the interface
virtual_server 10.70.0.100 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.71.0.11 80 {
    }
    real_server 10.71.0.12 80 {
    }
    real_server 10.70.0.13 80 {
    }
}
"""


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


class Host:
    """A namespace of the run: eth0 10.70.0.1/24 and eth1 10.71.0.1/24, veths whose peers
    stay in it; IPv4 only, so that its addresses read the same twice."""

    def __init__(self) -> None:
        self.ns = f"pylvs-chk-{secrets.token_hex(3)}"
        run("ip", "netns", "add", self.ns).check_returncode()
        run("ip", "netns", "exec", self.ns, "sysctl", "-qw",  # no DAD's changing flags
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        self.ip("link", "set", "lo", "up")
        for number, name in enumerate(("eth0", "eth1")):
            self.ip("link", "add", name, "type", "veth", "peer", "name", f"peer{number}")
            self.ip("addr", "add", f"10.7{number}.0.1/24", "dev", name)
            self.ip("link", "set", name, "up")
            self.ip("link", "set", f"peer{number}", "up")

    def ip(self, *args: str) -> str:
        found = run("ip", "-n", self.ns, *args)
        found.check_returncode()
        return found.stdout

    def state(self) -> tuple[str, str, str]:
        """What `pylvs run` would change: addresses, links (XDP), nftables."""
        nft = run("ip", "netns", "exec", self.ns, "nft", "list", "ruleset")
        return self.ip("addr"), self.ip("-d", "link"), nft.stdout

    def pylvs(self, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-m", "pylvs",
                               *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **(env or {})})

    def close(self) -> None:
        run("ip", "netns", "del", self.ns)


@pytest.fixture
def host() -> Iterator[Host]:
    made = Host()
    try:
        yield made
    finally:
        made.close()


def test_check_changes_nothing_and_says_what_run_would_do(host, tmp_path):
    path = tmp_path / "lb.toml"
    path.write_text(GOOD.format(dir=tmp_path))
    before = host.state()
    result = host.pylvs("check", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.state() == before
    out = result.stdout
    assert "ok    director.interface: eth0: veth, up, mtu 1500, 10.70.0.1/24" in out
    assert ("ok    virtual_server[0].real_server[1]: 10.71.0.12 (dr) on-link through eth1, "
            "from 10.71.0.1: pylvs also sends through eth1") in out
    assert "ok    director.offload: the XDP fast path's program and maps load here" in out
    assert "  add to eth0: 10.70.0.100/32\n" in out
    assert "  steal on eth0 (nftables, netdev ingress): tcp to 10.70.0.100 port 80\n" in out
    assert out.splitlines()[-1] == f"{path}: no problems: `pylvs run` would start as above"


def test_a_misspelt_interface_exits_2_from_check_and_from_run(host, tmp_path):
    path = tmp_path / "lb.toml"
    path.write_text(GOOD.format(dir=tmp_path).replace('"eth0"', '"eht0"'))
    before = host.state()
    checked = host.pylvs("check", str(path))
    assert checked.returncode == 2, checked.stdout
    said = "director.interface: no interface 'eht0' on this host"
    assert f"FAIL  {said} (it has: eth0, eth1, lo, peer0, peer1); did you mean 'eth0'?" in \
        checked.stdout
    started = host.pylvs("run", str(path))
    assert started.returncode == 2, started.stderr
    assert f"pylvs: error: bad config: {path}: {said}" in started.stderr
    assert host.state() == before and not (tmp_path / "pylvs.sock").exists()


def test_a_keepalived_conf_without_vrrp_instance_runs_on_the_routed_interface(host, tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(LVS_ONLY)
    sock = str(tmp_path / "pylvs.sock")
    chosen = ("the director's interface is eth1, the interface the routes to 2 of 3 real servers "
              "go through (10.71.0.11, 10.71.0.12): --interface names another")
    checked = host.pylvs("check", str(path), env={"PYLVS_SOCKET": sock})
    assert checked.returncode == 0, checked.stdout
    assert f"note  {chosen}" in checked.stdout and "  add to eth1: 10.70.0.100/32" in \
        checked.stdout
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", host.ns, sys.executable, "-m", "pylvs",
                                 "run", str(path)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYLVS_SOCKET": sock})
    try:
        deadline = time.monotonic() + 20
        while not answers(sock):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "10.70.0.100/32" in host.ip("addr", "show", "dev", "eth1")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert f"pylvs: warning: {path}: {chosen}" in log.read_text()


def answers(sock: str) -> bool:
    try:
        control.request(sock, ["-L", "-n"], timeout=1.0)
    except OSError:
        return False
    return True


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
                    reason="needs systemd-analyze (Debian's systemd; scripts/install.sh --test)")
def test_the_unit_verifies_and_does_not_restart_a_refused_config(tmp_path: Path):
    assert unit()["Service"]["RestartPreventExitStatus"] == "2"
    found = verify(tmp_path, (Path(__file__).parents[2] / "examples/pylvs.service").read_text())
    assert (found.returncode, found.stdout + found.stderr) == (0, "")

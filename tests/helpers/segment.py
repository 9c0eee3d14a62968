"""A VRRP segment in namespaces: hosts on one bridge running pylvs, keepalived and real servers
(Segment, segment_fixture for a test's fixture), and its helpers ip and until."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from pylvs.shell import control
from pylvs.shell.messages import Status

SUBNET, VIP = "192.168.50", "192.168.50.100"


class Segment:
    def __init__(self) -> None:
        self.prefix = f"pylvs-{secrets.token_hex(3)}"
        self.tmp = tempfile.mkdtemp(prefix="pylvs-vrrp-")
        self.made: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.bridge = self.ns("br")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        self.hosts = {name: self.host(name, number) for name, number in
                      (("client", 5), ("d1", 2), ("d2", 3))}

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        ip("netns", "add", full)
        self.made.append(full)
        ip("-n", full, "link", "set", "lo", "up")
        return full

    def host(self, name: str, number: int) -> str:
        ns = self.ns(name)
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", name,
           "netns", self.bridge)
        ip("-n", self.bridge, "link", "set", name, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{SUBNET}.{number}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ns

    def pylvs(self, name: str, priority: int, servers: tuple[int, ...] = (11,),
              sync: bool = False, vrrp: str = 'authentication = { auth_type = "PASS", '
              'auth_pass = "pylvs" }', workers: int = 1) -> None:
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as fh:
            fh.write(f'[director]\ninterface = "eth0"\ncontrol_socket = "{self.socket(name)}"\n'
                     f'sync_daemon = {str(sync).lower()}\nworkers = {workers}\n\n'
                     '[[virtual_server]]\n'
                     f'address = "{VIP}:80"\nscheduler = "rr"\n\n')
            for number in servers:
                fh.write(f'  [[virtual_server.real_server]]\n  address = "{SUBNET}.{number}:80"'
                         '\n\n')
            fh.write(f'[vrrp]\nvirtual_router_id = 51\npriority = {priority}\nadvert_int = 1\n'
                     f'{vrrp}\n')
        self.start(name, [sys.executable, "-m", "pylvs", "run", path])

    def real_server(self, name: str, number: int) -> None:
        """The seed's DR real server steps, then an HTTP server answering with its name."""
        self.hosts[name] = self.host(name, number)
        subprocess.run(["ip", "netns", "exec", self.hosts[name], sys.executable, "-m", "pylvs",
                        "realserver", "--mode", "dr", "--vip", VIP, "--interface", "eth0"],
                       check=True, capture_output=True, timeout=30)
        self.start(name, [sys.executable, "-m", "pylvs.lab.httpserver", "--name", name, "--port",
                          "80"])

    def keepalived(self, name: str, priority: int, instance: str = "  authentication {\n"
                   "    auth_type PASS\n    auth_pass pylvs\n  }\n") -> None:
        path = os.path.join(self.tmp, f"{name}.conf")
        with open(path, "w") as fh:
            fh.write(f"global_defs {{\n  router_id {name}\n}}\nvrrp_instance VI_1 {{\n"
                     "  state BACKUP\n  interface eth0\n  virtual_router_id 51\n"
                     f"  priority {priority}\n  advert_int 1\n{instance}"
                     f"  virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n")
        self.start(name, ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                          "--log-detail", "-f", path, "-p", f"{self.tmp}/{name}.pid",
                          "-r", f"{self.tmp}/{name}-vrrp.pid"])

    def start(self, name: str, argv: list[str]) -> None:
        log = open(os.path.join(self.tmp, f"{name}.log"), "a")  # noqa: SIM115 - per process
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.hosts[name], *argv],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()

    def socket(self, name: str) -> str:
        return f"/run/{self.prefix}-{name}.sock"

    def kill(self, name: str, everything: bool = False) -> None:
        """kill -9 of the process, or of all it started (keepalived's VRRP child too)."""
        proc = self.procs.pop(name)
        if everything:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> str:
        with open(os.path.join(self.tmp, f"{name}.log")) as fh:
            return fh.read()

    def holds_vip(self, name: str) -> bool:
        out = ip("-n", self.hosts[name], "-4", "addr", "show", "dev", "eth0")
        return f"{VIP}/32" in out

    def status(self, name: str, starting: bool = False) -> str:
        """`pylvs status`; ``starting``: "" while the director is not up yet."""
        try:
            return control.ask(self.socket(name), Status()).stdout
        except control.DirectorNotRunning:
            if starting:
                return ""
            raise

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


def segment_fixture():
    """A fresh Segment for one test; its namespaces gone afterwards (also for
    tests/e2e/test_keepalived_conf.py)."""
    made = Segment()
    try:
        yield made
    finally:
        made.close()
    assert not any(ns in ip("netns", "list") for ns in made.made)


def until(predicate, seconds: float = 15.0) -> float:
    """Seconds until ``predicate()`` held; fails the test if it never did."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"still not so after {seconds} s")

"""IPVS's connection sync for IPv6 connections end to end (issue 23): two real `pylvs run`
directors with an IPv6 DR service, the sync daemon started with ipvsadm's words (`pylvs adm
--start-daemon master|backup`, over an IPv6 group or IPVS's IPv4 default), a real `curl -6`
download through the first; `pylvs adm -Lnc` on the second shows the synced connection, and
when the first is killed with -9 and the client's next hop for the VIP moves to the second,
the download goes on to the same real server and arrives intact. And the refusals of
ip_vs_ctl.c while syncing: a real server of the other family, and the daemon while one exists.

All on one bridge, no VRRP (the client's neighbour entry for the VIP says which director gets
the frames; issue 23's VRRPv3 is another part):

    [client ::5]   [d1 pylvs ::2]   [d2 pylvs ::3]   [rs1 ::11, the VIP on lo]
    2001:db8:50::/64 (and 192.168.51.0/24 for an IPv4 transport), VIP 2001:db8:50::100
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from pylvs.lab.httpserver import blob
from pylvs.shell import control

NET6, NET4 = "2001:db8:50::", "192.168.51."
VIP6 = f"{NET6}100"
CLIENT6, RS6 = f"{NET6}5", f"{NET6}11"
GROUP6 = "ff02::8848"
INVALID = "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"
HOSTS = {"client": 5, "d1": 2, "d2": 3, "rs1": 11}


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=15).stdout


def until(predicate, seconds: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"still not so after {seconds} s")


class Segment6:
    """The namespaces above, their processes, and their removal."""

    def __init__(self) -> None:
        self.prefix = f"pylvs-s6{secrets.token_hex(3)}"
        self.tmp = tempfile.mkdtemp(prefix="pylvs-sync6-")
        self.made: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.bridge = self._ns("br")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        self.hosts = {name: self._host(name, number) for name, number in HOSTS.items()}

    def _ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        ip("netns", "add", full)
        self.made.append(full)
        for key in ("default", "all"):  # no DAD: addresses (link-local too) usable at once
            self.sysctl(full, f"net.ipv6.conf.{key}.accept_dad=0")
        ip("-n", full, "link", "set", "lo", "up")
        return full

    def sysctl(self, ns: str, setting: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=True,
                       timeout=15)

    def _host(self, name: str, number: int) -> str:
        ns = self._ns(name)
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", name,
           "netns", self.bridge)
        ip("-n", self.bridge, "link", "set", name, "master", "br0", "up")
        ip("-n", ns, "-6", "addr", "add", f"{NET6}{number}/64", "dev", "eth0", "nodad")
        ip("-n", ns, "addr", "add", f"{NET4}{number}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ns

    def mac(self, name: str) -> str:
        out = ip("-n", self.hosts[name], "link", "show", "eth0")
        return out.split("link/ether ")[1].split()[0]

    def start(self, name: str, argv: list[str], wait_for: str = "") -> None:
        log = open(os.path.join(self.tmp, f"{name}.log"), "a")  # noqa: SIM115 - per process
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.hosts[name], *argv],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()
        if wait_for:
            until(lambda: wait_for in self.log(name), 30)

    def log(self, name: str) -> str:
        with open(os.path.join(self.tmp, f"{name}.log")) as fh:
            return fh.read()

    def real_server(self) -> None:
        """`pylvs realserver` for an IPv6 DR VIP (the /128 on lo), an HTTP server on '::'."""
        subprocess.run(["ip", "netns", "exec", self.hosts["rs1"], sys.executable, "-m", "pylvs",
                        "realserver", "--mode", "dr", "--vip", VIP6, "--interface", "eth0"],
                       check=True, capture_output=True, timeout=60)
        self.start("rs1", [sys.executable, "-m", "pylvs.lab.httpserver", "--name", "rs1",
                           "--port", "80", "--bind", "::"], wait_for="serving")

    def socket(self, name: str) -> str:
        return f"/run/{self.prefix}-{name}.sock"

    def director(self, name: str) -> None:
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as fh:
            fh.write(f'[director]\ninterface = "eth0"\ncontrol_socket = "{self.socket(name)}"\n\n'
                     f'[[virtual_server]]\naddress = "[{VIP6}]:80"\nscheduler = "rr"\n\n'
                     f'  [[virtual_server.real_server]]\n  address = "[{RS6}]:80"\n')
        self.start(name, [sys.executable, "-m", "pylvs", "run", path])

        def answers() -> bool:
            try:
                control.request(self.socket(name), ["-L", "-n"], timeout=1.0)
            except OSError:
                return False
            return True
        until(answers, 30)

    def adm(self, name: str, *argv: str) -> tuple[int, str, str]:
        return control.request(self.socket(name), list(argv))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def next_hop_for_vip(self, name: str) -> None:
        """The client sends the VIP's frames to ``name``'s MAC (both directors hold the VIP)."""
        ip("-n", self.hosts["client"], "-6", "neigh", "replace", VIP6, "lladdr", self.mac(name),
           "dev", "eth0", "nud", "permanent")

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
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def segment():
    made = Segment6()
    try:
        yield made
    finally:
        made.close()
    listed = ip("netns", "list")
    assert not any(ns in listed for ns in made.made)


def _rows(segment: Segment6, name: str) -> list[list[str]]:
    rc, out, err = segment.adm(name, "-L", "-n", "-c")
    assert rc == 0, err
    return [line.split() for line in out.splitlines()[2:]]


@pytest.mark.parametrize("group", [GROUP6, None], ids=["ipv6-group", "ipv4-default-group"])
def test_an_ipv6_download_survives_the_death_of_the_director_it_went_through(segment, group):
    segment.real_server()
    segment.director("d1")
    segment.director("d2")
    transport = ["--mcast-group", group] if group else []
    assert segment.adm("d1", "--start-daemon", "master", "--mcast-interface", "eth0",
                       *transport)[0] == 0
    assert segment.adm("d2", "--start-daemon", "backup", "--mcast-interface", "eth0",
                       *transport)[0] == 0
    shown = group or "224.0.0.81"
    maxlen = 1452 if group else 1472
    assert segment.adm("d2", "-L", "--daemon")[1] == (
        f"backup sync daemon (mcast=eth0, syncid=0, maxlen={maxlen}, group={shown}, "
        "port=8848, ttl=1)\n")
    segment.next_hop_for_vip("d1")
    segment.sysctl(segment.hosts["client"], "net.ipv4.tcp_rmem=4096 131072 262144")
    size = 3_000_000
    curl = subprocess.Popen(["ip", "netns", "exec", segment.hosts["client"], "curl", "-6",
                             "-g", "-sS", "--noproxy", "*", "--max-time", "60",
                             "--limit-rate", "400k", f"http://[{VIP6}]:80/blob/{size}"],
                            stdout=subprocess.PIPE)
    try:
        until(lambda: any(row[2] == "ESTABLISHED" for row in _rows(segment, "d2")), 10)
        rows = _rows(segment, "d2")
        master_rows = _rows(segment, "d1")
        print("d2's -Lnc:", rows)
        assert len(rows) == 1, rows
        assert rows[0][0] == "TCP" and rows[0][2] == "ESTABLISHED"
        assert rows[0][3].startswith(f"[{CLIENT6}]:") and rows[0][4] == f"[{VIP6}]:80"
        assert rows[0][5] == f"[{RS6}]:80"
        assert [row[3:] for row in master_rows] == [row[3:] for row in rows]
        assert _in_packets(segment, "d2") == 0  # nothing went through d2 yet
        assert curl.poll() is None, "the download ended before the failover"
        segment.kill("d1")
        segment.next_hop_for_vip("d2")
        body, _ = curl.communicate(timeout=90)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    assert curl.returncode == 0 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob(size)).digest()
    assert _in_packets(segment, "d2") > 0  # the client's ACKs went on through d2


def _in_packets(segment: Segment6, name: str) -> int:
    """The service's InPkts in `-Ln --stats --exact`."""
    rc, out, err = segment.adm(name, "-L", "-n", "--stats", "--exact")
    assert rc == 0, err
    (line,) = [line for line in out.splitlines() if line.startswith("TCP")]
    return int(line.split()[3])


def test_ipvs_refuses_a_real_server_of_the_other_family_while_syncing(segment):
    """ip_vs_genl_set_cmd (EINVAL while ipvs->sync_state) and ip_vs_genl_new_daemon (EINVAL
    while mixed_address_family_dests > 0), in libipvs's words, exit status 255."""
    segment.director("d1")
    start = ("--start-daemon", "master", "--mcast-interface", "eth0", "--mcast-group", GROUP6)
    assert segment.adm("d1", *start)[0] == 0
    assert segment.adm("d1", "-A", "-t", f"[{VIP6}]:8080", "-s", "rr")[0] == 0
    tunnelled = ("-t", f"[{VIP6}]:8080", "-r", f"{NET4}11", "-i")
    assert segment.adm("d1", "-a", *tunnelled) == (255, "", INVALID)
    assert segment.adm("d1", "-a", "-t", f"[{VIP6}]:8080", "-r", f"[{RS6}]:8080", "-i")[0] == 0
    assert segment.adm("d1", "--stop-daemon", "master")[0] == 0
    assert segment.adm("d1", "-a", *tunnelled)[0] == 0
    assert segment.adm("d1", *start) == (255, "", INVALID)
    assert segment.adm("d1", "-L", "--daemon")[1] == ""
    assert segment.adm("d1", "-d", "-t", f"[{VIP6}]:8080", "-r", f"{NET4}11")[0] == 0
    assert segment.adm("d1", *start)[0] == 0
    assert segment.adm("d1", "-L", "--daemon")[1] == (
        f"master sync daemon (mcast=eth0, syncid=0, maxlen=1452, group={GROUP6}, port=8848, "
        "ttl=1)\n")

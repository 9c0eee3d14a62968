"""VRRP against real keepalived (Debian's, `keepalived --vrrp`) in namespaces of the run: the
two elect by priority in both orders, fail over both ways on kill -9 and preempt back; a killed
pylvs leaves no VIP behind (pylvs.shell.guard). Topology, all on one bridge:

    [client .5]   [d1 pylvs .2]   [d2 keepalived or pylvs .3]      VIP 192.168.50.100
"""

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

pytestmark = pytest.mark.skipif(shutil.which("keepalived") is None,
                                reason="needs keepalived (scripts/install.sh --test)")

SUBNET, VIP = "192.168.50", "192.168.50.100"
DOWN_INTERVAL = 3 + (256 - 100) / 256  # Master_Down_Interval at priority 100, advert 1 s


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


@pytest.fixture
def segment():
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


def only(segment: Segment, name: str) -> bool:
    return segment.holds_vip(name) and not segment.holds_vip("d2" if name == "d1" else "d1")


def test_pylvs_wins_by_priority_fails_over_to_keepalived_and_preempts_back(segment):
    segment.keepalived("d2", 100)
    until(lambda: segment.holds_vip("d2"))
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))  # a higher priority preempts keepalived's master
    assert "MASTER, priority 150, VIPs held" in segment.status("d1")
    segment.kill("d1")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after pylvs was killed")
    assert took <= DOWN_INTERVAL + 1.0
    assert not segment.holds_vip("d1"), "the killed pylvs host still holds the VIP"
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    assert "Entering BACKUP STATE" in segment.log("d2")


def test_keepalived_wins_by_priority_and_pylvs_takes_over_when_it_dies(segment):
    segment.pylvs("d1", 100)
    until(lambda: segment.holds_vip("d1"))
    segment.keepalived("d2", 150)
    until(lambda: only(segment, "d2"))
    assert "BACKUP, priority 100, VIPs not held" in segment.status("d1")
    segment.kill("d2", everything=True)  # keepalived's VRRP child too: nothing says goodbye
    took = until(lambda: segment.holds_vip("d1"))
    print(f"pylvs took the VIP {took:.2f} s after keepalived was killed")
    assert took <= DOWN_INTERVAL + 1.0
    segment.keepalived("d2", 150)
    until(lambda: segment.holds_vip("d2") and not segment.holds_vip("d1"))
    assert "vrrp: MASTER -> BACKUP" in segment.log("d1")


def test_a_stopped_pylvs_master_hands_over_at_once_with_priority_zero(segment):
    """RFC 3768 §6.4.3: a master leaving sends priority 0; the backup takes over after its
    Skew_Time instead of a whole Master_Down_Interval."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    segment.procs["d1"].send_signal(signal.SIGTERM)
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after pylvs stopped")
    assert took < DOWN_INTERVAL
    assert not segment.holds_vip("d1")


def test_a_master_whose_link_goes_down_is_replaced_and_wins_back_when_it_returns(segment):
    """The seed's way of failing a director: `ip link set eth0 down`."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    ip("-n", segment.hosts["d1"], "link", "set", "eth0", "down")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after the master's link went down")
    ip("-n", segment.hosts["d1"], "link", "set", "eth0", "up")
    until(lambda: segment.holds_vip("d1") and not segment.holds_vip("d2"))
    assert "MASTER, priority 150" in segment.status("d1")


@pytest.mark.parametrize("failure,workers", [("kill -9", 1), ("link down", 1), ("kill -9", 2)])
def test_two_pylvs_directors_keep_a_download_alive_through_a_failure(segment, failure, workers):
    """Issue 7's whole story: VRRP moves the VIP, the sync daemon has already given the backup
    the connection, so the client's transfer goes on to the same real server, intact; the
    master fails as the seed has it fail, killed or with its interface down."""
    import hashlib

    from pylvs.lab.httpserver import blob
    for name, number in (("rs1", 11), ("rs2", 12)):
        segment.real_server(name, number)
    segment.pylvs("d1", 150, (11, 12), sync=True, workers=workers)
    until(lambda: segment.holds_vip("d1"))
    segment.pylvs("d2", 100, (11, 12), sync=True, workers=workers)
    until(lambda: "BACKUP" in segment.status("d2", starting=True))
    size = 3_000_000
    ip("netns", "exec", segment.hosts["client"], "sysctl", "-qw",  # little in flight: see
       "net.ipv4.tcp_rmem=4096 131072 262144")                     # pylvs.lab.failover
    started = time.monotonic()
    curl = subprocess.Popen(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                             "--noproxy", "*", "--max-time", "60", "--limit-rate", "400k",
                             f"http://{VIP}/blob/{size}"], stdout=subprocess.PIPE)
    time.sleep(2.5)
    synced = control.request(segment.socket("d2"), ["-L", "-n", "-c"])[1]
    assert f"{SUBNET}.5:" in synced and "ESTABLISHED" in synced, synced
    if failure == "kill -9":
        segment.kill("d1")
    else:
        ip("-n", segment.hosts["d1"], "link", "set", "eth0", "down")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"the backup took the VIP {took:.2f} s after the master's {failure}")
    assert failure != "kill -9" or not segment.holds_vip("d1")
    body, _ = curl.communicate(timeout=90)
    print(f"the download took {time.monotonic() - started:.1f} s")
    assert curl.returncode == 0 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob(size)).digest()


def neighbour(segment: Segment, ns: str, address: str) -> str:
    out = ip("-n", segment.hosts[ns], "neigh", "show", address)
    return out.split("lladdr ")[1].split()[0] if "lladdr " in out else ""


def test_split_brain_heals_by_priority_with_fresh_gratuitous_arps(segment):
    """reference §8.4: with adverts blocked both become MASTER and hold the VIP; once they flow
    again the lower priority steps down and the winner re-sends adverts and gratuitous ARPs, so
    the client's stale ARP entry moves back to it."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    block = ("table netdev pylvs_test_block {\n  chain in {\n    type filter hook ingress "
             'device "eth0" priority 0;\n    ip protocol vrrp drop\n  }\n}\n')
    subprocess.run(["ip", "netns", "exec", segment.hosts["d2"], "nft", "-f", "-"], input=block,
                   text=True, check=True)
    until(lambda: segment.holds_vip("d1") and segment.holds_vip("d2"))  # split brain
    d1_mac = netio_mac(segment, "d1")
    d2_mac = netio_mac(segment, "d2")
    # the client learns the VIP from whichever answers: make it the wrong one, d2
    ip("-n", segment.hosts["client"], "neigh", "replace", VIP, "lladdr", d2_mac, "dev", "eth0",
       "nud", "stale")
    subprocess.run(["ip", "netns", "exec", segment.hosts["d2"], "nft", "delete", "table",
                    "netdev", "pylvs_test_block"], check=True)
    until(lambda: only(segment, "d1"))
    until(lambda: neighbour(segment, "client", VIP) == d1_mac)
    assert "received higher priority" in segment.log("d2") or "Entering BACKUP" in \
        segment.log("d2")


def netio_mac(segment: Segment, name: str) -> str:
    out = ip("-n", segment.hosts[name], "link", "show", "eth0")
    return out.split("link/ether ")[1].split()[0]


@pytest.mark.parametrize("variant", ["VRRPv3", "unicast"])
def test_keepalived_interop_in_vrrpv3_and_with_unicast_peers(segment, variant):
    if variant == "VRRPv3":
        ours, theirs = "version = 3", "  version 3\n"
    else:
        ours = f'unicast_peers = ["{SUBNET}.3"]'
        theirs = f"  unicast_src_ip {SUBNET}.3\n  unicast_peer {{\n    {SUBNET}.2\n  }}\n"
    segment.keepalived("d2", 100, theirs)
    until(lambda: segment.holds_vip("d2"))
    segment.pylvs("d1", 150, vrrp=ours)
    until(lambda: only(segment, "d1"))
    segment.kill("d1")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"{variant}: keepalived took the VIP {took:.2f} s after pylvs was killed")
    assert not segment.holds_vip("d1")

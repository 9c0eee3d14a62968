"""Two network namespaces joined by a veth pair, made by the test that asks for ``topo`` and
removed at its teardown (the host is never touched):

    [plv<pid>d: "vd" 198.51.100.1/24]  <== veth ==>  [plv<pid>p: "vp" 198.51.100.2/24]
      director side (the shell's objects)            peer (a kernel sending real traffic)

Code runs "inside" a namespace in a short-lived thread that setns()es first: sockets and netlink
sockets made there stay in that namespace, so the test body uses them from the main thread.
Offloads stay at their defaults (on), as in real labs.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from pylvs.shell import interfaces, rings

NEEDS_NAMESPACES = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's `ip`"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables' `nft`"),
]
"""A test module's marks when it uses the veth pair."""

DIR_IP = "198.51.100.1"
PEER_IP = "198.51.100.2"
VIP = "198.51.100.100"
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33
_libc = ctypes.CDLL(None, use_errno=True)



def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


def in_ns(ns: str, fn, *args, timeout: float = 15.0):
    """Run fn(*args) in a fresh thread that first joined network namespace ``ns``."""
    box: dict = {}

    def target() -> None:
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise TimeoutError(f"{fn!r} in {ns} did not finish in {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Topo:
    def __init__(self) -> None:
        pfx = f"plv{os.getpid()}"
        self.d = pfx + "d"
        self.p = pfx + "p"
        self.table = f"pylvs_{os.getpid()}"

    def up(self) -> None:
        ip("netns", "add", self.d)
        ip("netns", "add", self.p)
        ip("-n", self.d, "link", "add", "vd", "type", "veth", "peer", "name", "vp",
           "netns", self.p)
        ip("-n", self.d, "addr", "add", f"{DIR_IP}/24", "dev", "vd")
        ip("-n", self.p, "addr", "add", f"{PEER_IP}/24", "dev", "vp")
        for ns, dev in ((self.d, "vd"), (self.p, "vp")):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            # no IPv6 chatter (router solicitations, DAD) in the captures
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            "net.ipv6.conf.all.disable_ipv6=1"], capture_output=True, timeout=10)

    def down(self) -> None:
        for ns in (self.d, self.p):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def mac(self, ns: str, dev: str) -> bytes:
        return in_ns(ns, interfaces.interface_mac, dev)


@pytest.fixture
def topo():
    t = Topo()
    try:
        t.up()
        yield t
    finally:
        t.down()
    assert t.d not in ip("netns", "list") and t.p not in ip("netns", "list")


@pytest.fixture
def psock(topo):
    ps = in_ns(topo.d, rings.PacketSocket, "vd")
    try:
        yield ps
    finally:
        ps.close()


def udp_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    return s


def collect(ps: rings.PacketSocket, pred, *, seconds: float = 3.0) -> list[tuple[bytes, int]]:
    """Copies of frames (with status) matching pred, until one matches or the time is up."""
    deadline = time.monotonic() + seconds
    found: list[tuple[bytes, int]] = []
    while not found and time.monotonic() < deadline:
        for view, status in ps.receive(0.2):
            frame = bytes(view)
            if pred(frame):
                found.append((frame, status))
    return found


def is_udp_to(port: int):
    def pred(f: bytes) -> bool:
        return (len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 17
                and struct.unpack_from("!H", f, 36)[0] == port)
    return pred


def everything(ps: rings.PacketSocket, seconds: float) -> list[bytes]:
    """Copies of every frame received in the next ``seconds``."""
    deadline = time.monotonic() + seconds
    seen: list[bytes] = []
    while time.monotonic() < deadline:
        seen += [bytes(v) for v, _ in ps.receive(0.1)]
    return seen


DIR_IP6 = "2001:db8::1"
PEER_IP6 = "2001:db8::2"
VIP6 = "2001:db8::100"


def with_ipv6(topo: Topo) -> None:
    """IPv6 back on in both namespaces (the fixture turns it off), an address on each end."""
    for ns, dev, addr in ((topo.d, "vd", DIR_IP6), (topo.p, "vp", PEER_IP6)):
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=0"], check=True, timeout=10)
        ip("-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")

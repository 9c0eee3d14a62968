"""GUE and GRE at a real server without fou or ip_gre (issue 24): `pylvs realserver --mode tun
--tun-type gue|gre` runs its userspace decapsulator in a namespace of its own; a sender
namespace, joined to it by a veth pair, sends it frames made by pylvs.core.encap (as the
director's forwarder will), IPv4 and IPv6 outer headers, each checksum mode; a UDP socket on
the VIP behind the decapsulator's TUN device receives the inner datagrams, which proves they
reached the device and passed the stack's checks (the inner UDP checksum too: a remote
checksum option's is completed by the decapsulator). `--check` sees which type runs.

    [S: s0 172.16.0.1, 2001:db8:16::1] <== veth ==> [R: r0 172.16.0.11, 2001:db8:16::11]
      frames from encap.tunnel_xmit                   pylvs realserver --mode tun ...
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pylvs.core import encap
from pylvs.core.csum_delta import fold
from pylvs.core.ipv6 import parse6, pseudo_sum6
from pylvs.core.packet import parse
from tests.helpers.veth import in_ns

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2: builds network namespaces")
ROOT = Path(__file__).resolve().parents[2]
S4, R4 = "172.16.0.1", "172.16.0.11"
S6, R6 = "2001:db8:16::1", "2001:db8:16::11"
VIP4, VIP6 = "192.168.1.100", "2001:db8:1::100"
CLIENT4, CLIENT6 = "203.0.113.5", "2001:db8:99::5"
PORT = 6080
SERVICE = 9999


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


@pytest.fixture
def pair():
    tag = secrets.token_hex(3)
    s, r = f"pylvs-s-{tag}", f"pylvs-r-{tag}"
    try:
        ip("netns", "add", s)
        ip("netns", "add", r)
        ip("-n", s, "link", "add", "s0", "type", "veth", "peer", "name", "r0", "netns", r)
        for ns, dev, four, six in ((s, "s0", S4, S6), (r, "r0", R4, R6)):
            ip("-n", ns, "addr", "add", f"{four}/24", "dev", dev)
            ip("-n", ns, "addr", "add", f"{six}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        yield s, r
    finally:
        for ns in (s, r):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def mac_of(ns: str, dev: str) -> bytes:
    text = ip("-n", ns, "-o", "link", "show", dev)
    return bytes.fromhex(text.split("link/ether ")[1].split()[0].replace(":", ""))


def realserver(ns: str, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "pylvs",
                           "realserver", *argv], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, **kwargs)


class Decapsulator:
    """`pylvs realserver --mode tun ...` in the foreground in ``ns``, until ``stop``."""

    def __init__(self, ns: str, vip: str, *argv: str) -> None:
        self.ns, self.vip, self.argv = ns, vip, argv
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "pylvs",
                                      "realserver", "--mode", "tun", "--vip", vip, *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        self.said = ""
        while "running; stop with" not in self.said and self.proc.poll() is None:
            self.said += self.proc.stdout.readline()
        assert "running; stop with" in self.said, self.said + self.proc.stderr.read()

    def stop(self) -> str:
        undone = realserver(self.ns, "--mode", "tun", "--vip", self.vip, "--undo")
        assert undone.returncode == 0, undone.stderr
        out, _ = self.proc.communicate(timeout=15)
        self.said += out
        return self.said

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def receiver(ns: str, vip: str) -> socket.socket:
    """A UDP socket on [VIP]:9999 in ``ns``: what the unwrapped datagrams are addressed to."""
    def make() -> socket.socket:
        family = socket.AF_INET6 if ":" in vip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((vip, SERVICE))
        sock.settimeout(3)
        return sock
    return in_ns(ns, make)


def sender(ns: str) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind(("s0", 0))
        return sock
    return in_ns(ns, make)


def addr(text: str) -> int:
    return int(ipaddress.ip_address(text))


def inner_frame(vip: str, payload: bytes) -> bytes:
    if ":" in vip:
        layer = IPv6(src=CLIENT6, dst=vip, hlim=64)
    else:
        layer = IP(src=CLIENT4, dst=vip, ttl=64, flags="DF")
    return bytes(Ether() / layer / UDP(sport=40000, dport=SERVICE) / payload)


def partial(frame: bytes) -> bytes:
    """The inner UDP checksum as a local sender's offload leaves it: the pseudo-header sum."""
    out = bytearray(frame)
    if out[12:14] == b"\x86\xdd":
        flow = parse6(frame)
        pseudo = pseudo_sum6(out, 14, flow.payload_len, 17)
    else:
        flow = parse(frame)
        pseudo = sum(struct.unpack("!4H", out[26:34])) + 17 + flow.ip_len - 20
    struct.pack_into("!H", out, flow.l4off + 6, fold(pseudo))
    return bytes(out)


def tunnelled(pair_macs: bytes, vip: str, tun_type: str, outer: int, flags: str,
              payload: bytes, make_partial: bool = False) -> bytes:
    frame = inner_frame(vip, payload)
    if make_partial:
        frame = partial(frame)
    flow = parse6(frame) if ":" in vip else parse(frame)
    src, dst = (addr(S4), addr(R4)) if outer == 4 else (addr(S6), addr(R6))
    return bytes(encap.tunnel_xmit(bytearray(frame), flow, tun_type, outer, src, dst, pair_macs,
                                   port=PORT, flags=flags, ip_id=7, partial=make_partial))


def received(sock: socket.socket, count: int) -> set[bytes]:
    got = set()
    try:
        for _ in range(count):
            got.add(sock.recv(2048))
    except TimeoutError:
        pass
    return got


GUE_CASES = [(4, "nocsum", False), (4, "csum", False), (4, "remcsum", True),
             (6, "nocsum", False), (6, "csum", False), (6, "remcsum", True)]
GRE_CASES = [(4, "nocsum", False), (4, "csum", False), (6, "nocsum", False), (6, "csum", False)]


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_gue_reaches_the_device_from_both_outer_families_in_each_checksum_mode(pair, vip):
    s, r = pair
    macs = mac_of(r, "r0") + mac_of(s, "s0")
    worker = Decapsulator(r, vip, "--tun-type", "gue", "--tun-port", str(PORT))
    try:
        assert "decapsulating GUE in userspace" in worker.said
        assert f"UDP socket on port {PORT} (GUE over IPv4)" in worker.said
        assert f"ip fou add port {PORT} gue" in worker.said          # the kernel's way, said
        into, out = receiver(r, vip), sender(s)
        wanted = set()
        for outer, flags, make_partial in GUE_CASES:
            payload = f"gue over IPv{outer} {flags}".encode()
            wanted.add(payload)
            out.send(tunnelled(macs, vip, "gue", outer, flags, payload, make_partial))
        assert received(into, len(wanted)) == wanted
        checked = realserver(r, "--check", "--mode", "tun", "--tun-type", "gue", "--tun-port",
                             str(PORT), "--vip", vip)
        assert checked.returncode == 0, checked.stdout
        assert f"unwraps GUE on UDP port {PORT}" in checked.stdout
        other = realserver(r, "--check", "--mode", "tun", "--tun-type", "gre", "--vip", vip)
        assert other.returncode == 1 and "not GRE" in other.stdout
        into.close()
        out.close()
    finally:
        said = worker.stop() if worker.proc.poll() is None else worker.said
        worker.kill()
    assert "'decapsulated': 6" in said


def test_gre_reaches_the_device_and_a_bad_checksum_does_not(pair):
    s, r = pair
    macs = mac_of(r, "r0") + mac_of(s, "s0")
    worker = Decapsulator(r, VIP4, "--tun-type", "gre")
    try:
        assert "raw socket on IP protocol 47 (GRE)" in worker.said
        assert "ip link set gre0 up" in worker.said
        into, out = receiver(r, VIP4), sender(s)
        wanted = set()
        for outer, flags, _ in GRE_CASES:
            payload = f"gre over IPv{outer} {flags}".encode()
            wanted.add(payload)
            out.send(tunnelled(macs, VIP4, "gre", outer, flags, payload))
        spoilt = bytearray(tunnelled(macs, VIP4, "gre", 4, "csum", b"spoilt"))
        spoilt[-1] ^= 0x55                                   # the GRE checksum no longer adds
        out.send(bytes(spoilt))
        assert received(into, len(wanted) + 1) == wanted
        checked = realserver(r, "--check", "--mode", "tun", "--tun-type", "gre", "--vip", VIP4)
        assert checked.returncode == 0, checked.stdout
        into.close()
        out.close()
    finally:
        said = worker.stop() if worker.proc.poll() is None else worker.said
        worker.kill()
    assert "'decapsulated': 4" in said and "'bad_checksum': 1" in said


def test_gue_needs_its_port_and_the_check_names_a_wrong_one(pair):
    _, r = pair
    refused = realserver(r, "--mode", "tun", "--tun-type", "gue", "--vip", VIP4)
    assert refused.returncode == 1 and "--tun-port" in refused.stderr
    worker = Decapsulator(r, VIP4, "--tun-type", "gue", "--tun-port", "7000")
    try:
        checked = realserver(r, "--check", "--mode", "tun", "--tun-type", "gue", "--tun-port",
                             str(PORT), "--vip", VIP4)
        assert checked.returncode == 1
        assert "unwraps GUE on UDP port 7000, not GUE on UDP port 6080" in " ".join(
            checked.stdout.split())
    finally:
        worker.stop()
        worker.kill()

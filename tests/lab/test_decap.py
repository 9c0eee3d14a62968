"""The userspace decapsulator's unwrapping of IPVS's four TUN encapsulations (IP-in-IP, ip6ip6,
4in6, 6in4), on packets built with scapy as a raw socket of each family reads them: an IPv4
raw socket the whole packet, an IPv6 one the payload after the outer header."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from pylvs.lab import decap

VIP4, VIP6 = "192.168.1.100", "2001:db8:1::100"
CLIENT4, CLIENT6 = "192.168.1.5", "2001:db8:1::5"


def inner(family: int, dst: str = "") -> bytes:
    if family == 4:
        return bytes(IP(src=CLIENT4, dst=dst or VIP4, ttl=63) / TCP(sport=40000, dport=80,
                                                                     flags="S"))
    return bytes(IPv6(src=CLIENT6, dst=dst or VIP6, hlim=63) / TCP(sport=40000, dport=80,
                                                                    flags="S"))


def outer4(payload: bytes, proto: int) -> bytes:
    return bytes(IP(src="192.168.1.2", dst="172.16.0.11", proto=proto) / payload)


@pytest.mark.parametrize(("outer", "family", "read"), [
    (4, 4, lambda p: outer4(p, 4)),                                 # IP-in-IP
    (4, 6, lambda p: outer4(p, 41)),                                # 6in4
    (6, 6, lambda p: p),                                            # ip6ip6: the payload
    (6, 4, lambda p: p),                                            # 4in6: the payload
])
def test_each_encapsulation_gives_back_the_inner_packet_whole(outer, family, read):
    packet = inner(family)
    assert decap.decapsulate(read(packet), outer, family) == packet
    assert decap.destination(packet) == socket.inet_pton(
        socket.AF_INET6 if family == 6 else socket.AF_INET, VIP6 if family == 6 else VIP4)


def test_what_is_not_one_whole_packet_of_the_family_is_refused():
    v4, v6 = inner(4), inner(6)
    assert decap.decapsulate(v4, 6, 6) is None          # 4in6 read by the IPv6 VIP's socket
    assert decap.decapsulate(v6[:-1], 6, 6) is None     # truncated: payload length disagrees
    assert decap.decapsulate(v4 + b"\0", 6, 4) is None  # total length disagrees
    assert decap.decapsulate(outer4(v6, 4), 4, 6) is None   # protocol 4 is not 6in4
    assert decap.decapsulate(outer4(v6, 41)[:30], 4, 6) is None
    assert decap.decapsulate(b"", 4, 4) is None and decap.decapsulate(b"\x60", 6, 6) is None


def test_each_vip_family_listens_on_both_outer_families():
    assert [(af, proto) for af, proto, _ in decap.SOCKETS[4]] == [
        (socket.AF_INET, 4), (socket.AF_INET6, 4)]
    assert [(af, proto) for af, proto, _ in decap.SOCKETS[6]] == [
        (socket.AF_INET6, 41), (socket.AF_INET, 41)]
    assert decap.device_for(VIP4) == "pylvs-tun0" and decap.device_for(VIP6) == "pylvs-tun6"


def test_handle_writes_only_the_vips_packets_to_the_device():
    """The Decapsulator's counting and writing, with a pipe in place of the TUN device."""
    worker = decap.Decapsulator.__new__(decap.Decapsulator)
    worker.family, worker.vip = 6, socket.inet_pton(socket.AF_INET6, VIP6)
    worker.counters = Counter()
    read_end, worker.tun = os.pipe()
    try:
        worker.handle(outer4(inner(6), 41), 4)                      # 6in4
        worker.handle(inner(6), 6)                                  # ip6ip6
        worker.handle(inner(6, dst="2001:db8:1::99"), 6)            # another address
        worker.handle(b"\x60garbage", 6)
        assert dict(worker.counters) == {"decapsulated": 2, "not_for_vip": 1, "malformed": 1}
        assert os.read(read_end, 65535) == inner(6) * 2
    finally:
        os.close(read_end)
        os.close(worker.tun)


root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                          reason="needs root and iproute2 to make a network namespace")

RUN_IN_NS = """
import sys
from collections import Counter
from pylvs.lab.decap import Decapsulator
worker = Decapsulator(sys.argv[1])
print("\\n".join(worker.steps()))
worker.close()
"""


@root
@pytest.mark.parametrize(("vip", "device", "says"), [
    (VIP6, "pylvs-tun6", ["ip -6 addr add 2001:db8:1::100/128 dev pylvs-tun6 nodad",
                          "no rp_filter to turn off: IPv6 has none",
                          "raw IPv6 socket on next header 41 (ip6ip6)",
                          "raw socket on IP protocol 41 (6in4)"]),
    (VIP4, "pylvs-tun0", ["ip addr add 192.168.1.100/32 dev pylvs-tun0",
                          "net.ipv4.conf.pylvs-tun0.rp_filter = 0",
                          "raw socket on IP protocol 4 (IP-in-IP)",
                          "raw IPv6 socket on next header 4 (4in6)"]),
])
def test_the_decapsulator_makes_its_device_and_leaves_nothing(vip, device, says):
    ns = f"pylvs-t-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", RUN_IN_NS, vip],
                              capture_output=True, text=True, check=True).stdout
        assert done.splitlines()[0] == f"TUN device {device} (userspace decapsulation), up"
        for words in says:
            assert words in done
        links = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True,
                               check=True).stdout
        assert device not in links  # closing the descriptor removed the device
    finally:
        subprocess.run(["ip", "netns", "del", ns])

"""The userspace decapsulator's unwrapping of IPVS's four TUN encapsulations (IP-in-IP, ip6ip6,
4in6, 6in4), on packets built with scapy as a raw socket of each family reads them: an IPv4
raw socket the whole packet, an IPv6 one the payload after the outer header; and of GUE and GRE
(issue 24), on packets made by pylvs.core.encap as the director sends them."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pylvs.core import encap
from pylvs.core.csum_delta import fold
from pylvs.core.ipv6 import parse6
from pylvs.core.packet import parse
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


# -- GUE and GRE (issue 24) --------------------------------------------------------------------


def encapsulated(tun_type: str, family: int, outer: int, flags: str = "nocsum",
                 dst: str = "") -> bytes:
    """What a socket of ``outer``'s family reads of a packet encap sends: GUE's UDP payload,
    GRE's whole IPv4 packet or IPv6 payload."""
    frame = bytes(Ether(type=0x0800 if family == 4 else 0x86DD)) + inner(family, dst)
    flow = parse6(frame) if family == 6 else parse(frame)
    src, to = (0xAC100001, 0xAC10000B) if outer == 4 else (1, 2)
    at = 14 + (20 if outer == 4 else 40)
    if tun_type == "gue":
        out = encap.gue_encapsulate(frame, flow, src, to, outer, 6080, flags, 1)
        return bytes(out[at + 8:])
    out = encap.gre_encapsulate(frame, flow, src, to, outer, flags, 1)
    return bytes(out[14:] if outer == 4 else out[at:])


def worker_for(vip: str, tun_type: str, port: int = 0) -> decap.Decapsulator:
    """A Decapsulator's counting and writing, with a pipe in place of the TUN device."""
    worker = decap.Decapsulator.__new__(decap.Decapsulator)
    worker.family = decap.family_of(vip)
    worker.vip = socket.inet_pton(socket.AF_INET6 if worker.family == 6 else socket.AF_INET,
                                  vip)
    worker.tun_type, worker.port = tun_type, port
    worker.counters = Counter()
    return worker


@pytest.mark.parametrize("tun_type", ["gue", "gre"])
@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_gue_and_gre_of_either_outer_family_reach_the_device(tun_type, vip):
    family = decap.family_of(vip)
    worker = worker_for(vip, tun_type, 6080)
    read_end, worker.tun = os.pipe()
    try:
        for outer in (4, 6):
            for flags in ("nocsum", "csum"):
                worker.handle(encapsulated(tun_type, family, outer, flags), outer)
        assert worker.counters["decapsulated"] == 4
        assert os.read(read_end, 65535) == inner(family) * 4
    finally:
        os.close(read_end)
        os.close(worker.tun)


def test_what_is_not_the_vips_is_counted_by_why():
    worker = worker_for(VIP4, "gre")
    read_end, worker.tun = os.pipe()
    try:
        worker.handle(encapsulated("gre", 6, 4, dst=VIP6), 4)             # the other family
        worker.handle(encapsulated("gre", 4, 4, dst="192.168.1.99"), 4)   # another address
        spoilt = bytearray(encapsulated("gre", 4, 4, "csum"))
        spoilt[-1] ^= 1
        worker.handle(bytes(spoilt), 4)
        worker.handle(encapsulated("gre", 4, 6)[:-1], 6)                  # cut short
        worker.handle(bytes(IP(dst=VIP4, proto=6) / TCP()), 4)           # not GRE at all
        assert dict(worker.counters) == {"other_family": 1, "not_for_vip": 1,
                                         "bad_checksum": 1, "malformed": 2}
    finally:
        os.close(read_end)
        os.close(worker.tun)
    gue = worker_for(VIP4, "gue", 6080)
    gue.tun = -1
    gue.handle(b"\x20\x04\x00\x00" + inner(4), 4)                          # a control message
    gue.handle(b"\x00\x11\x00\x00" + inner(4), 4)                          # proto/ctype 17
    assert dict(gue.counters) == {"control": 1, "not_ip": 1}


def test_a_remote_checksum_option_is_completed_before_the_device():
    """The inner UDP checksum left partial (the pseudo-header's folded sum, as a local sender's
    offload leaves it) leaves the device whole: scapy's checksum of the datagram."""
    whole = bytes(Ether() / IP(src=CLIENT4, dst=VIP4) / UDP(sport=5, dport=9999) / b"hi")
    frame = bytearray(whole)
    pseudo = sum(struct.unpack("!4H", frame[26:34])) + 17 + 10
    frame[40:42] = fold(pseudo).to_bytes(2, "big")
    out = encap.gue_encapsulate(frame, parse(bytes(frame)), 1, 2, 4, 6080, "remcsum", 1,
                                partial=True)
    assert out[42] == 2                                          # Hlen 2: the option is there
    worker = worker_for(VIP4, "gue", 6080)
    read_end, worker.tun = os.pipe()
    try:
        worker.handle(bytes(out[42:]), 4)
        assert os.read(read_end, 65535) == whole[14:]
    finally:
        os.close(read_end)
        os.close(worker.tun)


def test_each_type_listens_where_its_packets_arrive():
    assert [(af, kind, proto) for af, kind, proto, _ in decap.sockets_for(4, "gue", 6080)] == [
        (socket.AF_INET, socket.SOCK_DGRAM, 0), (socket.AF_INET6, socket.SOCK_DGRAM, 0)]
    assert [(af, kind, proto) for af, kind, proto, _ in decap.sockets_for(6, "gre")] == [
        (socket.AF_INET, socket.SOCK_RAW, 47), (socket.AF_INET6, socket.SOCK_RAW, 47)]
    assert [proto for _, _, proto, _ in decap.sockets_for(6)] == [41, 41]
    assert decap.check_tunnel("gue", 6080) == 6080 and decap.check_tunnel("gre", None) == 0
    for tun_type, port, words in (("gue", None, "--tun-port"), ("gue", 0, "--tun-port"),
                                  ("gre", 6080, "goes with --tun-type gue"),
                                  ("vxlan", None, "tunnel type")):
        with pytest.raises(ValueError, match=words):
            decap.check_tunnel(tun_type, port)


def test_the_kernel_steps_for_each_type():
    gue = decap.kernel_steps(VIP4, "gue", 6080)
    assert gue[:3] == ["modprobe fou", "modprobe ipip", "ip fou add port 6080 gue"]
    assert gue[3].startswith("ip -6 fou add port 6080 gue")
    assert gue[4:] == ["ip link set tunl0 up", f"ip addr add {VIP4}/32 dev tunl0",
                       "sysctl -w net.ipv4.conf.all.rp_filter=0",
                       "sysctl -w net.ipv4.conf.tunl0.rp_filter=0"]
    gre = decap.kernel_steps(VIP6, "gre")
    assert "ip link set gre0 up" in gre and gre[-1] == f"ip -6 addr add {VIP6}/128 dev gre0 nodad"
    assert "ip link set ip6tnl0 up" in decap.kernel_steps(VIP6, "gue", 1)


def test_an_ipv4_payload_is_its_total_length():
    packet = outer4(b"GRE!" + b"x" * 10, 47)
    assert decap.outer_ipv4_payload(packet + b"pad", 47) == b"GRE!" + b"x" * 10
    assert decap.outer_ipv4_payload(packet, 4) is None
    assert decap.outer_ipv4_payload(packet[:-1], 47) is None


GUE_IN_NS = """
import sys
from pylvs.lab.decap import Decapsulator
worker = Decapsulator(sys.argv[1], tun_type=sys.argv[2], port=int(sys.argv[3]) or None)
print("\\n".join(worker.steps()))
worker.close()
"""


@root
@pytest.mark.parametrize(("vip", "tun_type", "port", "says"), [
    (VIP4, "gue", 6080, ["UDP socket on port 6080 (GUE over IPv4)",
                         "UDP socket on port 6080 (GUE over IPv6, zero checksums taken)"]),
    (VIP6, "gre", 0, ["raw socket on IP protocol 47 (GRE)",
                      "raw IPv6 socket on next header 47 (GRE over IPv6)"]),
])
def test_gue_and_gre_decapsulators_make_their_device_and_sockets(vip, tun_type, port, says):
    ns = f"pylvs-t-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", GUE_IN_NS, vip,
                               tun_type, str(port)], capture_output=True, text=True,
                              check=True).stdout
        for words in says:
            assert words in done
    finally:
        subprocess.run(["ip", "netns", "del", ns])

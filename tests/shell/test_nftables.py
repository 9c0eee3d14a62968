"""The steal rules (pylvs.shell.nftables), against a real kernel: two namespaces joined by a
veth pair (tests.helpers.veth); their text alone needs no root."""

from __future__ import annotations

import socket
import struct
import subprocess

import pytest

from pylvs.shell import addresses, nftables
from tests.helpers.veth import (
    DIR_IP,
    DIR_IP6,
    NEEDS_NAMESPACES,
    PEER_IP6,
    VIP,
    VIP6,
    collect,
    everything,
    in_ns,
    ip,
    with_ipv6,
)


def namespaced(test):
    """The marks of a test that builds the namespaces (the text tests need none)."""
    for mark in NEEDS_NAMESPACES:
        test = mark(test)
    return test


def _listener(port: int, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(16)
    return s


def _connect(addr: tuple[str, int], timeout: float) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _nft_tables(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], check=True,
                          capture_output=True, text=True, timeout=10).stdout


@namespaced
def test_steal_rules_hide_service_from_kernel_but_not_from_tap(topo, psock):
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP) is True
    ip("-n", topo.p, "route", "add", f"{VIP}/32", "dev", "vp")
    lst = in_ns(topo.d, _listener, 8080)
    rules = nftables.StealRules("vd", topo.table)
    try:
        # without rules the director's kernel accepts the connection
        assert in_ns(topo.p, _connect, (VIP, 8080), 2.0) is True
        in_ns(topo.d, rules.install, [("tcp", VIP, 8080), ("udp", VIP, 53)])
        in_ns(topo.d, rules.install, [("tcp", VIP, 8080)])  # replacing is fine
        assert topo.table in _nft_tables(topo.d)
        psock.receive(0)  # drain
        assert in_ns(topo.p, _connect, (VIP, 8080), 1.0) is False

        def is_syn(f: bytes) -> bool:
            return (len(f) >= 54 and f[12:14] == b"\x08\x00" and f[23] == 6
                    and f[30:34] == socket.inet_aton(VIP)
                    and struct.unpack_from("!H", f, 36)[0] == 8080 and f[47] & 0x02 != 0)

        assert collect(psock, is_syn, seconds=2.0), "the tap must still see the stolen SYN"
        in_ns(topo.d, rules.remove)
        assert topo.table not in _nft_tables(topo.d)
        in_ns(topo.d, rules.remove)  # idempotent
        assert in_ns(topo.p, _connect, (VIP, 8080), 2.0) is True
    finally:
        lst.close()
        in_ns(topo.d, rules.remove)
    with pytest.raises(ValueError):
        rules.ruleset([("sctp", VIP, 1)])


@namespaced
def test_steal_rules_errors_are_clear(topo):
    rules = nftables.StealRules("nosuchdev0", topo.table)
    with pytest.raises(RuntimeError, match="nosuchdev0"):
        in_ns(topo.d, rules.install, [("tcp", VIP, 80)])
    bad = nftables.StealRules("vd", "bad name!")
    with pytest.raises(RuntimeError, match="nft"):
        in_ns(topo.d, bad.install, [("tcp", VIP, 80)])
    assert "table" not in _nft_tables(topo.d)


RIP6 = "2001:db8::10"
ICMP6 = "destination-unreachable, packet-too-big, time-exceeded, parameter-problem"


def test_steal_rules_text_for_both_families():
    rules = nftables.StealRules("eth0", "pylvs")
    text = rules.ruleset(
        [("tcp", "198.51.100.100", 80), ("tcp", VIP6, 80), ("udp", VIP6, 0)],
        [("tcp", RIP6, 8080), ("udp", "198.51.100.10", 53)],
        [DIR_IP6, "198.51.100.1", "fe80::1", "198.51.100.3"])
    assert text == f"""table netdev pylvs {{
  chain steal {{
    type filter hook ingress device "eth0" priority -500; policy accept;
    ip daddr 198.51.100.100 tcp dport 80 drop
    ip6 daddr {VIP6} tcp dport 80 drop
    ip6 daddr {VIP6} meta l4proto udp drop
    ip6 saddr {RIP6} ip6 daddr != {{ {DIR_IP6}, fe80::1 }} tcp sport 8080 drop
    ip saddr 198.51.100.10 ip daddr != {{ 198.51.100.1, 198.51.100.3 }} udp sport 53 drop
    ip daddr 198.51.100.100 icmp type {{ {nftables.ICMP_ERRORS} }} drop
    ip6 daddr {VIP6} icmpv6 type {{ {ICMP6} }} drop
    ip6 saddr {RIP6} icmpv6 type {{ {ICMP6} }} drop
    ip saddr 198.51.100.10 icmp type {{ {nftables.ICMP_ERRORS} }} drop
  }}
}}
"""
    assert "nd-" not in text and "echo" not in text  # NDP and ping stay with the kernel
    only6 = rules.ruleset([("tcp", VIP6, 80)], [("tcp", RIP6, 80)], ["198.51.100.1"])
    assert f"ip6 saddr {RIP6} tcp sport 80 drop" in only6  # no IPv6 own address: no exception
    with pytest.raises(OSError):
        rules.ruleset([("tcp", "2001:db8::zz", 80)])
    with pytest.raises(ValueError):
        rules.ruleset([("sctp", VIP6, 1)])


def test_steal_rules_text_for_ipv4_is_unchanged():
    text = nftables.StealRules("eth0", "t").ruleset(
        [("tcp", "10.0.0.1", 80)], [("tcp", "192.168.1.5", 0)], ["10.0.0.9", "10.0.0.1"])
    assert text.splitlines()[3:6] == [
        "    ip daddr 10.0.0.1 tcp dport 80 drop",
        "    ip saddr 192.168.1.5 ip daddr != { 10.0.0.1, 10.0.0.9 } meta l4proto tcp drop",
        "    ip daddr 10.0.0.1 icmp type { destination-unreachable, source-quench, time-exceeded }"
        " drop",
    ]


def _attempt6(addr: tuple[str, int], timeout: float) -> str:
    """"connected", "refused" (a RST came back) or "timeout" (nothing came back)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(addr)
            return "connected"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"


def _ping6(addr: str, timeout: float) -> bool:
    """One ICMPv6 echo request (raw socket: the kernel fills the checksum); True on its reply."""
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.settimeout(timeout)
        s.sendto(b"\x80\x00\x00\x00\x12\x34\x00\x01pylvs", (addr, 0))
        try:
            while True:
                data, _ = s.recvfrom(2048)
                if data[0] == 129 and data[4:6] == b"\x12\x34":
                    return True
        except TimeoutError:
            return False


def _tcp6(f: bytes, src: str, dst: str, port_at: int, port: int) -> bool:
    """An IPv6 TCP frame (no extension header) src -> dst whose port at ``port_at`` is port."""
    return (len(f) >= 74 and f[12:14] == b"\x86\xdd" and f[20] == 6
            and f[22:38] == socket.inet_pton(socket.AF_INET6, src)
            and f[38:54] == socket.inet_pton(socket.AF_INET6, dst)
            and struct.unpack_from("!H", f, port_at)[0] == port)


def _peer_neighbour(topo, address: str) -> str:
    return ip("-n", topo.p, "-6", "neigh", "show", address, "dev", "vp").strip()


@namespaced
def test_steal_rules_hide_ipv6_service_from_kernel_but_not_ndp(topo, psock):
    with_ipv6(topo)
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP6) is True  # on-link for the peer's /64
    lst = in_ns(topo.d, _listener, 8080, socket.AF_INET6)
    rules = nftables.StealRules("vd", topo.table)
    try:
        assert in_ns(topo.p, _attempt6, (VIP6, 8080), 2.0) == "connected"
        in_ns(topo.d, rules.install, [("tcp", VIP, 8080), ("tcp", VIP6, 8080), ("udp", VIP6, 53)],
              [], [DIR_IP, DIR_IP6])
        ip("-n", topo.p, "-6", "neigh", "flush", "dev", "vp")  # the peer must solicit again
        psock.receive(0)  # drain
        assert in_ns(topo.p, _attempt6, (VIP6, 8080), 1.0) == "timeout"  # no RST, no SYN-ACK
        frames = everything(psock, 0.3)
        assert any(_tcp6(f, PEER_IP6, VIP6, 56, 8080) and f[67] & 0x02 for f in frames), \
            "the tap must still see the stolen SYN"
        assert not any(_tcp6(f, VIP6, PEER_IP6, 54, 8080) for f in frames)
        director_mac = topo.mac(topo.d, "vd").hex(":")
        seen = _peer_neighbour(topo, VIP6)  # answered by the director's NDP
        assert director_mac in seen and ("REACHABLE" in seen or "STALE" in seen), seen
        assert in_ns(topo.p, _ping6, VIP6, 2.0) is True  # echo stays with the kernel
        in_ns(topo.d, rules.remove)
        assert in_ns(topo.p, _attempt6, (VIP6, 8080), 2.0) == "connected"
    finally:
        lst.close()
        in_ns(topo.d, rules.remove)

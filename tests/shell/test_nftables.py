"""The steal rules (pylvs.shell.nftables), against a real kernel: two namespaces joined by a
veth pair (tests.helpers.veth)."""

from __future__ import annotations

import socket
import struct
import subprocess

import pytest

from pylvs.shell import addresses, nftables
from tests.helpers.veth import NEEDS_NAMESPACES, VIP, collect, in_ns, ip

pytestmark = NEEDS_NAMESPACES


def _listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
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


def test_steal_rules_errors_are_clear(topo):
    rules = nftables.StealRules("nosuchdev0", topo.table)
    with pytest.raises(RuntimeError, match="nosuchdev0"):
        in_ns(topo.d, rules.install, [("tcp", VIP, 80)])
    bad = nftables.StealRules("vd", "bad name!")
    with pytest.raises(RuntimeError, match="nft"):
        in_ns(topo.d, bad.install, [("tcp", VIP, 80)])
    assert "table" not in _nft_tables(topo.d)

"""The fast path's partial-checksum guard (pylvs.core.fastpath, ``program(..., partial=True)``):
a frame whose TCP or UDP checksum still holds its pseudo-header's sum, as a sender on this host
with TX checksum offload leaves it (CHECKSUM_PARTIAL), passes to Python, which completes it;
a frame with its full checksum is forwarded as before. The pseudo-header sum here is scapy's
(in4_pseudoheader, in6_pseudoheader), not pylvs's; in the kernel with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, in4_pseudoheader
from scapy.layers.inet6 import IPv6, in6_pseudoheader
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from pylvs.core import fastpath
from pylvs.core.ebpf import XDP_PASS, XDP_REDIRECT

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf() and BPF_PROG_TEST_RUN")
MACS = bytes.fromhex("0a00000000aa" "0a00000000bb")
NUMBER = {"tcp": 6, "udp": 17}


def frame(family: int, proto: str, sport: int, payload: bytes) -> bytes:
    ip = IP(src="203.0.113.5", dst="192.0.2.100") if family == 4 else \
        IPv6(src="2001:db8::5", dst="2001:db8::100")
    upper = TCP(sport=sport, dport=80, flags="A") if proto == "tcp" else UDP(sport=sport,
                                                                                dport=53)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / upper
                 / Raw(payload))


def partial(full: bytes) -> bytes:
    """``full`` as a sender with checksum offload hands it over: the L4 checksum field holds
    the folded sum of the pseudo-header (the complement of scapy's checksum of it)."""
    packet = Ether(full)
    ip = packet[IP] if IP in packet else packet[IPv6]
    upper = packet[TCP] if TCP in packet else packet[UDP]
    length = len(bytes(upper))
    if IP in packet:
        pseudo = in4_pseudoheader(NUMBER["tcp" if TCP in packet else "udp"], ip, length)
    else:
        pseudo = bytes(in6_pseudoheader(NUMBER["tcp" if TCP in packet else "udp"], ip, length))
    value = ~checksum(pseudo) & 0xFFFF
    at = len(full) - length + (16 if TCP in packet else 6)
    return full[:at] + struct.pack("!H", value) + full[at + 2:]


CASES = st.tuples(st.sampled_from([4, 6]), st.sampled_from(["tcp", "udp"]),
                  st.integers(1, 0xFFFF), st.binary(max_size=200))


@settings(max_examples=200)
@given(CASES)
def test_the_python_model_sees_what_a_partial_checksum_is(case):
    full = frame(*case)
    assert fastpath.looks_partial(partial(full))
    assert fastpath.looks_partial(full) == (partial(full) == full)  # once in 65,536


@pytest.fixture(scope="module")
def loaded():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 16, "p4")
    conns6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE, 16, "p6")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, fastpath.STATS_SLOTS + 1,
                    "pstats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd, conns6.fd, tunnels=True,
                                           partial=True), "partial")
    yield conns, conns6, stats, program
    for closing in (program, conns, conns6, stats):
        closing.close()


def _install(loaded, full: bytes) -> None:
    conns, conns6, _, _ = loaded
    for table in (conns, conns6):
        for key in table.keys():
            table.delete(key)
    if full[12:14] == b"\x86\xdd":
        conns6.update(fastpath.key6(full[20], full[22:58]), fastpath.dr6(3, MACS, 1500).pack())
    else:
        conns.update(fastpath.key(full[23], full[26:38]), fastpath.dr(3, MACS, 1500).pack())


def _partial_count(loaded) -> int:
    row = loaded[2].lookup(struct.pack("<I", fastpath.PROGRAM_ROW))
    return fastpath.STATS.unpack(row)[fastpath.PARTIAL]


@root
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CASES)
def test_a_partial_frame_passes_counted_and_a_full_one_is_forwarded(loaded, case):
    full = frame(*case)
    assume(not fastpath.looks_partial(full))  # once in 65,536: Python's, rightly
    _install(loaded, full)
    before = _partial_count(loaded)
    verdict, out = loaded[3].run(partial(full))
    assert verdict == XDP_PASS and out == partial(full)
    assert _partial_count(loaded) == before + 1
    verdict, _ = loaded[3].run(full)
    assert verdict == XDP_REDIRECT and _partial_count(loaded) == before + 1


@root
def test_without_the_guard_a_partial_frame_is_forwarded_as_before():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 4, "q4")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "qstats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd), "noguard")
    try:
        full = frame(4, "udp", 5353, b"query")
        conns.update(fastpath.key(17, full[26:38]), fastpath.dr(3, MACS, 1500).pack())
        assert program.run(partial(full))[0] == XDP_REDIRECT
    finally:
        for closing in (program, conns, stats):
            closing.close()

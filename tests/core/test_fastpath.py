"""The XDP fast path (pylvs.core.fastpath): its map entries, and, in the kernel
(BPF_PROG_TEST_RUN, root), the program's output frame equal to what the Python director sends
for the same frame of an established DR, NAT (both ways) or TUN connection; whatever may change
a connection's state passes to Python untouched."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pylvs.core import fastpath
from pylvs.core.ebpf import XDP_PASS, XDP_REDIRECT
from pylvs.core.model import int_to_ip
from tests.helpers.directors import dr_director, nat_director, tun_director
from tests.helpers.frames import dr_frame, inbound, reply, tun_frame

IFINDEX = {"eth0": 2, "eth1": 3}
root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf()")


def test_a_nat_entry_carries_the_deltas_of_rfc_1624():
    vip, rip = bytes([192, 0, 2, 100, 0, 80]), bytes([10, 0, 0, 11, 0x1F, 0x90])
    entry = fastpath.nat(True, 3, bytes(12), 1500, vip, rip)
    assert (entry.action, entry.address, entry.port) == (fastpath.NAT_IN, rip[:4], rip[4:])
    before = IP(src="203.0.113.5", dst="192.0.2.100", ttl=64).build()
    after = IP(src="203.0.113.5", dst="10.0.0.11", ttl=63).build()  # scapy's fresh checksum
    old = struct.unpack_from("<H", before, 10)[0]
    updated = ~fastpath._fold((~old & 0xFFFF) + entry.ip_delta) & 0xFFFF
    assert struct.pack("<H", updated) == after[10:12]
    value = entry.pack(packets=7, octets=9000, last_ns=5)
    assert len(value) == fastpath.VALUE_SIZE == 72
    assert fastpath.counters(value) == (7, 9000, 5)


@pytest.fixture(scope="module")
def loaded():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 64, "test")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "stats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd), "fastpath")
    yield conns, program, stats
    for closing in (program, conns, stats):
        closing.close()


def _install(conns, director) -> None:
    for key in conns.keys():
        conns.delete(key)
    for conn in director.table:
        for key, entry in fastpath.for_connection(conn, director.hops[conn.server.ip],
                                                  IFINDEX, slot=5):
            conns.update(key, entry.pack())


def _same(loaded, director, frame: bytes) -> tuple[bytes, bytes]:
    """The program's verdict and frame against the director's for one frame."""
    conns, program, _ = loaded
    verdict, out = program.run(frame)
    expected = director.handle(bytearray(frame), now=1.0)
    assert verdict == XDP_REDIRECT, Ether(frame).summary()
    assert expected is not None
    return out, bytes(expected[0])


settings_ = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@root
@settings_
@given(st.integers(1, 65535), st.integers(2, 255), st.binary(max_size=300),
       st.sampled_from(["A", "PA", "U", ""]))
def test_dr_established_frames_leave_as_pythons(loaded, sport, ttl, payload, flags):
    director = dr_director()
    director.handle(bytearray(dr_frame(sport=sport)), now=0.0)
    _install(loaded[0], director)
    out, expected = _same(loaded, director, dr_frame(sport=sport, ttl=ttl, flags=flags,
                                                     payload=payload))
    assert out == expected


@root
@settings_
@given(st.integers(1, 65535), st.binary(max_size=300), st.sampled_from(["tcp", "udp"]),
       st.integers(2, 255))
def test_nat_both_ways_leaves_as_pythons(loaded, cport, payload, proto, ttl):
    director = nat_director(proto)
    client = "203.0.113.9"
    director.handle(bytearray(inbound(client, cport, b"", proto)), now=0.0)
    _install(loaded[0], director)
    flags = "A" if proto == "tcp" else ""
    frame = Ether(inbound(client, cport, payload, proto, flags))
    frame[IP].ttl = ttl
    out, expected = _same(loaded, director, bytes(frame.__class__(bytes(frame))))
    assert out == expected
    answer = Ether(reply(client, cport, payload, proto, flags))
    answer[IP].ttl = ttl
    out, expected = _same(loaded, director, bytes(answer.__class__(bytes(answer))))
    assert out == expected


@root
def test_a_udp_datagram_without_checksum_keeps_none(loaded):
    director = nat_director("udp")
    director.handle(bytearray(inbound("203.0.113.9", 5353, b"", "udp")), now=0.0)
    _install(loaded[0], director)
    frame = Ether(inbound("203.0.113.9", 5353, b"query", "udp"))
    frame[UDP].chksum = 0
    out, expected = _same(loaded, director, bytes(frame))
    assert out == expected and Ether(out)[UDP].chksum == 0


@root
@settings_
@given(st.binary(max_size=400), st.integers(0, 255), st.integers(2, 255), st.booleans(),
       st.sampled_from(["tcp", "udp"]))
def test_tun_encapsulates_as_python_but_for_the_outer_ip_id(loaded, payload, tos, ttl, df,
                                                              proto):
    director = tun_director(proto)
    director.handle(bytearray(tun_frame(proto=proto)), now=0.0)
    _install(loaded[0], director)
    frame = Ether(tun_frame(payload, tos, ttl, df, proto))
    if proto == "tcp":
        frame[TCP].flags = "A"
    out, expected = _same(loaded, director, bytes(frame.__class__(bytes(frame))))
    assert len(out) == len(expected)
    assert out[:18] + out[20:24] + out[26:] == expected[:18] + expected[20:24] + expected[26:]
    outer = IP(out[14:34])
    del outer.chksum
    assert IP(bytes(outer)).chksum.to_bytes(2, "big") == out[24:26]


@root
@pytest.mark.parametrize("flags", ["S", "F", "R", "FA", "SA", "RA"])
def test_what_may_change_a_state_passes_to_python_untouched(loaded, flags):
    director = dr_director()
    director.handle(bytearray(dr_frame(sport=4000)), now=0.0)
    _install(loaded[0], director)
    frame = dr_frame(sport=4000, flags=flags)
    assert loaded[1].run(frame) == (XDP_PASS, frame)


@root
def test_misses_options_fragments_and_low_ttls_pass(loaded):
    director = dr_director()
    director.handle(bytearray(dr_frame(sport=4000)), now=0.0)
    _install(loaded[0], director)
    cases = [
        dr_frame(sport=4001, flags="A"),                                # no such connection
        dr_frame(sport=4000, flags="A", ttl=1),
        bytes(Ether() / IP(src="203.0.113.5", dst="192.0.2.100", options=b"\x01\x01\x01\x00")
              / TCP(sport=4000, dport=80, flags="A")),
        bytes(Ether() / IP(src="203.0.113.5", dst="192.0.2.100", flags="MF")
              / TCP(sport=4000, dport=80, flags="A")),
        dr_frame(sport=4000, flags="A")[:40],                            # cut short
    ]
    for frame in cases:
        assert loaded[1].run(frame) == (XDP_PASS, frame), Ether(frame).summary()


@root
def test_counters_and_time_are_kept_in_the_entry_and_the_servers_row(loaded):
    conns, program, stats = loaded
    director = nat_director("tcp")
    director.handle(bytearray(inbound("203.0.113.9", 4000, b"", "tcp")), now=0.0)
    _install(conns, director)
    stats.update(struct.pack("<I", 5), bytes(fastpath.STATS.size))
    conn = next(iter(director.table))
    for size in (0, 100, 200):
        program.run(inbound("203.0.113.9", 4000, b"x" * size, "tcp", "A"))
    program.run(reply("203.0.113.9", 4000, b"y" * 1000, "tcp", "A"))
    packets, octets, last_ns = fastpath.counters(conns.lookup(fastpath.key(6, conn.key12)))
    assert (packets, octets) == (3, 3 * 40 + 300) and last_ns > 0
    assert fastpath.STATS.unpack(stats.lookup(struct.pack("<I", 5))) == (3, 420, 1, 1040)
    assert int_to_ip(conn.caddr) == "203.0.113.9"

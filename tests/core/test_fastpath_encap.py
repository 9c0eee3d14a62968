"""GUE and GRE in the XDP fast path (pylvs.core.fastpath, issue 24): the entries, and, in the
kernel (BPF_PROG_TEST_RUN, root), the program's frame equal, byte for byte, to what
pylvs.core.encap.tunnel_xmit makes of the same frame, for both inner and both outer families,
GUE without and with its UDP checksum, GRE without and with its own; checksums also checked
against scapy's. A UDP datagram without a checksum to an entry that sums passes to Python, so
does a frame too big for the hop; and with ``tunnels`` off the program is the one before."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Ether

from pylvs.core import csum_delta, encap, fastpath
from pylvs.core.ebpf import XDP_PASS, XDP_REDIRECT
from tests.core.test_encap import flow_of as flow_for
from tests.core.test_encap import frame_of
from tests.helpers.directors import dr_director, nat_director, tun_director
from tests.helpers.frames import dr_frame, inbound, tun_frame

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf() and BPF_PROG_TEST_RUN")
MACS = bytes.fromhex("0a00000000aa" "0a00000000bb")
OUT = 3
SLOT = 5
ROOT = Path(__file__).resolve().parents[2]
ADDR4 = st.integers(1, (1 << 32) - 1)
ADDR6 = st.integers(1, (1 << 128) - 1)
PORT = st.integers(1, 0xFFFF)
PROTO = st.sampled_from(["tcp", "udp"])
FAMILY = st.sampled_from([4, 6])
TYPE_FLAGS = st.sampled_from([("gue", "nocsum"), ("gue", "csum"), ("gue", "remcsum"),
                              ("gre", "nocsum"), ("gre", "csum")])


def size(family: int) -> int:
    return 4 if family == 4 else 16


def key12_of(frame: bytes) -> bytes:
    return frame[26:38] if frame[12:14] == b"\x08\x00" else frame[22:58]


def entries_for(frame: bytes, server: int, src: int, dst: int, tun_type: str, flags: str,
                mtu: int = 1500, dport: int = 6080):
    flow = flow_for(frame)
    return fastpath.encap_entries(flow.proto, key12_of(frame), OUT, MACS, mtu,
                                  src.to_bytes(size(server), "big"),
                                  dst.to_bytes(size(server), "big"), tun_type, flags,
                                  sport=encap.gue_source_port(flow), dport=dport, slot=SLOT)


# -- the entries, without a kernel -------------------------------------------------------------


def test_old_entries_pack_as_they_always_did():
    """The flags byte and the source port sit in what was padding."""
    assert fastpath.VALUE_SIZE == 72 and fastpath.VALUE6_SIZE == 88
    value = fastpath.tun(7, MACS, 1500, bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), slot=2).pack()
    assert value[fastpath.FLAGS] == 0 and value[fastpath.SPORT:fastpath.SPORT + 2] == b"\0\0"
    value6 = fastpath.tun6in4(7, MACS, 1500, bytes(4), bytes([5, 6, 7, 8])).pack()
    assert value6[fastpath.FLAGS] == 0 and value6[70:72] == b"\0\0"
    assert struct.unpack_from("<I", value6, fastpath.TUN_SUM6)[0] == \
        fastpath.tun6in4(7, MACS, 1500, bytes(4), bytes([5, 6, 7, 8])).tun_sum


def test_a_gue_entry_holds_the_outer_fields_and_the_constant_sums():
    (k, entry), = fastpath.encap_entries(6, bytes(range(12)), OUT, MACS, 1500,
                                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), "gue",
                                         "csum", sport=40000, dport=6080, slot=SLOT)
    assert k == fastpath.key(6, bytes(range(12)))
    assert (entry.action, entry.flags, entry.mtu) == (fastpath.GUE4, fastpath.FLAG_CSUM, 1500)
    value = entry.pack()
    assert value[fastpath.SPORT:fastpath.SPORT + 2] == (40000).to_bytes(2, "big")
    assert value[fastpath.PORT:fastpath.PORT + 2] == (6080).to_bytes(2, "big")
    assert value[fastpath.ADDRESS:fastpath.ADDRESS + 4] == bytes([10, 0, 0, 2])
    assert value[fastpath.TUN_SRC:fastpath.TUN_SRC + 4] == bytes([10, 0, 0, 1])
    # the outer IPv4 header's constant words with protocol 17: scapy's checksum of them
    header = IP(src="10.0.0.1", dst="10.0.0.2", proto=17, ttl=0, id=0, flags=0, len=0)
    assert ~csum_delta.swap(entry.tun_sum) & 0xFFFF == int.from_bytes(bytes(header)[10:12],
                                                                       "big")
    assert entry.l4_delta == csum_delta.swap(csum_delta.gue_udp_constant(
        bytes([10, 0, 0, 1, 10, 0, 0, 2]), 40000, 6080, 4))


@pytest.mark.parametrize(("tun_type", "flags", "inner", "outer", "action", "extra"), [
    ("gue", "nocsum", 4, 4, fastpath.GUE4, 32), ("gue", "remcsum", 4, 6, fastpath.GUE_4IN6, 52),
    ("gre", "nocsum", 6, 6, fastpath.GRE6, 44), ("gre", "csum", 6, 4, fastpath.GRE_CSUM_6IN4, 28),
    ("gre", "csum", 4, 4, fastpath.GRE4_CSUM, 28), ("gre", "remcsum", 4, 4, fastpath.GRE4, 24),
])
def test_actions_and_their_overheads_are_encaps(tun_type, flags, inner, outer, action, extra):
    assert fastpath.encap_action(tun_type, inner, outer, flags) == action
    assert fastpath.encap_overhead(action) == extra == encap.overhead(tun_type, outer, flags)


def test_a_tunnel_below_its_minimum_mtu_sends_everything_to_python():
    def mtu(tun_type, flags, key, outer, route):
        src = bytes(4 if outer == 4 else 16)
        return fastpath.encap_entries(6, key, OUT, MACS, route, src, src, tun_type, flags,
                                      dport=1)[0][1].mtu
    assert mtu("gue", "nocsum", bytes(12), 4, 100) == 100              # 100 - 32 = 68
    assert mtu("gue", "nocsum", bytes(12), 4, 99) == 0
    assert mtu("gre", "csum", bytes(36), 6, 1328) == 1328                # 1328 - 48 = 1280
    assert mtu("gre", "csum", bytes(36), 6, 1327) == 0
    assert mtu("gue", "csum", bytes(12), 6, 1331) == 0                   # 4in6's IPv4 entry


def test_4in6_has_two_entries_and_6in6_one():
    four = fastpath.encap_entries(17, bytes(12), OUT, MACS, 1500, bytes(16), bytes(16), "gue",
                                  "nocsum", sport=1, dport=2)
    assert [len(k) for k, _ in four] == [fastpath.KEY_SIZE, fastpath.KEY6_SIZE]
    assert four[1][0] == fastpath.key4in6(17, bytes(12))
    six = fastpath.encap_entries(17, bytes(36), OUT, MACS, 1500, bytes(4), bytes(4), "gre")
    assert [len(k) for k, _ in six] == [fastpath.KEY6_SIZE]
    with pytest.raises(ValueError):
        fastpath.encap_entries(17, bytes(12), OUT, MACS, 1500, bytes(4), bytes(16), "gre")
    with pytest.raises(ValueError):
        fastpath.encap_entries(17, bytes(12), OUT, MACS, 1500, bytes(4), bytes(4), "gue")


def test_without_tunnels_the_programs_are_the_ones_before():
    """The programs as they were before GUE and GRE (their digests then), with or without
    the IPv6 map; with ``tunnels`` they grow."""
    assert hashlib.sha256(fastpath.program(3, 4)).hexdigest() == (
        "8c5da96eafe8eb2e1027399295815496e619c0257886ddcd4b40b9ea1047323c")
    assert hashlib.sha256(fastpath.program(3, 4, 5)).hexdigest() == (
        "01969a56c06012a844ca0646a58354b7d4f1c327734bb38b54a4ba6c5af8338b")
    assert len(fastpath.program(3, 4, 5, tunnels=True)) > len(fastpath.program(3, 4, 5))
    assert len(fastpath.program(3, 4, tunnels=True)) > len(fastpath.program(3, 4))


# -- in the kernel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 64, "test4")
    conns6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE, 64,
                     "test6")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "stats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd, conns6.fd, tunnels=True),
                          "fastpath_encap")
    plain = xdp.Program(fastpath.program(conns.fd, stats.fd, conns6.fd), "fastpath6")
    yield conns, conns6, stats, program, plain
    for closing in (program, plain, conns, conns6, stats):
        closing.close()


def _install(loaded, entries) -> None:
    conns, conns6 = loaded[0], loaded[1]
    for table in (conns, conns6):
        for k in table.keys():
            table.delete(k)
    for k, entry in entries:
        (conns6 if len(k) == fastpath.KEY6_SIZE else conns).update(k, entry.pack())


def _packets(loaded, entries) -> int:
    k = entries[0][0]
    table = loaded[1] if len(k) == fastpath.KEY6_SIZE else loaded[0]
    return fastpath.counters(table.lookup(k))[0]


settings_ = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


def scapy_checksums_ok(out: bytes) -> None:
    """scapy's outer IPv4 header checksum, UDP checksum (when on) and GRE checksum (when C)
    equal the program's."""
    packet = Ether(out)
    for layer in (IP, UDP, GRE):
        if layer not in packet:
            continue
        part = packet[layer]
        field = "chksum"
        sent = getattr(part, field)
        if layer is UDP and sent == 0 or layer is GRE and not part.chksum_present:
            continue
        setattr(part, field, None)
        assert getattr(Ether(bytes(packet))[layer], field) == sent, layer.__name__
        setattr(part, field, sent)


@root
@settings_
@given(FAMILY, FAMILY, TYPE_FLAGS, PROTO, st.integers(2, 255), st.integers(0, 255),
       st.booleans(), st.binary(max_size=400), st.data())
def test_the_program_sends_what_tunnel_xmit_sends(loaded, family, server, tun_flags, proto,
                                                  ttl, tos, df, payload, data):
    tun_type, flags = tun_flags
    client, vip = (data.draw(ADDR4 if family == 4 else ADDR6) for _ in range(2))
    src, dst = (data.draw(ADDR4 if server == 4 else ADDR6) for _ in range(2))
    frame = frame_of(family, client, vip, data.draw(PORT), data.draw(PORT), proto, payload,
                     ttl, tos, df)
    entries = entries_for(frame, server, src, dst, tun_type, flags)
    _install(loaded, entries)
    verdict, out = loaded[3].run(frame)
    assert verdict == XDP_REDIRECT, Ether(frame).summary()
    expected = encap.tunnel_xmit(bytearray(frame), flow_for(frame), tun_type, server, src, dst,
                                 MACS, port=6080, flags=flags, ip_id=_packets(loaded, entries))
    assert out == bytes(expected)
    scapy_checksums_ok(out)


@root
@pytest.mark.parametrize("server", [4, 6])
@pytest.mark.parametrize("tun_type", ["gue", "gre"])
def test_a_udp_datagram_without_checksum_passes_to_an_entry_that_sums(loaded, server,
                                                                      tun_type):
    frame = bytearray(frame_of(4, 0xC0000205, 0xC0000264, 5353, 53, "udp", b"query"))
    frame[40:42] = b"\0\0"
    frame = bytes(frame)
    entries = entries_for(frame, server, 7, 8, tun_type, "csum")
    _install(loaded, entries)
    assert loaded[3].run(frame) == (XDP_PASS, frame)
    assert _packets(loaded, entries) == 0                                 # uncounted
    entries = entries_for(frame, server, 7, 8, tun_type, "nocsum")
    _install(loaded, entries)
    verdict, out = loaded[3].run(frame)
    assert verdict == XDP_REDIRECT
    assert out == bytes(encap.tunnel_xmit(bytearray(frame), flow_for(frame), tun_type, server,
                                          7, 8, MACS, port=6080, ip_id=1))


@root
def test_a_udp_checksum_computed_as_zero_goes_out_as_ffff(loaded):
    frame = frame_of(4, 0xC0000205, 0xC0000264, 40000, 80, "tcp", b"abc")
    flow = flow_for(frame)
    first = encap.tunnel_xmit(bytearray(frame), flow, "gue", 4, 1, 2, MACS, port=6080,
                              flags="csum", sport=0)
    sport = int.from_bytes(first[40:42], "big")      # the source port that makes the sum 0
    entries = fastpath.encap_entries(6, frame[26:38], OUT, MACS, 1500, (1).to_bytes(4, "big"),
                                     (2).to_bytes(4, "big"), "gue", "csum", sport=sport,
                                     dport=6080)
    _install(loaded, entries)
    verdict, out = loaded[3].run(frame)
    assert verdict == XDP_REDIRECT and out[40:42] == b"\xff\xff"
    assert out == bytes(encap.tunnel_xmit(bytearray(frame), flow_for(frame), "gue", 4, 1, 2,
                                          MACS, port=6080, flags="csum", sport=sport))


@root
@pytest.mark.parametrize(("family", "server", "tun_type", "flags"), [
    (4, 4, "gue", "nocsum"), (4, 6, "gue", "csum"), (6, 6, "gre", "csum"), (6, 4, "gre", "nocsum"),
    (4, 4, "gre", "csum"), (6, 4, "gue", "remcsum"),
])
def test_a_frame_past_the_mtu_with_the_tunnels_overhead_passes(loaded, family, server, tun_type,
                                                               flags):
    mtu = 1400
    room = mtu - encap.overhead(tun_type, server, flags) - (40 if family == 4 else 60)
    fits = frame_of(family, 1, 2, 4000, 80, payload=b"z" * room)
    too_big = frame_of(family, 1, 2, 4000, 80, payload=b"z" * (room + 1))
    _install(loaded, entries_for(fits, server, 7, 8, tun_type, flags, mtu=mtu))
    assert loaded[3].run(too_big) == (XDP_PASS, too_big)
    assert loaded[3].run(fits)[0] == XDP_REDIRECT


@root
def test_a_tunnel_below_the_minimum_passes_everything(loaded):
    frame = frame_of(6, 1, 2, 4000, 80)
    _install(loaded, entries_for(frame, 6, 7, 8, "gue", "nocsum", mtu=1331))
    assert loaded[3].run(frame) == (XDP_PASS, frame)


@root
def test_4in6_without_its_outer_entry_passes_uncounted(loaded):
    frame = frame_of(4, 0xC0000201, 0xC0000264, 4000, 80)
    entries = entries_for(frame, 6, 7, 8, "gre", "nocsum")
    _install(loaded, entries[:1])
    assert loaded[3].run(frame) == (XDP_PASS, frame)
    assert _packets(loaded, entries) == 0


@root
def test_counters_and_stats_rows_count_tunnelled_frames(loaded):
    conns, conns6, stats, program, _ = loaded
    frame = frame_of(6, 1, 2, 4000, 80, payload=b"x" * 100)
    entries = entries_for(frame, 4, 7, 8, "gue", "csum")
    _install(loaded, entries)
    stats.update(struct.pack("<I", SLOT), bytes(fastpath.STATS.size))
    for _ in range(3):
        assert program.run(frame)[0] == XDP_REDIRECT
    packets, octets, last_ns = fastpath.counters(conns6.lookup(entries[0][0]))
    assert (packets, octets) == (3, 3 * (len(frame) - 14)) and last_ns > 0
    assert fastpath.STATS.unpack(stats.lookup(struct.pack("<I", SLOT)))[:2] == (
        3, 3 * (len(frame) - 14))


@root
@settings_
@given(st.sampled_from(["dr", "nat", "tun"]), PORT, st.integers(0, 255),
       st.binary(max_size=300), st.sampled_from(["A", "PA", "S", "F", ""]), PROTO)
def test_other_frames_leave_the_program_with_tunnels_as_without(loaded, method, cport, ttl,
                                                               payload, flags, proto):
    if method == "dr":
        director, first = dr_director(), dr_frame(sport=cport)
        frame = dr_frame(sport=cport, ttl=ttl, flags=flags, payload=payload)
    elif method == "tun":
        director, first = tun_director(proto), tun_frame(proto=proto)
        frame = bytes(tun_frame(payload, 0, ttl, True, proto))
    else:
        director, first = nat_director(proto), inbound("203.0.113.9", cport, b"", proto)
        frame = inbound("203.0.113.9", cport, payload, proto, flags)
    director.handle(bytearray(first), now=0.0)
    entries = [entry for conn in director.table
               for entry in fastpath.for_connection(conn, director.hops[conn.server.ip],
                                                    {"eth0": 2, "eth1": 3}, slot=SLOT)]
    _install(loaded, entries)
    with_tunnels = loaded[3].run(bytes(frame))
    _install(loaded, entries)
    assert with_tunnels == loaded[4].run(bytes(frame))


UNIT = ROOT / "examples" / "pylvs.service"


def _bounding_set() -> str:
    line = next(line for line in UNIT.read_text().splitlines()
                if line.startswith("CapabilityBoundingSet="))
    caps = line.split("=", 1)[1].split()
    return ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])


@root
def test_the_program_with_tunnels_loads_under_the_units_capabilities():
    """No CAP_PERFMON or CAP_SYS_ADMIN: the verifier's stricter rules for such a loader."""
    script = (
        "from pylvs.core import fastpath\n"
        "from pylvs.shell import xdp\n"
        "c = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 8, 'c')\n"
        "c6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE, 8, 'c6')\n"
        "s = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, 's')\n"
        "xdp.Program(fastpath.program(c.fd, s.fd, c6.fd, tunnels=True), 'caps')\n"
        "xdp.Program(fastpath.program(c.fd, s.fd, tunnels=True), 'caps4')\n"
        "print('loaded')\n")
    done = subprocess.run(["setpriv", f"--bounding-set={_bounding_set()}", sys.executable,
                           "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-3000:]


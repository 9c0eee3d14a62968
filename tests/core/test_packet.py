"""Frame parsing and internet checksums, against scapy as an independent reference."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.l2 import Ether

from pylvs.core.model import ip_to_int
from pylvs.core.packet import (
    ETH_HLEN,
    IPPROTO_TCP,
    checksum,
    complete_l4_checksum,
    csum_update16,
    csum_update32,
    decrement_ttl,
    ip_header_checksum,
    l4_checksum,
    parse,
)

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
ips = st.integers(0, 2**32 - 1).map(lambda v: ".".join(str(b) for b in v.to_bytes(4, "big")))
ports = st.integers(0, 65535)
payloads = st.binary(max_size=64)
options = st.sampled_from([(), (IPOption_NOP(),) * 4, (IPOption_RR(routers=["192.0.2.1"]),)])


@st.composite
def l4s(draw):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if kind == "tcp":
        return TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 255)),
                   seq=draw(st.integers(0, 2**32 - 1)))
    if kind == "udp":
        return UDP(sport=draw(ports), dport=draw(ports))
    return ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255)))


@st.composite
def frames(draw) -> bytes:
    ip = IP(src=draw(ips), dst=draw(ips), ttl=draw(st.integers(1, 255)),
            options=list(draw(options)))
    return bytes(Ether(**MACS) / ip / draw(l4s()) / draw(payloads))


@given(st.binary(max_size=128))
def test_parse_never_raises_on_arbitrary_bytes(data):
    parse(data)
    parse(b"\x00" * 12 + b"\x08\x00" + data)


@given(frames())
def test_parse_reads_what_scapy_reads(raw):
    flow = parse(raw)
    pkt = Ether(raw)
    ip = pkt[IP]
    assert flow is not None
    assert (flow.saddr, flow.daddr) == (ip_to_int(ip.src), ip_to_int(ip.dst))
    assert (flow.proto, flow.ttl, flow.ip_len) == (ip.proto, ip.ttl, ip.len)
    assert flow.l4off == ETH_HLEN + ip.ihl * 4
    if TCP in pkt:
        assert (flow.sport, flow.dport, flow.tcp_flags) == (pkt.sport, pkt.dport,
                                                             int(pkt[TCP].flags))
    elif UDP in pkt:
        assert (flow.sport, flow.dport) == (pkt.sport, pkt.dport)
    else:
        assert (flow.icmp_type, flow.icmp_code) == (pkt[ICMP].type, pkt[ICMP].code)


@given(frames())
def test_every_truncation_is_refused(raw):
    length = struct.unpack_from("!H", raw, ETH_HLEN + 2)[0]
    for size in range(ETH_HLEN + length):
        assert parse(raw[:size]) is None


@given(frames(), st.sampled_from([0x2000, 0x0001, 0x2010, 0x1FFF]))
def test_fragments_are_not_flows(raw, frag):
    data = bytearray(raw)
    struct.pack_into("!H", data, ETH_HLEN + 6, frag)
    assert parse(data) is None


def test_other_ethertypes_bad_version_and_ihl_are_refused():
    raw = bytearray(bytes(Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP()))
    assert parse(raw) is not None
    for offset, value in ((12, 0x86), (ETH_HLEN, 0x65), (ETH_HLEN, 0x44)):
        bad = bytearray(raw)
        bad[offset] = value
        assert parse(bad) is None


@given(frames())
def test_checksums_equal_scapys(raw):
    pkt = Ether(raw)
    flow = parse(raw)
    assert ip_header_checksum(raw) == pkt[IP].chksum
    if flow.proto in (6, 17):
        assert l4_checksum(raw, flow) == pkt[IP].payload.chksum


@given(st.binary(max_size=101), st.integers(0, 2**32 - 1))
def test_checksum_of_data_with_its_checksum_is_zero(data, initial):
    padded = data + b"\x00" * (len(data) % 2)
    value = checksum(padded)
    assert checksum(padded + struct.pack("!H", value)) in (0, 0xFFFF)
    assert checksum(data) == value


@given(st.binary(min_size=22, max_size=60).filter(lambda d: len(d) % 2 == 0),
       st.integers(0, 9), st.sampled_from([0, 0xFFFF]) | st.integers(0, 0xFFFF))
def test_rfc1624_update16_equals_recomputation(data, word, new):
    data = bytearray(data)
    data[0:2] = b"\x00\x00"
    csum = checksum(data)
    index = 2 + 2 * word
    old = struct.unpack_from("!H", data, index)[0]
    struct.pack_into("!H", data, index, new)
    assert csum_update16(csum, old, new) in _equal_sums(checksum(data))


@given(st.binary(min_size=24, max_size=60).filter(lambda d: len(d) % 2 == 0),
       st.integers(0, 2**32 - 1))
def test_rfc1624_update32_equals_recomputation(data, new):
    data = bytearray(data)
    csum = checksum(data)
    old = struct.unpack_from("!I", data, 4)[0]
    struct.pack_into("!I", data, 4, new)
    assert csum_update32(csum, old, new) in _equal_sums(checksum(data))


def _equal_sums(value: int) -> set[int]:
    """0x0000 and 0xFFFF are the same number in one's complement."""
    return {0, 0xFFFF} if value in (0, 0xFFFF) else {value}


@given(frames().filter(lambda raw: Ether(raw)[IP].proto in (6, 17)))
def test_partial_checksum_is_completed(raw):
    flow = parse(raw)
    data = bytearray(raw)
    offset = flow.l4off + (16 if flow.proto == IPPROTO_TCP else 6)
    length = flow.ip_len - (flow.l4off - flow.l3off)
    pseudo = data[ETH_HLEN + 12:ETH_HLEN + 20] + struct.pack("!BBH", 0, flow.proto, length)
    # what an offloading sender leaves: the folded pseudo-header sum, not complemented
    struct.pack_into("!H", data, offset, ~checksum(pseudo) & 0xFFFF)
    complete_l4_checksum(data, flow)
    assert struct.unpack_from("!H", data, offset)[0] == Ether(raw)[IP].payload.chksum


@given(frames().filter(lambda raw: Ether(raw)[IP].ttl > 1))
def test_decrement_ttl_keeps_the_ip_checksum_valid(raw):
    data = bytearray(raw)
    assert decrement_ttl(data) == raw[ETH_HLEN + 8] - 1
    assert data[ETH_HLEN + 8] == raw[ETH_HLEN + 8] - 1
    csum = struct.unpack_from("!H", data, ETH_HLEN + 10)[0]
    assert csum in _equal_sums(ip_header_checksum(data))
    assert data[:ETH_HLEN + 8] == raw[:ETH_HLEN + 8]
    assert data[ETH_HLEN + 12:] == raw[ETH_HLEN + 12:]

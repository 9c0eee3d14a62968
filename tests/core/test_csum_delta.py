"""RFC 1624's deltas (pylvs.core.csum_delta): applied incrementally they give the checksums a
full recomputation gives (scapy's, as an independent reference), and byte-swapped they are the
little-endian values the XDP program has always been given."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from pylvs.core import csum_delta
from pylvs.core.model import int_to_ip
from pylvs.core.packet import IPPROTO_IPIP, checksum

addresses = st.integers(0, 2**32 - 1)
ports = st.integers(0, 65535)
endpoints = st.tuples(addresses, ports).map(lambda ep: struct.pack("!IH", *ep))


def _apply(csum: int, change: int) -> int:
    """HC' = ~(~HC + delta) (RFC 1624, eqn. 3)."""
    return ~csum_delta.fold((~csum & 0xFFFF) + change) & 0xFFFF


def _segment(client: bytes, server: bytes, ttl: int, payload: bytes, to_server: bool) -> bytes:
    """An IPv4 TCP packet between two endpoints (address + port), built by scapy."""
    (caddr, cport), (saddr, sport) = struct.unpack("!IH", client), struct.unpack("!IH", server)
    src, dst = ((caddr, cport), (saddr, sport)) if to_server else ((saddr, sport), (caddr, cport))
    return (IP(src=int_to_ip(src[0]), dst=int_to_ip(dst[0]), ttl=ttl)
            / TCP(sport=src[1], dport=dst[1], flags="A") / payload).build()


@given(endpoints, endpoints, endpoints, st.integers(2, 255), st.binary(max_size=40),
       st.booleans())
def test_an_endpoint_delta_updates_both_checksums_as_a_recomputation(client, old, new, ttl,
                                                                     payload, inbound):
    """NAT: the VIP's (or the real server's) address and port replaced, TTL − 1."""
    before = _segment(client, old, ttl, payload, inbound)
    after = _segment(client, new, ttl - 1, payload, inbound)
    ip_delta, l4_delta = csum_delta.endpoint(old, new)
    ip_csum, l4_csum = struct.unpack_from("!H", before, 10)[0], struct.unpack_from("!H", before,
                                                                                    36)[0]
    assert struct.pack("!H", _apply(ip_csum, ip_delta)) == after[10:12]
    assert struct.pack("!H", _apply(l4_csum, l4_delta)) == after[36:38]


@given(st.lists(st.integers(0, 0xFFFF), max_size=12))
def test_the_sum_of_byte_swapped_words_is_the_byte_swapped_sum(words):
    swapped = [csum_delta.swap(w) for w in words]
    assert csum_delta.fold(sum(swapped)) == csum_delta.swap(csum_delta.fold(sum(words)))


def _old_little_endian_delta(old: bytes, new: bytes) -> int:
    """What pylvs.core.fastpath computed before: the words read little-endian, unfolded."""
    words = len(old) // 2
    return sum((~o & 0xFFFF) + n for o, n in zip(struct.unpack(f"<{words}H", old),
                                                 struct.unpack(f"<{words}H", new), strict=True))


@given(endpoints, endpoints)
def test_swapped_deltas_are_the_little_endian_ones_of_the_fast_path(old, new):
    address = _old_little_endian_delta(old[:4], new[:4])
    expected = (csum_delta.fold(address + 0xFFFE),
                csum_delta.fold(address + _old_little_endian_delta(old[4:], new[4:])))
    ip_delta, l4_delta = csum_delta.endpoint(old, new)
    assert (csum_delta.swap(ip_delta), csum_delta.swap(l4_delta)) == expected
    assert csum_delta.swap(csum_delta.TTL) == 0xFFFE


@given(addresses, addresses, st.integers(0, 255), st.integers(20, 0xFFFF), ports,
       st.booleans(), st.integers(1, 255))
def test_the_ipip_constant_completes_to_the_outer_headers_checksum(src, dst, tos, total, ip_id,
                                                                  df, ttl):
    outer = struct.pack("!II", src, dst)
    header = struct.pack("!BBHHHBBH8s", 0x45, tos, total, ip_id, 0x4000 if df else 0, ttl,
                         IPPROTO_IPIP, 0, outer)
    constant = csum_delta.ipip_constant(outer)
    per_frame = tos + total + ip_id + (0x4000 if df else 0) + (ttl << 8)
    assert ~csum_delta.fold(constant + per_frame) & 0xFFFF == checksum(header)
    old_sum = sum(struct.unpack("<10H", bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0])
                                + outer))  # fastpath's tun_sum before
    assert csum_delta.swap(constant) == csum_delta.fold(old_sum)

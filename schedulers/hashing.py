"""What IPVS's hashing schedulers share: the kernel's hash_32 and hsiphash, bucket tables.

``hsiphash`` is the kernel's on 64-bit machines: SipHash-1-3 with two 64-bit key words and the
result cut to 32 bits (lib/siphash.c makes HalfSipHash there a full SipHash for speed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pylvs.core.model import RealServer

GOLDEN_RATIO_32 = 0x61C88647
MASK32, MASK64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_SIP_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


def hash_32(value: int, bits: int) -> int:
    """include/linux/hash.h: the top ``bits`` of value × the golden ratio, in 32 bits."""
    return ((value * GOLDEN_RATIO_32) & MASK32) >> (32 - bits)


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash(data: bytes, key0: int, key1: int, c_rounds: int = 2, d_rounds: int = 4) -> int:
    """SipHash-c-d of data (64-bit result); SipHash-2-4 by default."""
    v0, v1, v2, v3 = (_SIP_INIT[0] ^ key0, _SIP_INIT[1] ^ key1, _SIP_INIT[2] ^ key0,
                      _SIP_INIT[3] ^ key1)

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & MASK64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & MASK64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & MASK64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & MASK64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        rounds(c_rounds)
        v0 ^= m
    b = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= b
    rounds(c_rounds)
    v0 ^= b
    v2 ^= 0xFF
    rounds(d_rounds)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash_u32(value: int, key0: int, key1: int) -> int:
    """hsiphash(&v, 4, key) for an unsigned int v, as a little-endian 64-bit kernel computes it."""
    return siphash((value & MASK32).to_bytes(4, "little"), key0, key1, 1, 3) & MASK32


def fill_buckets(servers: Sequence[RealServer], size: int, weighted: bool
                 ) -> list[RealServer | None]:
    """ip_vs_sh/dh_reassign: walk the list round, each server taking ``weight`` consecutive
    buckets (sh; a weight of 0 still takes one) or one bucket (dh)."""
    if not servers:
        return [None] * size
    table: list[RealServer | None] = []
    index = count = 0
    while len(table) < size:
        server = servers[index]
        table.append(server)
        count += 1
        if not weighted or count >= server.weight:
            index = (index + 1) % len(servers)
            count = 0
    return table


def unavailable(server: RealServer) -> bool:
    return server.weight <= 0 or server.overloaded


def probe(table: Sequence[RealServer | None], first: int,
          bucket: Callable[[int], int]) -> RealServer | None:
    """The -fallback flags: the first available server at bucket(offset) for offsets from the
    original bucket round the table, stopping at an empty bucket."""
    server = table[first]
    if server is None or not unavailable(server):
        return server
    size = len(table)
    for offset in range(size):
        server = table[bucket((offset + first) % size)]
        if server is None:
            return None
        if not unavailable(server):
            return server
    return None

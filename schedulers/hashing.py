"""What IPVS's hashing schedulers share: the kernel's hash_32 and hsiphash, bucket tables, and
the address fold of their hash keys for both families.

``hsiphash`` is the kernel's on 64-bit machines: SipHash-1-3 with two 64-bit key words and the
result cut to 32 bits (lib/siphash.c makes HalfSipHash there a full SipHash for speed).

Every IPVS hash key over an address (ip_vs_sh/dh/mh/lblc/lblcr_hashkey) starts alike::

    __be32 addr_fold = addr->ip;
    if (af == AF_INET6)
        addr_fold = addr->ip6[0]^addr->ip6[1]^addr->ip6[2]^addr->ip6[3];
    ... ntohl(addr_fold) ...

``af`` is the service's family (``svc->af``), the family of every packet the service takes. A
flow says its family by an ``af`` attribute (``Flow.af`` = 2, ``Flow6.af`` = 10; a flow
without one is IPv4); the size of the address does not tell it (``::1`` or ``::a.b.c.d`` fit
32 bits).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from pylvs.core.model import RealServer

GOLDEN_RATIO_32 = 0x61C88647
MASK32, MASK64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_SIP_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


AF_INET, AF_INET6 = 2, 10
"""Linux's address family numbers, as IPVS's ``af``."""


def flow_af(flow: object) -> int:
    """The family of a flow: its ``af``, or IPv4 for a flow that has none."""
    return getattr(flow, "af", AF_INET)


def fold(addr: int, af: int) -> int:
    """``ntohl(addr_fold)`` for an address held as an integer in network order (its first byte
    the most significant, as pylvs parses them): an IPv4 address as it is; an IPv6 one, the XOR
    of its four 32-bit words. The kernel XORs the __be32 words as stored and then takes ntohl;
    XOR works byte by byte, so that equals the XOR of the four words read big-endian, whatever
    the host's byte order."""
    if af == AF_INET6:
        return (addr ^ (addr >> 32) ^ (addr >> 64) ^ (addr >> 96)) & MASK32
    return addr


def server_fold(server: RealServer, af: int | None = None) -> int:
    """``ntohl(addr_fold)`` of a real server's ``dest->addr`` for a service of family ``af``
    (ip_vs_mh_permutate hashes ``&dest->addr`` with ``svc->af``), read from its address text.

    IPVS holds the address in a zeroed 16-byte union nf_inet_addr, an IPv4 one in the first 4
    bytes. So in an IPv6 service an IPv4 server folds to its own address (the other words are
    0), and in an IPv4 service an IPv6 server (tunnelled) folds to ``addr->ip``: the first 32
    bits of its address. ``af`` None: the server's own family."""
    packed = ipaddress.ip_address(server.address.strip("[]")).packed
    if af is None:
        af = AF_INET6 if len(packed) == 16 else AF_INET
    union = packed.ljust(16, b"\0")
    if af == AF_INET6:
        return fold(int.from_bytes(union, "big"), AF_INET6)
    return int.from_bytes(union[:4], "big")


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

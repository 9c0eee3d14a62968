"""Maglev hashing, as ip_vs_mh.c (NSDI'16 §3.4): consistent hashing with even spread.

Each server gets a permutation of the table's M slots (M prime, 4093 by default as IPVS) from two
hsiphashes of its address and port: ``offset`` and ``skip``. The table is filled round robin,
each server taking ``turns`` slots per round (last non-zero weight ÷ gcd, shifted so the largest
fits 6 bits), each at the next free slot of its permutation. A client's address (and port with
``mh-port``) hashes to a slot. Since the table uses the last non-zero weight, quiescing a server
(weight 0) keeps the table and only fails (or with ``mh-fallback`` re-probes) its slots.

Addresses are folded as ip_vs_mh_hashkey does (``hashing.fold``): a client's by the flow's
family, a server's (read from its address text when the table is built) by the service's,
``af``, which is the server's own unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register
from schedulers.hashing import MASK32, flow_af, fold, hsiphash_u32, probe, server_fold, unavailable

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
DEFAULT_SIZE = 4093
TAB_BITS = 6
KEY1 = (2654435761, 2654435761)
KEY2 = (2654446892, 2654446892)


def mh_hash(addr: int, port: int, key: tuple[int, int], offset: int = 0) -> int:
    """ip_vs_mh_hashkey for ``addr`` = ntohl(addr_fold), the folded address."""
    return hsiphash_u32((offset + port + addr) & MASK32, *key)


def turns_for(servers: Sequence[RealServer]) -> list[int]:
    weights = [s.last_weight for s in servers]
    divisor = gcd(*(w for w in weights if w > 0))
    if divisor < 1:
        return [0] * len(servers)
    shift = max(0, (max(weights) // divisor).bit_length() - TAB_BITS)
    return [((w // divisor) >> shift) or int(w != 0) for w in weights]


def populate(servers: Sequence[RealServer], size: int, af: int | None = None
             ) -> list[RealServer | None]:
    """ip_vs_mh_permutate + ip_vs_mh_populate; ``af`` is the service's family (None: each
    server's own)."""
    turns = turns_for(servers)
    table: list[RealServer | None] = [None] * size
    if not any(turns):
        return table
    addrs = [server_fold(s, af) for s in servers]
    perm = [mh_hash(a, s.port, KEY1) % size for a, s in zip(addrs, servers, strict=True)]
    skip = [mh_hash(a, s.port, KEY2) % (size - 1) + 1
            for a, s in zip(addrs, servers, strict=True)]
    filled = 0
    while True:
        for i, server in enumerate(servers):
            for _ in range(turns[i]):
                slot = perm[i]
                while table[slot] is not None:
                    slot += skip[i]
                    if slot >= size:
                        slot -= size
                perm[i] = slot
                table[slot] = server
                filled += 1
                if filled == size:
                    return table


@register
class MaglevHashing(Scheduler):
    name = "mh"
    FLAGS = ("mh-fallback", "mh-port")
    af: int | None = None
    """The service's family (svc->af), which folds the servers' addresses in the table; None
    takes each server's own, which differs only for an IPv6 server of an IPv4 service."""

    def __init__(self, flags: Sequence[str] = (), table_size: int = DEFAULT_SIZE) -> None:
        super().__init__(flags)
        self.size = table_size
        self.table: list[RealServer | None] = [None] * table_size
        self.use_port = "mh-port" in self.flags
        self.fallback = "mh-fallback" in self.flags

    def update(self, servers: Sequence[RealServer]) -> None:
        if len(servers) > self.size:
            raise ValueError(f"mh: {len(servers)} real servers do not fit a table of "
                             f"{self.size} (EINVAL in IPVS)")
        self.table = populate(servers, self.size, self.af)

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        port = flow.sport if self.use_port else 0
        addr = fold(flow.saddr, flow_af(flow))
        first = mh_hash(addr, port, KEY1) % self.size
        if self.fallback:
            return probe(self.table, first,
                         lambda offset: mh_hash(addr, port, KEY1, offset) % self.size)
        server = self.table[first]
        return None if server is None or unavailable(server) else server

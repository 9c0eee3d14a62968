"""sh, dh, mh, lblc, lblcr with IPv6 addresses: the hash keys against the kernel's C, restated.

Each ``c_*`` function below transcribes one IPVS expression with its memory and byte order
spelled out (union nf_inet_addr is 16 bytes in memory; a __be32 load reads 4 of them in the
host's order; ntohl is a swap on a little-endian host, nothing on a big-endian one), so the
schedulers' integer shortcuts are checked against the C, not against themselves.
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

import schedulers
from pylvs.core import forwarding
from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers.hashing import AF_INET, AF_INET6, fill_buckets, fold, server_fold, siphash
from schedulers.lblc import LocalityBased
from schedulers.mh import KEY1, KEY2, populate, turns_for

try:
    from pylvs.core.ipv6 import Flow6
except ImportError:  # pragma: no cover - the IPv6 core is built alongside
    Flow6 = None

v6 = st.integers(0, 2**128 - 1)
v4 = st.integers(0, 2**32 - 1)
hosts = st.sampled_from(["little", "big"])
ports = st.integers(0, 65535)
weights = st.lists(st.integers(1, 5), min_size=1, max_size=8)
FAST = settings(max_examples=60, deadline=None)


# --- the kernel, restated -------------------------------------------------------------------

def c_ntohl_addr_fold(addr: int, af: int, host: str = "little") -> int:
    """__be32 addr_fold = addr->ip;
    if (af == AF_INET6) addr_fold = addr->ip6[0]^addr->ip6[1]^addr->ip6[2]^addr->ip6[3];
    ... ntohl(addr_fold)"""
    size = 16 if af == AF_INET6 else 4
    union = addr.to_bytes(size, "big").ljust(16, b"\0")  # network order in memory

    def be32(i: int) -> int:  # the host-order value a load of addr->ip6[i] gives
        return int.from_bytes(union[4 * i:4 * i + 4], host)

    addr_fold = be32(0)  # addr->ip
    if af == AF_INET6:
        addr_fold = be32(0) ^ be32(1) ^ be32(2) ^ be32(3)
    return int.from_bytes(addr_fold.to_bytes(4, host), "big")  # ntohl


def c_hash_32(val: int, bits: int) -> int:
    """include/linux/hash.h: hash_32(val, bits) = (u32)(val * GOLDEN_RATIO_32) >> (32 - bits)"""
    return ((val * 0x61C88647) % 2**32) >> (32 - bits)


def c_sh_hashkey(af: int, addr: int, port: int, offset: int = 0) -> int:
    """ip_vs_sh_hashkey: (offset + hash_32(ntohs(port) + ntohl(addr_fold), 8)) & 255"""
    return (offset + c_hash_32((port + c_ntohl_addr_fold(addr, af)) % 2**32, 8)) & 255


def c_dh_hashkey(af: int, addr: int) -> int:
    """ip_vs_dh_hashkey: hash_32(ntohl(addr_fold), IP_VS_DH_TAB_BITS = 8)"""
    return c_hash_32(c_ntohl_addr_fold(addr, af), 8)


def c_lblc_hashkey(af: int, addr: int) -> int:
    """ip_vs_lblc_hashkey, ip_vs_lblcr_hashkey: hash_32(ntohl(addr_fold), 10)"""
    return c_hash_32(c_ntohl_addr_fold(addr, af), 10)


def c_hsiphash_u32(v: int, key: tuple[int, int]) -> int:
    """hsiphash(&v, sizeof(v), key) on x86-64: v's 4 bytes as stored (little-endian), keyed
    SipHash-1-3 (lib/siphash.c, BITS_PER_LONG == 64), cut to 32 bits."""
    return siphash(v.to_bytes(4, "little"), key[0], key[1], 1, 3) % 2**32


def c_mh_hashkey(af: int, addr: int, port: int, key: tuple[int, int], offset: int = 0) -> int:
    """ip_vs_mh_hashkey: v = offset + ntohs(port) + ntohl(addr_fold); hsiphash(&v, 4, key)"""
    return c_hsiphash_u32((offset + port + c_ntohl_addr_fold(addr, af)) % 2**32, key)


def c_mh_populate(dests: list[tuple[int, int, int]], turns: list[int], size: int,
                  svc_af: int) -> list[int | None]:
    """ip_vs_mh_permutate + ip_vs_mh_populate over (dest address bytes as int, dest af, port):
    the permutation hashes &dest->addr with svc->af. Returns each slot's dest index."""
    setup = []
    for (addr, dest_af, port), turn in zip(dests, turns, strict=True):
        union = addr.to_bytes(16 if dest_af == AF_INET6 else 4, "big").ljust(16, b"\0")
        as_svc = int.from_bytes(union if svc_af == AF_INET6 else union[:4], "big")
        offset = c_mh_hashkey(svc_af, as_svc, port, KEY1) % size
        skip = c_mh_hashkey(svc_af, as_svc, port, KEY2) % (size - 1) + 1
        setup.append([offset, skip, turn])
    table: list[int | None] = [None] * size
    n = 0
    while n < size:
        for i, (_, skip, turn) in enumerate(setup):
            for _ in range(turn):
                while table[setup[i][0]] is not None:
                    setup[i][0] = (setup[i][0] + skip) % size
                table[setup[i][0]] = i
                n += 1
                if n == size:
                    return table
    return table


# --- flows and servers as the IPv6 director will give them ----------------------------------

def flow6(saddr: int, daddr: int = 0x20010DB8 << 96 | 0x100, sport: int = 40000,
          dport: int = 80, real: bool = True) -> object:
    """An IPv6 flow: a Flow6 once it says its family (af = 10), else a stand-in with the
    attributes the schedulers read."""
    if real and Flow6 is not None and getattr(Flow6, "af", None) == AF_INET6:
        return Flow6(6, saddr, daddr, sport, dport, 14, 54, 0x02, 64, 20)
    return SimpleNamespace(proto=6, saddr=saddr, daddr=daddr, sport=sport, dport=dport,
                           af=AF_INET6)


class RealServer6(RealServer):
    """A real server with an IPv6 address, as the model will hold one (it takes IPv4 today)."""

    def __post_init__(self) -> None:
        self.ip = 0
        self.last_weight = self.weight
        self.forwarder = forwarding.get(self.forward)


def servers6(ws: list[int], base: int = 0x20010DB8 << 96) -> list[RealServer]:
    return [RealServer6(str(ipaddress.IPv6Address(base + 0x1000 * i + 1)), 80, w)
            for i, w in enumerate(ws)]


def servers4(ws: list[int]) -> list[RealServer]:
    return [RealServer(f"10.0.0.{i + 1}", 80, w) for i, w in enumerate(ws)]


def make(name: str, servers: list[RealServer], flags: tuple[str, ...] = (), **kw):
    scheduler = schedulers.get(name)(flags, **kw)
    scheduler.update(servers)
    return scheduler


# --- the fold -------------------------------------------------------------------------------

def test_a_flow_says_its_family():
    assert Flow(6, 1, 2, 3, 4, 34, 0, 64, 40).af == AF_INET
    assert flow6(1).af == AF_INET6


@FAST
@given(v6, v4, hosts)
def test_fold_is_the_kernel_expression_on_either_host(addr6, addr4, host):
    assert fold(addr6, AF_INET6) == c_ntohl_addr_fold(addr6, AF_INET6, host)
    assert fold(addr4, AF_INET) == c_ntohl_addr_fold(addr4, AF_INET, host) == addr4


@FAST
@given(v6, v4)
def test_a_servers_fold_follows_the_services_family(addr6, addr4):
    six = RealServer6(str(ipaddress.IPv6Address(addr6)), 80)
    four = RealServer(str(ipaddress.IPv4Address(addr4)), 80)
    assert server_fold(six) == server_fold(six, AF_INET6) == c_ntohl_addr_fold(addr6, AF_INET6)
    assert server_fold(six, AF_INET) == addr6 >> 96  # addr->ip: the first word
    assert server_fold(four) == server_fold(four, AF_INET) == four.ip
    assert server_fold(four, AF_INET6) == four.ip  # ip6[1..3] are 0


# --- sh, dh ---------------------------------------------------------------------------------

@FAST
@given(weights, v6, ports, v6)
def test_sh_buckets_an_ipv6_source_as_ip_vs_sh_hashkey(ws, saddr, sport, daddr):
    servers = servers4(ws)
    table = fill_buckets(servers, 256, True)
    sh = make("sh", servers)
    assert sh.pick(servers, flow6(saddr, daddr, sport)) is table[c_sh_hashkey(10, saddr, 0)]
    assert sh.pick(servers, flow6(saddr, 1, 2, real=False)) is sh.pick(servers, flow6(saddr))
    by_port = make("sh", servers, ("sh-port",))
    assert by_port.pick(servers, flow6(saddr, daddr, sport)) is table[
        c_sh_hashkey(10, saddr, sport)]


@FAST
@given(st.lists(st.integers(1, 3), min_size=2, max_size=6), v6, st.data())
def test_sh_fallback_probes_the_kernels_offsets_for_ipv6(ws, saddr, data):
    servers = servers4(ws)
    for server in data.draw(st.lists(st.sampled_from(servers), max_size=len(servers) - 1)):
        server.weight = 0  # quiesced: the table is rebuilt (a weight-0 server keeps a bucket)
    table = fill_buckets(servers, 256, True)
    first = c_sh_hashkey(10, saddr, 0)
    expected = table[first]
    if expected.weight <= 0:  # ip_vs_sh_get_fallback: roffset = (offset + ihash) % 256
        expected = next(table[c_sh_hashkey(10, saddr, 0, (offset + first) % 256)]
                        for offset in range(256)
                        if table[c_sh_hashkey(10, saddr, 0, (offset + first) % 256)].weight > 0)
    assert make("sh", servers, ("sh-fallback",)).pick(servers, flow6(saddr)) is expected


@FAST
@given(weights, v6, v6)
def test_dh_buckets_an_ipv6_destination_as_ip_vs_dh_hashkey(ws, daddr, saddr):
    servers = servers6(ws)
    dh = make("dh", servers)
    expected = fill_buckets(servers, 256, False)[c_dh_hashkey(10, daddr)]
    assert dh.pick(servers, flow6(saddr, daddr)) is expected
    assert dh.pick(servers, flow6(saddr ^ 1, daddr, real=False)) is expected


# --- mh -------------------------------------------------------------------------------------

@FAST
@given(weights, v6, ports)
def test_mh_slots_an_ipv6_client_as_ip_vs_mh_hashkey(ws, saddr, sport):
    servers = servers6(ws)
    mh = make("mh", servers, table_size=251)
    assert mh.pick(servers, flow6(saddr, sport=sport)) is mh.table[
        c_mh_hashkey(10, saddr, 0, KEY1) % 251]
    by_port = make("mh", servers, ("mh-port",), table_size=251)
    assert by_port.pick(servers, flow6(saddr, sport=sport)) is by_port.table[
        c_mh_hashkey(10, saddr, sport, KEY1) % 251]
    assert by_port.pick(servers, flow6(saddr, 7, sport, real=False)) is by_port.pick(
        servers, flow6(saddr, sport=sport))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(v6, st.integers(1, 40), ports), min_size=1, max_size=12,
                unique_by=lambda t: t[0]))
def test_mh_builds_its_table_from_ipv6_servers_as_ip_vs_mh_permutate(rows):
    servers = [RealServer6(str(ipaddress.IPv6Address(a)), p, w) for a, w, p in rows]
    turns = turns_for(servers)
    dests = [(a, AF_INET6, p) for a, _, p in rows]
    expected = [servers[i] for i in c_mh_populate(dests, turns, 251, AF_INET6)]
    assert populate(servers, 251) == expected
    assert make("mh", servers, table_size=251).table == expected
    # the IPv4 service of tunnelled IPv6 servers hashes addr->ip, their first word
    ipv4_service = schedulers.get("mh")((), table_size=251)
    ipv4_service.af = AF_INET
    ipv4_service.update(servers)
    assert ipv4_service.table == [servers[i] for i in c_mh_populate(dests, turns, 251, AF_INET)]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(v4, st.integers(1, 40), ports), min_size=1, max_size=12,
                unique_by=lambda t: t[0]))
def test_mh_ipv4_servers_hash_alike_in_either_familys_service(rows):
    servers = [RealServer(str(ipaddress.IPv4Address(a)), p, w) for a, w, p in rows]
    dests = [(a, AF_INET, p) for a, _, p in rows]
    expected = [servers[i] for i in c_mh_populate(dests, turns_for(servers), 251, AF_INET)]
    assert populate(servers, 251) == populate(servers, 251, AF_INET) == expected
    assert populate(servers, 251, AF_INET6) == expected


# --- lblc, lblcr ----------------------------------------------------------------------------

@FAST
@given(v6, v4)
def test_lblc_and_lblcr_chains_are_the_kernels(daddr6, daddr4):
    assert LocalityBased.chain(flow6(1, daddr6)) == c_lblc_hashkey(10, daddr6)
    assert LocalityBased.chain(Flow(6, 1, daddr4, 1, 80, 34, 0, 64, 40)) == c_lblc_hashkey(
        2, daddr4)


@FAST
@given(v6, st.integers(1, 2**32 - 1))
def test_lblc_and_lblcr_key_ipv6_destinations_by_the_whole_address(daddr, word):
    twin = daddr ^ (word << 96) ^ (word << 64)  # same fold, same chain: another address
    assert c_lblc_hashkey(10, twin) == c_lblc_hashkey(10, daddr) and twin != daddr
    for name in ("lblc", "lblcr"):
        servers = servers6([1, 1])
        scheduler = make(name, servers)
        first = scheduler.pick(servers, flow6(1, daddr))
        first.bind(active=True)
        second = scheduler.pick(servers, flow6(2, twin, real=False))
        assert second is not first  # wlc: the twin has no entry of its own yet
        assert scheduler.pick(servers, flow6(3, daddr)) is first
        entries = scheduler.cache if name == "lblc" else scheduler.sets
        assert set(entries) == {daddr, twin}

"""sh, dh, mh, lblc, lblcr and twos: tables, flags and caches as the IPVS modules build them."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedulers
from pylvs.core.director import Director
from pylvs.core.forwarding import NextHop
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import Flow
from schedulers.hashing import fill_buckets, hash_32, siphash
from schedulers.mh import populate, turns_for
from schedulers.sh import bucket

addresses = st.integers(1, 2**32 - 2)


def flow(saddr: int, sport: int = 40000, daddr: int = 0xC0000264) -> Flow:
    return Flow(6, saddr, daddr, sport, 80, 34, 0x02, 64, 40)


def servers_from(weights: list[int]) -> list[RealServer]:
    return [RealServer(f"10.0.{i // 200}.{i % 200 + 1}", 80, w) for i, w in enumerate(weights)]


def make(name: str, servers: list[RealServer], flags: tuple[str, ...] = (), **kw):
    scheduler = schedulers.get(name)(flags, **kw)
    scheduler.update(servers)
    return scheduler


def test_siphash_2_4_reference_vector_and_kernel_hash_32():
    key = bytes(range(16))
    assert siphash(bytes(range(15)), int.from_bytes(key[:8], "little"),
                   int.from_bytes(key[8:], "little")) == 0xA129CA6149BE45E5
    assert hash_32(1, 8) == 0x61C88647 >> 24
    assert hash_32(0, 8) == 0


def test_sh_fills_buckets_by_weight_and_dh_one_each():
    a, b, c = servers_from([2, 1, 0])
    assert fill_buckets([a, b, c], 256, True)[:8] == [a, a, b, c, a, a, b, c]
    assert fill_buckets([a, b, c], 256, False)[:6] == [a, b, c, a, b, c]
    assert fill_buckets([], 256, True) == [None] * 256


@given(st.lists(st.integers(1, 5), min_size=1, max_size=10), addresses, st.integers(1, 65535))
def test_sh_is_deterministic_and_follows_its_bucket(weights, saddr, sport):
    servers = servers_from(weights)
    sh = make("sh", servers)
    table = fill_buckets(servers, 256, True)
    assert sh.pick(servers, flow(saddr, sport)) is table[bucket(saddr, 0)]
    assert make("sh", servers).pick(servers, flow(saddr, 1)) is sh.pick(servers, flow(saddr, 2))
    with_port = make("sh", servers, ("sh-port",))
    assert with_port.pick(servers, flow(saddr, sport)) is table[bucket(saddr, sport)]


def test_sh_quiesced_server_fails_without_fallback_and_is_replaced_with_it():
    servers = servers_from([1, 1, 1])
    saddr = 0xCB007105
    chosen = make("sh", servers).pick(servers, flow(saddr))
    chosen.weight = 0
    assert make("sh", servers).pick(servers, flow(saddr)) is None
    other = make("sh", servers, ("sh-fallback",)).pick(servers, flow(saddr))
    assert other is not None and other is not chosen and other.weight > 0


@given(st.lists(st.integers(1, 5), min_size=1, max_size=8), addresses)
def test_dh_keys_on_the_destination(weights, daddr):
    servers = servers_from(weights)
    dh = make("dh", servers)
    assert dh.pick(servers, flow(1, daddr=daddr)) is dh.pick(servers, flow(2, daddr=daddr))
    assert dh.pick(servers, flow(1, daddr=daddr)) is fill_buckets(servers, 256, False)[
        hash_32(daddr, 8)]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_mh_shares_follow_turns_and_every_slot_is_filled(weights):
    servers = servers_from(weights)
    table = populate(servers, 4093)
    turns = turns_for(servers)
    rounds = 4093 // sum(turns)
    counts = Counter(id(s) for s in table)
    for server, turn in zip(servers, turns, strict=True):
        assert turn * rounds <= counts[id(server)] <= turn * (rounds + 1)
    assert max(turns) < 2 ** 6  # weights ÷ gcd shifted into IPVS's 6 bits


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 5)), min_size=3,
                max_size=50, unique_by=lambda t: t[0]), st.data())
def test_mh_removal_moves_few_other_flows(rows, data):
    servers = [RealServer(f"{ip >> 24}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}", 80, w)
               for ip, w in rows]
    gone = data.draw(st.integers(0, len(servers) - 1))
    before = populate(servers, 4093)
    after = populate(servers[:gone] + servers[gone + 1:], 4093)
    moved = sum(1 for a, b in zip(before, after, strict=True) if a is not servers[gone]
                and a is not b)
    assert moved / 4093 <= 0.10


def test_mh_quiescing_keeps_the_table_and_fallback_reprobes():
    servers = servers_from([1, 2, 3, 4])
    mh = make("mh", servers)
    table = list(mh.table)
    saddr = next(a for a in range(1, 10**6) if mh.pick(servers, flow(a)) is servers[2])
    servers[2].set_weight(0)
    mh.update(servers)
    assert mh.table == table
    assert mh.pick(servers, flow(saddr)) is None
    fallback = make("mh", servers, ("mh-fallback",))
    assert fallback.pick(servers, flow(saddr)) not in (None, servers[2])


def test_mh_refuses_more_servers_than_slots():
    with pytest.raises(ValueError, match="EINVAL"):
        make("mh", servers_from([1] * 300), table_size=251)


def test_lblc_keeps_a_destination_on_its_server_until_it_is_overloaded():
    servers = servers_from([2, 2])
    lblc = make("lblc", servers)
    first = lblc.pick(servers, flow(1, daddr=7))
    for _ in range(2):
        first.bind(active=True)
    assert lblc.pick(servers, flow(2, daddr=7)) is first  # 2 active ≤ weight 2
    first.bind(active=True)  # 3 > 2 while the other has 0·2 < 2: overloaded in lblc's sense
    other = lblc.pick(servers, flow(3, daddr=7))
    assert other is not first and lblc.pick(servers, flow(4, daddr=7)) is other


def test_lblc_entries_expire():
    servers = servers_from([1, 1])
    lblc = make("lblc", servers, expiration=10.0)
    lblc.now = 0.0
    first = lblc.pick(servers, flow(1, daddr=7))
    first.bind(active=False)
    first.bind(active=False)
    lblc.now = 11.0
    assert lblc.pick(servers, flow(1, daddr=7)) is not first  # wlc again: the other is idle


@pytest.mark.parametrize("persistence", [0, 360])
def test_the_director_gives_the_scheduler_its_time(persistence):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    vip = "192.0.2.100"
    service = VirtualService("tcp", vip, 80, schedulers.get("lblc")(), "dr", persistence)
    for i in (1, 2):
        service.add_real_server(RealServer(f"198.51.100.{i}", 80))
    director = Director([service])
    for i in (1, 2):
        director.set_hop(ip_to_int(f"198.51.100.{i}"),
                         NextHop(bytes(6), bytes([2, 0, 0, 0, 1, i]), "eth0"))
    frame = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
             / IP(src="203.0.113.5", dst=vip) / TCP(sport=40000, dport=80, flags="S"))
    assert director.handle(bytearray(bytes(frame)), 1234.5) is not None
    assert service.scheduler.now == 1234.5
    assert [t for _, t in service.scheduler.cache.values()] == [1234.5]


def test_lblcr_grows_the_set_when_its_best_member_is_overloaded():
    servers = servers_from([1, 1, 1])
    lblcr = make("lblcr", servers)
    first = lblcr.pick(servers, flow(1, daddr=9))
    first.bind(active=True)
    first.bind(active=True)
    second = lblcr.pick(servers, flow(2, daddr=9))
    assert second is not first
    assert {id(m) for m in lblcr.sets[9].members} == {id(first), id(second)}


class FixedDraws(random.Random):
    def __init__(self, draws: list[int]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def getrandbits(self, k: int) -> int:
        return self.draws.pop(0)


def test_twos_takes_the_less_loaded_of_two_weighted_draws():
    servers = servers_from([1, 1, 1])
    servers[0].bind(active=True)
    # total weight 3: draws 0 → first (0 ≤ 1), 2 → second; second has less overhead
    twos = make("twos", servers, rng=FixedDraws([0, 2]))
    assert twos.pick(servers, None) is servers[1]
    twos = make("twos", servers, rng=FixedDraws([3, 0]))
    assert twos.pick(servers, None) is servers[2]  # draw 3 = total reaches the last server

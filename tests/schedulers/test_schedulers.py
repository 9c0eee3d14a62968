"""rr, wrr, lc and wlc against brute-force statements of IPVS's rules (reference §4)."""

from __future__ import annotations

from fractions import Fraction
from functools import reduce
from math import gcd

import pytest
from hypothesis import given
from hypothesis import strategies as st

import schedulers
from pylvs.core.model import RealServer, VirtualService

weights_lists = st.lists(st.integers(0, 12), min_size=1, max_size=8)


def make_servers(weights: list[int]) -> list[RealServer]:
    return [RealServer(f"10.0.0.{i + 1}", 80, w) for i, w in enumerate(weights)]


def scheduler_for(name: str, servers: list[RealServer]) -> schedulers.Scheduler:
    scheduler = schedulers.get(name)()
    scheduler.update(servers)
    return scheduler


def picks(name: str, servers: list[RealServer], count: int) -> list[int | None]:
    scheduler = scheduler_for(name, servers)
    chosen = [scheduler.pick(servers, None) for _ in range(count)]
    return [None if s is None else servers.index(s) for s in chosen]


def lvs_wrr_reference(weights: list[int], count: int) -> list[int | None]:
    """The pseudo-code of the LVS project's scheduling page, written out literally."""
    n, i, cw = len(weights), -1, 0
    step = reduce(gcd, [w for w in weights if w > 0], 0) or 1
    if max(weights) == 0:
        return [None] * count
    out: list[int | None] = []
    while len(out) < count:
        i = (i + 1) % n
        if i == 0:
            cw -= step
            if cw <= 0:
                cw = max(weights)
        if weights[i] >= cw:
            out.append(i)
    return out


def test_registry_names_the_builtins_and_refuses_unknown_names():
    assert set(schedulers.names()) >= {"rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "sh",
                                       "dh", "mh", "lblc", "lblcr", "twos"}
    with pytest.raises(schedulers.UnknownScheduler) as err:
        schedulers.get("nosuch")
    assert "nosuch" in str(err.value) and "wlc" in str(err.value)
    with pytest.raises(KeyError):
        schedulers.get("../etc")


def test_wrr_3_2_1_gives_ipvs_sequence():
    assert picks("wrr", make_servers([3, 2, 1]), 12) == [0, 0, 1, 0, 1, 2] * 2


@given(weights_lists)
def test_wrr_equals_lvs_pseudo_code(weights):
    count = 3 * max(sum(weights), 1)
    assert picks("wrr", make_servers(weights), count) == lvs_wrr_reference(weights, count)


@given(weights_lists)
def test_wrr_gives_each_server_its_weight_per_cycle(weights):
    chosen = picks("wrr", make_servers(weights), sum(weights))
    assert [chosen.count(i) for i in range(len(weights))] == weights


@given(weights_lists)
def test_rr_cycles_over_servers_with_weight(weights):
    available = [i for i, w in enumerate(weights) if w > 0]
    expected = (available * 3) if available else [None] * 3
    assert picks("rr", make_servers(weights), len(expected)) == expected


def test_rr_skips_overloaded_and_continues_after_last_choice():
    servers = make_servers([1, 1, 1])
    rr = scheduler_for("rr", servers)
    assert rr.pick(servers, None) is servers[0]
    servers[1].overloaded = True
    assert rr.pick(servers, None) is servers[2]
    assert rr.pick(servers, None) is servers[0]


def test_rr_deleting_the_last_choice_goes_on_with_its_successor():
    servers = make_servers([1, 1, 1, 1])
    rr = scheduler_for("rr", servers)
    rr.pick(servers, None)
    assert rr.pick(servers, None) is servers[1]
    del servers[1]
    rr.update(servers)
    assert rr.pick(servers, None).address == "10.0.0.3"


def test_service_lists_newest_real_server_first():
    service = VirtualService("tcp", "192.168.1.100", 80, schedulers.get("rr")())
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        service.add_real_server(RealServer(address, 80))
    chosen = [service.scheduler.pick(service.real_servers, None).address for _ in range(3)]
    assert chosen == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]


def test_wrr_weight_change_restarts_at_head_with_cw_clamped():
    servers = make_servers([4, 2])
    wrr = scheduler_for("wrr", servers)
    assert wrr.cw == 3 and wrr.di == 2
    wrr.pick(servers, None)
    servers[0].weight = 1
    wrr.update(servers)
    assert (wrr.di, wrr.mw, wrr.cw) == (1, 2, 2)
    assert [servers.index(wrr.pick(servers, None)) for _ in range(3)] == [1, 0, 1]


def test_all_quiesced_gives_no_server():
    servers = make_servers([0, 0])
    for name in ("rr", "wrr", "lc", "wlc"):
        assert scheduler_for(name, servers).pick(servers, None) is None, name


loads = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 50), st.integers(0, 300),
                           st.booleans()), min_size=1, max_size=8)


def loaded(rows: list[tuple[int, int, int, bool]]) -> list[RealServer]:
    servers = make_servers([w for w, *_ in rows])
    for server, (_, active, inactive, over) in zip(servers, rows, strict=True):
        server.activeconns, server.inactconns, server.overloaded = active, inactive, over
    return servers


def eligible(servers: list[RealServer]) -> list[int]:
    return [i for i, s in enumerate(servers) if s.weight > 0 and not s.overloaded]


@given(loads)
def test_lc_takes_least_overhead_first_in_list_on_ties(rows):
    servers = loaded(rows)
    candidates = eligible(servers)
    expected = min(candidates, key=lambda i: (servers[i].activeconns * 256
                                              + servers[i].inactconns, i), default=None)
    assert picks("lc", servers, 1) == [expected]


@given(loads)
def test_wlc_takes_least_overhead_per_weight_first_in_list_on_ties(rows):
    servers = loaded(rows)
    candidates = eligible(servers)
    expected = min(candidates, key=lambda i: (Fraction(servers[i].overhead(),
                                                       servers[i].weight), i), default=None)
    assert picks("wlc", servers, 1) == [expected]


def sed_key(server: RealServer) -> Fraction:
    return Fraction(server.activeconns + 1, server.weight)


def reference(name: str, servers: list[RealServer]) -> int | None:
    """Brute-force statements of ip_vs_<name>.c's rules, first in list on ties."""
    candidates = eligible(servers)
    if name == "sed":
        return min(candidates, key=lambda i: (sed_key(servers[i]), i), default=None)
    if name == "nq":
        idle = [i for i in candidates if servers[i].activeconns == 0]
        return idle[0] if idle else reference("sed", servers)
    if name == "fo":
        return min(candidates, key=lambda i: (-servers[i].weight, i), default=None)
    if name == "ovf":
        room = [i for i in candidates if servers[i].activeconns <= servers[i].weight]
        return min(room, key=lambda i: (-servers[i].weight, i), default=None)
    if name == "lc":
        return min(candidates, key=lambda i: (servers[i].overhead(), i), default=None)
    return min(candidates, key=lambda i: (Fraction(servers[i].overhead(), servers[i].weight), i),
               default=None)


@given(loads, st.sampled_from(["sed", "nq", "fo", "ovf"]))
def test_sed_nq_fo_ovf_follow_ipvs_rules(rows, name):
    servers = loaded(rows)
    assert picks(name, servers, 1) == [reference(name, servers)]


operations = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(
    ["bind_active", "bind_inactive", "unbind_active", "unbind_inactive", "activate",
     "deactivate"])), max_size=60)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=8),
       operations)
def test_incremental_indexes_agree_with_a_full_scan_after_every_change(rows, ops):
    """The tournament trees follow bind/unbind/state changes (and OVERLOAD via thresholds)."""
    for name in ("lc", "wlc", "sed", "nq", "ovf", "fo"):
        servers = make_servers([w for w, _ in rows])
        for server, (_, upper) in zip(servers, rows, strict=True):
            server.upper_threshold = upper
        scheduler = scheduler_for(name, servers)
        for index, op in ops:
            server = servers[index % len(servers)]
            if op.startswith("bind"):
                server.bind(active=op == "bind_active")
            elif op == "unbind_active" and server.activeconns:
                server.unbind(active=True)
            elif op == "unbind_inactive" and server.inactconns:
                server.unbind(active=False)
            elif op == "activate" and server.inactconns:
                server.set_active(False, True)
            elif op == "deactivate" and server.activeconns:
                server.set_active(True, False)
            chosen = scheduler.pick(servers, None)
            assert (None if chosen is None else servers.index(chosen)) == reference(
                name, servers), (name, op)


@given(loads, st.sampled_from(["rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos"]))
def test_no_scheduler_picks_a_quiesced_or_overloaded_server(rows, name):
    servers = loaded(rows)
    for index in picks(name, servers, 2 * len(servers)):
        if index is None:  # ovf also refuses servers with more active connections than weight
            assert not eligible(servers) or name == "ovf"
        else:
            assert index in eligible(servers)

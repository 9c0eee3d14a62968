"""IPVS's defences (pylvs.core.defense): update_defense_level's mode switching, ip_vs_todrop,
ip_vs_random_dropentry and the secure_tcp state table, each as the kernel does it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylvs.core.conntrack import (
    ESTABLISHED,
    INPUT,
    INPUT_ONLY,
    OUTPUT,
    SECURE_TRANSITIONS,
    SYN_RECV,
    SYNACK,
    TRANSITIONS,
)
from pylvs.core.defense import Defense
from pylvs.core.sysctls import Sysctls
from tests.helpers.directors import dr_director
from tests.helpers.frames import dr_frame

THRESHOLD = 1024


@pytest.mark.parametrize("knob", ["drop_entry", "drop_packet", "secure_tcp"])
def test_an_automatic_mode_follows_memory_and_is_written_back(knob):
    """Modes 1 and 2: on (and 2 written back) while availmem < amemthresh, off and 1 after."""
    defense = Defense(Sysctls(**{knob: 1}))
    defense.update(availmem=THRESHOLD * 4)
    assert getattr(defense.sysctls, knob) == 1 and not _on(defense, knob)
    defense.update(availmem=THRESHOLD - 1)
    assert getattr(defense.sysctls, knob) == 2 and _on(defense, knob)
    defense.update(availmem=THRESHOLD)  # not below: memory is back
    assert getattr(defense.sysctls, knob) == 1 and not _on(defense, knob)


@pytest.mark.parametrize("knob", ["drop_entry", "drop_packet", "secure_tcp"])
@pytest.mark.parametrize(("mode", "on"), [(0, False), (3, True)])
def test_modes_0_and_3_ignore_memory(knob, mode, on):
    defense = Defense(Sysctls(**{knob: mode}))
    for availmem in (0, THRESHOLD * 10):
        defense.update(availmem)
        assert _on(defense, knob) is on and getattr(defense.sysctls, knob) == mode


def _on(defense: Defense, knob: str) -> bool:
    return {"drop_entry": defense.drop_entries, "drop_packet": bool(defense.drop_rate),
            "secure_tcp": defense.secure}[knob]


@given(st.integers(0, THRESHOLD - 1))
def test_drop_rate_in_the_automatic_mode_is_amemthresh_over_the_shortfall(availmem):
    defense = Defense(Sysctls(drop_packet=1))
    defense.update(availmem)
    rate = THRESHOLD // (THRESHOLD - availmem)
    assert defense.drop_rate == rate
    drops = [defense.todrop() for _ in range(rate * 5)]
    assert drops.count(True) == 5 and all(drops[i] for i in range(rate - 1, rate * 5, rate))


def test_mode_3_drops_one_in_am_droprate_from_the_first():
    """Mode 3 sets drop_rate, not drop_counter (still 0): ip_vs_todrop drops the first."""
    defense = Defense(Sysctls(drop_packet=3, am_droprate=4))
    defense.update(availmem=10**9)
    assert [defense.todrop() for _ in range(8)] == [True, False, False, False] * 2


def test_the_secure_table_differs_from_the_normal_one_where_the_reference_says():
    """Reference §3.2: INPUT syn/fin/ack from SA stay SA, INPUT ack from SR stays SR, INPUT rst
    from SA → CL; OUTPUT syn from SR or SA → SA; INPUT-ONLY syn from NO/FW/TW/CL/CW/LA/LI/SA →
    SA (tcp_states_dos)."""
    names = "NO ES SS SR FW TW CL CW LA LI SA".split()
    differences = {(direction, event, names[state]): names[secure[state]]
                   for direction, (normal_rows, secure_rows)
                   in enumerate(zip(TRANSITIONS, SECURE_TRANSITIONS, strict=True))
                   for event, (normal, secure) in enumerate(zip(normal_rows, secure_rows,
                                                                strict=True))
                   for state in range(11) if normal[state] != secure[state]}
    syn, fin, ack, rst = range(4)
    assert differences == {
        (INPUT, syn, "SA"): "SA", (INPUT, fin, "SA"): "SA", (INPUT, ack, "SA"): "SA",
        (INPUT, ack, "SR"): "SR", (INPUT, rst, "SA"): "CL",
        (OUTPUT, syn, "SR"): "SA", (OUTPUT, syn, "SA"): "SA",
        **{(INPUT_ONLY, syn, s): "SA" for s in ("NO", "FW", "TW", "CL", "CW", "LA", "LI", "SA")},
    }


def _connection(director, sport=40000, flags="S"):
    director.handle(bytearray(dr_frame(sport=sport, flags=flags)), now=0.0)
    return director.table.get((6, 0xCB007105, sport, 0xC0000264, 80))


def test_secure_tcp_makes_a_dr_syn_a_synack_entry_until_the_client_acks():
    director = dr_director()
    director.defense.set("secure_tcp", 3)
    director.defend(availmem=10**9, now=0.0)
    conn = _connection(director)
    assert conn.state == SYNACK
    director.handle(bytearray(dr_frame(sport=40000, flags="A")), now=0.1)
    assert conn.state == ESTABLISHED
    director.defense.set("secure_tcp", 0)
    director.defend(availmem=10**9, now=1.0)
    assert _connection(director, sport=40001).state == SYN_RECV


def test_drop_packet_drops_new_connections_only_and_counts_them():
    director = dr_director()
    for name, value in (("drop_packet", 3), ("am_droprate", 4)):
        director.defense.set(name, value)
    director.defend(availmem=10**9, now=0.0)
    established = _connection(director, sport=1000)
    assert established is None  # the 1st of 4: ip_vs_todrop counts down from drop_rate
    sent = [director.handle(bytearray(dr_frame(sport=2000 + i)), now=0.0) for i in range(16)]
    assert sum(out is None for out in sent) == 4
    assert director.counters["defense_dropped_packets"] == 5
    assert len(director.table) == 12
    conn = next(iter(director.table))
    for _ in range(8):  # packets of a tracked connection are never dropped
        assert director.handle(bytearray(dr_frame(sport=conn.cport, flags="A")), now=0.1)


def test_drop_entry_removes_flood_entries_a_32nd_a_second_and_spares_busy_ones():
    director = dr_director()
    director.defense.set("drop_entry", 1)
    for sport in range(1, 3201):  # a SYN flood: SYN_RECV entries
        director.handle(bytearray(dr_frame(sport=sport)), now=0.0)
    busy = _connection(director, sport=5000)
    for _ in range(20):
        director.handle(bytearray(dr_frame(sport=5000, flags="A")), now=100.0)
    director.defend(availmem=THRESHOLD * 4, now=100.0)  # memory enough: nothing dropped
    assert len(director.table) == 3201 and director.defense.sysctls.drop_entry == 1
    director.defend(availmem=0, now=100.0)
    assert director.defense.sysctls.drop_entry == 2
    assert director.counters["defense_dropped_entries"] == -(-3201 // 32)
    for _ in range(31):  # one round: every entry looked at once, every flood entry gone
        director.defend(availmem=0, now=100.0)
    assert list(director.table) == [busy]
    assert director.counters["defense_dropped_entries"] == 3200


def test_drop_entry_takes_quiet_established_entries_by_their_packet_count():
    """todrop_entry: an entry with N ≤ 8 client packets and none for 60 s goes one time in N."""
    director = dr_director()
    director.defense.set("drop_entry", 3)
    for sport in range(1, 65):
        _connection(director, sport=sport)
        for _ in range(2):  # SYN + 2 ACKs: 3 packets
            director.handle(bytearray(dr_frame(sport=sport, flags="A")), now=0.0)
    assert {c.state for c in director.table} == {ESTABLISHED}
    director.defense.update(availmem=10**9)  # mode 3: on whatever the memory
    doomed = director.defense.doomed(list(director.table), director.table.timeouts, 30.0)
    assert doomed == []  # seen 30 s ago: kept
    doomed = director.defense.doomed(list(director.table), director.table.timeouts, 61.0)
    assert len(doomed) == 22  # 1st, 4th, ... of the 64 looked at: the counter starts at 0


def test_a_sysctl_write_is_checked_as_the_kernel_does():
    defense = Defense()
    for name, value in (("drop_entry", 4), ("secure_tcp", -1), ("amemthresh", -5)):
        with pytest.raises(ValueError):
            defense.set(name, value)
    with pytest.raises(KeyError):
        defense.set("sloppy", 1)
    assert defense.sysctls == Sysctls()

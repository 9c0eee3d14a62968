"""The core's one way out (pylvs.core.outbox): counts by reason, rules changed, offers to the
fast path and withdrawals, connections due to the sync daemon, each taken by the shell."""

from __future__ import annotations

from collections import Counter

from pylvs.adm.commands import adm
from pylvs.core.conntrack import ConnectionTable
from pylvs.core.outbox import Count, Outbox
from pylvs.ha import sync
from tests.helpers.directors import VIP, dr_director
from tests.helpers.frames import dr_frame


def test_a_count_is_its_string():
    counts: Counter[str] = Counter()
    counts[Count.FORWARDED] += 1
    counts["forwarded"] += 1
    assert counts == {"forwarded": 2} and f"{Count.NO_NEXT_HOP}" == "no_next_hop"
    assert len({member.value for member in Count}) == len(Count)


def test_the_directors_counters_are_its_outboxs_counts():
    director = dr_director()
    assert director.counters is director.outbox.counts
    director.handle(bytearray(dr_frame()), 1.0)
    assert director.counters[Count.FORWARDED] == director.counters["forwarded"] == 1


def test_every_count_the_core_keeps_is_named():
    director = dr_director()
    director.handle(bytearray(b"\0" * 60), 1.0)
    director.handle(bytearray(dr_frame(flags="A", sport=1)), 1.0)
    director.handle(bytearray(dr_frame(ttl=1)), 1.0)
    assert set(director.counters) <= set(Count)
    assert all(type(key) is Count for key in director.counters)


def test_a_rule_change_is_taken_once():
    director = dr_director()
    director.outbox.take_rules_changed()
    assert not director.outbox.take_rules_changed()
    adm(director, ["-a", "-t", f"{VIP}:80", "-r", "198.51.100.9"], 0.0)
    assert director.outbox.take_rules_changed()
    assert not director.outbox.take_rules_changed()


def test_nothing_is_offered_until_the_shell_has_a_fast_path():
    director = dr_director()
    for flags in ("S", "A"):
        director.handle(bytearray(dr_frame(flags=flags)), 1.0)
    assert not director.outbox.offering and not director.outbox.has_offers()
    (conn,) = director.table
    assert not conn.offloaded
    director.outbox.start_offering()
    director.handle(bytearray(dr_frame(flags="A")), 1.0)
    assert director.outbox.offering and director.outbox.has_offers() and conn.offloaded
    assert director.outbox.take_offers() == ([conn], [])
    director.handle(bytearray(dr_frame(flags="R")), 1.0)
    assert director.outbox.take_offers() == ([], [conn]) and not conn.offloaded
    assert not director.outbox.has_offers()


def test_a_table_on_its_own_has_an_outbox_of_its_own():
    assert isinstance(ConnectionTable().outbox, Outbox)


def test_connections_due_to_the_backups_are_taken_each_once():
    director = dr_director()
    assert not director.outbox.syncing
    director.outbox.start_sync(sync.should_sync)
    assert director.outbox.syncing
    for flags in ("S", "A", "PA"):
        director.handle(bytearray(dr_frame(flags=flags)), 1.0)
    (conn,) = director.table
    director.outbox.due.append(conn)  # twice before a take: sent once
    assert director.outbox.take_sync() == [conn] and director.outbox.take_sync() == []
    director.outbox.stop_sync()
    director.handle(bytearray(dr_frame(flags="FA")), 1.0)
    assert not director.outbox.syncing and director.outbox.take_sync() == []

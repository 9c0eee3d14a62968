"""The supervisor's union of its workers (pylvs.shell.workers), with no process: directors that
split the clients between them list, together, what one director that saw every client
lists."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pylvs.adm.commands import adm
from pylvs.ha import sync
from pylvs.shell import fanout
from pylvs.shell.workers import snapshot, sync_slots, union, union_connections
from tests.core.test_director import _director, _frame
from tests.shell.test_fanout import frames, run

clients = st.lists(st.tuples(st.integers(1, 254), st.integers(1024, 65535),
                             st.lists(st.sampled_from(["S", "A", "FA", "R"]), min_size=1,
                                      max_size=4)),
                   min_size=1, max_size=40)
"""Clients (address, port) and the TCP flags of their frames, in order."""


def _feed(director, frames, now):
    for src, sport, sequence in frames:
        for flags in sequence:
            director.handle(bytearray(_frame(src=f"203.0.113.{src}", sport=sport, flags=flags)),
                            now)


@settings(max_examples=40, deadline=None)
@given(clients, st.booleans(), st.booleans())
def test_two_workers_list_what_one_director_lists(frames, zero_first, persistent):
    """sh picks by client address, so each worker picks as the single director does."""
    def make():
        director = _director("sh")
        for svc in director.services.values():
            svc.persistence_timeout = 360 if persistent else 0
        return director

    single, workers = make(), [make(), make()]
    _feed(single, frames, 1.0)
    for worker in workers:
        _feed(worker, [f for f in frames if f[0] % 2 == workers.index(worker)], 1.0)
    for director in (single, *workers):
        if zero_first:
            adm(director, ["-Z"], 1.5)
        director.tick(3.0)  # one estimator pass: the rates too
    shots = [json.loads(json.dumps(snapshot(w))) for w in workers]  # as over the channel
    view = make()
    view.services = {svc.key: svc for svc in union(make().services.values(), shots)}
    for argv in (["-L", "-n"], ["-L", "-n", "--stats"], ["-L", "-n", "--rate"],
                 ["-L", "-n", "--persistent-conn"]):
        assert adm(view, argv, 3.0) == adm(single, argv, 3.0)
    rows = union_connections(adm(w, ["-L", "-n", "-c"], 3.0)[1] for w in workers).splitlines()
    expected = adm(single, ["-L", "-n", "-c"], 3.0)[1].splitlines()
    assert rows[:2] == expected[:2] and sorted(rows[2:]) == sorted(expected[2:])


def test_the_union_leaves_the_supervisor_rules_untouched():
    worker, rules = _director("rr"), _director("rr")
    _feed(worker, [(1, 4000, ["S"]), (2, 4001, ["S", "FA"])], 1.0)
    view = union(rules.services.values(), [snapshot(worker)] * 2)
    assert [rs.inactconns + rs.activeconns for rs in view[0].real_servers] == [
        2 * (rs.inactconns + rs.activeconns) for rs in list(worker.services.values())[0]
        .real_servers]
    assert view[0].stats.conns == 4
    assert all(rs.activeconns == rs.inactconns == rs.stats.conns == 0
               for svc in rules.services.values() for rs in svc.real_servers)


def test_a_worker_with_a_rule_the_supervisor_has_not_is_ignored():
    worker = _director("rr")
    _feed(worker, [(1, 4000, ["S"])], 1.0)
    shot = snapshot(worker)
    shot[0][0][2] = 81  # another port: no such service here
    shot.append([[6, 1, 80], [1] * 10, []])
    view = union(_director("rr").services.values(), [shot])
    assert view[0].stats.conns == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 254), st.integers(1024, 65535)), min_size=1,
                max_size=20), st.booleans(), st.integers(1, 4))
def test_synced_connections_go_to_the_worker_their_frames_reach(clients, persistent, workers):
    """The supervisor's dispatch of sync messages agrees with the kernel's fanout program."""
    director = _director("sh")
    (service,) = director.services.values()
    service.persistence_timeout = 360 if persistent else 0
    entries = [sync.SyncConn(6, f"203.0.113.{a}", port, "192.0.2.100", 80, "198.51.100.1", 80,
                             1, 0, 900) for a, port in clients]
    entries.append(sync.SyncConn(6, "203.0.113.1", 1, "192.0.2.100", 81, "198.51.100.1", 81, 1,
                                 0, 900))
    slots, unknown = sync_slots(entries, director.services.values(), workers)
    assert unknown == 1
    code = fanout.program(*fanout.rules(director.services.values()))
    for slot, batch in slots.items():
        for entry in batch:
            frame = frames("tcp", entry.caddr, entry.cport)[0]
            assert frame[16:20] == bytes(map(int, "192.0.2.100".split(".")))
            assert run(code, frame) % workers == slot

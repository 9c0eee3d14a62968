"""Several data planes list, together, what one director that saw every client lists
(pylvs.adm.listing): the workers' snapshots and their union."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from pylvs.adm.commands import adm
from pylvs.adm.listing import snapshot, union, union_connections
from tests.helpers.directors import dr_director
from tests.helpers.frames import dr_frame

clients = st.lists(st.tuples(st.integers(1, 254), st.integers(1024, 65535),
                             st.lists(st.sampled_from(["S", "A", "FA", "R"]), min_size=1,
                                      max_size=4)),
                   min_size=1, max_size=40)
"""Clients (address, port) and the TCP flags of their frames, in order."""


def _feed(director, frames, now):
    for src, sport, sequence in frames:
        for flags in sequence:
            director.handle(bytearray(dr_frame(src=f"203.0.113.{src}", sport=sport, flags=flags)),
                            now)


@settings(max_examples=40, deadline=None)
@given(clients, st.booleans(), st.booleans())
def test_two_workers_list_what_one_director_lists(frames, zero_first, persistent):
    """sh picks by client address, so each worker picks as the single director does."""
    def make():
        director = dr_director("sh")
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
    shots = [pickle.loads(pickle.dumps(snapshot(w))) for w in workers]  # as over the channel
    view = make()
    view.services = {svc.key: svc for svc in union(make().services.values(), shots)}
    for argv in (["-L", "-n"], ["-L", "-n", "--stats"], ["-L", "-n", "--rate"],
                 ["-L", "-n", "--persistent-conn"]):
        assert adm(view, argv, 3.0) == adm(single, argv, 3.0)
    rows = union_connections(adm(w, ["-L", "-n", "-c"], 3.0)[1] for w in workers).splitlines()
    expected = adm(single, ["-L", "-n", "-c"], 3.0)[1].splitlines()
    assert rows[:2] == expected[:2] and sorted(rows[2:]) == sorted(expected[2:])


def test_the_union_leaves_the_supervisor_rules_untouched():
    worker, rules = dr_director("rr"), dr_director("rr")
    _feed(worker, [(1, 4000, ["S"]), (2, 4001, ["S", "FA"])], 1.0)
    view = union(rules.services.values(), [snapshot(worker)] * 2)
    assert [rs.inactconns + rs.activeconns for rs in view[0].real_servers] == [
        2 * (rs.inactconns + rs.activeconns) for rs in list(worker.services.values())[0]
        .real_servers]
    assert view[0].stats.conns == 4
    assert all(rs.activeconns == rs.inactconns == rs.stats.conns == 0
               for svc in rules.services.values() for rs in svc.real_servers)


def test_a_worker_with_a_rule_the_supervisor_has_not_is_ignored():
    worker = dr_director("rr")
    _feed(worker, [(1, 4000, ["S"])], 1.0)
    shot = snapshot(worker)
    shot[0][0][2] = 81  # another port: no such service here
    shot.append([[6, 1, 80], [1] * 10, []])
    view = union(dr_director("rr").services.values(), [shot])
    assert view[0].stats.conns == 0

"""The supervisor and its workers (pylvs.shell.workers), with no process forked: directors that
split the clients between them list, together, what one director that saw every client lists;
and a supervisor drives data planes over real socketpairs with typed messages, each command
line parsed once."""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from pylvs.adm import ipvsadm
from pylvs.adm.commands import adm
from pylvs.adm.config import Config
from pylvs.ha import sync
from pylvs.shell import fanout
from pylvs.shell.control import Channel
from pylvs.shell.engine import Engine
from pylvs.shell.messages import (
    Adm,
    AdmLine,
    Endpoints,
    FanoutOrder,
    Reply,
    SetMaster,
    Snapshot,
)
from pylvs.shell.workers import (
    DataPlane,
    Supervisor,
    Worker,
    build,
    snapshot,
    sync_slots,
    union,
    union_connections,
)
from tests.helpers.directors import RS, VIP, dr_director
from tests.helpers.fanout import frames, run
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 254), st.integers(1024, 65535)), min_size=1,
                max_size=20), st.booleans(), st.integers(1, 4))
def test_synced_connections_go_to_the_worker_their_frames_reach(clients, persistent, workers):
    """The supervisor's dispatch of sync messages agrees with the kernel's fanout program."""
    director = dr_director("sh")
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


@contextlib.contextmanager
def supervised(count=2):
    """A supervisor (not started: no host state) whose workers are data planes served from
    threads over socketpairs, as forked workers serve theirs from their loops."""
    config = Config("lo", services=list(dr_director("rr").services.values()), workers=count)
    supervisor = Supervisor(config)
    planes, seen, stop, threads = [], [], threading.Event(), []
    for index in range(count):
        mine, theirs = socket.socketpair()
        plane = DataPlane(config, dr_director("rr"), theirs, groups=supervisor.groups,
                          share=count, master=True, order=list(range(count)))
        planes.append(plane)
        seen.append([])
        plane.channel.handler = lambda m, p=plane, log=seen[-1]: log.append(m) or p.handle(m)
        supervisor.workers.append(Worker(index, -1, Channel(mine)))
        threads.append(threading.Thread(target=_serve, args=(plane.channel, stop)))
        threads[-1].start()
    try:
        yield supervisor, planes, seen
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for worker, plane in zip(supervisor.workers, planes, strict=True):
            worker.channel.close()
            plane.channel.close()


def test_a_change_while_a_worker_is_dead_is_made_and_answered_as_made():
    """The dead worker's channel is broken; it is forked again from the supervisor's rules, so
    the change reaches it: not a failure (bench/soak.py saw 255 "no answer" for such -e)."""
    with supervised() as (supervisor, planes, _):
        supervisor.workers[1].channel.sock.close()  # as its process died
        argv = ["-a", "-t", f"{VIP}:80", "-r", "198.51.100.9"]
        assert supervisor.handle(AdmLine(argv)) == Reply(0)
        assert supervisor.workers[1].gone and not supervisor.workers[0].gone
        for director in (supervisor.director, planes[0].director):
            assert "198.51.100.9" in _servers(director)


def _serve(channel, stop):
    while not stop.is_set():
        channel.poll()
        stop.wait(0.002)


def _servers(director):
    return sorted(rs.address for svc in director.services.values() for rs in svc.real_servers)


def test_a_change_is_parsed_once_and_reaches_every_worker_as_the_command(monkeypatch):
    parsed = []
    real_parse = ipvsadm.parse
    monkeypatch.setattr(ipvsadm, "parse", lambda argv: parsed.append(argv) or real_parse(argv))
    argv = ["-a", "-t", f"{VIP}:80", "-r", "198.51.100.9", "-w", "3"]
    with supervised() as (supervisor, planes, seen):
        assert supervisor.handle(AdmLine(argv)) == Reply(0)
    assert parsed == [argv]
    assert all(log == [Adm(real_parse(argv))] for log in seen)
    for director in (supervisor.director, *(plane.director for plane in planes)):
        assert _servers(director) == sorted([*RS, "198.51.100.9"])


def test_a_usage_error_is_answered_at_once_with_ipvsadms_text():
    argv = ["-a", "-t", f"{VIP}:80"]
    with supervised() as (supervisor, _, seen):
        reply = supervisor.handle(AdmLine(argv))
    assert (reply.rc, reply.stdout, reply.stderr) == adm(dr_director("rr"), argv, 0.0)
    assert reply.rc == ipvsadm.EXIT_USAGE and seen == [[], []]


def test_a_refused_change_goes_to_no_worker():
    with supervised() as (supervisor, _, seen):
        reply = supervisor.handle(AdmLine(["-A", "-t", f"{VIP}:80"]))
    assert reply == Reply(ipvsadm.EXIT_DIRECTOR, "", "Service already exists\n")
    assert seen == [[], []]


def test_listings_are_the_union_and_take_the_clients_names():
    with supervised() as (supervisor, planes, seen):
        for src, plane in zip((1, 2), planes, strict=True):
            plane.director.handle(bytearray(dr_frame(src=f"203.0.113.{src}")), 1.0)
        rows = supervisor.handle(AdmLine(["-L", "-n", "-c"])).stdout.splitlines()
        listing = supervisor.handle(AdmLine(["-L", "-n"])).stdout
        names = ({VIP: "www.example"}, {"80/tcp": "http"})
        named = supervisor.handle(AdmLine(["-L"], names)).stdout
        assert supervisor.handle(AdmLine(["-L", "--daemon"])) == Reply(0)
    assert [row.split()[3] for row in rows[2:]] == ["203.0.113.1:40000", "203.0.113.2:40000"]
    assert sum(int(row.split()[-2]) + int(row.split()[-1])  # ActiveConn + InActConn
               for row in listing.splitlines()[4:]) == 2
    assert "TCP  www.example:http rr" in named.splitlines()
    assert all(isinstance(log[1], Snapshot) for log in seen)


def test_endpoints_are_what_a_listing_names():
    with supervised() as (supervisor, _, _):
        reply = supervisor.handle(Endpoints())
    assert reply.data == {"addresses": sorted([VIP, *RS]), "ports": ["80/tcp"]}


def test_synced_connections_reach_the_worker_their_client_hashes_to():
    with supervised() as (supervisor, planes, seen):
        entries = [sync.SyncConn(6, f"203.0.113.{a}", 4000 + a, VIP, 80, RS[0], 80, 1, 0, 900)
                   for a in range(1, 9)]
        counts = supervisor.install_synced(entries, 1.0)
    slots, _ = sync_slots(entries, supervisor.director.services.values(), 2)
    assert sum(counts.values()) == len(entries)
    for index, plane in enumerate(planes):
        assert len(plane.director.table) == len(slots.get(index, []))


def test_a_data_plane_follows_vrrp_and_the_fanout_order():
    with supervised() as (_, planes, _):
        plane = planes[0]
        assert plane.handle(SetMaster(False)) == Reply(0) and not plane.master
        assert plane.handle(FanoutOrder([1, 0])) == Reply(0) and plane.fanout_order == [1, 0]


def test_build_picks_an_engine_or_a_supervisor():
    assert type(build(Config("lo"))) is Engine
    assert type(build(Config("lo", workers=3))) is Supervisor

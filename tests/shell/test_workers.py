"""The supervisor and its workers (pylvs.shell.workers), with no process forked: a supervisor
drives data planes over real socketpairs with typed messages, each command line parsed once, and
its listings are their union (pylvs.adm.listing)."""

from __future__ import annotations

import contextlib
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
    Worker,
    WorkerRequests,
    build,
    supervisor,
    sync_slots,
)
from pylvs.shell.workers import worker as worker_engine
from tests.helpers.directors import RS, VIP, dr_director
from tests.helpers.fanout import frames, run
from tests.helpers.frames import dr_frame


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
    head = supervisor(config)
    assert head.workers is not None
    planes, seen, stop, threads = [], [], threading.Event(), []
    for index in range(count):
        mine, theirs = socket.socketpair()
        plane = worker_engine(config, dr_director("rr"), theirs, groups=head.workers.groups,
                              share=count, master=True, held=None, order=list(range(count)))
        planes.append(plane)
        seen.append([])
        plane.control.handler = lambda m, p=plane, log=seen[-1]: log.append(m) or p.handle(m)
        head.workers.workers.append(Worker(index, -1, Channel(mine)))
        threads.append(threading.Thread(target=_serve, args=(plane.control, stop)))
        threads[-1].start()
    try:
        yield head, planes, seen
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for record, plane in zip(head.workers.workers, planes, strict=True):
            record.channel.close()
            plane.control.close()


def test_a_change_while_a_worker_is_dead_is_made_and_answered_as_made():
    """The dead worker's channel is broken; it is forked again from the supervisor's rules, so
    the change reaches it: not a failure (bench/soak.py saw 255 "no answer" for such -e)."""
    with supervised() as (supervisor, planes, _):
        supervisor.workers.workers[1].channel.sock.close()  # as its process died
        argv = ["-a", "-t", f"{VIP}:80", "-r", "198.51.100.9"]
        assert supervisor.handle(AdmLine(argv)) == Reply(0)
        records = supervisor.workers.workers
        assert records[1].gone and not records[0].gone
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
        counts = supervisor.requests.install_synced(entries, 1.0)
    slots, _ = sync_slots(entries, supervisor.director.services.values(), 2)
    assert sum(counts.values()) == len(entries)
    for index, plane in enumerate(planes):
        assert len(plane.director.table) == len(slots.get(index, []))


def test_a_data_plane_follows_vrrp_and_the_fanout_order():
    with supervised() as (_, planes, _):
        plane = planes[0]
        assert plane.handle(SetMaster(False)) == Reply(0) and not plane.master
        assert plane.handle(FanoutOrder([1, 0])) == Reply(0) and plane.plane.order == [1, 0]
        assert isinstance(plane.requests, WorkerRequests)


def test_build_picks_an_engine_or_a_supervisor():
    one = build(Config("lo"))
    assert type(one) is Engine and one.plane is not None and one.workers is None
    head = build(Config("lo", workers=3))
    assert head.plane is None and head.workers is not None and head.workers.count == 3

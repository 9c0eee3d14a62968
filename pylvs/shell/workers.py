"""`[director] workers = N`: N processes share the director's interfaces through PACKET_FANOUT.

The parent, the supervisor, holds what is the host's and one of a kind: the nftables steal rules,
the VIPs, the control socket and the rules. It forks the workers one after another, so each
joins every interface's fanout group at the same position; each is a whole data plane (rings,
socket filter, next hops, connection table with 1/N of max_connections) over the rules it was
forked with. pylvs.shell.fanout sends every frame of a connection, either way, to one worker, so a
worker needs nothing of another's. A rule change is made by the supervisor and then by every
worker; a listing is their union (-Lnc: every worker's rows; -Ln: counters summed over the
workers). A worker that dies is forked again (its connections are lost, the others' stay: the
fanout program maps each worker's slot to its current place in the groups, which the kernel
reorders when a member leaves).
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Iterable

from pylvs.adm import commands, ipvsadm
from pylvs.adm.config import Config
from pylvs.core.director import Director
from pylvs.core.model import PROTO_NUMBERS, RealServer, Stats, VirtualService
from pylvs.ha import replica
from pylvs.ha.sync import SyncConn
from pylvs.shell import fanout
from pylvs.shell.control import Channel
from pylvs.shell.engine import (
    MASTER,
    ORDER,
    RELOAD,
    STATUS,
    SYNCED,
    TICK,
    Engine,
    Stop,
    daemon_command,
)
from pylvs.shell.sync_socket import DEFAULT_INTERFACE

log = logging.getLogger("pylvs")

SNAPSHOT = "pylvs-snapshot"  # a worker's counters, for the union
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1
READ_ONLY = {"list", "save", "help", "version", "restore"}


def snapshot(director: Director) -> list:
    """What a listing needs of one worker: per service and real server, counters and rates."""
    return [[list(svc.key), _stats(svc.stats),
             [[rs.ip, rs.port, rs.activeconns, rs.inactconns, rs.persistconns,
               _stats(rs.stats)] for rs in svc.real_servers]]
            for svc in director.services.values()]


def union(services: Iterable[VirtualService], snapshots: Iterable[list]) -> list[VirtualService]:
    """Copies of ``services`` whose counters are the sums of the workers' snapshots."""
    view = copy.deepcopy(list(services))
    by_key = {svc.key: svc for svc in view}
    for svc in view:
        svc.stats = Stats()
        for rs in svc.real_servers:
            rs.stats, rs.activeconns, rs.inactconns, rs.persistconns = Stats(), 0, 0, 0
    for shot in snapshots:
        for key, stats, servers in shot:
            svc = by_key.get(tuple(key))
            if svc is None:
                continue
            _add(svc.stats, stats)
            dests: dict[tuple[int, int], RealServer] = {
                (rs.ip, rs.port): rs for rs in svc.real_servers}
            for ip, port, active, inactive, persistent, counts in servers:
                rs = dests.get((ip, port))
                if rs is not None:
                    rs.activeconns += active
                    rs.inactconns += inactive
                    rs.persistconns += persistent
                    _add(rs.stats, counts)
    return view


def _stats(stats: Stats) -> list[int]:
    return [*stats.counters(), *stats.averages()]


def _add(stats: Stats, values: list[int]) -> None:
    stats.add(values[:5], values[5:])


def sync_slots(entries: Iterable[SyncConn], services: Iterable[VirtualService], workers: int
               ) -> tuple[dict[int, list[SyncConn]], int]:
    """Synced connections by the worker slot their clients hash to (pylvs.shell.fanout), and how
    many are for no service here."""
    front, _ = fanout.rules(services)
    by_address = {(PROTO_NUMBERS[r.protocol], r.address, r.port): r.by_address for r in front}
    slots: dict[int, list[SyncConn]] = {}
    unknown = 0
    for entry in entries:
        flag = by_address.get((entry.protocol, entry.vaddr, entry.vport))
        if flag is None:
            unknown += 1
            continue
        slot = fanout.client_hash(entry.caddr, entry.cport, flag) % workers
        slots.setdefault(slot, []).append(entry)
    return slots, unknown


def union_connections(listings: Iterable[str]) -> str:
    """-Lnc of several workers: one title, every worker's rows."""
    head: list[str] = []
    rows: list[str] = []
    for listing in listings:
        lines = listing.splitlines(keepends=True)
        head = head or lines[:2]
        rows += lines[2:]
    return "".join(head + rows)


class Worker:
    def __init__(self, index: int, pid: int, channel: Channel) -> None:
        self.index, self.pid, self.channel = index, pid, channel


class Supervisor(Engine):
    def __init__(self, config: Config) -> None:
        super().__init__(config, data=False)
        self.count = config.workers
        self.workers: list[Worker] = []
        self.members: list[int] = []
        """Worker slots in the order of their sockets in the fanout groups, as the kernel keeps
        them: a member that leaves is replaced by the last one, a new one joins at the end."""
        base = os.getpid() & 0x7FFF
        names = dict.fromkeys((self.ifname, self.inside))
        self.groups = {name: (base * 2 + i) & 0xFFFF for i, name in enumerate(names)}

    def start(self) -> None:
        super().start()
        for index in range(self.count):
            self.workers.append(self._spawn(index))

    def order(self) -> list[int]:
        """The member serving each slot; a slot without a worker goes to member 0."""
        return [self.members.index(s) if s in self.members else 0 for s in range(self.count)]

    def _left(self, index: int) -> None:
        """The kernel took a dead worker's sockets out of the groups: follow it, and tell the
        others, so that their clients' frames keep reaching them."""
        position = self.members.index(index)
        self.members[position] = self.members[-1]
        self.members.pop()
        self._tell_order()

    def _tell_order(self) -> None:
        for worker, (rc, _, err) in zip(self.workers, self._ask_each(
                [ORDER, json.dumps(self.order())]), strict=True):
            if rc != 0:
                log.error("worker %d did not take the fanout order: %s", worker.index,
                          err.strip())

    def _spawn(self, index: int) -> Worker:
        self.members.append(index)  # where its sockets will join
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's stack
            status = 1
            try:
                mine.close()
                status = self._work(index, Channel(theirs))
            except BaseException:  # noqa: BLE001 - reported, then the process ends
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        worker = Worker(index, pid, Channel(mine))
        try:
            ready = worker.channel.receive(START_TIMEOUT)
        except (OSError, ValueError) as exc:
            ready = {"error": f"no word from it ({exc})"}
        if "error" in ready:
            self._reap(worker)
            raise RuntimeError(f"worker {index} did not start: {ready['error']}")
        log.info("worker %d up (pid %d)", index, pid)
        self._tell_order()
        return worker

    def _work(self, index: int, channel: Channel) -> int:
        """In the child: a data plane over the rules as they are, answering the channel."""
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        def on_signal(signum: int, _frame: object) -> None:
            raise Stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert self.control is not None
        self.control.sock.close()  # the supervisor's; its path stays
        if self.guard is not None:
            os.close(self.guard.fd)  # the guard watches the supervisor alone
        if self.election is not None:  # a worker forked again later: VRRP is the supervisor's
            self.election.sock.close()
            self.election.link.close()
        for half in self.sync_daemons.values():  # the supervisor listens for the sync daemon
            half.sock.close()
        for other in self.workers:
            other.channel.close()
        self.director.listeners.clear()
        engine = Engine(self.config, self.director, host=False, groups=self.groups,
                        share=self.count)
        engine.master = self.master
        engine.fanout_order = self.order()
        engine.control = channel
        channel.handler = lambda argv: self._answer(engine, argv)
        try:
            try:
                engine.start()
            except (OSError, RuntimeError) as exc:
                channel.send({"error": str(exc)})
                return 1
            channel.send({"ready": index})
            engine.loop()
        except Stop:
            pass
        finally:
            engine.close()
            log.info("worker %d stopped: %s", index,
                     ", ".join(f"{k} {v}" for k, v in sorted(engine.director.counters.items())))
        return 0

    @staticmethod
    def _answer(engine: Engine, argv: list[str]) -> tuple[int, str, str]:
        if argv == [SNAPSHOT]:
            return 0, json.dumps(snapshot(engine.director)), ""
        if argv[:1] == [MASTER]:
            engine._set_master(argv[1:] == ["1"])
            return 0, "", ""
        if argv[:1] == [SYNCED]:
            entries = [SyncConn(*values) for values in json.loads(argv[1])]
            counts = replica.install(engine.director, entries, time.monotonic())
            return 0, json.dumps(counts), ""
        if argv[:1] == [ORDER]:
            engine.fanout_order = json.loads(argv[1])
            engine._set_fanout()
            return 0, "", ""
        return engine._adm(argv)

    def _install_synced(self, entries: list[SyncConn], now: float) -> Counter[str]:
        """Each synced connection to the worker its client hashes to, as pylvs.shell.fanout does."""
        slots, unknown = sync_slots(entries, self.director.services.values(), self.count)
        counts: Counter[str] = Counter({"unknown_destination": unknown} if unknown else {})
        for worker in self.workers:
            if worker.index in slots:
                batch = [list(dataclasses.astuple(entry)) for entry in slots[worker.index]]
                rc, out, _ = worker.channel.ask([SYNCED, json.dumps(batch)])
                if rc == 0:
                    counts.update(json.loads(out))
        return counts

    def _daemon(self, command: ipvsadm.Command) -> tuple[int, str, str]:
        """The master half runs in every worker, the backup half here."""
        if command.name == "list":
            _, ours, _ = super()._daemon(command)
            theirs = self._ask_each(["-L", "--daemon"])[:1]
            return 0, "".join(out for _, out, _ in theirs) + ours, ""
        if command.daemon_state != "master":
            return super()._daemon(command)
        argv = ["--start-daemon" if command.name == "start-daemon" else "--stop-daemon",
                "master"]
        if command.name == "start-daemon":
            argv += ["--mcast-interface", command.mcast_interface or DEFAULT_INTERFACE,
                     "--syncid", str(command.syncid or 0)]
        for rc, out, err in self._ask_each(argv):
            if rc != 0:
                return rc, out, err
        return 0, "", ""

    def _set_master(self, master: bool) -> None:
        super()._set_master(master)
        for worker, (rc, _, err) in zip(self.workers, self._ask_each([MASTER, str(int(master))]),
                                        strict=True):
            if rc != 0:
                log.error("worker %d did not follow VRRP: %s", worker.index, err.strip())

    def _adm(self, argv: list[str]) -> tuple[int, str, str]:
        if argv in ([RELOAD], [STATUS]) or daemon_command(argv) is not None:
            return super()._adm(argv)
        try:
            command = ipvsadm.parse(argv)
        except ipvsadm.UsageError:
            return commands.adm(self.director, argv, time.monotonic())
        if command.name == "list" and "connection" in command.options:
            return 0, union_connections(self._ask_all(argv)), ""
        if command.name == "list" and "timeout" not in command.options:
            view = Director(union(self.director.services.values(),
                                  [json.loads(out) for out in self._ask_all([SNAPSHOT])]))
            return commands.adm(view, argv, time.monotonic())
        rc, out, err = super()._adm(argv)
        if rc == 0 and command.name not in READ_ONLY:
            for worker, (wrc, _, werr) in zip(self.workers, self._ask_each(argv), strict=True):
                if wrc != 0:
                    return wrc, out, f"worker {worker.index}: {werr}"
        return rc, out, err

    def _ask_each(self, argv: list[str]) -> list[tuple[int, str, str]]:
        answers = []
        for worker in self.workers:
            try:
                answers.append(worker.channel.ask(argv))
            except (OSError, ValueError) as exc:
                answers.append((255, "", f"no answer ({exc})\n"))
        return answers

    def _ask_all(self, argv: list[str]) -> list[str]:
        return [out for rc, out, _ in self._ask_each(argv) if rc == 0]

    def loop(self) -> None:
        assert self.control is not None
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        if self.election is not None:
            poller.register(self.election.fileno(), select.POLLIN)
        while True:
            poller.poll(TICK * 1000 / 10)
            self._between_batches()
            for i, worker in enumerate(self.workers):
                if os.waitpid(worker.pid, os.WNOHANG)[0]:
                    log.error("worker %d (pid %d) died; starting it again", worker.index,
                              worker.pid)
                    worker.channel.close()
                    del self.workers[i]
                    self._left(worker.index)
                    self.workers.insert(i, self._spawn(worker.index))

    def close(self) -> None:
        for worker in self.workers:
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for worker in self.workers:
            self._reap(worker)
        self.workers = []
        super().close()

    @staticmethod
    def _reap(worker: Worker) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if os.waitpid(worker.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.02)
        else:
            os.kill(worker.pid, signal.SIGKILL)
            os.waitpid(worker.pid, 0)
        worker.channel.close()

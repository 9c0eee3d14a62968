"""`[director] workers = N`: N processes share the director's interfaces through PACKET_FANOUT.

The parent, the supervisor, holds what is the host's and one of a kind: the nftables steal rules,
the VIPs, the control socket and the rules. It forks the workers one after another, so each
joins every interface's fanout group at the same position; each is a whole data plane (rings,
socket filter, next hops, connection table with 1/N of max_connections) over the rules it was
forked with. pylvs.shell.fanout sends every frame of a connection, either way, to one worker, so a
worker needs nothing of another's. The supervisor tells its workers what to do in typed messages
(pylvs.shell.messages) over a socketpair each: a rule change, parsed once, is made by the
supervisor and then, as the parsed command, by every worker; a listing is their union (-Lnc:
every worker's rows; -Ln: counters summed over the workers). A worker that dies is forked again
(its connections are lost, the others' stay: the fanout program maps each worker's slot to its
current place in the groups, which the kernel reorders when a member leaves). ``build`` makes
the engine a config asks for, one or a supervisor.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import os
import pickle
import select
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pylvs.adm import commands, ipvsadm
from pylvs.adm.config import Config
from pylvs.core.director import Director
from pylvs.core.model import PROTO_NUMBERS, RealServer, Stats, VirtualService
from pylvs.ha.sync import SyncConn
from pylvs.shell import fanout
from pylvs.shell.control import Channel
from pylvs.shell.engine import Engine, apply, is_daemon
from pylvs.shell.messages import (
    TICK,
    Adm,
    Failed,
    FanoutOrder,
    InstallSynced,
    Ready,
    Reply,
    SetMaster,
    Snapshot,
    Status,
    Stop,
    Sysctl,
)
from pylvs.shell.offload import Offload

log = logging.getLogger("pylvs")

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


def build(config: Config) -> Engine:
    """The director ``config`` asks for: one engine, or a supervisor of ``workers`` engines."""
    return Supervisor(config) if config.workers > 1 else Engine(config)


class Worker:
    """The supervisor's record of one forked data plane."""

    def __init__(self, index: int, pid: int, channel: Channel) -> None:
        self.index, self.pid, self.channel = index, pid, channel
        self.gone = False
        """Its channel broke: it died, and is forked again from the supervisor's rules."""

    def ask(self, message: object) -> Reply:
        try:
            return self.channel.ask(message)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            self.gone = True
            return Reply(255, "", f"no answer ({exc})\n")


class DataPlane(Engine):
    """A worker's engine: no host state, its ports in the fanout groups, and its supervisor's
    messages on ``sock`` answered from its loop."""

    def __init__(self, config: Config, director: Director, sock: socket.socket, *,
                 groups: dict[str, int], share: int, master: bool, order: list[int],
                 offload: Offload | None = None) -> None:
        super().__init__(config, director, host=False, groups=groups, share=share)
        self.shared_offload = offload
        """The supervisor's maps, joined (with offload = "xdp")."""
        self.channel = Channel(sock, self.handle)
        self.control = self.channel
        self.master = master
        self.fanout_order = order

    def _start_offload(self, interfaces: list[str], max_entries: int) -> None:
        if self.shared_offload is not None:
            self.offload = self.shared_offload
            self.director.table.offered = []

    def handle(self, message: object) -> Reply:
        if isinstance(message, Snapshot):
            if self.offload is not None:
                self.guarded("reading the XDP fast path's counts", self._offload_read)
            return Reply(0, data=snapshot(self.director))
        if isinstance(message, SetMaster):
            self.set_master(message.master, message.held)
            return Reply(0)
        if isinstance(message, InstallSynced):
            return Reply(0, data=self.install_synced(message.entries, time.monotonic()))
        if isinstance(message, FanoutOrder):
            self.set_fanout_order(message.order)
            return Reply(0)
        return super().handle(message)


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
        if self.config.offload == "xdp":  # the maps and program here; each worker writes them
            self._start_offload([self.ifname, *([self.inside] if self.inside != self.ifname
                                                else [])], 2 * self.director.table.max_connections)
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
        for worker, reply in self._ask_each(FanoutOrder(self.order())):
            if reply.rc != 0:
                log.error("worker %d did not take the fanout order: %s", worker.index,
                          reply.stderr.strip())

    def _spawn(self, index: int) -> Worker:
        self.members.append(index)  # where its sockets will join
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's stack
            status = 1
            try:
                mine.close()
                status = self._work(index, theirs)
            except BaseException:  # noqa: BLE001 - reported, then the process ends
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        worker = Worker(index, pid, Channel(mine))
        try:
            ready = worker.channel.receive(START_TIMEOUT)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            ready = Failed(f"no word from it ({exc})")
        if not isinstance(ready, Ready):
            self._reap(worker)
            error = ready.error if isinstance(ready, Failed) else f"it said {ready!r}"
            raise RuntimeError(f"worker {index} did not start: {error}")
        log.info("worker %d up (pid %d)", index, pid)
        self._tell_order()
        return worker

    def _work(self, index: int, sock: socket.socket) -> int:
        """In the child: a data plane over the rules as they are, answering the channel."""
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        def on_signal(signum: int, _frame: object) -> None:
            raise Stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._let_go_in_child()
        plane = DataPlane(self.config, self.director, sock, groups=self.groups,
                          share=self.count, master=self.master, order=self.order(),
                          offload=Offload.joined(self.offload, index) if self.offload else None)
        plane.held = self.held
        try:
            try:
                plane.start()
            except (OSError, RuntimeError) as exc:
                plane.channel.send(Failed(str(exc)))
                return 1
            plane.channel.send(Ready(index))
            plane.loop()
        except Stop:
            pass
        finally:
            plane.close()
            log.info("worker %d stopped: %s", index,
                     ", ".join(f"{k} {v}" for k, v in sorted(plane.director.counters.items())))
        return 0

    def _let_go_in_child(self) -> None:
        """What the supervisor holds stays its own: the control socket (its path stays), the
        guard's pipe, VRRP (a worker forked again later) and the sync daemon's listener."""
        assert self.control is not None
        self.control.close_in_child()
        if self.guard is not None:
            self.guard.close_in_child()
        if self.vrrp is not None:
            self.vrrp.close_in_child()
        for half in self.sync_daemons.values():
            half.close_in_child()
        if self.metrics_server is not None:  # metrics: the port stays the supervisor's
            self.metrics_server.close_in_child()
        for other in self.workers:
            other.channel.close()
        self.director.listeners.clear()

    def install_synced(self, entries: list[SyncConn], now: float) -> Counter[str]:
        """Each synced connection to the worker its client hashes to, as pylvs.shell.fanout
        does."""
        slots, unknown = sync_slots(entries, self.director.services.values(), self.count)
        counts: Counter[str] = Counter({"unknown_destination": unknown} if unknown else {})
        for worker in self.workers:
            if worker.index in slots:
                reply = worker.ask(InstallSynced(slots[worker.index]))
                if reply.rc == 0:
                    counts.update(reply.data)
        return counts

    def adm(self, command: ipvsadm.Command, names: commands.Lookup | None = None) -> Reply:
        """A listing is the workers' union; a change is made here, then by every worker."""
        options = command.options
        if is_daemon(command):
            return self._daemon(command)
        if command.name == "list" and "connection" in options:
            return Reply(0, union_connections(self._ask_all(Adm(command))))
        if command.name == "list" and "timeout" not in options:
            shots = [reply.data for reply in self._replies(Snapshot()) if reply.rc == 0]
            return apply(Director(union(self.director.services.values(), shots)), command,
                         names)
        reply = super().adm(command, names)
        if reply.rc == 0 and command.name not in READ_ONLY:
            for worker, answer in self._ask_each(Adm(command)):
                if answer.rc != 0 and not worker.gone:  # a dead one comes back with the change
                    return Reply(answer.rc, reply.stdout, f"worker {worker.index}: "
                                 f"{answer.stderr}")
        return reply

    def _daemon(self, command: ipvsadm.Command) -> Reply:
        """The master half runs in every worker, the backup half here."""
        if command.name == "list":
            ours = super()._daemon(command).stdout
            theirs = [reply.stdout for reply in self._replies(Adm(command))[:1]]
            return Reply(0, "".join(theirs) + ours)
        if command.daemon_state != "master":
            return super()._daemon(command)
        for reply in self._replies(Adm(command)):
            if reply.rc != 0:
                return reply
        return Reply(0)

    def counts(self) -> dict[str, Any]:
        """The workers' tables and counters, summed."""
        total: dict[str, Any] = {"connections": 0, "max_connections": 0, "counters": Counter()}
        halves = [self.sync_counts()]  # the backup half here, the master half in each worker
        for reply in self._replies(Status()):
            if reply.rc == 0 and reply.data:
                total["connections"] += reply.data["connections"]
                total["max_connections"] += reply.data["max_connections"]
                total["counters"].update(reply.data["counters"])
                halves.append(reply.data.get("sync"))
        total["counters"] = dict(total["counters"] + self.director.counters)
        running = [counts for counts in halves if counts is not None]
        summed: Counter[str] = Counter()
        for counts in running:
            summed.update(counts)  # update(), not +: a count still 0 stays shown
        total["sync"] = dict(summed) if running else None
        return total

    def listed_services(self) -> list[VirtualService]:
        """The workers' union, as -Ln --stats shows it."""
        shots = [reply.data for reply in self._replies(Snapshot()) if reply.rc == 0]
        return union(self.director.services.values(), shots)

    def worker_counters(self) -> list[dict[str, int]]:
        """Each worker's counters, by worker index ({} for one that did not answer)."""
        found: list[dict[str, int]] = [{} for _ in range(self.count)]
        for worker, reply in self._ask_each(Status()):
            if reply.rc == 0 and reply.data:
                found[worker.index] = dict(reply.data["counters"])
        return found

    def sysctl(self, message: Sysctl) -> Reply:
        """Written here and by every worker; shown as the first worker runs by."""
        reply = super().sysctl(message)
        if reply.rc != 0:
            return reply
        answers = self._replies(message)
        return next((a for a in answers if a.rc != 0), answers[0] if answers else reply)

    def set_master(self, master: bool, held: frozenset[str] | None = None) -> None:
        super().set_master(master, held)
        for worker, reply in self._ask_each(SetMaster(master, held)):
            if reply.rc != 0:
                log.error("worker %d did not follow VRRP: %s", worker.index,
                          reply.stderr.strip())

    def _ask_each(self, message: object) -> list[tuple[Worker, Reply]]:
        return [(worker, worker.ask(message)) for worker in self.workers]

    def _replies(self, message: object) -> list[Reply]:
        return [reply for _, reply in self._ask_each(message)]

    def _ask_all(self, message: object) -> list[str]:
        return [reply.stdout for reply in self._replies(message) if reply.rc == 0]

    def loop(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        assert self.control is not None
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        if self.vrrp is not None:
            poller.register(self.vrrp.fileno(), select.POLLIN)
        while not should_stop():
            poller.poll(TICK * 1000 / 10)
            self._between_batches()
            for i, worker in enumerate(self.workers):
                if os.waitpid(worker.pid, os.WNOHANG)[0]:
                    log.error("worker %d (pid %d) died; starting it again", worker.index,
                              worker.pid)
                    worker.channel.close()
                    del self.workers[i]
                    if self.offload is not None:
                        self.guarded("the dead worker's XDP entries",
                                     lambda w=worker.index: self._purge(w))
                    self._left(worker.index)
                    self.workers.insert(i, self._spawn(worker.index))

    def _purge(self, worker: int) -> None:
        log.info("worker %d: %d XDP entries removed", worker,
                 self.offload.purge(worker))  # type: ignore[union-attr]

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

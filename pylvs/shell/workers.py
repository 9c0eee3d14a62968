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
the engine a config asks for: one director (pylvs.shell.engine), or a supervisor.

The supervisor and a worker are compositions of the engine's parts: the supervisor has the host
state, the HA runtime (with the sync daemon's backup half) and the ``Workers``, and answers with
``SupervisorRequests`` (a change made here, then by every worker; a listing their union); a
worker has a data plane, the sync daemon's master half and ``WorkerRequests`` (its supervisor's
messages besides the control requests).
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pylvs.adm import commands, ipvsadm
from pylvs.adm.config import Config
from pylvs.adm.listing import snapshot, union, union_connections
from pylvs.core.director import Director
from pylvs.core.marks import NO_MARKS, MarkRule, Marks
from pylvs.core.model import VirtualService, fwmark_key, service_key
from pylvs.ha.sync import SyncConn
from pylvs.shell import fanout
from pylvs.shell.control import Channel
from pylvs.shell.dataplane import DataPlane
from pylvs.shell.engine import Engine
from pylvs.shell.host import HostState
from pylvs.shell.messages import (
    Adm,
    Failed,
    FanoutOrder,
    InstallSynced,
    Ready,
    Reply,
    SetMarks,
    SetMaster,
    Snapshot,
    Status,
    Stop,
    Sysctl,
)
from pylvs.shell.offload import Offload
from pylvs.shell.requests import Requests, apply, is_daemon

log = logging.getLogger("pylvs")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1
READ_ONLY = {"list", "save", "help", "version", "restore"}


def sync_slots(entries: Iterable[SyncConn], services: Iterable[VirtualService], workers: int,
               marks: Marks = NO_MARKS) -> tuple[dict[int, list[SyncConn]], int]:
    """Synced connections by the worker slot their clients hash to (pylvs.shell.fanout), and how
    many are for no service here: a fwmark service's by its mark, the others' by their
    protocol, address and port (or the address's port-0 service)."""
    by_key = {s.key: s for s in services}
    hashed = fanout.by_address(by_key.values(), marks)
    slots: dict[int, list[SyncConn]] = {}
    unknown = 0
    for entry in entries:
        key = next((k for k in _service_keys(entry) if k in by_key), None)
        if key is None:
            unknown += 1
            continue
        flag = key in hashed
        slot = fanout.client_hash(entry.caddr, entry.cport, flag) % workers
        slots.setdefault(slot, []).append(entry)
    return slots, unknown


def _service_keys(entry: SyncConn) -> list[tuple[int, ...]]:
    """The director's keys of the service a synced connection may be for, as
    ``Director.service_of`` tries them: by its mark, else by its protocol, address and port,
    then the address's port-0 service."""
    if entry.fwmark:
        return [fwmark_key(entry.fwmark, entry.af)]
    return [service_key(entry.protocol, entry.vaddr, entry.vport),
            service_key(entry.protocol, entry.vaddr, 0)]


def build(config: Config) -> Engine:
    """The director ``config`` asks for: one engine, or a supervisor of ``workers`` engines."""
    return supervisor(config) if config.workers > 1 else Engine.single(config)


def supervisor(config: Config) -> Engine:
    """The host state, the HA runtime and the workers; no data plane of its own."""
    inside = config.inside_interface or config.interface
    engine = Engine(config, workers=Workers(config), sync_roles=("backup",),
                    requests=SupervisorRequests)
    engine.host = HostState(config.interface, inside, engine.guard_extra)
    return engine


def worker(config: Config, director: Director, sock: socket.socket, *, groups: dict[str, int],
           share: int, master: bool, held: frozenset[str] | None, order: list[int],
           offload: Offload | None = None) -> Engine:
    """A worker's engine: a data plane in the fanout ``groups``, the sync daemon's master half,
    and its supervisor's messages on ``sock`` answered from its loop."""
    inside = config.inside_interface or config.interface
    plane = DataPlane(director, [config.interface, inside], groups=groups, order=order,
                      offload=offload)
    channel = Channel(sock)
    engine = Engine(config, director, plane=plane, share=share, sync_roles=("master",),
                    control=channel, requests=WorkerRequests)
    channel.handler = engine.handle
    engine.master, engine.held = master, held
    return engine


class WorkerRequests(Requests):
    """A worker's answers: its supervisor's messages, then the control requests."""

    def handle(self, message: object) -> Reply:
        engine = self.engine
        if isinstance(message, Snapshot):
            engine.read_offload()
            return Reply(0, data=snapshot(self.director))
        if isinstance(message, SetMaster):
            engine.set_master(message.master, message.held)
            return Reply(0)
        if isinstance(message, InstallSynced):
            return Reply(0, data=self.install_synced(message.entries, time.monotonic()))
        if isinstance(message, FanoutOrder):
            assert engine.plane is not None
            engine.plane.set_order(message.order)
            return Reply(0)
        if isinstance(message, SetMarks):
            engine.set_marks(Marks(message.rules))
            return Reply(0)
        return super().handle(message)


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


class Workers:
    """The supervisor's forked data planes: started one after another, forked again when one
    dies, told what the supervisor was told."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.count = config.workers
        self.workers: list[Worker] = []
        self.members: list[int] = []
        """Worker slots in the order of their sockets in the fanout groups, as the kernel keeps
        them: a member that leaves is replaced by the last one, a new one joins at the end."""
        base = os.getpid() & 0x7FFF
        names = dict.fromkeys((config.interface, config.inside_interface or config.interface))
        self.groups = {name: (base * 2 + i) & 0xFFFF for i, name in enumerate(names)}
        self.engine: Engine | None = None

    def start(self, engine: Engine) -> None:
        self.engine = engine
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
        for worker, reply in self.ask_each(FanoutOrder(self.order())):
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
        parent = self.engine
        assert parent is not None
        parent.close_in_child()  # the supervisor's control socket, guard, VRRP, sync, metrics
        for other in self.workers:
            other.channel.close()
        plane = worker(self.config, parent.director, sock, groups=self.groups,
                       share=self.count, master=parent.master, held=parent.held,
                       order=self.order(),
                       offload=Offload.joined(parent.offload, index) if parent.offload else None)
        channel = plane.control
        assert isinstance(channel, Channel)
        try:
            try:
                plane.start()
            except (OSError, RuntimeError) as exc:
                channel.send(Failed(str(exc)))
                return 1
            channel.send(Ready(index))
            plane.loop()
        except Stop:
            pass
        finally:
            plane.close()
            log.info("worker %d stopped: %s", index,
                     ", ".join(f"{k} {v}" for k, v in sorted(plane.counters().items())))
        return 0

    def poll(self) -> None:
        """A worker that died is forked again (its XDP entries purged first)."""
        engine = self.engine
        assert engine is not None
        for i, worker in enumerate(self.workers):
            if os.waitpid(worker.pid, os.WNOHANG)[0]:
                log.error("worker %d (pid %d) died; starting it again", worker.index,
                          worker.pid)
                worker.channel.close()
                del self.workers[i]
                if engine.offload is not None:
                    engine.guarded("the dead worker's XDP entries",
                                   lambda w=worker.index: self._purge(w))
                self._left(worker.index)
                self.workers.insert(i, self._spawn(worker.index))

    def _purge(self, index: int) -> None:
        offload = self.engine.offload if self.engine is not None else None
        if offload is not None:
            log.info("worker %d: %d XDP entries removed", index, offload.purge(index))

    def set_master(self, master: bool, held: frozenset[str] | None) -> None:
        for worker, reply in self.ask_each(SetMaster(master, held)):
            if reply.rc != 0:
                log.error("worker %d did not follow VRRP: %s", worker.index,
                          reply.stderr.strip())

    def install_synced(self, entries: list[SyncConn], services: Iterable[VirtualService],
                       marks: Marks = NO_MARKS) -> Counter[str]:
        """Each synced connection to the worker its client hashes to, as pylvs.shell.fanout
        does."""
        slots, unknown = sync_slots(entries, services, self.count, marks)
        counts: Counter[str] = Counter({"unknown_destination": unknown} if unknown else {})
        for worker in self.workers:
            if worker.index in slots:
                reply = worker.ask(InstallSynced(slots[worker.index]))
                if reply.rc == 0:
                    counts.update(reply.data)
        return counts

    def ask_each(self, message: object) -> list[tuple[Worker, Reply]]:
        return [(worker, worker.ask(message)) for worker in self.workers]

    def replies(self, message: object) -> list[Reply]:
        return [reply for _, reply in self.ask_each(message)]

    def ask_all(self, message: object) -> list[str]:
        return [reply.stdout for reply in self.replies(message) if reply.rc == 0]

    def close(self) -> None:
        for worker in self.workers:
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for worker in self.workers:
            self._reap(worker)
        self.workers = []

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


class SupervisorRequests(Requests):
    """A listing is the workers' union; a change is made here, then by every worker."""

    @property
    def workers(self) -> Workers:
        assert self.engine.workers is not None
        return self.engine.workers

    def adm(self, command: ipvsadm.Command, names: commands.Lookup | None = None) -> Reply:
        options = command.options
        if is_daemon(command):
            return self._daemon(command)
        if command.name == "list" and "connection" in options:
            return Reply(0, union_connections(self.workers.ask_all(Adm(command))))
        if command.name == "list" and "timeout" not in options:
            return apply(Director(self.listed_services()), command, names)
        reply = super().adm(command, names)
        if reply.rc == 0 and command.name not in READ_ONLY:
            for worker, answer in self.workers.ask_each(Adm(command)):
                if answer.rc != 0 and not worker.gone:  # a dead one comes back with the change
                    return Reply(answer.rc, reply.stdout, f"worker {worker.index}: "
                                 f"{answer.stderr}")
        return reply

    def _daemon(self, command: ipvsadm.Command) -> Reply:
        """The master half runs in every worker, the backup half here."""
        ha = self.engine.ha
        if command.name == "list":
            ours = ha.daemon(command).stdout
            theirs = [reply.stdout for reply in self.workers.replies(Adm(command))[:1]]
            return Reply(0, "".join(theirs) + ours)
        if command.daemon_state != "master":
            return ha.daemon(command)
        for reply in self.workers.replies(Adm(command)):
            if reply.rc != 0:
                return reply
        return Reply(0)

    def install_synced(self, entries: list[SyncConn], now: float) -> Counter[str]:
        return self.workers.install_synced(entries, self.director.services.values(),
                                           self.director.marks)

    def set_marks(self, rules: list[MarkRule]) -> None:
        """Here (the host follows), then in every worker (its data plane follows)."""
        super().set_marks(rules)
        for worker, reply in self.workers.ask_each(SetMarks(tuple(rules))):
            if reply.rc != 0:
                log.error("worker %d did not take the mark rules: %s", worker.index,
                          reply.stderr.strip())

    def counts(self) -> dict[str, Any]:
        """The workers' tables and counters, summed."""
        total: dict[str, Any] = {"connections": 0, "max_connections": 0, "counters": Counter()}
        halves = [self.engine.ha.sync_counts()]  # the backup half here, the master half in each
        for reply in self.workers.replies(Status()):
            if reply.rc == 0 and reply.data:
                total["connections"] += reply.data["connections"]
                total["max_connections"] += reply.data["max_connections"]
                total["counters"].update(reply.data["counters"])
                halves.append(reply.data.get("sync"))
        total["counters"] = dict(total["counters"] + Counter(self.engine.counters()))
        running = [counts for counts in halves if counts is not None]
        summed: Counter[str] = Counter()
        for counts in running:
            summed.update(counts)  # update(), not +: a count still 0 stays shown
        total["sync"] = dict(summed) if running else None
        return total

    def listed_services(self) -> list[VirtualService]:
        """The workers' union, as -Ln --stats shows it."""
        shots = [reply.data for reply in self.workers.replies(Snapshot()) if reply.rc == 0]
        return union(self.director.services.values(), shots)

    def worker_counters(self) -> list[dict[str, int]]:
        """Each worker's counters, by worker index ({} for one that did not answer)."""
        found: list[dict[str, int]] = [{} for _ in range(self.workers.count)]
        for worker, reply in self.workers.ask_each(Status()):
            if reply.rc == 0 and reply.data:
                found[worker.index] = dict(reply.data["counters"])
        return found

    def sysctl(self, message: Sysctl) -> Reply:
        """Written here and by every worker; shown as the first worker runs by."""
        reply = super().sysctl(message)
        if reply.rc != 0:
            return reply
        answers = self.workers.replies(message)
        return next((a for a in answers if a.rc != 0), answers[0] if answers else reply)

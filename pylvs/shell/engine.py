"""A running director: a composition of parts with one job each, and the loop that runs them.

- host state (pylvs.shell.host): the steal rules, the VIPs, the guard that removes them;
- data plane (pylvs.shell.dataplane): links and rings, filter and fanout, next hops, the XDP
  fast path's glue, the frames through the core;
- HA runtime (pylvs.shell.ha_runtime): health checks, VRRP, BGP, the sync daemon's halves,
  the metrics server;
- requests (pylvs.shell.requests): pylvs adm with its roll-back, daemon commands, sysctl,
  status, reload.

One director (workers = 1) has them all. A supervisor of workers (pylvs.shell.workers) has the
host state, the HA runtime and the workers, and no data plane; each worker has a data plane, the
sync daemon's master half and no host state. Everything made is removed in ``close()``, which
runs on SIGINT, SIGTERM and on any failure; on SIGKILL the guard removes it. Between batches of
frames the loop serves the control requests, the HA runtime and SIGHUP; once a TICK it expires
connections, refreshes next hops and reads what the kernel counted.
"""

from __future__ import annotations

import copy
import logging
import select
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pylvs.adm.config import Config
from pylvs.core import marks
from pylvs.core.director import Director
from pylvs.core.model import VirtualService
from pylvs.core.offloaded import MODES as OFFLOADING
from pylvs.shell import metrics
from pylvs.shell.cleanup import clean
from pylvs.shell.control import Channel, ControlServer
from pylvs.shell.dataplane import DataPlane
from pylvs.shell.ha_runtime import HaRuntime
from pylvs.shell.host import HostState, available_pages, default_max_connections
from pylvs.shell.messages import TICK, Reply, Stop
from pylvs.shell.notify import Notifier
from pylvs.shell.offload import Offload, OffloadError
from pylvs.shell.requests import Requests

if TYPE_CHECKING:
    from pylvs.shell.workers import Workers

log = logging.getLogger("pylvs")

RESOLVE_TIMEOUT = 1.0


class Engine:
    """The parts a config asks for (``host``, ``plane``, ``workers``: None where this process
    has none), answering with ``requests`` (made from the engine when not given)."""

    def __init__(self, config: Config, director: Director | None = None, *,
                 host: HostState | None = None, plane: DataPlane | None = None,
                 workers: Workers | None = None, share: int = 1,
                 sync_roles: tuple[str, ...] = ("master", "backup"),
                 control: ControlServer | Channel | None = None,
                 requests: Callable[[Engine], Requests] = Requests) -> None:
        self.config = config
        self.director = director or Director(config.services)
        self.host, self.plane, self.workers = host, plane, workers
        self.share, self.sync_roles = share, sync_roles
        self.ha = HaRuntime(config, self.director, self.guarded)
        self.requests = requests(self)
        self.ha.install_synced = self.requests.install_synced
        self.ha.tell_guard = self.tell_guard
        self.ha.served = self.served
        self.control = control
        self.offload: Offload | None = plane.offload if plane is not None else None
        """The XDP fast path, with offload = "xdp" or "auto" (pylvs.shell.offload)."""
        self.offload_note = ""
        """Why there is no fast path although the config asked for one."""
        self.master = config.vrrp is None
        """Holds the VIPs and forwards: always without VRRP, else while its MASTER."""
        self.held: frozenset[str] | None = None
        """Under several VRRP instances: the VIPs held and forwarded; None: all."""
        self.host_errors = 0
        self.running = False
        """Between ``start`` and ``close``: only then does the host follow the rules."""
        self.reload_requested = False
        self.notifier = Notifier()
        """systemd's notify socket (pylvs.shell.notify), set by ``run``: no-op without."""

    @classmethod
    def single(cls, config: Config) -> Engine:
        """One director: every part in this process."""
        inside = config.inside_interface or config.interface
        director = Director(config.services)
        engine = cls(config, director, plane=DataPlane(director, [config.interface, inside]))
        engine.host = HostState(config.interface, inside, engine.guard_extra)
        return engine

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        if self.host is not None:
            self.host.open()  # first: the guard must outlive whatever is installed after
        self.director.set_marks(marks.Marks(self.config.marks))
        limit = self.config.max_connections or default_max_connections()
        self.director.set_max_connections(max(1, limit // self.share))
        self.director.set_sysctls(copy.copy(self.config.sysctls))
        if self.control is None:
            self.control = ControlServer(self.config.control_socket, self.handle)
        if self.plane is not None:
            self.plane.open()
        self.follow(resolve_timeout=RESOLVE_TIMEOUT)
        if self.config.offload in OFFLOADING and self.host is not None:
            self._start_offload()
        if self.offload is not None:
            self.director.outbox.start_offering()
        if self.workers is not None:
            self.workers.start(self)
        if self.config.sync_interface:
            for role in self.sync_roles:
                self.ha.start_half(role, self.config.sync_interface, self.config.syncid)

    def _start_offload(self) -> None:
        """The XDP fast path on the interfaces the director works on (offload = "auto": on
        those where the facts say it works), made here where the host state is; without it
        (no XDP or BPF here, or no link fit for it), every frame stays in Python."""
        inside = self.config.inside_interface or self.config.interface
        interfaces = list(dict.fromkeys((self.config.interface, inside)))
        mode = self.config.offload
        try:
            self.offload = Offload(interfaces, 2 * self.director.table.max_connections,
                                   mode=mode)
        except OffloadError as exc:
            self.offload_note = str(exc)
            if mode == "auto":
                log.info("offload = \"auto\": every frame through Python (%s)", exc)
            else:
                log.warning("%s; every frame goes through Python (offload = \"none\")", exc)
            return
        if self.plane is not None:
            self.plane.offload = self.offload
        self.tell_guard()
        self._say_choices(self.offload)

    @staticmethod
    def _say_choices(offload: Offload) -> None:
        """Which links the fast path sends into and why, at start."""
        for name, choice in offload.choices.items():
            if choice.warn:
                log.warning("XDP fast path on %s: %s", name, choice.reason)
            elif choice.fast:
                log.info("XDP fast path on %s: %s", name, choice.reason)
            else:
                log.info("%s: frames through Python (%s)", name, choice.reason)

    def start_ha(self) -> None:
        """The host's HA parts: checks, then VRRP, BGP and metrics (which follow their word,
        or answer from the loop about to run)."""
        if self.host is None:
            return
        self.ha.start_checks(self.requests.adm_line)
        self.ha.start_vrrp(self.set_master)
        self.ha.start_announcer(self.config.interface, self.host.vips)
        self.ha.start_metrics()

    # -- the rules and the host ---------------------------------------------------------------

    def follow(self, resolve_timeout: float = 0.0) -> None:
        """Make the host and the data plane match the rules: steal rules first, then VIPs,
        then the sockets' programs and next hops."""
        if not self.running:
            return
        services = list(self.director.services.values())
        if self.host is not None:
            rules = self.director.marks
            vips = set(marks.vips(services, rules))
            wanted = vips if self.held is None else set(self.held)
            self.host.follow(marks.taken(services, rules), marks.replies(services, rules),
                             wanted if self.master else set(), vips)
        if self.plane is not None:
            forwarded, _ = self.served()
            self.plane.follow(forwarded if self.master else [], resolve_timeout)

    def served(self) -> tuple[list[VirtualService], bool]:
        """The services this director forwards (under several VRRP instances, those of the
        VIPs it holds: a fwmark service's, any its mark rules name), and whether it forwards
        at all (VRRP's word)."""
        held, rules = self.held, self.director.marks
        return [s for s in self.director.services.values()
                if held is None or not held.isdisjoint(marks.addresses_of(s, rules))], \
            self.master

    def set_marks(self, rules: marks.Marks) -> None:
        """New mark rules (a reload's): the core's, then the host and data plane follow."""
        self.director.set_marks(rules)
        self.follow()

    def set_master(self, master: bool, held: frozenset[str] | None = None) -> None:
        """VRRP's word: hold the VIPs and forward, or stand by; ``held``: only these VIPs."""
        self.master, self.held = master, held
        self.follow()
        if self.workers is not None:
            self.workers.set_master(master, held)

    def guard_extra(self) -> tuple[list[str], list[str], list[int]]:
        """What the guard removes besides the host state: the control socket, BIRD's files
        and process, the XDP attachments."""
        sockets = [self.control.path] if isinstance(self.control, ControlServer) else []
        files, processes = self.ha.files()
        return sockets + files, self.offload.attached if self.offload is not None else [], \
            processes

    def tell_guard(self) -> None:
        if self.host is not None:
            self.host.tell_guard()

    def rebgp(self, new: Config) -> str:
        return self.ha.rebgp(new, self.config.interface,
                             self.host.vips if self.host is not None else [])

    # -- requests -----------------------------------------------------------------------------

    def handle(self, message: object) -> Reply:
        return self.requests.handle(message)

    def read_offload(self, everything: bool = False) -> None:
        """What the fast path counted, into the core (before a listing)."""
        if self.plane is not None and self.plane.offload is not None:
            self.guarded("reading the XDP fast path's counts",
                         lambda: self.plane.read_offload(everything))  # type: ignore[union-attr]

    def counters(self) -> dict[str, int]:
        """The core's counters and this process's shell's, as one."""
        total = Counter(self.director.counters)
        if self.plane is not None:
            total.update(self.plane.counters)
        if self.offload is not None:
            total.update(self.offload.counters)
        if self.host_errors:
            total["host_errors"] += self.host_errors
        return dict(total)

    def offload_report(self) -> dict[str, Any]:
        """The fast path as pylvs status shows it: the mode, each link's state, why, and its
        drops (Offload.report), or why every frame goes through Python."""
        if self.offload is not None:
            return self.offload.report()
        return {"mode": self.config.offload, "python": self.offload_note or (
            "offload = \"none\"" if self.config.offload == "none" else "")}

    def scrape(self) -> metrics.Scrape:
        """One scrape's plain values, built in the loop (pylvs.shell.metrics says why)."""
        requests, ha = self.requests, self.ha
        counts = requests.counts()
        totals, backends = metrics.ipvs_part(requests.listed_services())
        vrrp = [] if ha.vrrp is None else [
            metrics.VrrpRow(name, interface, state, held and self.master, transitions)
            for name, interface, state, held, transitions in ha.vrrp.rows()]
        return metrics.Scrape(totals, backends, counts["connections"],
                              counts["max_connections"], counts["counters"],
                              requests.worker_counters(), metrics.health_part(self.config.health),
                              vrrp, sync=counts.get("sync"), bgp=ha.bgp_part(),
                              offload=self.guarded_report())

    def guarded_report(self) -> dict[str, Any] | None:
        """``offload_report``, or None when the host would not say (logged)."""
        found: list[dict[str, Any]] = []
        self.guarded("reading the XDP fast path's links",
                     lambda: found.append(self.offload_report()))
        return found[0] if found else None

    # -- the loop -----------------------------------------------------------------------------

    def loop(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        next_tick = time.monotonic() + TICK
        poller = None if self.plane is not None else self._poller()
        while not should_stop():
            if self.plane is not None:
                self.plane.run_batch()
            else:
                poller.poll(TICK * 1000 / 10)  # type: ignore[union-attr]
            self._between_batches()
            if self.plane is not None and self.director.outbox.has_offers():
                self.guarded("the XDP offload", self.plane.carry_offers)
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + TICK

    def _poller(self) -> select.poll:
        """Without a data plane: wake for a request or an advert."""
        assert self.control is not None
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        if self.ha.vrrp is not None:
            poller.register(self.ha.vrrp.fileno(), select.POLLIN)
        return poller

    def _between_batches(self) -> None:
        """What the loop does besides frames: requests, the HA runtime, workers, SIGHUP."""
        assert self.control is not None
        self.guarded("serving the control socket", self.control.poll)
        self.ha.poll(self.scrape)
        if self.workers is not None:
            self.workers.poll()
        if self.reload_requested:
            self.reload_requested = False
            self.guarded("reloading on SIGHUP", self._reload_on_hangup)

    def _tick(self, now: float) -> None:
        plane = self.plane
        if plane is None:
            return
        self.read_offload()
        self.director.tick(now)
        self.guarded("refreshing neighbours and routes", plane.nexthops.refresh)
        self.guarded("the defences", lambda: self.director.defend(available_pages(),
                                                                   time.monotonic()))
        self.guarded("reading the rings' drop counts", plane.count_ring_drops)
        self.guarded("watching the XDP fast path's links", plane.watch_offload)

    def _reload_on_hangup(self) -> None:
        self.notifier.reloading()
        said = "reload failed"
        try:
            reply = self.requests.reload()
            said = (reply.stdout or reply.stderr or "no changes").strip().replace("\n", "; ")
            log.info("SIGHUP: %s", said)
        finally:
            self.notifier.ready(f"SIGHUP: {said}")

    def guarded(self, what: str, step: Callable[[], None]) -> None:
        """One piece of the loop's housekeeping: whatever the host makes it raise (netlink,
        nftables, a socket) is counted and logged with what it concerns, and the director goes
        on forwarding."""
        try:
            step()
        except Stop:
            raise
        except Exception:  # noqa: BLE001 - the data path must outlive any one of these
            self.host_errors += 1
            log.exception("%s failed; the director goes on", what)

    # -- stop ---------------------------------------------------------------------------------

    def withdraw(self) -> float:
        """A stop's first step: the BGP routes withdrawn; returns the seconds to drain."""
        return self.ha.withdraw()

    def close_in_child(self) -> None:
        """In a process forked from this one: what this one holds stays its own."""
        if isinstance(self.control, ControlServer):
            self.control.close_in_child()
        if self.host is not None:
            self.host.close_in_child()
        self.ha.close_in_child()

    def close(self) -> None:
        """Undo start(); safe to call twice and after a partial start."""
        self.running = False
        if self.workers is not None:
            self.workers.close()
        self.ha.close()
        if self.offload is not None:
            self.offload.close()
            self.offload = None
        if self.host is not None:
            self.host.close()
        if self.plane is not None:
            self.plane.close()
        if self.control is not None:
            clean(self.control.close, "closing the control socket")
            self.control = None
        if self.host is not None:
            self.host.release()


def run(engine: Engine) -> int:
    """Run ``engine`` (one director, or a supervisor of workers) until SIGINT or SIGTERM;
    SIGHUP reloads its config file."""
    config = engine.config
    notifier = Notifier.from_environment()

    def on_signal(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    def on_hangup(signum: int, _frame: object) -> None:
        engine.reload_requested = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        engine.start()
        engine.start_ha()
        services = ", ".join(f"{s.endpoint if s.fwmark else f'{s.protocol} {s.endpoint}'} "
                             f"({s.scheduler.name}, {len(s.real_servers)} real servers)"
                             for s in config.services)
        log.info("director up on %s: %s; control socket %s; %d worker%s", config.interface,
                 services, config.control_socket, config.workers,
                 "" if config.workers == 1 else "s")
        engine.notifier = notifier
        notifier.ready(f"director up on {config.interface}: {len(config.services)} services")
        engine.loop()
    except Stop as stop:
        notifier.stopping(f"stopping on {stop}")
        log.info("stopping on %s", stop)
        _drain(engine)
    finally:
        engine.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _drain(engine: Engine) -> None:
    """BGP's graceful stop: the routes go first, then the director forwards what still comes
    for drain_seconds (the routers' change takes a moment); a second signal ends it."""
    seconds = engine.withdraw()
    if seconds <= 0:
        return
    log.info("bgp: draining for %g s", seconds)
    deadline = time.monotonic() + seconds
    try:
        engine.loop(lambda: time.monotonic() >= deadline)
    except Stop as stop:
        log.info("draining cut short by %s", stop)

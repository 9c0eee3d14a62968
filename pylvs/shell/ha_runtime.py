"""What lets directors back each other up, at run time: the health checks
(pylvs.shell.health_probes), VRRP (pylvs.shell.vrrp_socket), BGP through BIRD
(pylvs.shell.announcer), the halves of IPVS's sync daemon (pylvs.shell.sync_socket) and the
Prometheus exposition (pylvs.shell.metrics).

Each is started by the composition that has it (the host's parts run where the host state is:
the director, or the supervisor of workers; the sync daemon's master half runs where frames
are). Their findings reach the rules through the callables they are given: a health change as
ipvsadm lines, VRRP's word as ``on_master``, synced connections as ``install_synced``. Nothing
here decides what the rules are.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable

from pylvs.adm import commands, ipvsadm, ruleset
from pylvs.adm.config import Config
from pylvs.core import marks
from pylvs.core.director import Director
from pylvs.core.model import VirtualService
from pylvs.ha import bgp, sync
from pylvs.ha.sync import SyncConn
from pylvs.shell import metrics
from pylvs.shell.announcer import AnnounceError, Announcer
from pylvs.shell.cleanup import clean
from pylvs.shell.health_probes import Checker
from pylvs.shell.messages import Reply
from pylvs.shell.sync_socket import DEFAULT_INTERFACE, SyncBackup, SyncHalf, SyncMaster
from pylvs.shell.vrrp_socket import VrrpSockets

log = logging.getLogger("pylvs")

ANNOUNCE_INTERVAL = 0.1
"""Seconds between two looks at what to announce over BGP."""
BIRD_RESTART_DELAY = 5.0
Guarded = Callable[[str, Callable[[], None]], None]
"""Runs one step, logging and counting what the host makes it raise (Engine.guarded)."""


class HaRuntime:
    def __init__(self, config: Config, director: Director, guarded: Guarded) -> None:
        self.config, self.director, self.guarded = config, director, guarded
        self.checker: Checker | None = None
        self.vrrp: VrrpSockets | None = None
        self.announcer: Announcer | None = None
        self.next_announce = 0.0
        self.sync_daemons: dict[str, SyncHalf] = {}
        """The running halves of IPVS's sync daemon, by role (master, backup)."""
        self.metrics_server: metrics.MetricsServer | None = None
        self.install_synced: Callable[[list[SyncConn], float], Counter[str]] | None = None
        """Where the backup half's connections go (the table, or the workers)."""
        self.adm_line: Callable[[list[str]], Reply] = lambda argv: Reply(0)
        """How a health change reaches the rules: as ipvsadm lines."""
        self.tell_guard: Callable[[], None] = lambda: None
        """Called when BIRD's process or files change."""
        self.served: Callable[[], tuple[list[VirtualService], bool]] = lambda: ([], False)
        """The services this director forwards, and whether it forwards at all: what BGP
        announces follows it."""

    # -- health checks ------------------------------------------------------------------------

    def start_checks(self, adm_line: Callable[[list[str]], Reply]) -> None:
        """``alpha`` servers leave the table before the first check."""
        if not self.config.health:
            return
        self.adm_line = adm_line
        for service in self.config.health:
            service.start()
        self.apply_health()
        self.checker = Checker(self.config.health)
        self.checker.start()

    def apply_health(self) -> None:
        """Make each checked service's table what its servers' health and quorum say."""
        for service in self.config.health:
            if service.update_quorum():
                log.warning("health: %s quorum %s", service.name,
                            "won back" if service.quorum_up else "lost")
            current = self.director.services.get(service.key)
            if current is None:  # deleted with pylvs adm: nothing to keep healthy
                continue
            for argv in ruleset.diff([current], [service.desired(current)]):
                reply = self.adm_line(argv)
                log.info("health: %s%s", " ".join(argv),
                         f" refused: {reply.stderr.strip()}" if reply.rc else "")

    def stop_checks(self) -> None:
        if self.checker is not None:
            self.checker.stop()
            self.checker = None

    # -- VRRP ---------------------------------------------------------------------------------

    def start_vrrp(self, on_master: Callable[[bool, frozenset[str] | None], None]) -> None:
        """VRRP decides who holds the VIPs (and forwards); started last, as it may at once."""
        if self.config.vrrp_instances:
            self.vrrp = VrrpSockets(self.config, on_master)
            self.vrrp.start(time.monotonic())

    # -- BGP ----------------------------------------------------------------------------------

    def start_announcer(self, interface: str, exclude: list[str]) -> None:
        """After the checks and VRRP, whose word it follows (``served``)."""
        if self.config.bgp is None:
            return
        self.announcer = Announcer(self.config.bgp, interface,
                                   f"/run/pylvs-{os.getpid()}-bird", exclude=exclude)
        self.tell_guard()
        self.announce()

    def announce(self) -> None:
        """What pylvs.ha.bgp says to announce, to BIRD; a BIRD that died is started again."""
        announcer = self.announcer
        assert announcer is not None
        self.next_announce = time.monotonic() + ANNOUNCE_INTERVAL
        if not announcer.alive():
            self.next_announce += BIRD_RESTART_DELAY
            log.error("bgp: BIRD exited (%s); starting it again", announcer.exit_status())
            announcer.restart()
            self.tell_guard()
        services, serving = self.served()
        by_address = marks.per_address(services, self.director.marks)  # fwmark: its VIPs
        announcer.update(bgp.announced(by_address, self.config.health, serving))

    def withdraw(self) -> float:
        """A stop's first step: the routes withdrawn; returns the seconds to drain."""
        if self.announcer is None:
            return 0.0
        self.guarded("withdrawing the BGP routes", lambda: self.announcer.update([]))  # type: ignore[union-attr]
        self.next_announce = float("inf")
        return self.config.bgp.drain_seconds if self.config.bgp is not None else 0.0

    def rebgp(self, new: Config, interface: str, exclude: list[str]) -> str:
        """A changed [bgp]: BIRD started again with it (its sessions restart)."""
        self._close_announcer()
        self.config.bgp = new.bgp
        if new.bgp is None:
            self.tell_guard()
            return "bgp: stopped"
        try:
            self.start_announcer(interface, exclude)
        except AnnounceError as exc:
            log.error("%s", exc)
            return f"{exc}; nothing is announced"
        return "bgp: BIRD started again with the new [bgp]"

    def bgp_part(self) -> metrics.Bgp | None:
        announcer, spec = self.announcer, self.config.bgp
        if announcer is None or spec is None:
            return None
        try:
            established = [s.established for s in announcer.sessions()]
        except OSError:
            established = []
        announced = set(announcer.announced or [])
        return metrics.Bgp({vip: vip in announced for vip in marks.vips(
                               self.director.services.values(), self.director.marks)},
                           [(peer.address, peer.remote_as, i < len(established) and
                             established[i]) for i, peer in enumerate(spec.neighbors)])

    def bgp_status(self) -> str:
        announcer = self.announcer
        if announcer is None:
            return ""
        vips = ", ".join(bgp.prefix(vip) for vip in announcer.announced or []) or "nothing"
        lines = [f"BGP: announcing {vips}"]
        try:
            sessions = announcer.sessions()
        except OSError as exc:
            sessions = []
            lines.append(f"  BIRD does not answer: {exc}")
        peers = self.config.bgp.neighbors if self.config.bgp is not None else ()
        for peer, session in zip(peers, sessions, strict=False):
            lines.append(f"  neighbor {peer.address} AS {peer.remote_as}: "
                         f"{session.info or session.state}")
        return "\n".join(lines) + "\n"

    # -- IPVS's sync daemon -------------------------------------------------------------------

    @property
    def syncing(self) -> bool:
        """A half of the sync daemon runs here (IPVS's ``sync_state``): a real server of
        another family than its service is refused meanwhile (commands.run's ``syncing``)."""
        return bool(self.sync_daemons)

    def daemon(self, command: ipvsadm.Command) -> Reply:
        """--start-daemon, --stop-daemon and -L --daemon, with libipvs's refusals."""
        if command.name == "list":
            return Reply(0, "".join(f"{h.describe()}\n" for h in self.sync_daemons.values()))
        role = command.daemon_state or ""
        if command.name == "start-daemon":
            transport = sync.Transport(command.mcast_group or sync.SYNC_GROUP,
                                       command.mcast_port or sync.SYNC_PORT,
                                       command.mcast_ttl or sync.SYNC_TTL,
                                       command.sync_maxlen or 0)
            return self.start_half(role, command.mcast_interface or DEFAULT_INTERFACE,
                                   command.syncid or 0, transport)
        half = self.sync_daemons.pop(role, None)
        if half is None:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", "No daemon is running\n")
        half.close()
        return Reply(0)

    def start_half(self, role: str, interface: str, syncid: int,
                   transport: sync.Transport | None = None) -> Reply:
        """ip_vs_genl_new_daemon, then start_sync_thread: refused (EINVAL) while a real server
        of another family than its service exists, whose connections the protocol cannot
        carry; then refused if that half runs already (EEXIST)."""
        if commands.mixed_family_dests(self.director):
            log.error("sync daemon: %s refused: a real server is of another family than its "
                      "service, and the sync protocol cannot carry its connections", role)
            return Reply(ipvsadm.EXIT_DIRECTOR, "", f"{commands.INVALID}\n")
        if role in self.sync_daemons:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", "Daemon has already run\n")
        try:
            if role == "master":
                half: SyncHalf = SyncMaster(self.director, interface, syncid, transport)
            else:
                assert self.install_synced is not None
                half = SyncBackup(self.director, interface, syncid, self.install_synced,
                                  transport)
        except OSError as exc:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", f"{exc.strerror or exc}\n")
        self.sync_daemons[role] = half
        log.info("sync daemon: %s on %s, syncid %d, group %s port %d", role, interface, syncid,
                 half.transport.group, half.transport.port)
        return Reply(0)

    def sync_counts(self) -> dict[str, int] | None:
        """The sync daemon's counters, its halves' summed; None while no half runs here."""
        if not self.sync_daemons:
            return None
        total: Counter[str] = Counter()
        for half in self.sync_daemons.values():
            total.update(half.counters)
        return dict(total)

    # -- metrics ------------------------------------------------------------------------------

    def start_metrics(self) -> None:
        """Started last, when the loop that answers its scrapes is about to run."""
        if self.config.metrics:
            self.metrics_server = metrics.MetricsServer(self.config.metrics)

    # -- the loop -----------------------------------------------------------------------------

    def poll(self, scrape: Callable[[], metrics.Scrape]) -> None:
        """Between two batches of frames: health findings, VRRP, the sync daemon, BGP, the
        scrapes waiting."""
        if self.checker is not None and self.checker.changed():
            self.guarded("applying health checks", self.apply_health)
        self.guarded("VRRP and the sync daemon", self._poll_vrrp_and_sync)
        if self.announcer is not None and time.monotonic() >= self.next_announce:
            self.guarded("BGP", self.announce)
        if self.metrics_server is not None:
            self.guarded("serving the metrics", lambda: self.metrics_server.serve(scrape))  # type: ignore[union-attr]

    def _poll_vrrp_and_sync(self) -> None:
        if self.vrrp is not None:
            self.vrrp.poll(time.monotonic())
        for half in self.sync_daemons.values():
            half.poll(time.monotonic())

    def files(self) -> tuple[list[str], list[int]]:
        """What the guard must remove if the process dies: BIRD's files and process."""
        bird = self.announcer
        if bird is None:
            return [], []
        return list(bird.files), [bird.pid] if bird.pid else []

    def close_in_child(self) -> None:
        """In a worker forked from here: VRRP, the sync daemon's listener and the metrics
        port stay this process's."""
        if self.vrrp is not None:
            self.vrrp.close_in_child()
        for half in self.sync_daemons.values():
            half.close_in_child()
        if self.metrics_server is not None:
            self.metrics_server.close_in_child()

    def _close_announcer(self) -> None:
        if self.announcer is not None:
            clean(self.announcer.close, "bgp: stopping BIRD")
            self.announcer = None

    def close(self) -> None:
        """BGP first (no router sends here what is going), the metrics (no scrape waits on a
        loop gone), VRRP (priority 0 first: the backup takes over after Skew_Time, not 3
        adverts), the checks, the sync daemon."""
        self._close_announcer()
        if self.metrics_server is not None:
            clean(self.metrics_server.close, "metrics: stopping the server")
            self.metrics_server = None
        if self.vrrp is not None:
            clean(lambda: self.vrrp.stop(time.monotonic()), "vrrp: stopping")  # type: ignore[union-attr]
            self.vrrp = None
        self.stop_checks()
        for half in self.sync_daemons.values():
            half.close()
        self.sync_daemons = {}

"""The director's I/O loop: ring in, core, ring out; set-up and tear-down of the host state.

Start order matters: the nftables steal rules go in before the VIP is added, so the director's
own kernel never answers a service frame; stop removes the VIP first, then the rules. Everything
made here is removed in ``close()``, which runs on SIGINT, SIGTERM and on any failure; on
SIGKILL the guard (pylvs.shell.guard) removes it. Between batches of frames the loop serves
the control requests (pylvs.shell.messages: each ipvsadm line parsed once, then served by the
engine itself for the sync daemon and by the director core for the rest), the health checks'
findings, VRRP and the sync daemon.
"""

from __future__ import annotations

import copy
import logging
import os
import select
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import forwarders
from forwarders import NextHop
from pylvs.adm import commands, ipvsadm, layouts, ruleset
from pylvs.adm import config as config_mod
from pylvs.adm.config import Config
from pylvs.core.director import Director
from pylvs.core.model import VirtualService, int_to_ip, ip_to_int
from pylvs.core.packet import ETH_HLEN
from pylvs.core.segment import segment_tcp
from pylvs.core.sysctls import KNOBS
from pylvs.ha import bgp, replica
from pylvs.ha.health import render_status
from pylvs.ha.sync import SyncConn
from pylvs.shell import (
    addresses,
    bpf,
    config_file,
    fanout,
    interfaces,
    metrics,
    neighbours,
    nftables,
    rings,
)
from pylvs.shell.announcer import AnnounceError, Announcer
from pylvs.shell.control import Channel, ControlServer
from pylvs.shell.guard import Guard
from pylvs.shell.health_probes import Checker
from pylvs.shell.messages import (
    TICK,
    Adm,
    AdmLine,
    Endpoints,
    Reload,
    Reply,
    Status,
    Stop,
    Sysctl,
)
from pylvs.shell.notify import Notifier
from pylvs.shell.offload import Offload, OffloadError
from pylvs.shell.sync_socket import DEFAULT_INTERFACE, SyncBackup, SyncHalf, SyncMaster
from pylvs.shell.vrrp_socket import VrrpSockets

log = logging.getLogger("pylvs")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
RESOLVE_TIMEOUT = 1.0
ANNOUNCE_INTERVAL = 0.1
"""Seconds between two looks at what to announce over BGP."""
BIRD_RESTART_DELAY = 5.0
BYTES_PER_CONNECTION = 400


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in kB; {} where there is none."""
    try:
        with open("/proc/meminfo") as fh:
            return {line.split(":")[0]: int(line.split()[1]) for line in fh}
    except (OSError, ValueError, IndexError):
        return {}


def default_max_connections() -> int:
    """A quarter of the memory available now, at 400 bytes a connection (measured RSS: DR ~290,
    NAT ~360, its reply index included)."""
    available = _meminfo().get("MemAvailable")
    if available is None:
        return 1_000_000
    return available * 1024 // 4 // BYTES_PER_CONNECTION


def available_pages() -> int:
    """What update_defense_level compares with amemthresh: free and buffer pages
    (si_meminfo's freeram + bufferram)."""
    info = _meminfo()
    return (info.get("MemFree", 0) + info.get("Buffers", 0)) * 1024 // PAGE_SIZE


class Link:
    """One interface the director works on: its packet socket, MAC, MTU and neighbours."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mac = interfaces.interface_mac(name)
        self.max_frame = ETH_HLEN + interfaces.interface_mtu(name)
        self.sock = rings.PacketSocket(name)
        self.resolver = neighbours.NeighbourResolver(name)
        self.sent = False

    def close(self) -> None:
        self.sock.close()
        self.resolver.close()


class Engine:
    """The director on this host. ``host`` owns the host's state (steal rules, VIPs, the guard
    that removes them if the process dies) and what decides it: the health checks and VRRP. A
    worker of several (pylvs.shell.workers) has none, and its ports join the fanout ``groups``
    (interface → group id); the supervisor has the host state and no ports (``data=False``).
    A data plane of its own (workers = 1) also runs the connection sync daemon. Control
    requests arrive typed at ``handle`` (pylvs.shell.messages)."""

    def __init__(self, config: Config, director: Director | None = None, *, host: bool = True,
                 data: bool = True, groups: dict[str, int] | None = None,
                 control: ControlServer | Channel | None = None, share: int = 1) -> None:
        self.config = config
        self.director = director or Director(config.services)
        self.ifname = config.interface
        self.inside = config.inside_interface or config.interface
        self.table = f"pylvs_{os.getpid()}"
        self.host, self.data, self.groups, self.share = host, data, groups, share
        self.control: ControlServer | Channel | None = control
        self.ports: dict[str, Link] = {}
        self.steals: list[nftables.StealRules] = []
        self.vips: list[str] = []
        self.routes: dict[int, addresses.Route] = {}
        self.unreachable: dict[int, str] = {}
        """Real servers without a usable route, and why: tried again every tick."""
        self.egress: set[str] = set()
        """Ports opened only to send through, for real servers routed there."""
        self.reload_requested = False
        self.checker: Checker | None = None
        self.guard: Guard | None = None
        self.vrrp: VrrpSockets | None = None
        self.sync_daemons: dict[str, SyncHalf] = {}
        """The running halves of IPVS's sync daemon, by role (master, backup)."""
        self.master = config.vrrp is None
        """Holds the VIPs and forwards: always without VRRP, else while its MASTER."""
        self.held: frozenset[str] | None = None
        """Under several VRRP instances: the VIPs held and forwarded (pylvs.shell.vrrp_socket);
        None: all the services'."""
        self.offload: Offload | None = None
        """The XDP fast path, with offload = "xdp" (pylvs.shell.offload)."""
        self.fanout_order: list[int] | None = None
        """A worker's: the fanout member of each worker slot (pylvs.shell.fanout), once it
        changed."""
        self.metrics_server: metrics.MetricsServer | None = None
        """[director] metrics: the Prometheus exposition (pylvs.shell.metrics)."""
        self.announcer: Announcer | None = None
        """[bgp]: BIRD, announcing the VIPs this director serves (pylvs.shell.announcer)."""
        self.next_announce = 0.0
        self.notifier = Notifier()
        """systemd's notify socket (pylvs.shell.notify), set by ``run``: no-op without."""

    def start(self) -> None:
        if self.host:
            self.guard = Guard()  # first: it must outlive whatever is installed after
        limit = self.config.max_connections or default_max_connections()
        self.director.table.max_connections = max(1, limit // self.share)
        self.director.set_sysctls(copy.copy(self.config.sysctls))
        if self.control is None:
            self.control = ControlServer(self.config.control_socket, self.handle)
        for name in dict.fromkeys((self.ifname, self.inside)) if self.data else ():
            self.ports[name] = Link(name)
            self.director.add_interface(name, self.ports[name].mac)
            if self.groups is not None:
                self.ports[name].sock.join_fanout(self.groups[name])
        if self.host and self.inside == self.ifname:
            self.steals = [nftables.StealRules(self.ifname, self.table)]
        elif self.host:
            self.steals = [nftables.StealRules(self.ifname, self.table),
                           nftables.StealRules(self.inside, f"{self.table}_inside")]
        self._follow_rules(resolve_timeout=RESOLVE_TIMEOUT)
        self.director.listeners.append(self._follow_rules)
        if self.config.offload == "xdp" and self.data:
            self._start_offload(list(self.ports), 2 * self.director.table.max_connections)
        if self.config.sync_interface:
            # the master half where frames are (each worker), the backup half with the host
            for role, here in (("master", self.data), ("backup", self.host)):
                if here:
                    self._start_half(role, self.config.sync_interface, self.config.syncid)

    def _start_offload(self, interfaces: list[str], max_entries: int) -> None:
        """The XDP fast path on the interfaces the director works on; without it (no XDP or
        BPF here), every frame stays in Python, as with offload = "none"."""
        try:
            self.offload = Offload(interfaces, max_entries)
        except OffloadError as exc:
            log.warning("%s; every frame goes through Python (offload = \"none\")", exc)
            return
        self.director.table.offered = []
        self._tell_guard()
        log.info("XDP fast path on %s", ", ".join(self.offload.attached))

    def start_checks(self) -> None:
        """Health checks run where the host state is (the supervisor when there are workers);
        ``alpha`` servers leave the table before the first check."""
        if not self.host or not self.config.health:
            return
        for service in self.config.health:
            service.start()
        self._apply_health()
        self.checker = Checker(self.config.health)
        self.checker.start()

    def start_election(self) -> None:
        """VRRP decides who holds the VIPs (and forwards); started last, as it may at once."""
        if not self.host or not self.config.vrrp_instances:
            return
        self.vrrp = VrrpSockets(self.config, self.set_master)
        self.vrrp.start(time.monotonic())

    def start_announcer(self) -> None:
        """BGP, where the host state is: started after the checks and VRRP, whose word it
        follows."""
        if not self.host or self.config.bgp is None:
            return
        self.announcer = Announcer(self.config.bgp, self.ifname,
                                   f"/run/pylvs-{os.getpid()}-bird", exclude=self.vips)
        self._tell_guard()
        self._announce()

    def serving(self) -> bool:
        """Whether this director forwards: VRRP's word (a data plane of its own runs); with
        several VRRP instances ``held`` says which VIPs."""
        return self.master

    def _announce(self) -> None:
        """What pylvs.ha.bgp says to announce, to BIRD; a BIRD that died is started again."""
        announcer = self.announcer
        assert announcer is not None
        self.next_announce = time.monotonic() + ANNOUNCE_INTERVAL
        if not announcer.alive():
            self.next_announce += BIRD_RESTART_DELAY
            log.error("bgp: BIRD exited (%s); starting it again", announcer.exit_status())
            announcer.restart()
            self._tell_guard()
        served = [s for s in self.director.services.values()
                  if self.held is None or s.address in self.held]
        announcer.update(bgp.announced(served, self.config.health, self.serving()))

    def withdraw(self) -> float:
        """A stop's first step: the routes withdrawn; returns the seconds to drain."""
        if self.announcer is None:
            return 0.0
        self.guarded("withdrawing the BGP routes", lambda: self.announcer.update([]))  # type: ignore[union-attr]
        self.next_announce = float("inf")
        return self.config.bgp.drain_seconds if self.config.bgp is not None else 0.0

    def start_metrics(self) -> None:
        """The Prometheus exposition, where the host state is; started last, when the loop that
        answers its scrapes is about to run."""
        if self.host and self.config.metrics:
            self.metrics_server = metrics.MetricsServer(self.config.metrics)

    def scrape(self) -> metrics.Scrape:
        """One scrape's plain values, built in the loop (pylvs.shell.metrics says why)."""
        counts = self.counts()
        totals, backends = metrics.ipvs_part(self.listed_services())
        vrrp = [] if self.vrrp is None else [
            metrics.VrrpRow(name, interface, state, held and self.master, transitions)
            for name, interface, state, held, transitions in self.vrrp.rows()]
        return metrics.Scrape(totals, backends, counts["connections"],
                              counts["max_connections"], counts["counters"],
                              self.worker_counters(), metrics.health_part(self.config.health),
                              vrrp, sync=counts.get("sync"), bgp=self._bgp_part())

    def _bgp_part(self) -> metrics.Bgp | None:
        announcer, spec = self.announcer, self.config.bgp
        if announcer is None or spec is None:
            return None
        try:
            established = [s.established for s in announcer.sessions()]
        except OSError:
            established = []
        announced = set(announcer.announced or [])
        return metrics.Bgp({s.address: s.address in announced
                            for s in self.director.services.values()},
                           [(peer.address, peer.remote_as, i < len(established) and
                             established[i]) for i, peer in enumerate(spec.neighbors)])

    def listed_services(self) -> list[VirtualService]:
        """The services with their counters as -Ln --stats shows them."""
        if self.offload is not None:
            self.guarded("reading the XDP fast path's counts", self._offload_read)
        return list(self.director.services.values())

    def worker_counters(self) -> list[dict[str, int]]:
        """Each data plane's counters: this one's alone."""
        return [dict(self.director.counters)]

    def _serve_metrics(self) -> None:
        self.metrics_server.serve(self.scrape)  # type: ignore[union-attr]

    def set_master(self, master: bool, held: frozenset[str] | None = None) -> None:
        """VRRP's word: hold the VIPs and forward, or stand by; ``held``: only these VIPs."""
        self.master, self.held = master, held
        self._follow_rules()

    def set_fanout_order(self, order: list[int]) -> None:
        """A worker's: the fanout member now serving each worker slot."""
        self.fanout_order = order
        self._set_fanout()

    def _apply_health(self) -> None:
        """Make each checked service's table what its servers' health and quorum say."""
        for service in self.config.health:
            if service.update_quorum():
                log.warning("health: %s quorum %s", service.name,
                            "won back" if service.quorum_up else "lost")
            current = self.director.services.get(service.key)
            if current is None:  # deleted with pylvs adm: nothing to keep healthy
                continue
            for argv in ruleset.diff([current], [service.desired(current)]):
                reply = self._adm_line(argv)
                log.info("health: %s%s", " ".join(argv),
                         f" refused: {reply.stderr.strip()}" if reply.rc else "")

    def _follow_rules(self, resolve_timeout: float = 0.0) -> None:
        """Make the host match the rules: steal rules first, then VIPs, then the packet
        sockets' programs and next hops."""
        services = list(self.director.services.values())
        stolen = [(s.protocol, s.address, s.port) for s in services]
        replies = [(s.protocol, rs.address, rs.port) for s in services
                   for rs in s.real_servers if forwarders.get(rs.forward).masquerades]
        if self.host:
            self._follow_rules_on_host(services, stolen, replies)
        if not self.ports:
            return
        forwarded = [s for s in services if self.held is None or s.address in self.held]
        self._filter([(s.protocol, s.address, s.port) for s in forwarded],
                     [(s.protocol, rs.address, rs.port) for s in forwarded
                      for rs in s.real_servers if forwarders.get(rs.forward).masquerades])
        self._set_fanout()
        for ip in self.director.real_server_ips() - self.routes.keys():
            self._route(ip, resolve_timeout)

    def _set_fanout(self) -> None:
        if self.groups is None:
            return
        rules = fanout.rules(self.director.services.values())
        packed = bpf.pack(fanout.program(*rules, order=self.fanout_order))
        for port in self.receiving():
            port.sock.set_fanout_program(packed)

    def _follow_rules_on_host(self, services: list[VirtualService],
                              stolen: list[tuple[str, str, int]],
                              replies: list[tuple[str, str, int]]) -> None:
        self._tell_guard()  # the tables before they exist: removing a missing one is no harm
        vipset = {s.address for s in services}
        wanted = (vipset if self.held is None else set(self.held)) if self.master else set()
        own = set(addresses.interface_addresses(self.inside)) - vipset if replies else set()
        if len(self.steals) == 1:
            self.steals[0].install(stolen, replies, own)
        else:
            self.steals[0].install(stolen, [])
            self.steals[1].install([], replies, own)
        for vip in sorted(wanted - set(self.vips)):
            if addresses.add_vip(self.ifname, vip):
                self.vips.append(vip)
        for vip in [v for v in self.vips if v not in wanted]:
            addresses.remove_vip(self.ifname, vip)
            self.vips.remove(vip)
        self._tell_guard()

    def _tell_guard(self) -> None:
        if self.guard is not None:
            sockets = [self.control.path] if isinstance(self.control, ControlServer) else []
            bird = self.announcer
            self.guard.hold([(self.ifname, vip) for vip in self.vips],
                            [steal.table for steal in self.steals],
                            sockets + (bird.files if bird is not None else []),
                            self.offload.attached if self.offload is not None else [],
                            [bird.pid] if bird is not None and bird.pid else [])

    def receiving(self) -> list[Link]:
        """The ports frames arrive on (not those opened only to send through)."""
        return [port for name, port in self.ports.items() if name not in self.egress]

    def _filter(self, stolen: list[tuple[str, str, int]],
                replies: list[tuple[str, str, int]]) -> None:
        """Only the director's frames reach Python (pylvs.shell.bpf); rebuilt with the rules. A VRRP
        backup takes none: it forwards nothing."""
        if not self.master:
            stolen, replies = [], []
        try:
            packed = bpf.pack(bpf.program(stolen, replies))
        except ValueError as exc:
            log.warning("no socket filter (%s): every frame reaches the director", exc)
            return
        for port in self.receiving():
            port.sock.set_filter(packed)

    def _route(self, ip: int, resolve_timeout: float) -> None:
        """The real server's route and next hop. As in IPVS, any destination is accepted:
        one the director cannot reach (no route, or not through its interfaces) is logged and
        its frames are dropped and counted (no_next_hop) until a route appears."""
        try:
            found = addresses.route(int_to_ip(ip))
        except OSError as exc:
            self._unreachable(ip, str(exc.strerror or exc))
            return
        if found.interface not in self.ports and not self._open_egress(ip, found.interface):
            return
        self.unreachable.pop(ip, None)
        self.routes[ip] = found
        resolver = self.ports[found.interface].resolver
        if resolve_timeout:
            self._learn(ip, resolver.resolve(self._via(ip), resolve_timeout))
        else:
            resolver.probe(self._via(ip))  # learnt by the next refresh, without stalling

    def _open_egress(self, ip: int, name: str) -> bool:
        """A real server routed through an interface the director does not work on: a port
        there that only sends (IPVS forwards wherever the route says). A NAT server's replies
        are not caught there: they must come back through ``inside_interface``."""
        try:
            port = Link(name)
        except OSError as exc:
            self._unreachable(ip, f"reached through {name}, which cannot be opened: "
                                  f"{exc.strerror or exc}")
            return False
        port.sock.set_filter(bpf.pack(bpf.program([])))
        self.ports[name] = port
        self.egress.add(name)
        log.info("real server %s is reached through %s: forwarding there too", int_to_ip(ip),
                 name)
        return True

    def _unreachable(self, ip: int, why: str) -> None:
        if self.unreachable.get(ip) != why:
            log.warning("real server %s: %s; its frames are dropped until a route exists",
                        int_to_ip(ip), why)
        self.unreachable[ip] = why

    def _via(self, ip: int) -> str:
        """The neighbour a real server's frames go to: its gateway, or itself when on-link."""
        return self.routes[ip].gateway or int_to_ip(ip)

    def reload(self) -> Reply:
        """Apply the config file's difference from the running rules as live edits."""
        try:  # as pylvs run read it: TOML, or a keepalived.conf converted again
            new, notes = config_file.load(self.config.source, self.config.source_format,
                                          self.config.interface_option)
        except config_mod.ConfigError as exc:
            return Reply(1, "", f"reload refused, the running rules stay: {exc}\n")
        for note in notes:
            log.warning("%s: %s", self.config.source, note)
        if (new.interface, new.inside_interface) != (self.config.interface,
                                                     self.config.inside_interface):
            return Reply(1, "", "reload refused, the running rules stay: a new interface needs "
                         "a restart of pylvs run\n")
        self._stop_checks()
        known = {service.key: service for service in self.config.health}
        for service in new.health:
            if service.key in known:
                service.carry(known[service.key])
            service.start()
        changes = ruleset.diff(self.director.services.values(), _checked(new))
        for argv in changes:
            reply = self._adm_line(argv)
            if reply.rc != 0:
                self.start_checks()  # the running rules' checks go on
                return Reply(reply.rc, "", f"reload stopped at `{' '.join(argv)}`: {reply.stderr}")
        lines = [" ".join(argv) for argv in changes]
        for name, value in new.sysctls.items():
            if value != getattr(self.config.sysctls, name):
                lines += self.sysctl(Sysctl(name, value)).stdout.splitlines()
        self.config.sysctls, self.config.health = new.sysctls, new.health
        if new.bgp != self.config.bgp:
            lines.append(self._rebgp(new))
        log.info("reloaded %s: %d changes", self.config.source, len(lines))
        self.start_checks()
        return Reply(0, "".join(f"{line}\n" for line in lines))

    def _rebgp(self, new: Config) -> str:
        """A changed [bgp]: BIRD started again with it (its sessions restart)."""
        if self.announcer is not None:
            self.announcer.close()
            self.announcer = None
        self.config.bgp = new.bgp
        if new.bgp is None or not self.host:
            self._tell_guard()
            return "bgp: stopped"
        try:
            self.start_announcer()
        except AnnounceError as exc:
            log.error("%s", exc)
            return f"{exc}; nothing is announced"
        return "bgp: BIRD started again with the new [bgp]"

    def _stop_checks(self) -> None:
        if self.checker is not None:
            self.checker.stop()
            self.checker = None

    def _learn(self, ip: int, mac: bytes | None) -> None:
        found = self.routes[ip]
        if mac is None:
            log.warning("no MAC yet for real server %s (via %s); probing", int_to_ip(ip),
                        self._via(ip))
            return
        port = self.ports[found.interface]
        source = ip_to_int(found.source) if found.source else 0
        self.director.set_hop(ip, NextHop(port.mac, mac, port.name, source,
                                          port.max_frame - ETH_HLEN))

    def _refresh_neighbours(self) -> None:
        servers = self.director.real_server_ips()
        for ip in list(self.unreachable):
            if ip in servers:
                self._route(ip, 0.0)
            else:
                del self.unreachable[ip]
        for port in self.ports.values():
            port.resolver.refresh()
        for ip, found in self.routes.items():
            resolver, via = self.ports[found.interface].resolver, self._via(ip)
            mac = resolver.lookup(via)
            hop = self.director.hops.get(ip)
            if mac is None:
                resolver.probe(via)
            elif hop is None or hop.dst_mac != mac:
                self._learn(ip, mac)

    def handle(self, message: object) -> Reply:
        """Answer one control request (pylvs.shell.messages)."""
        if isinstance(message, AdmLine):
            return self._adm_line(message.argv, message.names)
        if isinstance(message, Adm):
            return self.adm(message.command, message.names)
        if isinstance(message, Reload):
            return self.reload()
        if isinstance(message, Status):
            data = self.counts()
            if self.vrrp is not None:  # pylvs status --json: each VRRP instance
                data["vrrp"] = self.vrrp.described()
            if (bgp_part := self._bgp_part()) is not None:
                data["bgp"] = {"announced": sorted(a for a, on in bgp_part.announced.items()
                                                   if on),
                               "sessions": [{"neighbor": n, "remote_as": r, "established": e}
                                            for n, r, e in bgp_part.sessions]}
            return Reply(0, self._status(), data=data)
        if isinstance(message, Sysctl):
            return self.sysctl(message)
        if isinstance(message, Endpoints):
            addresses, ports = commands.endpoints(self.director)
            return Reply(0, data={"addresses": addresses, "ports": ports})
        return Reply(255, "", f"not a request this director answers: {type(message).__name__}\n")

    def _adm_line(self, argv: list[str], names: commands.Lookup | None = None) -> Reply:
        """The one parse of a command line; a usage error is answered at once."""
        try:
            command = ipvsadm.parse(argv)
        except ipvsadm.UsageError as exc:
            return Reply(ipvsadm.EXIT_USAGE, "", f"{exc}\n")
        return self.adm(command, names)

    def adm(self, command: ipvsadm.Command, names: commands.Lookup | None = None) -> Reply:
        """The sync daemon's commands here, the rest in the director core."""
        if is_daemon(command):
            return self._daemon(command)
        if self.offload is not None and command.name == "list":  # what the fast path counted
            self.guarded("reading the XDP fast path's counts",
                         lambda: self._offload_read("connection" in command.options))
        return apply(self.director, command, names)

    def _daemon(self, command: ipvsadm.Command) -> Reply:
        """--start-daemon, --stop-daemon and -L --daemon, with libipvs's refusals."""
        if command.name == "list":
            return Reply(0, "".join(f"{h.describe()}\n" for h in self.sync_daemons.values()))
        role = command.daemon_state or ""
        if command.name == "start-daemon":
            return self._start_half(role, command.mcast_interface or DEFAULT_INTERFACE,
                                    command.syncid or 0)
        half = self.sync_daemons.pop(role, None)
        if half is None:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", "No daemon is running\n")
        half.close()
        return Reply(0)

    def _start_half(self, role: str, interface: str, syncid: int) -> Reply:
        if role in self.sync_daemons:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", "Daemon has already run\n")
        try:
            if role == "master":
                half: SyncHalf = SyncMaster(self.director, interface, syncid)
            else:
                half = SyncBackup(self.director, interface, syncid, self.install_synced)
        except OSError as exc:
            return Reply(ipvsadm.EXIT_DIRECTOR, "", f"{exc.strerror or exc}\n")
        self.sync_daemons[role] = half
        log.info("sync daemon: %s on %s, syncid %d", role, interface, syncid)
        return Reply(0)

    def install_synced(self, entries: list[SyncConn], now: float) -> Counter[str]:
        """Connections the sync daemon heard, into the table."""
        return replica.install(self.director, entries, now)

    def counts(self) -> dict[str, Any]:
        """The connection table's size and bound, and the director's counters."""
        table = self.director.table
        return {"connections": len(table), "max_connections": table.max_connections,
                "counters": dict(self.director.counters), "sync": self.sync_counts()}

    def sync_counts(self) -> dict[str, int] | None:
        """The sync daemon's counters (pylvs.shell.sync_socket), its halves' summed; None
        while no half runs here."""
        if not self.sync_daemons:
            return None
        total: Counter[str] = Counter()
        for half in self.sync_daemons.values():
            total.update(half.counters)
        return dict(total)

    def sysctl(self, message: Sysctl) -> Reply:
        """sysctl(8) on IPVS's knobs (pylvs.core.sysctls), with its refusals and exit status."""
        name = message.name.removeprefix(layouts.SYSCTL_PREFIX)
        if name and name not in KNOBS:
            return Reply(255, "", f"sysctl: cannot stat /proc/sys/net/ipv4/vs/{name}: "
                         "No such file or directory\n")
        defense = self.director.defense
        if message.value is not None:
            try:
                defense.set(name, message.value)
            except (KeyError, ValueError):
                return Reply(255, "", f'sysctl: setting key "{layouts.SYSCTL_PREFIX}{name}": '
                             "Invalid argument\n")
        return Reply(0, layouts.render_sysctls(
            [(k, v) for k, v in defense.sysctls.items() if not name or k == name]))

    def _status(self) -> str:
        text = render_status(self.config.health, time.monotonic()) + _render_counts(
            self.counts())
        if self.vrrp is not None:
            text = self.vrrp.status(self.master) + text
        if self.announcer is not None:
            text = self._bgp_status() + text
        return text

    def _bgp_status(self) -> str:
        announcer = self.announcer
        assert announcer is not None
        vips = ", ".join(f"{vip}/32" for vip in announcer.announced or []) or "nothing"
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

    def _ha_poll(self) -> None:
        if self.vrrp is not None:
            self.vrrp.poll(time.monotonic())
        for half in self.sync_daemons.values():
            half.poll(time.monotonic())

    def loop(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        director = self.director
        ports = self.receiving()
        poller = select.poll()
        by_fd = {}
        for port in ports:
            poller.register(port.sock.fileno(), select.POLLIN)
            by_fd[port.sock.fileno()] = port
        next_tick = time.monotonic() + TICK
        while not should_stop():
            ready = [by_fd[fd] for fd, _ in poller.poll(100)] if len(ports) > 1 else ports
            for port in ready:
                self._receive(port, 0 if len(ports) > 1 else 0.1)
            for port in self.ports.values():
                if port.sent:
                    port.sock.flush()
                    port.sent = False
            self._between_batches()
            if self.offload is not None and (director.table.offered or
                                             director.table.withdrawn):
                self.guarded("the XDP offload", self._offload_apply)
            now = time.monotonic()
            if now >= next_tick:
                if self.offload is not None:
                    self.guarded("reading the XDP fast path's counts", self._offload_read)
                director.tick(now)
                self.guarded("refreshing neighbours and routes", self._refresh_neighbours)
                self.guarded("the defences", self._defend)
                self.guarded("reading the rings' drop counts", self._count_ring_drops)
                next_tick = now + TICK

    def _offload_apply(self) -> None:
        self.offload.apply(self.director)  # type: ignore[union-attr]

    def _offload_read(self, everything: bool = False) -> None:
        self.offload.sync(self.director, time.monotonic(), everything)  # type: ignore[union-attr]

    def _defend(self) -> None:
        self.director.defend(available_pages(), time.monotonic())

    def _count_ring_drops(self) -> None:
        """What the kernel dropped before Python saw it: the rx rings were full."""
        for port in self.receiving():
            self.director.counters["ring_dropped"] += port.sock.drops()

    def _between_batches(self) -> None:
        """What the loop does besides frames: pylvs adm, health, VRRP and sync, SIGHUP."""
        assert self.control is not None
        self.guarded("serving the control socket", self.control.poll)
        self.guarded("applying health checks", self._health_changed)
        self.guarded("VRRP and the sync daemon", self._ha_poll)
        if self.announcer is not None and time.monotonic() >= self.next_announce:
            self.guarded("BGP", self._announce)
        if self.metrics_server is not None:  # metrics: the scrapes waiting
            self.guarded("serving the metrics", self._serve_metrics)
        if self.reload_requested:
            self.reload_requested = False
            self.guarded("reloading on SIGHUP", self._reload_on_hangup)

    def _reload_on_hangup(self) -> None:
        self.notifier.reloading()
        said = "reload failed"
        try:
            reply = self.reload()
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
            self.director.counters["host_errors"] += 1
            log.exception("%s failed; the director goes on", what)

    def _health_changed(self) -> None:
        if self.checker is not None and self.checker.changed():
            self._apply_health()

    def _receive(self, port: Link, timeout: float) -> None:
        handle, max_frame, name = self.director.handle, port.max_frame, port.name
        ports, partial = self.ports, rings.TP_STATUS_CSUMNOTREADY
        now = time.monotonic()
        for view, status in port.sock.receive(timeout):
            if len(view) > max_frame:
                self._forward_oversized(port, view, now)
                continue
            out = handle(bytearray(view), now, bool(status & partial), name)
            if out is not None:
                egress = ports[out[1]]
                egress.sock.send(out[0])
                egress.sent = True

    def _send(self, frame: bytearray, interface: str) -> None:
        port = self.ports[interface]
        port.sock.send(frame)
        port.sent = True

    def _forward_oversized(self, port: Link, view: memoryview, now: float) -> None:
        """A GSO super-frame from a local sender: segment it as the NIC would have, at the path
        MTU a "fragmentation needed" gave the sender, if any."""
        mtu = port.max_frame - ETH_HLEN
        if len(view) >= ETH_HLEN + 20:
            client = int.from_bytes(view[ETH_HLEN + 12:ETH_HLEN + 16], "big")
            mtu = min(mtu, self.director.path_mtu.get(client, mtu))
        segments = segment_tcp(view, mtu)
        if not segments:
            self.director.counters["oversized_dropped"] += 1
            return
        self.director.counters["segmented"] += 1
        for segment in segments:
            out = self.director.handle(segment, now, True, port.name)
            if out is not None:
                self._send(*out)

    def close(self) -> None:
        """Undo start(); safe to call twice and after a partial start."""
        if self.announcer is not None:  # BGP first: no router sends here what is going
            try:
                self.announcer.close()
            except Exception as exc:  # keep cleaning
                log.error("bgp: could not stop cleanly: %s", exc)
            self.announcer = None
        if self.metrics_server is not None:  # metrics: first, so no scrape waits on a loop gone
            try:
                self.metrics_server.close()
            except Exception as exc:  # keep cleaning
                log.error("metrics: could not stop cleanly: %s", exc)
            self.metrics_server = None
        if self.vrrp is not None:
            try:  # priority 0 first: the backup takes over after Skew_Time, not 3 adverts
                self.vrrp.stop(time.monotonic())
            except Exception as exc:  # keep cleaning
                log.error("vrrp: could not stop cleanly: %s", exc)
            self.vrrp = None
        if self.checker is not None:
            self.checker.stop()
            self.checker = None
        for half in self.sync_daemons.values():
            half.close()
        self.sync_daemons = {}
        if self.offload is not None:
            self.offload.close()
            self.offload = None
        steps: list[Callable[[], None]] = [
            *(lambda v=vip: addresses.remove_vip(self.ifname, v) for vip in self.vips),
            *(steal.remove for steal in self.steals),
            *(port.close for port in self.ports.values()),
        ]
        if self.control is not None:
            steps.append(self.control.close)
        if self.guard is not None:
            steps.append(self.guard.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep cleaning; report what could not be undone
                log.error("clean-up step failed: %s", exc)
        self.vips, self.steals, self.ports, self.control, self.guard = [], [], {}, None, None


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
        engine.start_checks()
        engine.start_election()
        engine.start_announcer()
        engine.start_metrics()
        services = ", ".join(f"{s.protocol} {s.endpoint} ({s.scheduler.name}, "
                             f"{len(s.real_servers)} real servers)" for s in config.services)
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


def _checked(config: Config) -> list[VirtualService]:
    """The config's services as their checks want them (what was found carried over a
    reload): a dead server is not added back only for its check to take it out again."""
    health = {service.key: service for service in config.health}
    return [health[s.key].desired(s) if s.key in health else s for s in config.services]


def _render_counts(counts: dict[str, Any]) -> str:
    counters = ", ".join(f"{k} {v}" for k, v in sorted(counts["counters"].items()))
    text = (f"connections {counts['connections']} (max {counts['max_connections']})\n"
            f"counters: {counters or 'none yet'}\n")
    if counts.get("sync") is not None:
        text += "sync daemon: " + ", ".join(f"{k} {v}" for k, v in sorted(
            counts["sync"].items())) + "\n"
    return text


def is_daemon(command: ipvsadm.Command) -> bool:
    """The sync daemon's ipvsadm commands, which the engine (not the director core) serves."""
    return command.name in ("start-daemon", "stop-daemon") or (
        command.name == "list" and "daemon" in command.options)


def apply(director: Director, command: ipvsadm.Command, names: commands.Lookup | None = None
          ) -> Reply:
    """One parsed command on ``director``, with commands.adm's exit statuses and texts. Atomic:
    when the host cannot follow a change (nftables, netlink), the rules and timeouts go back to
    what they were and the command is refused."""
    changes = command.name in commands.CHANGES or command.name == "flush"
    saved = ruleset.commands(director.services.values()) if changes else []
    timeouts = director.table.timeouts.triple()
    try:
        return Reply(*commands.answer(director, command, time.monotonic(), names))
    except (OSError, RuntimeError) as exc:
        error = exc
    log.error("%s %s: the host could not follow (%s); back to the rules before it",
              command.name, command.service or "", error)
    _roll_back(director, saved, timeouts)
    return Reply(255, "", f"the host could not follow ({error}); the rules stay as they were\n")


def _roll_back(director: Director, saved: list[list[str]], timeouts: tuple[int, int, int]
               ) -> None:
    """Back to the rules ``saved`` (ruleset.commands) by the fewest edits, keeping what did not
    change (and its connections); the host is then made to match them again."""
    director.table.timeouts.set(*timeouts)
    before = Director([])
    for argv in saved:
        commands.run(before, ipvsadm.parse(argv), 0.0)
    listeners, director.listeners = director.listeners, []
    try:
        for argv in ruleset.diff(director.services.values(), before.services.values()):
            commands.run(director, ipvsadm.parse(argv), 0.0)
    finally:
        director.listeners = listeners
    try:
        director.changed()
    except (OSError, RuntimeError) as exc:
        log.error("the host could not follow the rules before it either: %s", exc)

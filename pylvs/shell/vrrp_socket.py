"""VRRP on the wire: pylvs.ha.vrrp_group's instances with raw IP sockets, packet sockets,
timers, tracked links and scripts (pylvs.shell.track_probes).

Adverts go to 224.0.0.18 (or to each unicast peer) with TTL 255 and TOS 0xC0 from the
interface's primary address; gratuitous ARPs go out on the interface. Which VIPs the host holds
is handed to ``on_master(master, held)``: the engine adds or removes them and turns its data
plane on or off. With one instance over the services' VIPs that is today's word (master or not,
``held`` None: all the services); otherwise ``master`` is True and ``held`` names the VIPs of
the instances in MASTER, with the services' addresses no instance claims. Polled from the
director's loop; never blocks.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable

from pylvs.adm.config import Config, VrrpInstance
from pylvs.ha import vrrp
from pylvs.ha.vrrp_group import InstanceSet, InstanceSpec
from pylvs.ha.vrrp_notify import Notify
from pylvs.ha.vrrp_track import Track
from pylvs.shell import addresses, interfaces
from pylvs.shell.track_probes import Links, Scripts

log = logging.getLogger("pylvs")

IP_MULTICAST_ALL = 49


class InstanceSocket:
    """One instance's sockets: what its router sends, and the adverts that reach it."""

    def __init__(self, spec: VrrpInstance, router: vrrp.Instance) -> None:
        self.spec = spec
        self.vips = list(spec.virtual_ipaddress)
        self.router = router
        self.counters: Counter[str] = Counter()
        """What went wrong on the wire: malformed packets, failed sends."""
        self.source = router.config.source_ip
        self.targets = list(spec.unicast_peers) or [vrrp.VRRP_GROUP]
        self.mac = interfaces.interface_mac(spec.interface)
        self.sock = self._open_ip(spec.interface)
        self.link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.link.bind((spec.interface, 0))

    def _open_ip(self, ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, vrrp.IPPROTO_VRRP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, vrrp.VRRP_TOS)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, vrrp.VRRP_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, vrrp.VRRP_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        mreq = addresses.multicast_request(vrrp.VRRP_GROUP, ifname, self.source)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
        if not self.spec.unicast_peers:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
        return sock

    def received(self) -> list[tuple[vrrp.Advert, str]]:
        """Every advert waiting now (malformed ones counted and dropped)."""
        found = []
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                return found
            try:
                found.append(vrrp.parse_packet(packet))
            except vrrp.VrrpError as exc:
                self.counters["malformed"] += 1
                log.debug("vrrp: %s: dropped a packet: %s", self.spec.name, exc)

    def carry_out(self, action: vrrp.Action) -> None:
        if isinstance(action, vrrp.SendAdvert):
            advert = self.router.advert(action.priority)
            for target in self.targets:
                self._send(self.sock.sendto, advert.encode(self.source, target), (target, 0))
        elif isinstance(action, vrrp.SendGarps):
            for vip in self.vips:
                for _ in range(action.count):
                    self._send(self.link.send, vrrp.garp_frame(self.mac, vip))

    def _send(self, send: Callable, *args: object) -> None:
        try:
            send(*args)
        except OSError as exc:  # the link may be down: VRRP goes on, as keepalived's does
            self.counters["send_failed"] += 1
            log.debug("vrrp: send failed: %s", exc)

    def close(self) -> None:
        self.sock.close()
        self.link.close()


def instance_spec(spec: VrrpInstance, source: str) -> InstanceSpec:
    """The sans-IO instance of a [vrrp] table; its own interface is tracked too (weight 0),
    as keepalived tracks an instance's interface unless told not to."""
    config = vrrp.InstanceConfig(
        spec.virtual_router_id, source, spec.virtual_ipaddress, spec.priority, spec.advert_int,
        spec.version, vrrp.State(spec.state), spec.preempt, spec.preempt_delay,
        spec.auth_pass.encode())
    own = Track("interface", spec.interface, 0)
    return InstanceSpec(spec.name, config, spec.interface,
                        (own, *spec.track_interface, *spec.track_script), spec.notifies)


class VrrpSockets:
    """Every VRRP instance of the config, its tracking and its notifies."""

    def __init__(self, config: Config, on_master: Callable[[bool, frozenset[str] | None], None]
                 ) -> None:
        self.on_master = on_master
        self.specs = {spec.name: spec for spec in config.vrrp_instances}
        instances = [instance_spec(spec, spec.unicast_src_ip or _primary_address(
            spec.interface, list(spec.virtual_ipaddress))) for spec in config.vrrp_instances]
        self.instances = InstanceSet(instances, config.vrrp_sync_groups,
                                   list(config.vrrp_scripts.values()))
        self.single = len(self.specs) == 1 and not config.vrrp_instances[0].own_vips
        claimed = {vip for spec in self.specs.values() for vip in spec.virtual_ipaddress}
        self.unclaimed = frozenset(s.address for s in config.services) - claimed
        self.sockets: dict[str, InstanceSocket] = {}
        self.others = {name: {(o.interface, o.virtual_router_id) for o in self.specs.values()
                              if o.name != name} for name in self.specs}
        """Each instance's neighbours (interface, vrid): their adverts are not its business."""
        self.links = Links(t.name for i in instances for t in i.tracks if t.kind == "interface")
        tracked = {t.name for spec in self.specs.values() for t in spec.track_script}
        self.scripts = Scripts(s for s in config.vrrp_scripts.values() if s.name in tracked)
        try:
            for name, router in self.instances.routers.items():
                self.sockets[name] = InstanceSocket(self.specs[name], router)
        except BaseException:
            self.close_in_child()
            raise

    def fileno(self) -> int:
        """The first instance's socket: every instance's socket sees every advert of its
        interface, so this one wakes a loop for all of them on that interface."""
        return next(iter(self.sockets.values())).sock.fileno()

    @property
    def state(self) -> str:
        return str(next(iter(self.instances.routers.values())).state)

    def start(self, now: float) -> None:
        self.scripts.start()
        for name, spec in self.specs.items():
            log.info("vrrp: instance %s (%d) on %s from %s, priority %d, VIPs %s", name,
                     spec.virtual_router_id, spec.interface, self.sockets[name].source,
                     spec.priority, ", ".join(spec.virtual_ipaddress))
        self._carry_out(self.instances.start(now, dict(self.links.state)))
        if not self.single:  # the services no instance claims are held from the start
            self.on_master(True, self.held())

    def poll(self, now: float) -> None:
        """The adverts waiting now, links and scripts that changed, then the timers due."""
        for name, member in self.sockets.items():
            for advert, source in member.received():
                if (member.spec.interface, advert.vrid) in self.others[name]:
                    continue  # another instance's: its own socket has it too
                self._carry_out(self.instances.receive(name, advert, source, now))
        for ifname, up in self.links.changed().items():
            log.warning("vrrp: %s is %s", ifname, "up" if up else "down")
            self._carry_out(self.instances.link(ifname, up, now))
        for script, ok in self.scripts.outcomes():
            self._carry_out(self.instances.script(script, ok, now))
        if now >= self.instances.next_deadline:
            self._carry_out(self.instances.tick(now))

    def stop(self, now: float) -> None:
        try:
            self._carry_out(self.instances.stop(now))
        finally:
            self.scripts.stop()
            self.close_in_child()

    def close_in_child(self) -> None:
        """In a process forked from the director: VRRP stays the director's, unannounced."""
        for member in self.sockets.values():
            member.close()
        self.links.close()

    def held(self) -> frozenset[str] | None:
        if self.single:
            return None
        routers = self.instances.routers
        return self.unclaimed | {vip for name, spec in self.specs.items()
                                 if routers[name].state == vrrp.State.MASTER
                                 for vip in spec.virtual_ipaddress}

    def _carry_out(self, events: list) -> None:
        moved = False
        for name, action in events:
            if isinstance(action, Notify):
                log.info("vrrp: %s: notify %s", name, " ".join(action.argv[2:]))
                self.scripts.notify(action)
            elif isinstance(action, vrrp.AddVips | vrrp.RemoveVips):
                moved = True
            elif isinstance(action, vrrp.StateChange):
                log.warning("vrrp: %s -> %s" if self.single else f"vrrp: {name}: %s -> %s",
                            action.old, action.new)
            else:
                self.sockets[name].carry_out(action)
        if moved:
            master = not self.single or self.state == str(vrrp.State.MASTER)
            self.on_master(master, self.held())

    # -- what status and metrics show ---------------------------------------------------------

    def status(self, held: bool) -> str:
        lines = []
        for name, spec in self.specs.items():
            router, tracker = self.instances.routers[name], self.instances.trackers[name]
            holds = held if self.single else router.state == vrrp.State.MASTER
            failing = ", ".join(f"{t.kind} {t.name}" + (f" (weight {t.weight:+d})"
                                                        if t.weight else "")
                                for t in tracker.failing)
            lines.append(f"VRRP instance {spec.virtual_router_id} on {spec.interface}: "
                         f"{router.state}, priority {router.priority}, VIPs "
                         f"{'held' if holds else 'not held'} [{name}: "
                         f"{', '.join(spec.virtual_ipaddress)}]"
                         + (f" failing: {failing}" if failing else "") + "\n")
        return "".join(lines)

    def described(self) -> list[dict[str, object]]:
        """Each instance as plain values, for ``pylvs status --json``."""
        out: list[dict[str, object]] = []
        for name, spec in self.specs.items():
            router, tracker = self.instances.routers[name], self.instances.trackers[name]
            out.append({"name": name, "virtual_router_id": spec.virtual_router_id,
                        "interface": spec.interface, "state": str(router.state),
                        "priority": router.priority, "base_priority": spec.priority,
                        "virtual_ipaddress": list(spec.virtual_ipaddress),
                        "failing": [{"kind": t.kind, "name": t.name, "weight": t.weight}
                                    for t in tracker.failing],
                        "transitions": dict(self.instances.transitions[name]),
                        "wire_errors": dict(self.sockets[name].counters)})
        return out

    def rows(self) -> list[tuple[str, str, str, bool, dict[str, int]]]:
        """Each instance's name, interface, state, whether it holds its VIPs, transitions."""
        return [(name, spec.interface, str(self.instances.routers[name].state),
                 self.instances.routers[name].state == vrrp.State.MASTER,
                 dict(self.instances.transitions[name])) for name, spec in self.specs.items()]


def _primary_address(ifname: str, vips: list[str]) -> str:
    own = [a for a in addresses.interface_addresses(ifname) if a not in vips]
    if not own:
        raise RuntimeError(f"vrrp: {ifname} has no IPv4 address of its own to send adverts from")
    return own[0]

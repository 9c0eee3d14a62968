"""VRRP on the wire: pylvs.ha.vrrp_group's instances with raw IP sockets, packet sockets,
timers, tracked links and scripts (pylvs.shell.track_probes).

Adverts go to 224.0.0.18 (or to each unicast peer) with TTL 255 and TOS 0xC0 from the
interface's primary address; gratuitous ARPs go out on the interface. An IPv6 instance's
sockets are keepalived's (vrrp.c open_vrrp_read_socket/open_vrrp_send_socket, vrrp_if.c): a raw
AF_INET6 socket for protocol 112 bound to the interface, joined to ff02::12 there (unless
unicast), hop limit 255 (multicast and unicast), traffic class 0xC0, no loop, IPV6_CHECKSUM at
offset 6 (the kernel sums the pseudo-header on the way out and drops a bad sum on the way in),
IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO to check the hop limit and the destination; each advert
leaves with IPV6_PKTINFO naming the link-local source and the interface. Unsolicited Neighbor
Advertisements go out on the packet socket, whole frames. Which VIPs the host holds
is handed to ``on_master(master, held)``: the engine adds or removes them and turns its data
plane on or off. With one instance over the services' VIPs that is today's word (master or not,
``held`` None: all the services); otherwise ``master`` is True and ``held`` names the VIPs of
the instances in MASTER, with the services' addresses no instance claims. Polled from the
director's loop; never blocks.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
from collections import Counter
from collections.abc import Callable

from pylvs.adm.config import Config, VrrpInstance
from pylvs.core.marks import Marks, vips
from pylvs.ha import vrrp
from pylvs.ha.vrrp_group import InstanceSet, InstanceSpec
from pylvs.ha.vrrp_notify import Notify
from pylvs.ha.vrrp_track import Track
from pylvs.shell import addresses, interfaces
from pylvs.shell.track_probes import Links, Scripts

log = logging.getLogger("pylvs")

IP_MULTICAST_ALL = 49
IPV6_MULTICAST_ALL = 29  # <linux/in6.h>
IPV6_CHECKSUM_OFFSET = 6  # the VRRP checksum's place, as keepalived's if_setsockopt_ipv6_checksum
_CMSG_SPACE = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)


class InstanceSocket:
    """One instance's sockets: what its router sends, and the adverts that reach it."""

    def __init__(self, spec: VrrpInstance, router: vrrp.Instance) -> None:
        self.spec = spec
        self.vips = list(spec.virtual_ipaddress)
        self.router = router
        self.counters: Counter[str] = Counter()
        """What went wrong on the wire: malformed packets, failed sends."""
        self.source = router.config.source_ip
        self.ipv6 = vrrp.family(self.source) == 6
        self.unicast = bool(spec.unicast_peers)
        self.targets = list(spec.unicast_peers) or [vrrp.group(self.source)]
        self.mac = interfaces.interface_mac(spec.interface)
        self.index = interfaces.interface_index(spec.interface)
        self.sock = self._open_ip6(spec.interface) if self.ipv6 else self._open_ip(spec.interface)
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

    def _open_ip6(self, ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, vrrp.IPPROTO_VRRP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            for option, value in ((socket.IPV6_TCLASS, vrrp.VRRP_TOS),
                                  (socket.IPV6_MULTICAST_HOPS, vrrp.VRRP_TTL),
                                  (socket.IPV6_UNICAST_HOPS, vrrp.VRRP_TTL),
                                  (socket.IPV6_MULTICAST_LOOP, 0),
                                  (IPV6_MULTICAST_ALL, 0),
                                  (socket.IPV6_MULTICAST_IF, self.index),
                                  (socket.IPV6_RECVHOPLIMIT, 1),
                                  (socket.IPV6_RECVPKTINFO, 1),
                                  (socket.IPV6_CHECKSUM, IPV6_CHECKSUM_OFFSET)):
                sock.setsockopt(socket.IPPROTO_IPV6, option, value)
            if not self.unicast:
                mreq = socket.inet_pton(socket.AF_INET6, vrrp.VRRP_GROUP6) + struct.pack(
                    "@I", self.index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                try:  # keepalived: bound to the group, unicast adverts stay out
                    sock.bind((vrrp.VRRP_GROUP6, 0, 0, self.index))
                except OSError as exc:  # then the destination check drops them
                    log.debug("vrrp: %s: bind to %s: %s", self.spec.name, vrrp.VRRP_GROUP6, exc)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def received(self) -> list[tuple[vrrp.Advert, str]]:
        """Every advert waiting now (malformed ones counted and dropped)."""
        if self.ipv6:
            return self._received6()
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

    def _received6(self) -> list[tuple[vrrp.Advert, str]]:
        """recvmsg gives the VRRP message alone; the hop limit and the destination come as
        ancillary data (IPV6_HOPLIMIT, IPV6_PKTINFO), the source as the sender's address."""
        found = []
        while True:
            try:
                payload, ancillary, _flags, sender = self.sock.recvmsg(65535, _CMSG_SPACE)
            except BlockingIOError:
                return found
            # without the ancillary data keepalived checks nothing (rx_ttl_hop_limit -1)
            hop_limit, destination = vrrp.VRRP_TTL, vrrp.VRRP_GROUP6
            for level, kind, data in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                    hop_limit = struct.unpack("@i", data[:4])[0]
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    destination = str(ipaddress.IPv6Address(data[:16]))
            source = str(ipaddress.IPv6Address(sender[0].partition("%")[0]))
            try:
                advert = vrrp.Advert.decode(payload, source, hop_limit, destination,
                                            self.unicast)
            except vrrp.VrrpError as exc:
                self.counters["malformed"] += 1
                log.debug("vrrp: %s: dropped a packet from %s: %s", self.spec.name, source, exc)
                continue
            found.append((advert, source))

    def carry_out(self, action: vrrp.Action) -> None:
        if isinstance(action, vrrp.SendAdvert):
            advert = self.router.advert(action.priority)
            for target in self.targets:
                payload = advert.encode(self.source, target)
                if self.ipv6:
                    self._send(self._send6, payload, target)
                else:
                    self._send(self.sock.sendto, payload, (target, 0))
        elif isinstance(action, vrrp.SendGarps) and self.ipv6:
            # keepalived's vrrp_send_link_update: each round sends one NA for every VIP
            router = _forwards_ipv6(self.spec.interface)
            for _ in range(action.count):
                for vip in self.vips:
                    self._send(self.link.send, vrrp.na_frame(self.mac, vip, router))
        elif isinstance(action, vrrp.SendGarps):
            for vip in self.vips:
                for _ in range(action.count):
                    self._send(self.link.send, vrrp.garp_frame(self.mac, vip))

    def _send6(self, payload: bytes, target: str) -> None:
        """From the link-local source on the interface (IPV6_PKTINFO, as keepalived's
        vrrp_build_ancillary_data); a multicast one with MSG_DONTROUTE, as keepalived's."""
        info = socket.inet_pton(socket.AF_INET6, self.source) + struct.pack("@I", self.index)
        self.sock.sendmsg([payload], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
                          0 if self.unicast else socket.MSG_DONTROUTE,
                          (target, 0, 0, self.index))

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
            spec.interface, list(spec.virtual_ipaddress), spec.family))
            for spec in config.vrrp_instances]
        self.instances = InstanceSet(instances, config.vrrp_sync_groups,
                                   list(config.vrrp_scripts.values()))
        self.single = len(self.specs) == 1 and not config.vrrp_instances[0].own_vips
        claimed = {vip for spec in self.specs.values() for vip in spec.virtual_ipaddress}
        self.unclaimed = frozenset(vips(config.services, Marks(config.marks))) - claimed
        self.sockets: dict[str, InstanceSocket] = {}
        self.others = {name: {(o.interface, o.family, o.virtual_router_id)
                              for o in self.specs.values() if o.name != name}
                       for name in self.specs}
        """Each instance's neighbours (interface, family, vrid): their adverts are not its
        business (a VRID is an address family's, RFC 5798 §5.2.3, so IPv4's 51 is not
        IPv6's)."""
        self.waker = select.epoll()
        """Readable when any instance's socket is: what the director's loop polls."""
        self.links = Links(t.name for i in instances for t in i.tracks if t.kind == "interface")
        tracked = {t.name for spec in self.specs.values() for t in spec.track_script}
        self.scripts = Scripts(s for s in config.vrrp_scripts.values() if s.name in tracked)
        try:
            for name, router in self.instances.routers.items():
                self.sockets[name] = InstanceSocket(self.specs[name], router)
                self.waker.register(self.sockets[name].sock.fileno(), select.EPOLLIN)
        except BaseException:
            self.close_in_child()
            raise

    def fileno(self) -> int:
        """An epoll of every instance's socket (IPv4's and IPv6's are not the same socket,
        nor are two interfaces'): one descriptor that wakes the loop for all of them."""
        return self.waker.fileno()

    @property
    def state(self) -> str:
        return str(next(iter(self.instances.routers.values())).state)

    def start(self, now: float) -> None:
        self.scripts.start()
        for name, spec in self.specs.items():
            log.info("vrrp: instance %s (%d) on %s from %s, priority %d, VIPs %s", name,
                     spec.virtual_router_id, spec.interface, self.sockets[name].source,
                     spec.priority, ", ".join(spec.virtual_ipaddress))
            if spec.family == socket.AF_INET6 and not spec.unicast_peers and \
                    not vrrp.link_local_first(spec.virtual_ipaddress):
                log.warning("vrrp: (%s) the first IPv6 VIP address should be link local "
                            "(keepalived's words: RFC 5798 §5.2.9)", name)
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
        self.waker.close()
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


def _primary_address(ifname: str, vips: list[str], family: int = socket.AF_INET) -> str:
    """IPv4: the interface's first address that is no VIP. IPv6: its first link-local address
    that is no VIP, as keepalived takes it (keepalived_netlink.c keeps an interface's first
    scope-link IPv6 address as its source, VIPs aside)."""
    if family == socket.AF_INET6:
        own = [str(ipaddress.IPv6Address(a)) for a in
               addresses.interface_addresses(ifname, socket.AF_INET6)]
        own = [a for a in own if ipaddress.IPv6Address(a).is_link_local and a not in vips]
        if not own:
            raise RuntimeError(f"vrrp: {ifname} has no IPv6 link-local address of its own to "
                               "send adverts from")
        return own[0]
    own = [a for a in addresses.interface_addresses(ifname) if a not in vips]
    if not own:
        raise RuntimeError(f"vrrp: {ifname} has no IPv4 address of its own to send adverts from")
    return own[0]


def _forwards_ipv6(ifname: str) -> bool:
    """keepalived's set_ipv6_forwarding: an NA says Router when the interface forwards IPv6."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding") as fh:
            return fh.read().strip() not in ("", "0")
    except OSError:
        return False

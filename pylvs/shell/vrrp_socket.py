"""VRRP on the wire: pylvs.ha.vrrp's Router with a raw IP socket, a packet socket and timers.

Adverts go to 224.0.0.18 (or to each unicast peer) with TTL 255 and TOS 0xC0 from the
interface's primary address; gratuitous ARPs go out on the interface. What the router decides
about the VIPs is handed to ``on_master(bool)``: the engine adds or removes them and turns its
data plane on or off. Polled from the director's loop; never blocks.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from pylvs.adm.config import Vrrp
from pylvs.ha import vrrp
from pylvs.shell import netio

log = logging.getLogger("pylvs")

IP_MULTICAST_ALL = 49


class Election:
    def __init__(self, spec: Vrrp, vips: list[str], on_master: Callable[[bool], None]) -> None:
        self.spec = spec
        self.vips = vips
        self.on_master = on_master
        self.source = spec.unicast_src_ip or _primary_address(spec.interface, vips)
        self.router = vrrp.Router(vrrp.RouterConfig(
            spec.virtual_router_id, self.source, tuple(vips), spec.priority, spec.advert_int,
            spec.version, vrrp.State(spec.state), spec.preempt, spec.preempt_delay,
            spec.auth_pass.encode()))
        self.targets = list(spec.unicast_peers) or [vrrp.VRRP_GROUP]
        self.mac = netio.interface_mac(spec.interface)
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
        mreq = netio.multicast_request(vrrp.VRRP_GROUP, ifname, self.source)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
        if not self.spec.unicast_peers:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
        return sock

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def state(self) -> str:
        return str(self.router.state)

    def start(self, now: float) -> None:
        log.info("vrrp: instance %d on %s from %s, priority %d, VIPs %s",
                 self.spec.virtual_router_id, self.spec.interface, self.source,
                 self.spec.priority, ", ".join(self.vips))
        self._carry_out(self.router.start(now))

    def poll(self, now: float) -> None:
        """Every advert waiting now, then the timers that are due."""
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                break
            try:
                advert, source = vrrp.parse_packet(packet)
            except vrrp.VrrpError as exc:
                self.router.counters["malformed"] += 1
                log.debug("vrrp: dropped a packet: %s", exc)
                continue
            self._carry_out(self.router.receive(advert, source, now))
        if now >= self.router.next_deadline:
            self._carry_out(self.router.tick(now))

    def stop(self, now: float) -> None:
        try:
            self._carry_out(self.router.stop(now))
        finally:
            self.sock.close()
            self.link.close()

    def close_in_child(self) -> None:
        """In a process forked from the director: VRRP stays the director's, unannounced."""
        self.sock.close()
        self.link.close()

    def _carry_out(self, actions: list[vrrp.Action]) -> None:
        for action in actions:
            if isinstance(action, vrrp.SendAdvert):
                self._advertise(action.priority)
            elif isinstance(action, vrrp.AddVips):
                self.on_master(True)
            elif isinstance(action, vrrp.RemoveVips):
                self.on_master(False)
            elif isinstance(action, vrrp.SendGarps):
                for vip in self.vips:
                    for _ in range(action.count):
                        self._send(self.link.send, vrrp.garp_frame(self.mac, vip))
            elif isinstance(action, vrrp.StateChange):
                log.warning("vrrp: %s -> %s", action.old, action.new)

    def _advertise(self, priority: int) -> None:
        advert = self.router.advert(priority)
        for target in self.targets:
            self._send(self.sock.sendto, advert.encode(self.source, target), (target, 0))

    def _send(self, send: Callable, *args: object) -> None:
        try:
            send(*args)
        except OSError as exc:  # the link may be down: VRRP goes on, as keepalived's does
            self.router.counters["send_failed"] += 1
            log.debug("vrrp: send failed: %s", exc)


def _primary_address(ifname: str, vips: list[str]) -> str:
    addresses = [a for a in netio.interface_addresses(ifname) if a not in vips]
    if not addresses:
        raise RuntimeError(f"vrrp: {ifname} has no IPv4 address of its own to send adverts from")
    return addresses[0]

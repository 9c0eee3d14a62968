"""Virtual services and real servers: what ipvsadm -A/-a creates.

Owns the objects the scheduler, the connection table and the renderer share. Real servers are
kept in IPVS's order, most recently added first, because that order decides rr/wrr sequences and
every scheduler's tie-breaks. Addresses are kept both as text and as an int (network order
value: 32 bits for IPv4, 128 for IPv6) so the hot path never parses a string; ``af`` says which
(AF_INET 2, AF_INET6 10, as IPVS's svc->af and dest->af). IPv6 addresses are kept in their
canonical text (RFC 5952, as ipvsadm prints them) and written ``[addr]:port``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pylvs.core import forwarding

if TYPE_CHECKING:
    from pylvs.core.forwarding import Forwarder
    from schedulers import Scheduler

PROTO_NUMBERS = {"tcp": 6, "udp": 17}
PROTO_NAMES = {6: "TCP", 17: "UDP", 0: "IP"}
"""As ipvsadm names them; 0 (IPPROTO_IP) is a fwmark service's persistence template's."""
DEFAULT_SCHEDULER = "wlc"
AF_INET, AF_INET6 = 2, 10
DEFAULT_NETMASK = {AF_INET: "255.255.255.255", AF_INET6: "128"}
"""ipvsadm -M's default: a dotted mask for IPv4, a prefix length for IPv6."""


def ip_to_int(text: str) -> int:
    return int(ipaddress.ip_address(text))


def int_to_ip(value: int, af: int = AF_INET) -> str:
    return str(ipaddress.IPv4Address(value)) if af == AF_INET else inet_ntop6(value)


def inet_ntop6(value: int) -> str:
    """An IPv6 address as glibc's inet_ntop writes it (what ipvsadm prints): the leftmost
    longest run of two or more zero groups as ``::``, groups in lower-case hex without leading
    zeros, and the last 32 bits dotted when the first 96 are ``::`` or ``::ffff``
    (``::192.0.2.1``, ``::ffff:192.0.2.1``)."""
    words = [(value >> shift) & 0xFFFF for shift in range(112, -1, -16)]
    best_base, best_len, base = -1, 0, -1
    for i, word in enumerate([*words, 1]):
        if word == 0 and base < 0:
            base = i
        elif word and base >= 0:
            if i - base > best_len:
                best_base, best_len = base, i - base
            base = -1
    if best_len < 2:
        best_base = -1
    out = ""
    for i, word in enumerate(words):
        if best_base <= i < best_base + best_len:
            if i == best_base:
                out += ":"
            continue
        if i:
            out += ":"
        if i == 6 and best_base == 0 and (best_len == 6 or best_len == 5 and words[5] == 0xFFFF):
            out += str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
            break
        out += f"{word:x}"
    if best_base >= 0 and best_base + best_len == 8:
        out += ":"
    return out


def family_of(text: str) -> int:
    """AF_INET or AF_INET6 for an address's text (ValueError if it is neither)."""
    return AF_INET if ipaddress.ip_address(text).version == 4 else AF_INET6


def canonical(text: str) -> str:
    """The address as ipvsadm prints it (IPv6 as inet_ntop writes it)."""
    address = ipaddress.ip_address(text)
    return str(address) if address.version == 4 else inet_ntop6(int(address))


def endpoint_text(address: str, port: int, af: int) -> str:
    """``addr:port``, or ``[addr]:port`` for IPv6 (ipvsadm's addrport_to_anyname)."""
    return f"[{address}]:{port}" if af == AF_INET6 else f"{address}:{port}"


def netmask_int(text: str, af: int) -> int:
    """The persistence mask as an int: IPv4's dotted mask, IPv6's prefix length (1..128)."""
    if af == AF_INET:
        return ip_to_int(text)
    return ((1 << 128) - 1) ^ ((1 << (128 - int(text))) - 1)


def fwmark_key(mark: int, af: int = AF_INET) -> tuple[int, ...]:
    """The director's key of a firewall-mark service: protocol 0 (IPVS's IPPROTO_IP) and the
    mark where the address goes, so it never meets an address-and-port service's key."""
    return (0, mark, 0) if af == AF_INET else (0, mark, 0, AF_INET6)


def service_key(proto: int, address: str, port: int) -> tuple[int, ...]:
    """The director's key of a service: (proto, ip, port), with AF_INET6 appended for IPv6 so
    that no IPv6 address (::a.b.c.d) is ever taken for an IPv4 one."""
    if family_of(address) == AF_INET:
        return proto, ip_to_int(address), port
    return proto, ip_to_int(address), port, AF_INET6


@dataclass(eq=False)
class Stats:
    """IPVS's counters, and its rate estimator (ip_vs_est.c): every 2 s each rate moves a quarter
    of the way to the last interval's, kept scaled (×2^10 for conns and packets, ×2^5 for bytes).
    """

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    _last: tuple[int, ...] = field(default=(0, 0, 0, 0, 0), repr=False)
    _avg: list[int] = field(default_factory=lambda: [0] * 5, repr=False)

    def counters(self) -> tuple[int, int, int, int, int]:
        return self.conns, self.inpkts, self.outpkts, self.inbytes, self.outbytes

    def estimate(self) -> None:
        """One 2-second tick of ip_vs_estimation_timer."""
        now = self.counters()
        for i, (value, last) in enumerate(zip(now, self._last, strict=True)):
            rate = (value - last) << (9 if i < 3 else 4)
            self._avg[i] += (rate - self._avg[i]) >> 2
        self._last = now

    def rates(self) -> tuple[int, int, int, int, int]:
        """CPS, InPPS, OutPPS, InBPS, OutBPS as ip_vs_read_estimator rounds them."""
        avg = self._avg
        return ((avg[0] + 0x1FF) >> 10, (avg[1] + 0x1FF) >> 10, (avg[2] + 0x1FF) >> 10,
                (avg[3] + 0xF) >> 5, (avg[4] + 0xF) >> 5)

    def averages(self) -> list[int]:
        return list(self._avg)

    def add(self, counters: list[int], averages: list[int]) -> None:
        """Another's counters and rates into these (several workers' union)."""
        self.conns, self.inpkts, self.outpkts, self.inbytes, self.outbytes = (
            a + b for a, b in zip(self.counters(), counters, strict=True))
        self._avg = [a + b for a, b in zip(self._avg, averages, strict=True)]

    def zero(self) -> None:
        """ipvsadm -Z: counters and the estimator start again from nothing."""
        self.conns = self.inpkts = self.outpkts = self.inbytes = self.outbytes = 0
        self._last = (0, 0, 0, 0, 0)
        self._avg = [0] * 5


@dataclass(eq=False)
class RealServer:
    address: str
    port: int
    weight: int = 1
    forward: str = forwarding.DEFAULT
    """The forwarding method's name; ``set_forward`` changes it with ``forwarder``."""
    upper_threshold: int = 0
    lower_threshold: int = 0
    tun_type: str = "ipip"
    """ipvsadm --tun-type of a tunnelled real server: ipip, gue or gre."""
    tun_port: int = 0
    """--tun-port: GUE's UDP destination port (0: none)."""
    tun_flags: str = "nocsum"
    """--tun-nocsum, --tun-csum or --tun-remcsum: the tunnel's checksum (GUE's UDP, GRE's)."""
    activeconns: int = 0
    inactconns: int = 0
    persistconns: int = 0
    overloaded: bool = False
    stats: Stats = field(default_factory=Stats)
    ip: int = 0
    af: int = AF_INET
    last_weight: int = 0
    """The last non-zero weight (mh keeps its table when a server is quiesced)."""
    watcher: Callable[[RealServer], None] | None = field(default=None, repr=False)
    """Told of every change of counters or OVERLOAD: the scheduler's incremental indexes."""
    forwarder: Forwarder = field(init=False, repr=False, compare=False)
    """The method ``forward`` names, bound when the server is made (an unknown name is a
    KeyError): what the connection table binds to each new connection."""

    def __post_init__(self) -> None:
        self.af = family_of(self.address)
        self.address = canonical(self.address) if self.af == AF_INET6 else self.address
        self.ip = ip_to_int(self.address)
        self.last_weight = self.weight
        self.forwarder = forwarding.get(self.forward, self.af, (self.tun_type, self.tun_flags))

    def set_forward(self, name: str, tun_type: str = "ipip", tun_port: int = 0,
                    tun_flags: str = "nocsum") -> None:
        """ipvsadm -e -g/-m/-i (and --tun-*): the method of new connections (made ones keep
        theirs)."""
        self.forwarder = forwarding.get(name, self.af, (tun_type, tun_flags))
        self.forward = name
        self.tun_type, self.tun_port, self.tun_flags = tun_type, tun_port, tun_flags

    def set_weight(self, weight: int) -> None:
        """ipvsadm -e -w: the caller tells the scheduler (update), as IPVS's upd_dest."""
        self.weight = weight
        if weight:
            self.last_weight = weight

    def _changed(self) -> None:
        if self.watcher is not None:
            self.watcher(self)

    @property
    def available(self) -> bool:
        """May take new connections: weight > 0 and not OVERLOAD."""
        return self.weight > 0 and not self.overloaded

    def overhead(self) -> int:
        """ip_vs_dest_conn_overhead: active connections weigh 256 inactive ones."""
        return self.activeconns * 256 + self.inactconns

    def bind(self, active: bool) -> None:
        if active:
            self.activeconns += 1
        else:
            self.inactconns += 1
        total = self.activeconns + self.inactconns
        if self.upper_threshold and total >= self.upper_threshold:
            self.overloaded = True
        self._changed()

    def unbind(self, active: bool) -> None:
        if active:
            self.activeconns -= 1
        else:
            self.inactconns -= 1
        total = self.activeconns + self.inactconns
        if self.lower_threshold:
            if total < self.lower_threshold:
                self.overloaded = False
        elif self.upper_threshold:
            if total * 4 < self.upper_threshold * 3:
                self.overloaded = False
        else:
            self.overloaded = False
        self._changed()

    def set_active(self, was_active: bool, now_active: bool) -> None:
        if was_active == now_active:
            return
        if now_active:
            self.inactconns -= 1
            self.activeconns += 1
        else:
            self.activeconns -= 1
            self.inactconns += 1
        self._changed()

    @property
    def endpoint(self) -> str:
        return endpoint_text(self.address, self.port, self.af)


@dataclass(eq=False)
class VirtualService:
    protocol: str
    address: str
    port: int
    scheduler: Scheduler
    forward: str = forwarding.DEFAULT
    persistence_timeout: int = 0
    persistence_netmask: str = ""
    """ipvsadm -M: a dotted mask (IPv4) or a prefix length (IPv6); "" is the family's default."""
    real_servers: list[RealServer] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    ip: int = 0
    proto: int = 0
    netmask: int = 0xFFFFFFFF
    af: int = AF_INET
    one_packet: bool = False
    """ipvsadm -o (UDP or fwmark): every datagram scheduled on its own, no connection kept."""
    fwmark: int = 0
    """ipvsadm -f: a firewall-mark service takes the packets marked so (pylvs.core.marks),
    TCP and UDP, to any address and port; it has no protocol, address or port of its own
    (protocol "", address "", port 0) and its family is ``af`` as given (-6)."""

    def __post_init__(self) -> None:
        if self.fwmark:
            self.protocol, self.address, self.port, self.proto = "", "", 0, 0
            self.ip = self.fwmark
        else:
            self.af = family_of(self.address)
            self.address = canonical(self.address) if self.af == AF_INET6 else self.address
            self.ip = ip_to_int(self.address)
            self.proto = PROTO_NUMBERS[self.protocol]
        self.set_netmask(self.persistence_netmask)

    def set_netmask(self, text: str) -> None:
        """ipvsadm -M (the family's default for "")."""
        self.persistence_netmask = text or DEFAULT_NETMASK[self.af]
        self.netmask = netmask_int(self.persistence_netmask, self.af)

    @property
    def default_netmask(self) -> bool:
        """-M is the family's default (ipvsadm then prints no mask)."""
        return self.persistence_netmask == DEFAULT_NETMASK[self.af]

    @property
    def key(self) -> tuple[int, ...]:
        """``service_key``'s: (proto, ip, port[, AF_INET6]); ``fwmark_key``'s for -f."""
        if self.fwmark:
            return fwmark_key(self.fwmark, self.af)
        if self.af == AF_INET:
            return (self.proto, self.ip, self.port)
        return (self.proto, self.ip, self.port, AF_INET6)

    @property
    def endpoint(self) -> str:
        """``addr:port``, ``[addr]:port``, or for a fwmark service its mark (``FWM 1``)."""
        if self.fwmark:
            return f"FWM {self.fwmark}" + (" IPv6" if self.af == AF_INET6 else "")
        return endpoint_text(self.address, self.port, self.af)

    def add_real_server(self, server: RealServer) -> None:
        """IPVS inserts at the list head: newest first. A scheduler that cannot take one more
        (mh: more servers than slots) raises ValueError, and the list is as it was."""
        self.real_servers.insert(0, server)
        try:
            self.scheduler.update(self.real_servers)
        except ValueError:
            self.real_servers.remove(server)
            self.scheduler.update(self.real_servers)
            raise

    def remove_real_server(self, server: RealServer) -> None:
        self.real_servers.remove(server)
        self.scheduler.update(self.real_servers)

    def find_real_server(self, address: str, port: int) -> RealServer | None:
        for server in self.real_servers:
            if server.address == address and server.port == port:
                return server
        return None

"""VRRP: advertisements on the wire (v2, RFC 3768; v3, RFC 5798/9568, over IPv4 and IPv6) and the
state machine.

Sans-IO: nothing here opens a socket, starts a thread or reads a clock. ``Advert`` encodes and
decodes the VRRP message (the IP payload), ``ip_packet``/``ip6_packet``/``advert_frame``/
``garp_frame``/``na_frame`` wrap it, or announce a VIP, for a raw or packet socket, and
``Instance`` is one virtual router instance that is told the time (``now``, in seconds) and answers
with ``Action``s for its caller to carry out.

Behaviour follows keepalived where the RFCs leave room: v2 packets always carry the 8 bytes of
authentication data (zeros without a password), the v3 checksum covers an IPv4 pseudo-header, a
master answers a lower-priority advert with its own advert and a burst of gratuitous ARPs, bursts
of ``garp_master_repeat`` are sent on becoming master and again ``garp_master_delay`` seconds on,
and a priority-0 advert is sent only when a master stops or goes to FAULT, not when it is
pre-empted. FAULT (keepalived's, for a failing tracked interface or script: see
pylvs.ha.vrrp_track) holds no VIP and sends nothing until ``recover``; the effective priority a
tracker works out is given with ``set_priority``; a sync group (pylvs.ha.vrrp_group) may hold a
router back from MASTER through ``gate``.

An instance is of one family, its addresses' (keepalived's vrrp_parser.c and vrrp_data.c drop an
address of the other family). An IPv6 instance speaks VRRPv3 only (keepalived's
vrrp_complete_instance): adverts from the interface's link-local address to ``ff02::12`` with hop
limit 255 and traffic class 0xC0, the checksum over the IPv6 pseudo-header (RFC 8200 §8.1: what
keepalived has the kernel compute with IPV6_CHECKSUM), the VIPs in the order configured
(keepalived only warns when the first is not link-local, as RFC 5798 §5.2.9 wants it); on receipt
the hop limit must be 255 unless the instance is unicast, and a multicast advert on a unicast
instance (or the other way round) is dropped (vrrp.c ``vrrp_check_packet``, vrrp_scheduler.c).
Where IPv4 sends gratuitous ARPs, IPv6 sends unsolicited Neighbor Advertisements (vrrp_ndisc.c):
to ``ff02::1`` from the VIP, hop limit 255, Override set, Solicited clear, Router as the
interface forwards, with the MAC in a target link-layer address option, at the same times and
counts.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pylvs.core.packet import checksum

IPPROTO_VRRP = 112
IPPROTO_ICMPV6 = 58
VRRP_GROUP = "224.0.0.18"
VRRP_GROUP6 = "ff02::12"
ALL_NODES = "ff02::1"
VRRP_TTL = 255
VRRP_TOS = 0xC0  # internetwork control, as keepalived sends (IPv6: the traffic class)
GROUP_MAC = bytes.fromhex("01005e000012")
GROUP_MAC6 = bytes.fromhex("333300000012")  # RFC 2464 §7: 33:33 and the group's last 32 bits
ALL_NODES_MAC = bytes.fromhex("333300000001")
BROADCAST_MAC = b"\xff" * 6
ETH_P_IP, ETH_P_IPV6 = b"\x08\x00", b"\x86\xdd"
NEIGHBOR_ADVERT = 136
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80, 0x40, 0x20
OPT_TARGET_LINKADDR = 2
ADVERTISEMENT = 1
AUTH_NONE, AUTH_PASS = 0, 1
AUTH_LEN = 8
OWNER_PRIORITY = 255
STOP_PRIORITY = 0

_V2_HEAD = struct.Struct("!BBBBBBH")
_V3_HEAD = struct.Struct("!BBBBHH")
_IP_HEAD = struct.Struct("!BBHHHBBH4s4s")
_IP6_HEAD = struct.Struct("!IHBB16s16s")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_NA = struct.Struct("!BBHB3x16sBB6s")


class VrrpError(ValueError):
    """An advertisement that must be discarded, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _packed(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def _packed_any(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def family(address: str) -> int:
    """4 or 6: the IP version of an address text (ValueError if it is none)."""
    return ipaddress.ip_address(address).version


def group(address: str) -> str:
    """Where an instance whose address is ``address`` multicasts: 224.0.0.18 or ff02::12."""
    return VRRP_GROUP6 if family(address) == 6 else VRRP_GROUP


def link_local_first(vips: tuple[str, ...] | list[str]) -> bool:
    """RFC 5798 §5.2.9: an IPv6 advert's first address should be link-local; keepalived only
    warns when it is not (and refuses under vrrp_strict), and sends the VIPs as configured."""
    return not vips or ipaddress.ip_address(vips[0]).is_link_local


def _pad_auth(auth: bytes) -> bytes:
    """keepalived's PASS: the first 8 bytes of the password, zero-padded; none stays empty."""
    return auth[:AUTH_LEN].ljust(AUTH_LEN, b"\x00") if auth else b""


def _centiseconds(interval: float) -> int:
    value = round(interval * 100)
    if not math.isclose(value, interval * 100, abs_tol=1e-6) or not 0 <= value <= 0xFFF:
        raise ValueError(f"a VRRPv3 interval is 0 to 40.95 s in centiseconds, not {interval}")
    return value


def _whole_seconds(interval: float) -> int:
    if interval != int(interval) or not 0 <= interval <= 255:
        raise ValueError(f"a VRRPv2 interval is 0 to 255 whole seconds, not {interval}")
    return int(interval)


def _pseudo_header(src_ip: str, dst_ip: str, length: int, proto: int = IPPROTO_VRRP) -> bytes:
    """RFC 5798 §5.2.8: IPv4's (RFC 768's layout) or IPv6's (RFC 8200 §8.1: the 32-bit
    upper-layer length, three zero bytes and the next header)."""
    if family(src_ip) == 6:
        return (_packed_any(src_ip) + ipaddress.IPv6Address(dst_ip).packed
                + struct.pack("!I3xB", length, proto))
    return _packed(src_ip) + _packed(dst_ip) + struct.pack("!BBH", 0, proto, length)


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement; ``auth`` (v2 only) is the password, empty for none. Its
    addresses are of one family (IPv6 ones in VRRPv3 only), kept in their canonical text."""

    version: int
    vrid: int
    priority: int
    interval: float
    addresses: tuple[str, ...] = ()
    auth: bytes = b""

    def __post_init__(self) -> None:
        try:
            addresses = tuple(str(ipaddress.ip_address(a)) for a in self.addresses)
        except ValueError as exc:
            raise ValueError(f"not an IP address: {exc}") from None
        object.__setattr__(self, "addresses", addresses)
        object.__setattr__(self, "auth", _pad_auth(bytes(self.auth)))
        if self.version not in (2, 3):
            raise ValueError(f"VRRP version {self.version} (2 or 3)")
        if not (0 <= self.vrid <= 255 and 0 <= self.priority <= 255):
            raise ValueError("VRID and priority are single bytes")
        if len(self.addresses) > 255:
            raise ValueError("at most 255 addresses in one advertisement")
        if self.version == 3 and self.auth:
            raise ValueError("VRRPv3 has no authentication")
        families = {family(a) for a in self.addresses}
        if len(families) > 1:
            raise ValueError("an advertisement's addresses are of one family")
        if self.version == 2:
            if families == {6}:
                raise ValueError("VRRPv2 carries IPv4 addresses: keepalived runs an IPv6 "
                                 "instance as VRRPv3")
            _whole_seconds(self.interval)
        else:
            _centiseconds(self.interval)

    def encode(self, src_ip: str, dst_ip: str | None = None) -> bytes:
        """The VRRP message (the IP payload) with its checksum; v3 sums a pseudo-header too
        (IPv4's or IPv6's, by ``src_ip``'s family). ``dst_ip``: the group of that family unless
        given (a unicast peer)."""
        dst_ip = group(src_ip) if dst_ip is None else dst_ip
        size = 16 if family(src_ip) == 6 else 4
        if any(family(a) != family(src_ip) for a in (dst_ip, *self.addresses)):
            raise ValueError(f"an advert from {src_ip} carries and goes to addresses of its "
                             "family only")
        addresses = b"".join(_packed_any(a) for a in self.addresses)
        if self.version == 2:
            if size == 16:
                raise ValueError("VRRPv2 is not sent over IPv6 (keepalived: version 3)")
            auth_type = AUTH_PASS if self.auth else AUTH_NONE
            head = _V2_HEAD.pack(0x21, self.vrid, self.priority, len(self.addresses), auth_type,
                                 _whole_seconds(self.interval), 0)
            body = addresses + (self.auth or bytes(AUTH_LEN))
            value = checksum(head + body)
        else:
            head = _V3_HEAD.pack(0x31, self.vrid, self.priority, len(self.addresses),
                                 _centiseconds(self.interval), 0)
            body = addresses
            length = len(head) + len(body)
            value = checksum(_pseudo_header(src_ip, dst_ip, length) + head + body)
        return head[:6] + struct.pack("!H", value) + body

    @classmethod
    def decode(cls, payload: bytes, src_ip: str, ttl: int, dst_ip: str | None = None,
               unicast: bool | None = None) -> Advert:
        """Check an advertisement as RFC 3768 §7.1 / RFC 5798 §7.1 ask; VrrpError if it fails.
        Its family is ``src_ip``'s; ``dst_ip`` is the group of that family unless given.

        ``unicast`` (the receiving instance has unicast peers, or not) applies keepalived's
        receive rules: the TTL/hop limit is checked only on a multicast instance, and an advert
        sent to the other kind of destination is dropped. None: the TTL is always checked and
        the destination not (pylvs's IPv4 path). Authentication and the advert interval are
        the receiving router's business: see Instance.
        """
        payload = bytes(payload)
        v6 = family(src_ip) == 6
        dst_ip = group(src_ip) if dst_ip is None else dst_ip
        if unicast is not None and ipaddress.ip_address(dst_ip).is_multicast == unicast:
            raise VrrpError(f"a {'multicast' if unicast else 'unicast'} advert (to {dst_ip}) "
                            f"on a {'unicast' if unicast else 'multicast'} instance")
        if ttl != VRRP_TTL and not unicast:
            raise VrrpError(f"{'hop limit' if v6 else 'TTL'} {ttl}, expected {VRRP_TTL}")
        if len(payload) < 8:
            raise VrrpError(f"truncated: {len(payload)} bytes, a header is 8")
        version, kind = payload[0] >> 4, payload[0] & 0x0F
        if version not in (2, 3):
            raise VrrpError(f"version {version}, expected 2 or 3")
        if version == 2 and v6:
            raise VrrpError("version 2 over IPv6, expected 3 (keepalived's IPv6 instances "
                            "speak VRRPv3)")
        if kind != ADVERTISEMENT:
            raise VrrpError(f"type {kind}, expected {ADVERTISEMENT} (advertisement)")
        count, size = payload[3], (16 if v6 else 4)
        expected = 8 + size * count + (AUTH_LEN if version == 2 else 0)
        if len(payload) < expected:
            raise VrrpError(f"truncated: {len(payload)} bytes, {count} addresses need {expected}")
        if len(payload) > expected:
            raise VrrpError(f"address count {count} does not match length {len(payload)}")
        kind_of = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
        addresses = tuple(str(kind_of(payload[i:i + size]))
                          for i in range(8, 8 + size * count, size))
        if version == 2:
            return cls._decode_v2(payload, addresses)
        if checksum(_pseudo_header(src_ip, dst_ip, len(payload)) + payload):
            raise VrrpError("bad VRRPv3 checksum")
        interval = (struct.unpack_from("!H", payload, 4)[0] & 0x0FFF) / 100
        return cls(3, payload[1], payload[2], interval, addresses)

    @classmethod
    def _decode_v2(cls, payload: bytes, addresses: tuple[str, ...]) -> Advert:
        if checksum(payload):
            raise VrrpError("bad VRRPv2 checksum")
        auth_type = payload[4]
        if auth_type not in (AUTH_NONE, AUTH_PASS):
            raise VrrpError(f"auth type {auth_type}, expected 0 (none) or 1 (password)")
        auth = payload[-AUTH_LEN:] if auth_type == AUTH_PASS else b""
        return cls(2, payload[1], payload[2], float(payload[5]), addresses, auth)


def ip_packet(payload: bytes, src_ip: str, dst_ip: str = VRRP_GROUP, ident: int = 0) -> bytes:
    """The IPv4 datagram keepalived sends: TOS 0xC0, TTL 255, protocol 112, no fragmenting."""
    head = _IP_HEAD.pack(0x45, VRRP_TOS, 20 + len(payload), ident & 0xFFFF, 0, VRRP_TTL,
                         IPPROTO_VRRP, 0, _packed(src_ip), _packed(dst_ip))
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def parse_packet(packet: bytes) -> tuple[Advert, str]:
    """An IPv4 datagram (no Ethernet header) to its advertisement and source address."""
    packet = bytes(packet)
    if len(packet) < 20:
        raise VrrpError(f"truncated: {len(packet)} bytes, an IP header is 20")
    vihl, _tos, total, _id, frag, ttl, proto, _sum, src, dst = _IP_HEAD.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or len(packet) < ihl:
        raise VrrpError("not an IPv4 header")
    if checksum(packet[:ihl]):
        raise VrrpError("bad IP header checksum")
    if proto != IPPROTO_VRRP:
        raise VrrpError(f"IP protocol {proto}, expected {IPPROTO_VRRP}")
    if frag & 0x3FFF:
        raise VrrpError("IP fragment")
    if not ihl <= total <= len(packet):
        raise VrrpError(f"IP total length {total} of a {len(packet)}-byte packet")
    source, destination = str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst))
    return Advert.decode(packet[ihl:total], source, ttl, destination), source


def ip6_packet(payload: bytes, src_ip: str, dst_ip: str = VRRP_GROUP6) -> bytes:
    """The IPv6 datagram keepalived's raw socket sends: traffic class 0xC0 (IPV6_TCLASS), flow
    label 0, next header 112, hop limit 255 (IPV6_MULTICAST_HOPS)."""
    head = _IP6_HEAD.pack(6 << 28 | VRRP_TOS << 20, len(payload), IPPROTO_VRRP, VRRP_TTL,
                          ipaddress.IPv6Address(src_ip).packed,
                          ipaddress.IPv6Address(dst_ip).packed)
    return head + bytes(payload)


def parse_packet6(packet: bytes, unicast: bool | None = None) -> tuple[Advert, str]:
    """An IPv6 datagram (no Ethernet header, no extension header) to its advertisement and
    source address: what a raw socket hands over (the payload, the hop limit, the
    destination), taken from the header."""
    packet = bytes(packet)
    if len(packet) < 40:
        raise VrrpError(f"truncated: {len(packet)} bytes, an IPv6 header is 40")
    first, length, next_header, hop_limit, src, dst = _IP6_HEAD.unpack_from(packet)
    if first >> 28 != 6:
        raise VrrpError("not an IPv6 header")
    if next_header != IPPROTO_VRRP:
        raise VrrpError(f"next header {next_header}, expected {IPPROTO_VRRP}")
    if 40 + length > len(packet):
        raise VrrpError(f"IPv6 payload length {length} of a {len(packet)}-byte packet")
    source = str(ipaddress.IPv6Address(src))
    advert = Advert.decode(packet[40:40 + length], source, hop_limit,
                           str(ipaddress.IPv6Address(dst)), unicast)
    return advert, source


def advert_frame(src_mac: bytes, packet: bytes) -> bytes:
    """Ethernet to 01:00:5e:00:00:12 (224.0.0.18), or for an IPv6 packet 33:33:00:00:00:12
    (ff02::12), from the interface's own MAC (no use_vmac)."""
    packet = bytes(packet)
    if packet[:1] and packet[0] >> 4 == 6:
        return GROUP_MAC6 + bytes(src_mac) + ETH_P_IPV6 + packet
    return GROUP_MAC + bytes(src_mac) + ETH_P_IP + packet


def garp_frame(mac: bytes, ip: str) -> bytes:
    """keepalived's gratuitous ARP: a broadcast request, sender = target = ip, tha all-ones."""
    mac = bytes(mac)
    arp = _ARP.pack(1, 0x0800, 6, 4, 1, mac, _packed(ip), BROADCAST_MAC, _packed(ip))
    return BROADCAST_MAC + mac + b"\x08\x06" + arp


def na_frame(mac: bytes, ip: str, router: bool = False) -> bytes:
    """keepalived's unsolicited Neighbor Advertisement (vrrp_ndisc.c, RFC 4861 §7.2.6): to
    33:33:00:00:00:01 and ff02::1 from the VIP itself, hop limit 255, Override set, Solicited
    clear, Router when the interface forwards IPv6 (keepalived reads its ``forwarding``
    sysctl), the target the VIP and the MAC in a target link-layer address option."""
    mac, target = bytes(mac), ipaddress.IPv6Address(ip).packed
    flags = NA_OVERRIDE | (NA_ROUTER if router else 0)
    body = _NA.pack(NEIGHBOR_ADVERT, 0, 0, flags, target, OPT_TARGET_LINKADDR, 1, mac)
    value = checksum(_pseudo_header(ip, ALL_NODES, len(body), IPPROTO_ICMPV6) + body)
    body = body[:2] + struct.pack("!H", value) + body[4:]
    head = _IP6_HEAD.pack(6 << 28, len(body), IPPROTO_ICMPV6, VRRP_TTL, target,
                          ipaddress.IPv6Address(ALL_NODES).packed)
    return ALL_NODES_MAC + mac + ETH_P_IPV6 + head + body


class State(StrEnum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class AddVips:
    pass


@dataclass(frozen=True)
class RemoveVips:
    pass


@dataclass(frozen=True)
class SendGarps:
    """``count`` gratuitous ARPs for each VIP (an IPv6 VIP: unsolicited Neighbor
    Advertisements, keepalived's counterpart)."""

    count: int


@dataclass(frozen=True)
class StateChange:
    old: State
    new: State


Action = SendAdvert | AddVips | RemoveVips | SendGarps | StateChange


@dataclass(frozen=True)
class InstanceConfig:
    """One vrrp_instance; ``source_ip`` is the primary address, sent from and compared on ties
    (IPv6: the interface's link-local address, as keepalived takes it). The VIPs are of its
    family; an IPv6 instance is VRRPv3."""

    vrid: int
    source_ip: str
    vips: tuple[str, ...] = ()
    priority: int = 100
    interval: float = 1.0
    version: int = 2
    initial_state: State = State.BACKUP
    preempt: bool = True
    preempt_delay: float = 0.0
    auth: bytes = b""
    garp_master_repeat: int = 5
    garp_master_delay: float = 5.0
    down_timer_adverts: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "vips", tuple(self.vips))
        object.__setattr__(self, "initial_state", State(self.initial_state))
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"virtual_router_id {self.vrid} is not 1..255")
        if not 1 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} is not 1..255")
        if self.initial_state not in (State.MASTER, State.BACKUP):
            raise ValueError("the initial state is MASTER or BACKUP")
        if self.interval <= 0:
            raise ValueError("the advert interval must be positive")
        if self.preempt_delay < 0 or self.garp_master_delay < 0 or self.garp_master_repeat < 0:
            raise ValueError("delays and repeat counts cannot be negative")
        if not 1 <= self.down_timer_adverts <= 100:
            raise ValueError("down_timer_adverts is 1..100")
        advert = Advert(self.version, self.vrid, self.priority, self.interval, self.vips,
                        self.auth)
        object.__setattr__(self, "vips", advert.addresses)
        if any(family(vip) != family(self.source_ip) for vip in self.vips):
            raise ValueError(f"the VIPs are of the source address's family ({self.source_ip})")
        if family(self.source_ip) == 6 and self.version != 3:
            raise ValueError("an IPv6 instance is VRRPv3 (keepalived's rule)")


def _ip_int(address: str) -> int:
    """keepalived's inet_inaddrcmp: addresses compared as unsigned numbers (IPv6 too)."""
    return int(ipaddress.ip_address(address))


class Instance:
    """The VRRP state machine of one instance (RFC 3768 §6.4, RFC 5798 §6.4, keepalived).

    ``start``, ``receive``, ``tick`` and ``stop`` return the actions to carry out, in order;
    ``tick`` must be called at ``next_deadline``. Dropped adverts are counted in ``counters``.
    """

    def __init__(self, config: InstanceConfig) -> None:
        self.config = config
        self.state = State.INIT
        self.counters: Counter[str] = Counter()
        self.priority = config.priority
        # keepalived clears nopreempt for an owner or initial MASTER, preempt_delay for the latter
        initial_master = config.initial_state == State.MASTER
        self.preempt = config.preempt or initial_master or config.priority == OWNER_PRIORITY
        self.preempt_delay = config.preempt_delay if config.preempt and not initial_master else 0
        self.master_interval = config.interval
        self._auth = _pad_auth(config.auth)
        self._down_at: float | None = None
        self._advert_at: float | None = None
        self._garps_at: list[float] = []
        self._preempt_until: float | None = None
        self.wants_master = False
        """keepalived's wantstate MASTER: the down timer ran out while ``gate`` said no."""
        self.gate: Callable[[Instance], bool] = lambda _router: True
        """Asked before a down timer makes this router MASTER (a sync group's say)."""

    @property
    def skew_time(self) -> float:
        if self.config.version == 2:
            return (256 - self.priority) / 256
        return (256 - self.priority) * self.master_interval / 256

    @property
    def master_down_interval(self) -> float:
        return self.config.down_timer_adverts * self.master_interval + self.skew_time

    @property
    def next_deadline(self) -> float:
        times = [t for t in (self._down_at, self._advert_at) if t is not None]
        return min(times + self._garps_at[:1], default=math.inf)

    def advert(self, priority: int) -> Advert:
        """What a SendAdvert(priority) sends: the configured interval, VIPs and password."""
        return Advert(self.config.version, self.config.vrid, priority, self.config.interval,
                      self.config.vips, self._auth)

    def start(self, now: float, fault: bool = False, priority: int | None = None
              ) -> list[Action]:
        """The owner (255) takes over at once; everyone else waits a Master_Down_Interval;
        ``fault``: something tracked is failing (or a weight-0 script has not run yet), so the
        instance starts in FAULT, as keepalived's "Entering FAULT STATE (init)"."""
        if self.state not in (State.INIT, State.STOP):
            raise RuntimeError(f"VRRP instance already running ({self.state})")
        self.state = State.INIT
        self.priority = self.config.priority if priority is None else priority
        if self.preempt_delay:
            self._preempt_until = now + self.preempt_delay
        if fault:
            self.state = State.FAULT
            return [StateChange(State.INIT, State.FAULT)]
        if self.priority == OWNER_PRIORITY:
            return self._become_master(now)
        return self._become_backup(now)

    def set_priority(self, priority: int, now: float) -> list[Action]:
        """A new effective priority (keepalived's vrrp_set_effective_priority): the next adverts
        carry it, and a backup's running down timer moves by the change in its length."""
        if self.config.priority == OWNER_PRIORITY or priority == self.priority:
            return []
        old_interval = self.master_down_interval
        self.priority = priority
        if self.state == State.BACKUP and self._down_at is not None:
            self._down_at += self.master_down_interval - old_interval
        return []

    def fault(self, now: float) -> list[Action]:
        """Into FAULT: a master says priority 0 (twice, as keepalived's leave_master does:
        once for FAULT and once as it restores the interface) and drops its VIPs."""
        old = self.state
        if old in (State.FAULT, State.STOP):
            return []
        actions: list[Action] = []
        if old == State.MASTER:
            self.counters["priority_zero_sent"] += 2
            self.counters["released_master"] += 1
            actions += [SendAdvert(STOP_PRIORITY), SendAdvert(STOP_PRIORITY), RemoveVips()]
        self.state = State.FAULT
        self.wants_master = False
        self._clear_timers()
        return [*actions, StateChange(old, State.FAULT)]

    def recover(self, now: float) -> list[Action]:
        """Out of FAULT (keepalived's try_up_instance): to BACKUP with a fresh
        Master_Down_Interval; the owner goes MASTER at once."""
        if self.state != State.FAULT:
            return []
        if self.config.priority == OWNER_PRIORITY:
            return self._become_master(now)
        return self._become_backup(now)

    def force_master(self, now: float) -> list[Action]:
        """A sync group's member became MASTER: this one follows (keepalived's
        vrrp_sync_master)."""
        if self.state != State.BACKUP:
            return []
        return self._become_master(now)

    def force_backup(self, now: float) -> list[Action]:
        """A sync group's member went BACKUP (vrrp_sync_backup): a master leaves silently."""
        if self.state != State.MASTER:
            return []
        return self._leave_master(now)

    def stop(self, now: float) -> list[Action]:
        """A master says priority 0 so that a backup takes over after Skew_Time, not 3 adverts."""
        old = self.state
        actions: list[Action] = []
        if old == State.MASTER:
            self.counters["priority_zero_sent"] += 1
            actions += [SendAdvert(STOP_PRIORITY), RemoveVips()]
        if old != State.STOP:
            actions.append(StateChange(old, State.STOP))
        self.state = State.STOP
        self._clear_timers()
        return actions

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.state == State.BACKUP and self._down_at is not None and self._down_at <= now:
            if self.gate(self):
                actions += self._become_master(now)
            else:  # keepalived's vrrp_sync_can_goto_master: wait for the others, a new timer
                self.wants_master = True
                self._down_at = now + self.master_down_interval
        if self.state != State.MASTER:
            return actions
        while self._garps_at and self._garps_at[0] <= now:
            self._garps_at.pop(0)
            actions.append(SendGarps(self.config.garp_master_repeat))
        if self._advert_at is not None and self._advert_at <= now:
            self._advert_at = now + self.config.interval
            actions.append(SendAdvert(self.priority))
        return actions

    def receive(self, advert: Advert, src_ip: str, now: float) -> list[Action]:
        if self.state not in (State.BACKUP, State.MASTER) or not self._accept(advert, src_ip):
            return []
        self.counters["adverts_received"] += 1
        if advert.priority == STOP_PRIORITY:
            self.counters["priority_zero_received"] += 1
        if self.state == State.BACKUP:
            return self._backup_receive(advert, now)
        return self._master_receive(advert, src_ip, now)

    def _accept(self, advert: Advert, src_ip: str) -> bool:
        """RFC 3768 §7.1 / RFC 5798 §7.1 checks that need this instance's configuration."""
        config = self.config
        if advert.vrid != config.vrid:
            reason = "vrid_mismatch"
        elif ipaddress.ip_address(src_ip) == ipaddress.ip_address(config.source_ip):
            reason = "own_advert"  # a packet socket also sees what we send
        elif advert.version != config.version:
            reason = "version_mismatch"
        elif config.version == 2 and advert.auth != self._auth:
            reason = "auth_mismatch"
        elif config.version == 2 and advert.interval != config.interval:
            reason = "interval_mismatch"
        elif len(advert.addresses) != len(config.vips) or set(config.vips) - set(advert.addresses):
            reason = "address_mismatch"
        else:
            return True
        self.counters[reason] += 1
        return False

    def _backup_receive(self, advert: Advert, now: float) -> list[Action]:
        if advert.priority == STOP_PRIORITY:
            self._down_at = now + self.skew_time
            return []
        not_lower = advert.priority >= self.priority
        delaying = self.preempt_delay > 0 and (self._preempt_until is None
                                               or self._preempt_until > now)
        if not (not_lower or not self.preempt or delaying):
            self.counters["lower_priority_ignored"] += 1
            return []
        self.wants_master = False
        if self.config.version == 3:
            self.master_interval = advert.interval
        self._down_at = now + self.master_down_interval
        if self.preempt_delay:
            if not_lower:
                self._preempt_until = None
            elif self._preempt_until is None:
                self._preempt_until = now + self.preempt_delay
        return []

    def _master_receive(self, advert: Advert, src_ip: str, now: float) -> list[Action]:
        if advert.priority == STOP_PRIORITY:
            self._advert_at = now + self.config.interval
            return [SendAdvert(self.priority)]
        if advert.priority == self.priority == OWNER_PRIORITY:
            self.counters["owner_conflict"] += 1  # keepalived: a config error; it yields to 254
            self.priority = OWNER_PRIORITY - 1
        if (advert.priority, _ip_int(src_ip)) > (self.priority, _ip_int(self.config.source_ip)):
            if self.config.version == 3:
                self.master_interval = advert.interval
            return self._leave_master(now)
        # split brain healing: say so at once and refresh ARP caches ("forcing new election")
        self.counters["lower_priority_received"] += 1
        self._advert_at = now + self.config.interval
        return [SendAdvert(self.priority), *self._garp_burst(now)]

    def _become_master(self, now: float) -> list[Action]:
        old = self.state
        self.state = State.MASTER
        self.wants_master = False
        self.master_interval = self.config.interval
        self._down_at = None
        self._advert_at = now + self.config.interval
        self.counters["became_master"] += 1
        return [AddVips(), *self._garp_burst(now), StateChange(old, State.MASTER),
                SendAdvert(self.priority)]

    def _garp_burst(self, now: float) -> list[Action]:
        """garp_master_repeat now, and as many again garp_master_delay seconds later."""
        if not self.config.garp_master_repeat:
            return []
        if self.config.garp_master_delay:
            bisect.insort(self._garps_at, now + self.config.garp_master_delay)
        return [SendGarps(self.config.garp_master_repeat)]

    def _leave_master(self, now: float) -> list[Action]:
        """Pre-empted: the VIPs go, silently (priority 0 is for stopping only)."""
        self.counters["released_master"] += 1
        self._clear_timers()
        self.state = State.BACKUP
        self._down_at = now + self.master_down_interval
        return [RemoveVips(), StateChange(State.MASTER, State.BACKUP)]

    def _become_backup(self, now: float) -> list[Action]:
        old = self.state
        self.state = State.BACKUP
        self.wants_master = False
        self.master_interval = self.config.interval
        self._down_at = now + self.master_down_interval
        return [StateChange(old, State.BACKUP)]

    def _clear_timers(self) -> None:
        self._down_at = self._advert_at = self._preempt_until = None
        self._garps_at.clear()

"""The connection table: IPVS's TCP/UDP states, transition tables, timeouts and expiry.

A connection binds (protocol, client, virtual address) to one real server. TCP connections move
through IPVS's state tables (reference §3.2) as data: ``TRANSITIONS[direction][event][state]``.
DR and TUN connections carry IPVS's NOOUTPUT flag and so use the INPUT-ONLY table; the first
reply seen (NAT only) clears it. Every packet re-arms the timer with the new state's timeout.
Active/inactive counting follows Linux ≥ 4.8: ESTABLISHED, SYN_SENT, SYN_RECV and SYNACK are
active. Time is passed in by the caller (seconds, monotonic), so nothing here reads a clock.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pylvs.core.model import (
    AF_INET,
    AF_INET6,
    PROTO_NAMES,
    RealServer,
    VirtualService,
    endpoint_text,
    int_to_ip,
)
from pylvs.core.outbox import Outbox

if TYPE_CHECKING:
    from pylvs.core.forwarding import Forwarder, NextHop

NONE, ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, \
    LISTEN, SYNACK = range(11)
UDP_STATE = 11

STATE_NAMES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK", "UDP")
ACTIVE_STATES = frozenset({ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK})

DEFAULT_TIMEOUTS = {
    NONE: 2, ESTABLISHED: 900, SYN_SENT: 120, SYN_RECV: 60, FIN_WAIT: 120, TIME_WAIT: 120,
    CLOSE: 10, CLOSE_WAIT: 60, LAST_ACK: 30, LISTEN: 120, SYNACK: 120, UDP_STATE: 300,
}
NEW_CONNECTION_TIMEOUT = 3

INPUT, OUTPUT, INPUT_ONLY = 0, 1, 2
EV_SYN, EV_FIN, EV_ACK, EV_RST = range(4)

_COLUMNS = ("NO", "ES", "SS", "SR", "FW", "TW", "CL", "CW", "LA", "LI", "SA")
_ROW_STATES = dict(zip(_COLUMNS, range(11), strict=True))


def _table(*rows: str) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(_ROW_STATES[cell] for cell in row.split()) for row in rows)


#                 NO ES SS SR FW TW CL CW LA LI SA
TRANSITIONS = (
    _table("SR ES ES SR SR SR SR SR SR SR SR",   # INPUT syn
           "CL CW SS TW TW TW CL CW LA LI TW",   # INPUT fin
           "ES ES SS ES FW TW CL CW CL LI ES",   # INPUT ack
           "CL CL CL SR CL CL CL CL LA LI SR"),  # INPUT rst
    _table("SS ES SS SR SS SS SS SS SS LI SR",   # OUTPUT syn
           "TW FW SS TW FW TW CL TW LA LI TW",   # OUTPUT fin
           "ES ES SS ES FW TW CL CW LA ES ES",   # OUTPUT ack
           "CL CL SS CL CL TW CL CL CL CL CL"),  # OUTPUT rst
    _table("SR ES ES SR SR SR SR SR SR SR SR",   # INPUT-ONLY syn
           "CL FW SS TW FW TW CL CW LA LI TW",   # INPUT-ONLY fin
           "ES ES SS ES FW TW CL CW CL LI ES",   # INPUT-ONLY ack
           "CL CL CL SR CL CL CL CL LA LI CL"),  # INPUT-ONLY rst
)
SECURE_TRANSITIONS = (
    _table("SR ES ES SR SR SR SR SR SR SR SA",   # INPUT syn
           "CL CW SS TW TW TW CL CW LA LI SA",   # INPUT fin
           "ES ES SS SR FW TW CL CW CL LI SA",   # INPUT ack
           "CL CL CL SR CL CL CL CL LA LI CL"),  # INPUT rst
    _table("SS ES SS SA SS SS SS SS SS LI SA",   # OUTPUT syn
           "TW FW SS TW FW TW CL TW LA LI TW",   # OUTPUT fin
           "ES ES SS ES FW TW CL CW LA ES ES",   # OUTPUT ack
           "CL CL SS CL CL TW CL CL CL CL CL"),  # OUTPUT rst
    _table("SA ES ES SR SA SA SA SA SA SA SA",   # INPUT-ONLY syn
           "CL FW SS TW FW TW CL CW LA LI TW",   # INPUT-ONLY fin
           "ES ES SS ES FW TW CL CW CL LI ES",   # INPUT-ONLY ack
           "CL CL CL SR CL CL CL CL LA LI CL"),  # INPUT-ONLY rst
)
"""IPVS's tcp_states_dos, used while secure_tcp is on (pylvs.core.defense)."""

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


def tcp_event(flags: int) -> int | None:
    """IPVS's tcp_state_idx: RST wins, then SYN, FIN, ACK; None for none of them."""
    if flags & _RST:
        return EV_RST
    if flags & _SYN:
        return EV_SYN
    if flags & _FIN:
        return EV_FIN
    if flags & _ACK:
        return EV_ACK
    return None


def next_tcp_state(direction: int, flags: int, state: int, secure: bool = False) -> int:
    event = tcp_event(flags)
    if event is None:
        return CLOSE
    return (SECURE_TRANSITIONS if secure else TRANSITIONS)[direction][event][state]


class Timeouts:
    """The per-state timeouts; ipvsadm --set changes only tcp, tcpfin and udp."""

    __slots__ = ("by_state",)

    def __init__(self) -> None:
        self.by_state = dict(DEFAULT_TIMEOUTS)

    def set(self, tcp: int = 0, tcpfin: int = 0, udp: int = 0) -> None:
        if tcp:
            self.by_state[ESTABLISHED] = tcp
        if tcpfin:
            self.by_state[FIN_WAIT] = tcpfin
        if udp:
            self.by_state[UDP_STATE] = udp

    def triple(self) -> tuple[int, int, int]:
        s = self.by_state
        return s[ESTABLISHED], s[FIN_WAIT], s[UDP_STATE]


KEY = struct.Struct("!IIHH")
KEY6 = struct.Struct("!QQQQHH")
FlowTuple = tuple[int, int, int, int, int]
"""(proto, client address, client port, vip, vport)."""
_LOW64 = (1 << 64) - 1


def pack_key(caddr: int, cport: int, vaddr: int, vport: int, af: int = AF_INET) -> bytes:
    """The bytes a frame carries from its IP source address on: saddr, daddr, sport, dport.
    12 for IPv4; 36 for IPv6 (the addresses are 16 bytes each, and the ports follow them
    directly when no extension header lies between)."""
    if af == AF_INET:
        return KEY.pack(caddr, vaddr, cport, vport)
    return KEY6.pack(caddr >> 64, caddr & _LOW64, vaddr >> 64, vaddr & _LOW64, cport, vport)


def unpack_key(key: bytes) -> tuple[int, int, int, int]:
    """``pack_key``'s inverse: (saddr, daddr, sport, dport), of either family."""
    if len(key) == 12:
        return KEY.unpack(key)
    shi, slo, dhi, dlo, sport, dport = KEY6.unpack(key)
    return shi << 64 | slo, dhi << 64 | dlo, sport, dport


class Connection:
    """One tracked connection. Its key is the 12 bytes of the client's frames at the IP source
    address (saddr daddr sport dport), so a frame's own bytes find it and it costs little; an
    IPv6 connection's is 36 bytes of the same (``pack_key``)."""

    __slots__ = ("proto", "key12", "server", "service", "state", "expires", "active",
                 "nooutput", "forwarder", "return_hop", "template", "in_pkts", "synced_state",
                 "offloaded", "rewrite", "dport", "fwmark")

    def __init__(self, proto: int, key12: bytes, service: VirtualService, server: RealServer,
                 expires: float, dport: int | None = None) -> None:
        self.proto = proto
        self.key12 = key12
        self.service = service
        self.server = server
        self.dport = server.port if dport is None else dport
        """The real server's port this connection goes to (IPVS's cp->dport): the server's,
        or the packet's own where the server's is 0 (fwmark and port-0 services)."""
        self.fwmark = service.fwmark
        """The mark its first packet had (IPVS's cp->fwmark): its service's, or 0."""
        self.forwarder: Forwarder = server.forwarder
        """The method bound when the connection is made, as ip_vs_bind_xmit (config and
        ipvsadm take only registered names)."""
        self.state = NONE if proto == 6 else UDP_STATE
        self.expires = expires
        self.active = False
        self.nooutput = not self.forwarder.masquerades
        self.return_hop: NextHop | None = None
        self.template: Template | None = None
        self.in_pkts = 0
        """Packets from the client (IPVS's cp->in_pkts: the sync daemon's and drop_entry's)."""
        self.synced_state = NONE
        """The state last sent to the backups (IPVS's cp->old_state)."""
        self.offloaded = False
        """Forwarded by the XDP fast path (pylvs.core.fastpath) while it stays established."""
        self.rewrite: object = None
        """What the forwarder worked out once for this connection's frames (NAT's checksum
        deltas, say): its own business."""

    @property
    def af(self) -> int:
        """The connection's family: its service's and its client's (IPVS's cp->af)."""
        return AF_INET if len(self.key12) == 12 else AF_INET6

    @property
    def caddr(self) -> int:
        return unpack_key(self.key12)[0]

    @property
    def vaddr(self) -> int:
        return unpack_key(self.key12)[1]

    @property
    def cport(self) -> int:
        return unpack_key(self.key12)[2]

    @property
    def vport(self) -> int:
        return unpack_key(self.key12)[3]

    @property
    def key(self) -> FlowTuple:
        caddr, vaddr, cport, vport = unpack_key(self.key12)
        return self.proto, caddr, cport, vaddr, vport

    @property
    def reply_key12(self) -> bytes:
        """A NAT reply's key: real server, client, its port, client port (NAT keeps the
        family, so the real server's is the connection's)."""
        caddr, _, cport, _ = unpack_key(self.key12)
        return pack_key(self.server.ip, self.dport, caddr, cport, self.af)

    def row(self, now: float) -> str:
        """One line of ipvsadm -Lnc: "%-3s %-6s %-11s %-18s %-18s %s" (IPv6 as [addr]:port,
        never cut: the columns overflow, as ipvsadm's print_conn)."""
        caddr, vaddr, cport, vport = unpack_key(self.key12)
        af = self.af
        left = max(0, int(self.expires - now))
        expire = f"{left // 60:02d}:{left % 60:02d}"
        return "%-3s %-6s %-11s %-18s %-18s %s" % (
            PROTO_NAMES[self.proto], expire, STATE_NAMES[self.state],
            endpoint_text(int_to_ip(caddr, af), cport, af),
            endpoint_text(int_to_ip(vaddr, af), vport, af),
            endpoint_text(self.server.address, self.dport, self.server.af))


TemplateKey = tuple[int, ...]
"""(proto, client address & persistence netmask, vip, vport), AF_INET6 appended for IPv6.
A fwmark service's is (0, client net, mark, 0): IPVS's <IPPROTO_IP, net, 0, mark, 0, daddr, 0>,
the mark where the address goes (for IPv6 in the address's first 32 bits, as the kernel's
``.ip = htonl(fwmark)`` puts it); a port-0 service's has vport 0."""


class Template:
    """A persistence template (ip_vs_sched_persist): the client's network keeps its server.

    It controls the connections made through it and cannot expire while it controls one: its
    timer is re-armed for 60 s instead. State NONE, ASSURED once a controlled connection is
    established (TCP) or answered (UDP)."""

    __slots__ = ("key", "proto", "caddr", "vaddr", "vport", "service", "server", "expires",
                 "controls", "assured", "dport")

    def __init__(self, key: TemplateKey, service: VirtualService, server: RealServer,
                 expires: float) -> None:
        self.key = key
        self.proto, self.caddr, self.vaddr, self.vport = key[:4]
        self.service, self.server, self.expires = service, server, expires
        self.dport = server.port if self.vport else 0
        """<…, daddr, dport>: the server's port, 0 for a port-0 or fwmark service's."""
        self.controls = 0
        self.assured = False

    def row(self, now: float) -> str:
        left = max(0, int(self.expires - now))
        af = self.service.af
        return "%-3s %-6s %-11s %-18s %-18s %s" % (
            PROTO_NAMES[self.proto], f"{left // 60:02d}:{left % 60:02d}",
            "ASSURED" if self.assured else "NONE", endpoint_text(int_to_ip(self.caddr, af), 0, af),
            endpoint_text(int_to_ip(self.vaddr, af), self.vport, af),
            endpoint_text(self.server.address, self.dport, self.server.af))


CONTROLLING_REARM = 60


class ConnectionTable:
    """Connections by (proto, client ip, client port, vip, vport), with IPVS's counting rules.
    What the shell must hear of (offers to the fast path, withdrawals, connections to sync) goes
    into ``outbox`` (the director's own, or a fresh one)."""

    def __init__(self, timeouts: Timeouts | None = None, outbox: Outbox | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self.by_proto: dict[int, dict[bytes, Connection]] = {6: {}, 17: {}}
        self.replies: dict[int, dict[bytes, Connection]] = {6: {}, 17: {}}
        self.templates: dict[TemplateKey, Template] = {}
        self.max_connections = 0
        """0: no bound; else new connections beyond it are refused (IPVS's defence)."""
        self.outbox = outbox if outbox is not None else Outbox()
        """Offers to the fast path and withdrawals; connections due to the sync daemon."""
        self.secure = False
        """TCP moves by IPVS's secure table (secure_tcp on: pylvs.core.defense)."""

    def __len__(self) -> int:
        by_proto = self.by_proto
        return len(by_proto[6]) + len(by_proto[17])

    def __iter__(self) -> Iterator[Connection]:
        for entries in self.by_proto.values():
            yield from list(entries.values())

    def get(self, key: FlowTuple, af: int = AF_INET) -> Connection | None:
        proto, caddr, cport, vaddr, vport = key
        entries = self.by_proto.get(proto)
        return None if entries is None else entries.get(pack_key(caddr, cport, vaddr, vport, af))

    def get_reply(self, key: FlowTuple, af: int = AF_INET) -> Connection | None:
        """By a reply's (proto, real server, its port, client, client port)."""
        proto, raddr, rport, caddr, cport = key
        replies = self.replies.get(proto)
        return None if replies is None else replies.get(pack_key(raddr, rport, caddr, cport, af))

    def by_frame(self, proto: int, key: bytes) -> tuple[Connection, bool] | None:
        """A frame's connection by the frame's own key bytes (``pack_key``'s): a client's
        (True: inbound), or a NAT reply's that has its way back (False)."""
        entries = self.by_proto.get(proto)
        if entries is None:
            return None
        conn = entries.get(key)
        if conn is not None:
            return conn, True
        conn = self.replies[proto].get(key)
        if conn is None or conn.return_hop is None:
            return None
        return conn, False

    def full(self) -> bool:
        limit = self.max_connections
        return bool(limit) and len(self.by_proto[6]) + len(self.by_proto[17]) >= limit

    def create(self, key: FlowTuple, service: VirtualService, server: RealServer,
               now: float, dport: int | None = None) -> Connection:
        """ip_vs_conn_new: state NONE, a 3 s timer, counted inactive until a state says else;
        to the server's port, or ``dport`` (``Connection.dport``)."""
        proto, caddr, cport, vaddr, vport = key
        conn = Connection(proto, pack_key(caddr, cport, vaddr, vport, service.af), service, server,
                          now + NEW_CONNECTION_TIMEOUT, dport)
        server.bind(active=False)
        server.stats.conns += 1
        service.stats.conns += 1
        self.by_proto[proto][conn.key12] = conn
        if conn.forwarder.masquerades:
            self.replies[proto][conn.reply_key12] = conn
        return conn

    def get_template(self, key: TemplateKey) -> Template | None:
        return self.templates.get(key)

    def create_template(self, key: TemplateKey, service: VirtualService, server: RealServer,
                        now: float) -> Template:
        template = Template(key, service, server, now + service.persistence_timeout)
        server.persistconns += 1
        self.templates[key] = template
        return template

    def remove_template(self, template: Template) -> None:
        if self.templates.get(template.key) is template:
            del self.templates[template.key]
            template.server.persistconns -= 1

    def attach(self, conn: Connection, template: Template) -> None:
        """ip_vs_control_add; using the template re-arms it, as ip_vs_conn_put does."""
        conn.template = template
        template.controls += 1

    def count_in(self, conn: Connection) -> None:
        """After update() and in_pkts of a client's packet while a sync daemon sends
        (``outbox.syncing``): the connection into the outbox when the kernel's rule says it is
        due."""
        outbox = self.outbox
        due = outbox.sync_due
        state = conn.state if conn.proto == 6 else 0  # UDP travels as IPVS's state 0
        if due is not None and due(conn.proto, conn.synced_state, state, conn.in_pkts):
            conn.synced_state = state
            outbox.due.append(conn)

    def update(self, conn: Connection, direction: int, tcp_flags: int, now: float) -> None:
        """Run the state machine for one packet and re-arm the timer."""
        if conn.proto != 6:
            conn.expires = now + self.timeouts.by_state[UDP_STATE]
            if direction == OUTPUT and conn.template is not None:
                conn.template.assured = True
            if self.outbox.offered is not None and not conn.offloaded:
                self._offer(conn)
            return
        if conn.nooutput:
            if direction == OUTPUT:
                conn.nooutput = False
            else:
                direction = INPUT_ONLY
        state = next_tcp_state(direction, tcp_flags, conn.state, self.secure)
        if state != conn.state:
            active = state in ACTIVE_STATES
            conn.server.set_active(conn.active, active)
            conn.active = active
            conn.state = state
            if state == ESTABLISHED and conn.template is not None:
                conn.template.assured = True
            if conn.offloaded:
                self.outbox.withdraw(conn)
        conn.expires = now + self.timeouts.by_state[state]
        if state == ESTABLISHED and not conn.offloaded and self.outbox.offered is not None:
            self._offer(conn)

    def _offer(self, conn: Connection) -> None:
        """Ready for the fast path: ESTABLISHED TCP (UDP at once) whose method has all it
        needs (NAT: the way back to the client)."""
        if conn.forwarder.masquerades and conn.return_hop is None:
            return
        self.outbox.offer(conn)

    def remove(self, conn: Connection) -> None:
        if conn.offloaded:
            self.outbox.withdraw(conn)
        del self.by_proto[conn.proto][conn.key12]
        if conn.forwarder.masquerades:
            replies = self.replies[conn.proto]
            if replies.get(conn.reply_key12) is conn:
                del replies[conn.reply_key12]
        if conn.template is not None:
            conn.template.controls -= 1
        conn.server.unbind(conn.active)

    def expire(self, now: float) -> int:
        """Drop every connection whose timer ran out; returns how many."""
        dead = [c for entries in self.by_proto.values() for c in entries.values()
                if c.expires <= now]
        for conn in dead:
            self.remove(conn)
        gone = 0
        for template in [t for t in self.templates.values() if t.expires <= now]:
            if template.controls > 0:
                template.expires = now + CONTROLLING_REARM
            else:
                self.remove_template(template)
                gone += 1
        return len(dead) + gone

    def listing(self) -> list[Connection | Template]:
        """What ipvsadm -Lnc lists: connections and persistence templates."""
        return [*self, *self.templates.values()]

    def rows(self, now: float) -> list[str]:
        return [entry.row(now) for entry in self.listing()]

"""The IPVS connection synchronization protocol: its messages, and when a connection is sent.

A master multicasts the state of its connections to 224.0.0.81:8848 (TTL 1), or to the group
it was given (an IPv6 one such as ``ff02::8848`` too); a backup creates them, flagged SYNC, so
that it can take over established connections (reference §7). This module owns the wire format,
the master's per-packet decision and the daemon's sizes; it is sans-IO: no sockets, no clock.

Wire format (Linux ``net/netfilter/ipvs/ip_vs_sync.c``): :func:`encode` writes protocol version 1,
the kernel default (``sync_version=1``), as ``ip_vs_sync_conn`` does: an IPv4 connection in a
36-byte ``struct ip_vs_sync_v4`` (type 0), an IPv6 one in a 72-byte ``struct ip_vs_sync_v6``
(type ``STYPE_F_INET6``, the same fields with the three addresses 16 bytes each), both families
in one message, whatever the family of the transport. :func:`decode` reads versions 1 and 0, as
a kernel backup does, and follows its ``ip_vs_process_message`` checks: a message whose size
field is not the datagram's length, an entry that runs past it, an entry shorter than its
type's fixed part (an IPv6 one under 72 bytes, an IPv4 one under 36), an unknown entry type, or
a malformed option, drops the whole message (:class:`SyncError`); an entry the backup would not
create is left out and decoding goes on: entries with an unknown mandatory option or
persistence-engine data (pylvs has no persistence engines), non-templates with a protocol other
than TCP/UDP or a state out of that protocol's range. Bytes after the last announced entry are
ignored, as the kernel does. A backup with a nonzero SyncID ignores messages with another
SyncID: :func:`decode` returns ``[]``.

Flags and timeouts are carried as on the wire: ``flags`` are the master's (apply
:func:`backup_flags` for what a backup keeps), a ``timeout`` of 0 (always so in version 0) means
the state's default timeout. UDP connections travel in IPVS's state 0 (``IP_VS_UDP_S_NORMAL``).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pylvs.core.model import AF_INET, AF_INET6, inet_ntop6

SYNC_GROUP = "224.0.0.81"  # IP_VS_SYNC_GROUP 0xe0000051
SYNC_PORT = 8848  # IP_VS_SYNC_PORT; with sync_ports=N the master uses 8848..8848+N-1
SYNC_TTL = 1  # default mcast_ttl
SYNC_PROTO_VER = 1
MAX_CONNS_PER_MESSAGE = 255  # nr_conns is a u8
HEADROOM = {AF_INET: 20 + 8, AF_INET6: 40 + 8}
"""start_sync_thread's hlen: the IP and UDP headers in front of a message, by the transport's
family."""
DEFAULT_MTU_BUDGET = 1500 - HEADROOM[AF_INET]  # a master's sync_maxlen over IPv4: 1472

IPPROTO_TCP, IPPROTO_UDP = 6, 17

# TCP states: include/net/ip_vs.h (enum IP_VS_TCP_S_*), the numbers pylvs.core.conntrack uses too
(IP_VS_TCP_S_NONE, IP_VS_TCP_S_ESTABLISHED, IP_VS_TCP_S_SYN_SENT, IP_VS_TCP_S_SYN_RECV,
 IP_VS_TCP_S_FIN_WAIT, IP_VS_TCP_S_TIME_WAIT, IP_VS_TCP_S_CLOSE, IP_VS_TCP_S_CLOSE_WAIT,
 IP_VS_TCP_S_LAST_ACK, IP_VS_TCP_S_LISTEN, IP_VS_TCP_S_SYNACK, IP_VS_TCP_S_LAST) = range(12)
IP_VS_UDP_S_NORMAL, IP_VS_UDP_S_LAST = 0, 1  # include/net/ip_vs.h: UDP has one state

# Connection flags: include/uapi/linux/ip_vs.h ("only flags 0..15 are sent to backup server")
IP_VS_CONN_F_FWD_MASK = 0x0007
IP_VS_CONN_F_MASQ = 0x0000
IP_VS_CONN_F_LOCALNODE = 0x0001
IP_VS_CONN_F_TUNNEL = 0x0002
IP_VS_CONN_F_DROUTE = 0x0003
IP_VS_CONN_F_BYPASS = 0x0004
IP_VS_CONN_F_SYNC = 0x0020
IP_VS_CONN_F_HASHED = 0x0040
IP_VS_CONN_F_NOOUTPUT = 0x0080
IP_VS_CONN_F_INACTIVE = 0x0100
IP_VS_CONN_F_OUT_SEQ = 0x0200
IP_VS_CONN_F_IN_SEQ = 0x0400
IP_VS_CONN_F_SEQ_MASK = 0x0600
IP_VS_CONN_F_NO_CPORT = 0x0800
IP_VS_CONN_F_TEMPLATE = 0x1000
IP_VS_CONN_F_ONE_PACKET = 0x2000
IP_VS_CONN_F_BACKUP_MASK = (IP_VS_CONN_F_FWD_MASK | IP_VS_CONN_F_NOOUTPUT | IP_VS_CONN_F_INACTIVE
                            | IP_VS_CONN_F_SEQ_MASK | IP_VS_CONN_F_NO_CPORT
                            | IP_VS_CONN_F_TEMPLATE)

# Option (TLV) types after a version 1 entry: ip_vs_sync.c. IPVS_OPT_PARAM is used only as a
# bit: a type with IPVS_OPT_F_PARAM set is optional, an unknown one without it is mandatory.
IPVS_OPT_SEQ_DATA, IPVS_OPT_PE_DATA, IPVS_OPT_PE_NAME, IPVS_OPT_PARAM = 1, 2, 3, 7
IPVS_OPT_F_PARAM = 1 << (IPVS_OPT_PARAM - 1)
IP_VS_PEDATA_MAXLEN, IP_VS_PENAME_MAXLEN = 255, 16
SEQ_OPTIONS_SIZE = 24  # struct ip_vs_sync_conn_options: in_seq, out_seq, 3 × u32 each

STYPE_F_INET6 = 0x01
SVER_SHIFT, SVER_MASK = 12, 0x0FFF

HEADER_V0 = struct.Struct("!BBH")  # nr_conns syncid size
HEADER_V1 = struct.Struct("!BBHBbH")  # reserved(0) syncid size nr_conns version spare
# reserved protocol cport vport dport caddr vaddr daddr flags state
ENTRY_V0 = struct.Struct("!BBHHH4s4s4sHH")
# type protocol ver_size flags state cport vport dport fwmark timeout caddr vaddr daddr:
# struct ip_vs_sync_v4 (36 bytes) and struct ip_vs_sync_v6 (72), in6_addr for the addresses
ENTRY_V4 = struct.Struct("!BBHIHHHHII4s4s4s")
ENTRY_V6 = struct.Struct("!BBHIHHHHII16s16s16s")
ENTRY_V6_SIZE = ENTRY_V6.size
ENTRIES = {AF_INET: ENTRY_V4, AF_INET6: ENTRY_V6}
TYPES = {AF_INET: 0, AF_INET6: STYPE_F_INET6}
"""An entry's type byte by its family: ip_vs_sync_conn's ``cp->af == AF_INET6 ?
STYPE_F_INET6 : 0``."""

_NUM_STATES = {IPPROTO_TCP: IP_VS_TCP_S_LAST, IPPROTO_UDP: IP_VS_UDP_S_LAST}
_OPTION_MAXLEN = {IPVS_OPT_SEQ_DATA: SEQ_OPTIONS_SIZE, IPVS_OPT_PE_DATA: IP_VS_PEDATA_MAXLEN,
                  IPVS_OPT_PE_NAME: IP_VS_PENAME_MAXLEN}


class SyncError(ValueError):
    """A malformed sync message: a kernel backup drops all of it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SyncConn:
    """One connection (or persistence template) as a sync message carries it."""

    protocol: int
    caddr: str
    cport: int
    vaddr: str
    vport: int
    daddr: str
    dport: int
    state: int
    flags: int
    timeout: int
    """Seconds left on the master's timer; 0: the state's default."""
    fwmark: int = 0

    @property
    def af(self) -> int:
        """The entry's family (its type's STYPE_F_INET6 bit): its client's, as cp->af."""
        return AF_INET6 if ":" in self.caddr else AF_INET


def _ip(raw: bytes) -> str:
    """An address of an entry in the text the model keeps (inet_ntop's, for IPv6)."""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    return inet_ntop6(int.from_bytes(raw, "big"))


@dataclass(frozen=True, slots=True)
class Transport:
    """Where the daemon's messages go (ipvsadm's --mcast-group, --mcast-port, --mcast-ttl,
    --sync-maxlen; keepalived's lvs_sync_daemon ``group``, ``port``, ``ttl``, ``maxlen``): a
    multicast group of either family (IPVS takes no other: ip_vs_genl_new_daemon refuses a
    group that is not multicast), the port, the TTL or hop limit, and sync_maxlen (0: the
    kernel's default, ``default_maxlen``). The transport's family is independent of the
    entries': an IPv4 group carries IPv6 connections and an IPv6 group IPv4 ones."""

    group: str = SYNC_GROUP
    port: int = SYNC_PORT
    ttl: int = SYNC_TTL
    maxlen: int = 0

    def __post_init__(self) -> None:
        if not is_multicast(self.group):
            raise ValueError(f"{self.group!r} is not a multicast group (IPVS takes no other)")

    @property
    def af(self) -> int:
        """The transport's family (the kernel's mcast_af): the group's."""
        return AF_INET6 if ":" in self.group else AF_INET

    def sync_maxlen(self, backup: bool, mtu: int = 1500) -> int:
        """The message length the daemon sends at most (a master) or reads (a backup)."""
        if self.maxlen:
            return clamp_maxlen(self.af, backup, self.maxlen)
        return default_maxlen(self.af, backup, mtu)


def is_multicast(group: str) -> bool:
    """A group IPVS takes: IPv4 224.0.0.0/4 (ipv4_is_multicast), IPv6 ff00::/8
    (IPV6_ADDR_MULTICAST)."""
    try:
        return "%" not in group and ipaddress.ip_address(group).is_multicast
    except ValueError:
        return False


def default_maxlen(af: int, backup: bool, mtu: int = 1500) -> int:
    """start_sync_thread's sync_maxlen when none is given: a master's messages fit 1500 bytes,
    a backup reads up to its interface's MTU (1500..65535), less the IPv4 or IPv6 and UDP
    headers of the transport (``af``): 1472 and 1452 on an Ethernet link."""
    return (min(max(mtu, 1500), 65535) if backup else 1500) - HEADROOM[af]


def clamp_maxlen(af: int, backup: bool, maxlen: int) -> int:
    """start_sync_thread's clamp of a given sync_maxlen: at least 1 (a master) or 1024 (a
    backup), at most 65535 less the transport's headers."""
    return min(max(maxlen, 1024 if backup else 1), 65535 - HEADROOM[af])


def backup_flags(flags: int) -> int:
    """The flags a backup gives the connection it creates: the sendable ones, and SYNC."""
    return (flags & IP_VS_CONN_F_BACKUP_MASK) | IP_VS_CONN_F_SYNC


def encode(conns: Iterable[SyncConn], syncid: int,
           mtu_budget: int = DEFAULT_MTU_BUDGET) -> list[bytes]:
    """Version 1 messages carrying ``conns`` in order, IPv4 and IPv6 entries mixed, filled as
    ip_vs_sync_conn fills its buffer: an entry that does not fit the message's ``mtu_budget``
    bytes (the daemon's sync_maxlen) or would be its 256th (nr_conns is a u8) starts the next
    message; one that fits no message alone still goes, alone (ip_vs_sync_buff_create makes the
    buffer as big as it needs). Entries carry no options (36 or 72 bytes, so no padding)."""
    if not 0 <= syncid <= 0xFF:
        raise ValueError(f"syncid {syncid} is not a u8")
    budget = min(mtu_budget, 0xFFFF)
    messages: list[bytes] = []
    entries: list[bytes] = []
    size = HEADER_V1.size
    for conn in conns:
        entry = _entry(conn)
        if entries and (size + len(entry) > budget or len(entries) == MAX_CONNS_PER_MESSAGE):
            messages.append(_message(syncid, entries))
            entries, size = [], HEADER_V1.size
        entries.append(entry)
        size += len(entry)
    if entries:
        messages.append(_message(syncid, entries))
    return messages


def _message(syncid: int, entries: list[bytes]) -> bytes:
    size = HEADER_V1.size + sum(map(len, entries))
    return b"".join([HEADER_V1.pack(0, syncid, size, len(entries), SYNC_PROTO_VER, 0), *entries])


def _entry(conn: SyncConn) -> bytes:
    """ip_vs_sync_conn's entry: its type by the family, ``ver_size`` version 0 and the entry's
    size, the three addresses of that family (a connection whose real server is of another
    family has no entry: IPVS refuses such servers while it syncs)."""
    af = conn.af
    layout = ENTRIES[af]
    try:
        addresses = [_packed(address, af) for address in (conn.caddr, conn.vaddr, conn.daddr)]
        return layout.pack(TYPES[af], conn.protocol, layout.size & SVER_MASK, conn.flags,
                           conn.state, conn.cport, conn.vport, conn.dport, conn.fwmark,
                           conn.timeout, *addresses)
    except (struct.error, ValueError) as error:
        raise ValueError(f"{conn} does not fit a sync entry: {error}") from None


def _packed(address: str, af: int) -> bytes:
    if af == AF_INET:
        return ipaddress.IPv4Address(address).packed
    return ipaddress.IPv6Address(address).packed


def decode(payload: bytes, syncid: int = 0) -> list[SyncConn]:
    """The connections a kernel backup with this SyncID would create from one datagram."""
    if not 0 <= syncid <= 0xFF:
        raise ValueError(f"syncid {syncid} is not a u8")
    data = bytes(payload)
    if len(data) < HEADER_V0.size:
        raise SyncError(f"a message of {len(data)} bytes is shorter than any header")
    first, message_syncid, size = HEADER_V0.unpack_from(data)
    if size != len(data):
        raise SyncError(f"the size field says {size} bytes, the datagram has {len(data)}")
    if syncid and message_syncid != syncid:
        return []
    if first:
        return _decode_v0(data, first)
    if len(data) == HEADER_V0.size:
        return []  # version 0, no connections
    if len(data) < HEADER_V1.size:
        raise SyncError(f"a version 1 header needs {HEADER_V1.size} bytes, not {len(data)}")
    _, _, _, nr_conns, version, spare = HEADER_V1.unpack_from(data)
    if version != SYNC_PROTO_VER:
        raise SyncError(f"unknown sync protocol version {version}")
    if spare:
        raise SyncError(f"spare field is {spare:#x}, not 0")
    return _decode_v1(data, nr_conns)


def other_syncid(payload: bytes, syncid: int) -> bool:
    """True when a backup with this SyncID ignores the (well-sized) message for its SyncID, as
    :func:`decode` does by returning nothing: a message to count apart from an empty one."""
    return bool(syncid) and len(payload) >= HEADER_V0.size and payload[1] != syncid


def _decode_v1(data: bytes, nr_conns: int) -> list[SyncConn]:
    conns = []
    offset = HEADER_V1.size
    for index in range(nr_conns):
        if offset + ENTRY_V4.size > len(data):
            raise SyncError(f"entry {index} is cut off at byte {len(data)}")
        ver_size = int.from_bytes(data[offset + 2:offset + 4], "big")
        size = ver_size & SVER_MASK
        if offset + size > len(data):
            raise SyncError(f"entry {index} of {size} bytes runs past the message")
        if ver_size >> SVER_SHIFT:
            raise SyncError(f"entry {index} has unknown version {ver_size >> SVER_SHIFT}")
        conn = _entry_v1(data, offset, offset + size)
        if conn is not None:
            conns.append(conn)
        offset += (size + 3) & ~3  # entries start 32-bit aligned
    return conns


def _entry_v1(data: bytes, start: int, end: int) -> SyncConn | None:
    """ip_vs_proc_sync_conn: the type's bit 0 (STYPE_F_INET6) makes it IPv6, whatever its other
    bits; else a type other than 0 drops the message (-10), as does an entry whose size does
    not cover its type's fixed part (-20: an IPv6 entry sized as an IPv4 one, say)."""
    kind = data[start]
    if kind & STYPE_F_INET6:
        layout = ENTRY_V6
    elif kind == 0:
        layout = ENTRY_V4
    else:
        raise SyncError(f"unknown entry type {kind:#x}")
    if start + layout.size > end:
        raise SyncError(f"entry of {end - start} bytes is shorter than its {layout.size} "
                        "fixed bytes")
    if not _options_acceptable(data, start + layout.size, end):
        return None
    (_, protocol, _, flags, state, cport, vport, dport, fwmark, timeout,
     caddr, vaddr, daddr) = layout.unpack_from(data, start)
    if not _acceptable(protocol, state, flags):
        return None
    return SyncConn(protocol, _ip(caddr), cport, _ip(vaddr), vport,
                    _ip(daddr), dport, state, flags, timeout, fwmark)


def _options_acceptable(data: bytes, offset: int, end: int) -> bool:
    """Check the options as ip_vs_proc_sync_conn does: False for an entry the backup skips."""
    seen: set[int] = set()
    while offset < end:
        if offset + 2 > end:
            raise SyncError("an option header is cut off by the entry's end")
        ptype, plen = data[offset], data[offset + 1]
        offset += 2
        if not plen or offset + plen > end:
            raise SyncError(f"option {ptype} has a bad length {plen}")
        kind = ptype & ~IPVS_OPT_F_PARAM
        maxlen = _OPTION_MAXLEN.get(kind)
        if maxlen is None:
            if not ptype & IPVS_OPT_F_PARAM:
                return False  # unknown and mandatory: this entry only is dropped
        elif kind in seen or plen > maxlen or (kind == IPVS_OPT_SEQ_DATA and plen != maxlen):
            raise SyncError(f"option {kind} repeated or of bad length {plen}")
        else:
            seen.add(kind)
        offset += plen
    # persistence-engine data needs its engine, by name, and pylvs has none
    return IPVS_OPT_PE_DATA not in seen


def _decode_v0(data: bytes, nr_conns: int) -> list[SyncConn]:
    conns = []
    offset = HEADER_V0.size
    for index in range(nr_conns):
        if offset + ENTRY_V0.size > len(data):
            raise SyncError(f"version 0 entry {index} is cut off at byte {len(data)}")
        (_, protocol, cport, vport, dport, caddr, vaddr, daddr, flags,
         state) = ENTRY_V0.unpack_from(data, offset)
        offset += ENTRY_V0.size
        if flags & IP_VS_CONN_F_SEQ_MASK:
            offset += SEQ_OPTIONS_SIZE
            if offset > len(data):
                raise SyncError(f"version 0 entry {index}'s sequence data is cut off")
        if _acceptable(protocol, state, flags):
            conns.append(SyncConn(protocol, _ip(caddr), cport,
                                  _ip(vaddr), vport, _ip(daddr), dport,
                                  state, flags, 0))
    return conns


def _acceptable(protocol: int, state: int, flags: int) -> bool:
    """A template is taken as it is; a connection needs a known protocol and one of its states."""
    if flags & IP_VS_CONN_F_TEMPLATE:
        return True
    states = _NUM_STATES.get(protocol)
    return states is not None and state < states


_TCP_SYNC_STATES = frozenset({IP_VS_TCP_S_ESTABLISHED, IP_VS_TCP_S_FIN_WAIT, IP_VS_TCP_S_CLOSE,
                              IP_VS_TCP_S_CLOSE_WAIT, IP_VS_TCP_S_TIME_WAIT})


def should_sync(protocol: int, old_state: int, new_state: int, in_pkts: int, threshold: int = 3,
                period: int = 50, *, flags: int = 0) -> bool:
    """Whether the master sends this connection after a packet from the client.

    The rule of ip_vs_sync_conn_needed (ip_vs_sync.c, Linux 3.5 and later: commit 749c42b620a9),
    which ip_vs_in calls after the packet has moved the state and ``in_pkts`` counted it; sysctls
    sync_threshold = (threshold, period), sync_refresh_period = 0 (the default: the time-based
    limit it enables is not modelled). ``old_state`` is the kernel's ``cp->old_state``: the state
    at the last sync (NONE for a new connection; a backup sets it to the state it was sent), so
    the caller sets it to ``new_state`` whenever this returns True.

    TCP is sent only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT: at once when it
    has moved into one of the last four since the last sync, otherwise (also when it stays in
    one of them) when ``in_pkts % period == threshold``. Other protocols (SCTP's own state set is
    not modelled) and templates (``flags`` with TEMPLATE: always, if period > 0) go by the packet
    count; ``period`` 0 sends once, at ``in_pkts == threshold``. One-packet connections never.
    Linux before 3.5 differed: the count rule held for TCP in ESTABLISHED only, and
    ``old_state`` was the state before this packet.
    """
    if flags & IP_VS_CONN_F_ONE_PACKET:
        return False
    template = bool(flags & IP_VS_CONN_F_TEMPLATE)
    if protocol == IPPROTO_TCP and not template:
        if new_state not in _TCP_SYNC_STATES:
            return False
        if new_state != old_state and new_state != IP_VS_TCP_S_ESTABLISHED:
            return True
    if period > 0:
        return template or in_pkts % period == threshold
    return in_pkts == threshold

"""The XDP fast path: the eBPF program that forwards frames of established connections without
Python, and the map entries the director fills for it.

The director decides; the program only looks up and rewrites. A frame is looked up by the 12
bytes at its IP source (saddr, daddr, sport, dport) and its protocol, the same key the
connection table uses for clients (``Connection.key12``) and NAT replies (``reply_key12``). Each
forwarder makes the entries of its connections (``Forwarder.xdp_entries``, from the builders
here: ``key``, ``dr``, ``nat``, ``tun``; for IPv6 ``key6``, ``dr6``, ``nat6``, ``tun6``,
``tun6in4`` and, for an IPv4 connection to an IPv6 server, ``tun4in6``), so that on a hit the
program does what that forwarder does in Python, byte for byte; ``for_connection`` asks the
connection's. The program's actions:

- DR: the hop's MACs, TTL − 1, the IP checksum updated;
- NAT to the real server: destination address and port, MACs, TTL, checksums (IP, and TCP or
  UDP, updated by the entry's deltas: XDP has no l4_csum_replace); back to the client: the
  source address and port the same way;
- TUN: TTL − 1 and the inner checksum, then 20 bytes of headroom for an outer IPv4 header
  (protocol 4, from the director's address to the real server's, TOS, TTL and DF copied from
  the inner one, as ip_vs_tunnel_xmit), its checksum from the entry's constant sum.

The deltas and sums are pylvs.core.csum_delta's, the same the Python short paths use, computed
in network order and byte-swapped for the program.

It counts packets and bytes and stamps the time (bpf_ktime_get_ns) in the entry, so the
director keeps IPVS's timers and statistics, then redirects the frame to the hop's interface.
Everything else passes to the kernel, and so to the director's packet socket: a miss, a frame
that may change a connection's state (TCP SYN, FIN or RST), options in the IP header, a
fragment, TTL ≤ 1, a frame that would not fit the hop's MTU, not IPv4 TCP or UDP.

IPv6 (issue 22) has a map of its own (``program``'s ``map6_fd``: keys ``key6``, values
``Entry6``), looked up by the 36 bytes at the IPv6 source (saddr, daddr, sport, dport: an IPv6
connection's ``key12``) and the protocol, for a frame whose IPv6 header is followed directly by
TCP or UDP. Its actions, as pylvs.core.ipv6 and pylvs.core.tunnel6 do them in Python:

- DR: the hop's MACs, hop limit − 1 (no header checksum in IPv6);
- NAT66 both ways: the address (16 bytes) and port, the TCP or UDP checksum by the entry's
  delta (the pseudo-header's address and the port: csum_delta.endpoint6);
- TUN ip6ip6: 40 bytes of headroom for an outer IPv6 header (next header 41, traffic class
  from the inner one by INET_ECN_encapsulate, flow label 0, hop limit the inner's after its
  decrement, payload length the inner packet's);
- TUN 6in4 (an IPv4 real server): an outer IPv4 header of protocol 41 (TOS by the same ECN
  rule, DF clear, TTL the inner hop limit, the IP ID from the entry's packet count);
- TUN 4in6, an IPv4 connection to an IPv6 real server: its entry is in the IPv4 map (action
  TUN_4IN6, counters, MTU, MACs), the outer addresses in a second entry in the IPv6 map under
  ``key4in6`` (the IPv4 key, zeros, the protocol with 0x400 set: never a frame's key).

An IPv6 frame passes to the kernel when its next header is not TCP or UDP (extension headers,
ICMPv6), its hop limit is ≤ 1, it is a TCP SYN, FIN or RST, its UDP checksum is 0 (invalid in
IPv6: Python computes it), its payload length runs past the frame or is too short for its
header, it would not fit the hop's MTU (Python sends Packet Too Big), or it misses. A tunnel
whose MTU would be below the outer family's minimum (1280, 68) gets an entry of MTU 0: every
frame passes, and Python drops it as IPVS does.

GUE and GRE (issue 24), when ``program(..., tunnels=True)``: a connection's entries come from
``encap_entries`` (one in the IPv4 or IPv6 map by the connection's family; an IPv4 connection to
an IPv6 real server adds its outer fields under ``key4in6``, as 4in6 does). The program does
what pylvs.core.encap.tunnel_xmit does: the inner TTL and checksum or hop limit, the outer
header of the real server's family (as IP-in-IP's, with TOS / traffic class by the ECN rule and,
for IPv4, IP ID 0 when DF is set), then UDP from the entry's source port (the connection's
encap.gue_source_port, computed once) to its tunnel port and GUE's 4 bytes, or GRE's 4 or 8.
The UDP checksum (``--tun-csum``, ``--tun-remcsum``) and GRE's cover the whole inner packet, yet
cost the program a few loads: a packet whose IPv4 header and TCP or UDP checksums are right
sums to the complement of its pseudo-header (and an IPv6 one to its first words, the next
header and the hop limit, less the next header), which is how the kernel's lco_csum sums a
tunnelled packet too; so the outer checksum is the full one for every frame a sender
checksummed, and only an IPv4 UDP datagram without a checksum (0) passes to Python. A frame
is never partial to XDP, so ``remcsum`` adds no option here (encap's notes). Without
``tunnels`` the program is, byte for byte, the one before.

Values are little-endian where the program does arithmetic on them (counters, deltas, MTU, the
interface index) and in network order where it copies them into the frame.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pylvs.core import csum_delta
from pylvs.core.ebpf import (
    ADD,
    AND,
    DW,
    JEQ,
    JGT,
    JLT,
    JNE,
    JSET,
    LSH,
    OR,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    RSH,
    XDP_PASS,
    XDP_TX,
    XOR,
    B,
    H,
    Helper,
    W,
)
from pylvs.core.ebpf import Assembler as Asm
from pylvs.core.tunnel6 import OUTER_IPV4, OUTER_IPV6, OVERHEAD, TUNNEL_MIN_MTU

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.forwarding import NextHop

DR, NAT_IN, NAT_OUT, TUN = 1, 2, 3, 4
"""What a map entry makes the program do."""
KEY_SIZE = 16
VALUE = struct.Struct("<QQQIBBH12s4s2sHHxx4sII2sxx")
"""packets, bytes, last_ns, ifindex, action, flags (GUE and GRE's), mtu, macs (dst+src),
address, port, IP checksum delta, L4 checksum delta, tunnel source, tunnel header partial sum,
stats slot, GUE's UDP source port. The flags and the source port sit where the layout before
GUE and GRE had padding: an entry of another action packs as it always did."""
VALUE_SIZE = VALUE.size
PACKETS, BYTES, LAST_NS, IFINDEX, ACTION, MTU, MACS, ADDRESS, PORT, IP_DELTA, L4_DELTA, \
    TUN_SRC, TUN_SUM, SLOT = 0, 8, 16, 24, 28, 30, 32, 44, 48, 50, 52, 56, 60, 64
FLAGS, SPORT, SPORT6 = 29, 68, 70
"""GUE and GRE's: the flags byte (either map), the UDP source port (IPv4 map, IPv6 map)."""
STATS = struct.Struct("<QQQQ")
"""Per real server (its slot): packets and bytes from clients, then from the server (NAT)."""
SLOTS_PER_WORKER = 1024
STATS_SLOTS = 64 * SLOTS_PER_WORKER
"""Rows of the stats map: 1,024 real servers for each of up to 64 workers."""
PROGRAM_ROW = STATS_SLOTS
"""The stats map's row after the servers' (its map has STATS_SLOTS + 1 rows): the program's
own counts; its first counter is PARTIAL."""
PARTIAL = 0
"""In PROGRAM_ROW: frames of a connection in the map that passed to Python because their TCP
or UDP checksum was partial (``looks_partial``)."""
TTL_DELTA = csum_delta.swap(csum_delta.TTL)
"""TTL − 1 as a one's-complement delta of its 16-bit word read little-endian (TTL low): 0xFFFE."""
TUN_OVERHEAD = 20
ETH, IP_OFF = 14, 14


def key(proto: int, key12: bytes) -> bytes:
    return key12 + struct.pack("<I", proto)


@dataclass(frozen=True)
class Entry:
    """One connection direction as the program needs it."""
    action: int
    ifindex: int
    macs: bytes
    mtu: int
    address: bytes = b"\0" * 4
    port: bytes = b"\0" * 2
    ip_delta: int = TTL_DELTA
    l4_delta: int = 0
    tun_src: bytes = b"\0" * 4
    tun_sum: int = 0
    slot: int = 0
    """The real server's row in the stats map."""
    flags: int = 0
    """GUE and GRE: FLAG_CSUM."""
    sport: bytes = b"\0" * 2
    """GUE: the UDP source port, network order."""

    def pack(self, packets: int = 0, octets: int = 0, last_ns: int = 0) -> bytes:
        return VALUE.pack(packets, octets, last_ns, self.ifindex, self.action, self.flags,
                          self.mtu, self.macs, self.address, self.port, self.ip_delta,
                          self.l4_delta, self.tun_src, self.tun_sum, self.slot, self.sport)


def counters(value: bytes) -> tuple[int, int, int]:
    """(packets, bytes, last time in ns) of a map value."""
    return struct.unpack_from("<QQQ", value)


def slot(value: bytes) -> int:
    """The stats row a map value counts into."""
    return struct.unpack_from("<I", value, SLOT)[0]


def dr(ifindex: int, macs: bytes, mtu: int, slot: int = 0) -> Entry:
    return Entry(DR, ifindex, macs, mtu, slot=slot)


def nat(inbound: bool, ifindex: int, macs: bytes, mtu: int, old: bytes, new: bytes,
        slot: int = 0) -> Entry:
    """NAT toward the real server (inbound: the destination changes) or back to the client
    (the source): ``old`` and ``new`` are address (4 bytes) + port (2 bytes), network order."""
    return nat_planned(inbound, ifindex, macs, mtu, new, *csum_delta.endpoint(old, new),
                       slot=slot)


def nat_planned(inbound: bool, ifindex: int, macs: bytes, mtu: int, new: bytes, ip_delta: int,
                l4_delta: int, slot: int = 0) -> Entry:
    """``nat`` from deltas already worked out (csum_delta.endpoint's, network order)."""
    return Entry(NAT_IN if inbound else NAT_OUT, ifindex, macs, mtu, new[:4], new[4:6],
                 csum_delta.swap(ip_delta), csum_delta.swap(l4_delta), slot=slot)


def tun(ifindex: int, macs: bytes, mtu: int, source: bytes, destination: bytes,
        slot: int = 0) -> Entry:
    """IP-in-IP from ``source`` to ``destination`` (network order); the outer header's
    checksum starts from the sum of what does not change from frame to frame."""
    addresses = source + destination
    return tun_planned(ifindex, macs, mtu, addresses, csum_delta.ipip_constant(addresses),
                       slot=slot)


def tun_planned(ifindex: int, macs: bytes, mtu: int, addresses: bytes, constant: int,
                slot: int = 0) -> Entry:
    """``tun`` from the outer source and destination (8 bytes) and their header's constant
    sum already worked out (csum_delta.ipip_constant's, network order)."""
    return Entry(TUN, ifindex, macs, mtu, addresses[4:8], tun_src=addresses[:4],
                 tun_sum=csum_delta.swap(constant), slot=slot)


NO_MTU = 0xFFFF
"""A NAT reply is not checked against an MTU, in Python either."""


# -- IPv6 (issue 22) ----------------------------------------------------------------------------

TUN_4IN6, TUN_6IN6, TUN_6IN4 = 5, 6, 7
"""TUN by the real server's family: an IPv4 connection's entry for an IPv6 server (with its
``key4in6`` entry in the IPv6 map), an IPv6 connection's for an IPv6 server (ip6ip6) and for
an IPv4 one (6in4)."""
KEY6_SIZE = 40
VALUE6 = struct.Struct("<QQQIBBH12sH2s16sIH2s16s")
"""packets, bytes, last_ns, ifindex, action, flags (GUE and GRE's), mtu, macs (dst+src), L4
checksum delta (GUE: the UDP header's constant sum), port (GUE: the tunnel port), address
(NAT's new one; a tunnel's outer destination, 4 bytes of it for an IPv4 one), stats slot, an
outer IPv4 header's partial sum, GUE's UDP source port, the tunnel's outer source (4 bytes of
it for an IPv4 one). The flags and the source port sit where the layout before GUE and GRE had
padding and the partial sum's zero high half.
Counters and slot are where VALUE has them, so ``counters`` and ``slot`` read either."""
VALUE6_SIZE = VALUE6.size
L4_DELTA6, PORT6, ADDRESS6, SLOT6, TUN_SUM6, TUN_SRC6 = 44, 46, 48, 64, 68, 72
V4_IN_6 = 0x400
"""Set in the protocol word of a ``key4in6``: no frame's key has it."""
IP6_OFF, L4_OFF6 = 14, 54
"""The IPv6 header and, with no extension header, the TCP or UDP header, in a frame."""
IP6_OVERHEAD, IP4_OVERHEAD = OVERHEAD[OUTER_IPV6], OVERHEAD[OUTER_IPV4]


def key6(proto: int, key36: bytes) -> bytes:
    """The IPv6 map's key of a connection direction: its 36 bytes (saddr, daddr, sport,
    dport: an IPv6 connection's ``key12`` or ``reply_key12``) and the protocol."""
    if len(key36) != 36:
        raise ValueError(f"an IPv6 key is 36 bytes, not {len(key36)}")
    return bytes(key36) + struct.pack("<I", proto)


def key4in6(proto: int, key12: bytes) -> bytes:
    """The IPv6 map's key of an IPv4 connection's 4in6 outer addresses (``tun4in6``)."""
    if len(key12) != 12:
        raise ValueError(f"an IPv4 key is 12 bytes, not {len(key12)}")
    return bytes(key12) + bytes(24) + struct.pack("<I", proto | V4_IN_6)


@dataclass(frozen=True)
class Entry6:
    """One IPv6 connection direction (or a 4in6 tunnel's addresses) as the program needs it."""
    action: int
    ifindex: int
    macs: bytes
    mtu: int
    address: bytes = b"\0" * 16
    port: bytes = b"\0" * 2
    l4_delta: int = 0
    tun_src: bytes = b"\0" * 16
    tun_sum: int = 0
    slot: int = 0
    """The real server's row in the stats map."""
    flags: int = 0
    """GUE and GRE: FLAG_CSUM."""
    sport: bytes = b"\0" * 2
    """GUE: the UDP source port, network order."""

    def pack(self, packets: int = 0, octets: int = 0, last_ns: int = 0) -> bytes:
        return VALUE6.pack(packets, octets, last_ns, self.ifindex, self.action, self.flags,
                           min(self.mtu, NO_MTU), self.macs, self.l4_delta, self.port,
                           self.address, self.slot, self.tun_sum, self.sport, self.tun_src)


AnyEntry = Entry | Entry6


def dr6(ifindex: int, macs: bytes, mtu: int, slot: int = 0) -> Entry6:
    """DR of an IPv6 connection: the hop's MACs, hop limit − 1 (dr_xmit6)."""
    return Entry6(DR, ifindex, macs, mtu, slot=slot)


def nat6(inbound: bool, ifindex: int, macs: bytes, mtu: int, old: bytes, new: bytes,
         slot: int = 0) -> Entry6:
    """NAT66 toward the real server (inbound: the destination changes, nat_xmit6) or back to
    the client (the source, nat_reply6): ``old`` and ``new`` are address (16 bytes) + port
    (2 bytes), network order."""
    return nat6_planned(inbound, ifindex, macs, mtu, new, csum_delta.endpoint6(old, new),
                        slot=slot)


def nat6_planned(inbound: bool, ifindex: int, macs: bytes, mtu: int, new: bytes,
                 l4_delta: int, slot: int = 0) -> Entry6:
    """``nat6`` from the delta already worked out (csum_delta.endpoint6's, network order)."""
    if len(new) != 18:
        raise ValueError("NAT66's endpoint is an address (16 bytes) and a port (2)")
    return Entry6(NAT_IN if inbound else NAT_OUT, ifindex, macs, mtu, new[:16], new[16:18],
                  csum_delta.swap(l4_delta), slot=slot)


def _tunnel_mtu(mtu: int, outer: int) -> int:
    """The hop's MTU, or 0 (every frame to Python, which drops it) when the tunnel's would fall
    below the outer family's minimum (tunnel6.TUNNEL_MIN_MTU)."""
    return mtu if mtu - OVERHEAD[outer] >= TUNNEL_MIN_MTU[outer] else 0


def tun6(ifindex: int, macs: bytes, mtu: int, source: bytes, destination: bytes,
         slot: int = 0) -> Entry6:
    """ip6ip6 for an IPv6 connection to an IPv6 real server: outer source and destination
    (16 bytes each, network order), as tunnel6.tunnel_xmit(..., server_family=6, ...)."""
    if len(source) != 16 or len(destination) != 16:
        raise ValueError("ip6ip6's outer addresses are 16 bytes each")
    return Entry6(TUN_6IN6, ifindex, macs, _tunnel_mtu(mtu, OUTER_IPV6), destination,
                  tun_src=source, slot=slot)


def tun6in4(ifindex: int, macs: bytes, mtu: int, source: bytes, destination: bytes,
            slot: int = 0) -> Entry6:
    """6in4 for an IPv6 connection to an IPv4 real server: outer source and destination (4
    bytes each, network order), as tunnel6.tunnel_xmit(..., server_family=4, ...)."""
    addresses = source + destination
    return tun6in4_planned(ifindex, macs, mtu, addresses,
                           csum_delta.ipv4_outer_constant(addresses, 41), slot=slot)


def tun6in4_planned(ifindex: int, macs: bytes, mtu: int, addresses: bytes, constant: int,
                    slot: int = 0) -> Entry6:
    """``tun6in4`` from the outer source and destination (8 bytes) and their header's constant
    sum already worked out (csum_delta.ipv4_outer_constant(addresses, 41), network order)."""
    if len(addresses) != 8:
        raise ValueError("6in4's outer addresses are 4 bytes each")
    return Entry6(TUN_6IN4, ifindex, macs, _tunnel_mtu(mtu, OUTER_IPV4),
                  addresses[4:8] + bytes(12), tun_src=addresses[:4] + bytes(12),
                  tun_sum=csum_delta.swap(constant), slot=slot)


def tun4in6(proto: int, key12: bytes, ifindex: int, macs: bytes, mtu: int, source: bytes,
            destination: bytes, slot: int = 0) -> list[tuple[bytes, AnyEntry]]:
    """4in6 for an IPv4 connection (``key12``) to an IPv6 real server, outer source and
    destination 16 bytes each: its two entries, the IPv4 map's first (it counts), then the
    outer addresses in the IPv6 map's (``key4in6``)."""
    if len(source) != 16 or len(destination) != 16:
        raise ValueError("4in6's outer addresses are 16 bytes each")
    mtu = min(_tunnel_mtu(mtu, OUTER_IPV6), NO_MTU)
    return [(key(proto, key12), Entry(TUN_4IN6, ifindex, macs, mtu, slot=slot)),
            (key4in6(proto, key12), Entry6(TUN_4IN6, ifindex, macs, mtu, destination,
                                           tun_src=source, slot=slot))]


# -- GUE and GRE (issue 24) ---------------------------------------------------------------------

GUE4, GRE4, GRE4_CSUM, GUE_4IN6, GRE_4IN6, GRE_CSUM_4IN6 = 8, 9, 10, 11, 12, 13
"""An IPv4 connection's GUE or GRE (with its checksum: _CSUM) entry in the IPv4 map: to an IPv4
real server (the entry holds the outer header's fields), or to an IPv6 one (4IN6: the outer
fields in a second entry of the IPv6 map under ``key4in6``, as TUN_4IN6)."""
GUE6, GRE6, GRE6_CSUM, GUE_6IN4, GRE_6IN4, GRE_CSUM_6IN4 = 14, 15, 16, 17, 18, 19
"""An IPv6 connection's GUE or GRE entry in the IPv6 map: to an IPv6 real server, or to an
IPv4 one (6IN4)."""
ENCAP_ACTIONS = {
    GUE4: (4, 4, "gue"), GRE4: (4, 4, "gre"), GRE4_CSUM: (4, 4, "gre_csum"),
    GUE_4IN6: (4, 6, "gue"), GRE_4IN6: (4, 6, "gre"), GRE_CSUM_4IN6: (4, 6, "gre_csum"),
    GUE6: (6, 6, "gue"), GRE6: (6, 6, "gre"), GRE6_CSUM: (6, 6, "gre_csum"),
    GUE_6IN4: (6, 4, "gue"), GRE_6IN4: (6, 4, "gre"), GRE_CSUM_6IN4: (6, 4, "gre_csum"),
}
"""Each GUE or GRE action: the inner family, the outer (the real server's), the header."""
TUNNEL_HLEN = {"gue": 12, "gre": 4, "gre_csum": 8}
"""The bytes between the outer IP header and the inner packet: UDP and GUE, GRE, GRE with C."""
FLAG_CSUM = 0x01
"""In an entry's flags: the outer UDP checksum (GUE with --tun-csum or --tun-remcsum) or GRE's
is computed; a frame whose own UDP checksum is 0 then goes to Python."""
_ACTION_OF = {(inner, outer, kind): action
              for action, (inner, outer, kind) in ENCAP_ACTIONS.items()}


def encap_overhead(action: int) -> int:
    """The bytes a GUE or GRE action adds: the outer header and TUNNEL_HLEN."""
    _, outer, kind = ENCAP_ACTIONS[action]
    return OVERHEAD[OUTER_IPV4 if outer == 4 else OUTER_IPV6] + TUNNEL_HLEN[kind]


def encap_action(tun_type: str, inner_family: int, server_family: int,
                 flags: str = "nocsum") -> int:
    """The action of ``tun_type`` (gue, gre) for a packet of ``inner_family`` to a real server
    of ``server_family``; GRE's ``csum`` has actions of its own (its header is 8 bytes)."""
    if tun_type == "gue":
        kind = "gue"
    elif tun_type == "gre":
        kind = "gre_csum" if flags == "csum" else "gre"
    else:
        raise ValueError(f"the fast path's GUE and GRE entries are for gue or gre, not "
                         f"{tun_type!r}")
    return _ACTION_OF[(inner_family, server_family, kind)]


def encap_entries(proto: int, key12: bytes, ifindex: int, macs: bytes, mtu: int,
                  source: bytes, destination: bytes, tun_type: str, flags: str = "nocsum",
                  sport: int = 0, dport: int = 0, slot: int = 0
                  ) -> list[tuple[bytes, AnyEntry]]:
    """The map entries that send a connection's frames as encap.tunnel_xmit does with
    ``tun_type`` (``gue`` or ``gre``) and ``flags`` (nocsum, csum, remcsum). ``key12``: the
    connection's key (12 bytes IPv4, 36 IPv6); ``source`` and ``destination``: the outer
    addresses, network order, 4 bytes each toward an IPv4 real server, 16 toward an IPv6 one.
    GUE: ``sport`` the connection's encap.gue_source_port, ``dport`` the real server's tunnel
    port (host order). One entry, or two for an IPv4 connection to an IPv6 real server (the
    IPv4 map's first: it counts; then the outer fields under ``key4in6``). A frame is never
    partial here, so ``remcsum`` sends what ``csum`` does (encap's notes)."""
    inner = 4 if len(key12) == 12 else 6
    if len(key12) not in (12, 36):
        raise ValueError(f"a key is 12 (IPv4) or 36 (IPv6) bytes, not {len(key12)}")
    if len(source) != len(destination) or len(source) not in (4, 16):
        raise ValueError("the outer addresses are 4 bytes each (IPv4) or 16 (IPv6)")
    outer = 4 if len(source) == 4 else 6
    action = encap_action(tun_type, inner, outer, flags)
    if tun_type == "gue" and not 0 < dport < 0x10000:
        raise ValueError("a GUE real server needs a tunnel port 1..65535")
    checked = flags in ("csum", "remcsum") if tun_type == "gue" else flags == "csum"
    flag = FLAG_CSUM if checked else 0
    minimum = TUNNEL_MIN_MTU[OUTER_IPV4 if outer == 4 else OUTER_IPV6]
    usable = mtu if mtu - encap_overhead(action) >= minimum else 0
    addresses = source + destination
    ports = struct.pack("!HH", sport, dport)
    udp = csum_delta.swap(csum_delta.gue_udp_constant(addresses, sport, dport,
                                                      41 if inner == 6 else 4))
    ip_sum = (csum_delta.swap(csum_delta.ipv4_outer_constant(addresses, _ENCAP_PROTO[tun_type]))
              if outer == 4 else 0)
    if inner == 4 and outer == 4:
        return [(key(proto, key12), Entry(action, ifindex, macs, min(usable, NO_MTU),
                                          destination, ports[2:],
                                          l4_delta=udp, tun_src=source, tun_sum=ip_sum,
                                          slot=slot, flags=flag, sport=ports[:2]))]
    pad = bytes(16 - len(source))
    side = Entry6(action, ifindex, macs, min(usable, NO_MTU), destination + pad, ports[2:],
                  l4_delta=udp, tun_src=source + pad, tun_sum=ip_sum, slot=slot, flags=flag,
                  sport=ports[:2])
    if inner == 6:
        return [(key6(proto, key12), side)]
    return [(key(proto, key12), Entry(action, ifindex, macs, min(usable, NO_MTU), slot=slot,
                                      flags=flag)),
            (key4in6(proto, key12), side)]


_ENCAP_PROTO = {"gue": 17, "gre": 47}


def looks_partial(frame: bytes) -> bool:
    """What the program's partial-checksum guard sees in an IPv4 or IPv6 TCP or UDP frame (no
    IP options, no extension headers): its L4 checksum holds its pseudo-header's folded sum, as
    a sender's TX checksum offload leaves it for "hardware" to finish (CHECKSUM_PARTIAL; XDP
    sees only the bytes). A full checksum looks so once in 65,536 frames: that frame goes
    through Python, which forwards it as it is."""
    ipv6 = frame[12:14] == b"\x86\xdd"
    proto = frame[20] if ipv6 else frame[23]
    if ipv6:
        words, length, l4 = frame[22:54], struct.unpack_from("!H", frame, 18)[0], 54
    else:
        words, l4 = frame[26:34], 34
        length = struct.unpack_from("!H", frame, 16)[0] - 20
    total = sum(struct.unpack(f"!{len(words) // 2}H", words)) + proto + length
    check = struct.unpack_from("!H", frame, l4 + (16 if proto == 6 else 6))[0]
    return check == _fold(total)


def for_connection(conn: Connection, hop: NextHop, ifindex: Mapping[str, int], slot: int = 0
                   ) -> list[tuple[bytes, AnyEntry]]:
    """The map entries that forward ``conn`` as its forwarder would, toward its real server
    through ``hop`` (and back to the client, for NAT): the forwarder's ``xdp_entries``; [] when
    the hop's interface has no index here, or for a method the program lacks. ``slot``: the
    real server's row in the stats map."""
    if ifindex.get(hop.interface) is None:
        return []
    return conn.forwarder.xdp_entries(conn, hop, ifindex, slot)


_fold = csum_delta.fold  # end-around carries, as the program's _fold_into


def program(map_fd: int, stats_fd: int, map6_fd: int | None = None,
            tunnels: bool = False, partial: bool = False) -> bytes:
    """The XDP program over the connection map ``map_fd`` and the stats map ``stats_fd``; with
    ``map6_fd``, the IPv6 connection map (KEY6_SIZE, VALUE6_SIZE), IPv6 frames and 4in6 too
    (without it, the IPv4 program alone, as before: everything else passes). ``tunnels``: the
    GUE and GRE actions too (ENCAP_ACTIONS; those to or from IPv6 need ``map6_fd``);
    ``partial``: a frame whose checksum is partial passes (``_partial_guard``), counted in the
    stats map's PROGRAM_ROW. Without the two, the program is, byte for byte, the one before
    them."""
    ipv6 = map6_fd is not None
    encaps = [action for action, (inner, outer, _) in ENCAP_ACTIONS.items()
              if tunnels and inner == 4 and (ipv6 or outer == 4)]
    asm = Asm()
    _parse(asm, ipv6)
    _lookup(asm, map_fd)
    if partial:
        _partial_guard(asm, 4)
    if ipv6:
        _lookup_4in6(asm, map6_fd,  # type: ignore[arg-type]
                     (TUN_4IN6, *(a for a in encaps if ENCAP_ACTIONS[a][1] == 6)))
    if encaps:
        _checksum_guard(asm)
    _count(asm, stats_fd, ipv6, [(a, encap_overhead(a)) for a in encaps])
    asm.ldx(B, R1, R9, ACTION)
    asm.jmp_imm(JEQ, R1, DR, "dr").jmp_imm(JEQ, R1, NAT_IN, "nat_in")
    asm.jmp_imm(JEQ, R1, NAT_OUT, "nat_out").jmp_imm(JEQ, R1, TUN, "tun")
    if ipv6:
        asm.jmp_imm(JEQ, R1, TUN_4IN6, "tun4in6")
    for action in encaps:
        asm.jmp_imm(JEQ, R1, action, f"encap_{action}")
    asm.ja("pass")
    for label, offsets in (("nat_in", (30, 36)), ("nat_out", (26, 34))):
        asm.label(label)
        _rewrite_endpoint(asm, *offsets)
        asm.ja("dr")
    asm.label("dr")
    _decrement_ttl(asm, R9, IP_DELTA)
    _copy_macs(asm)
    _redirect(asm)
    asm.label("tun")
    _tunnel(asm)
    for action in encaps:
        asm.label(f"encap_{action}")
        _encapsulate(asm, action)
    if ipv6:
        asm.label("tun4in6")
        _tunnel_4in6(asm)
        _program6(asm, map6_fd, stats_fd, tunnels, partial)  # type: ignore[arg-type]
    if partial:
        asm.label("partial")
        _count_partial(asm, stats_fd)
    asm.label("pass").ret(XDP_PASS)
    return asm.assemble()


def _parse(asm: Asm, ipv6: bool = False) -> None:
    """R6 ctx, R7 data, R8 data_end; IPv4 with a 20-byte header, not a fragment, TTL > 1,
    TCP (without SYN, FIN or RST) or UDP; R5 the protocol. Else: pass (``ipv6``: a frame of
    54 bytes or more that is not IPv4 goes to _parse6, at the label "not_ipv4")."""
    asm.mov(R6, R1).ldx(W, R7, R6, 0).ldx(W, R8, R6, 4)
    asm.mov(R1, R7).alu_imm(ADD, R1, 54).jmp_reg(JGT, R1, R8, "short")
    asm.ldx(H, R1, R7, 12).jmp_imm(JNE, R1, 0x0008, "not_ipv4" if ipv6 else "pass")
    asm.ldx(B, R1, R7, IP_OFF).jmp_imm(JNE, R1, 0x45, "pass")
    asm.ldx(H, R1, R7, IP_OFF + 6).jmp_imm(JSET, R1, 0xFF3F, "pass")  # MF or an offset
    asm.ldx(B, R1, R7, IP_OFF + 8).jmp_imm(JGT, R1, 1, "ttl_ok").ja("pass")
    asm.label("ttl_ok").ldx(B, R5, R7, IP_OFF + 9).jmp_imm(JEQ, R5, 17, "parsed")
    asm.jmp_imm(JNE, R5, 6, "pass")
    asm.ldx(B, R1, R7, 47).jmp_imm(JSET, R1, 0x07, "pass").ja("parsed")  # FIN SYN RST
    asm.label("short")  # a UDP frame may be shorter than TCP's 54 bytes
    asm.mov(R1, R7).alu_imm(ADD, R1, 42).jmp_reg(JGT, R1, R8, "pass")
    asm.ldx(B, R1, R7, IP_OFF).jmp_imm(JNE, R1, 0x45, "pass")
    asm.ldx(B, R5, R7, IP_OFF + 9).jmp_imm(JNE, R5, 17, "pass")
    asm.ldx(H, R1, R7, 12).jmp_imm(JNE, R1, 0x0008, "pass")
    asm.ldx(H, R1, R7, IP_OFF + 6).jmp_imm(JSET, R1, 0xFF3F, "pass")
    asm.ldx(B, R1, R7, IP_OFF + 8).jmp_imm(JGT, R1, 1, "parsed").ja("pass")
    asm.label("parsed")


def _lookup(asm: Asm, map_fd: int) -> None:
    """R9: the entry of (saddr, daddr, sport, dport, protocol); a miss passes."""
    for i, off in enumerate((26, 30, 34)):
        asm.ldx(W, R1, R7, off).stx(W, R10, -16 + 4 * i, R1)
    asm.stx(W, R10, -4, R5)
    asm.ld_map_fd(R1, map_fd).mov(R2, R10).alu_imm(ADD, R2, -16)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "pass").mov(R9, R0)


def _partial_guard(asm: Asm, family: int) -> None:
    """A hit whose TCP or UDP checksum is partial (``looks_partial``) goes to Python, which
    completes it (TP_STATUS_CSUMNOTREADY), at the label "partial". The pseudo-header's words
    are summed as the frame holds them (read little-endian, like the checksum field): the
    addresses, the protocol as its byte's word, the L4 length in network order. R1 to R4 are
    scratch; R7 and R8 the frame."""
    tag = f"_{family}"
    if family == 4:
        ip, l4, words = IP_OFF, IP_OFF + 20, (26, 30)
    else:
        ip, l4, words = IP6_OFF, L4_OFF6, tuple(IP6_OFF + 8 + 4 * i for i in range(8))
    asm.mov_imm(R3, 0)
    for off in words:
        asm.ldx(W, R1, R7, off).alu_reg(ADD, R3, R1)
    asm.ldx(B, R4, R7, ip + (9 if family == 4 else 6))                  # the protocol
    asm.mov(R1, R4).alu_imm(LSH, R1, 8).alu_reg(ADD, R3, R1)
    if family == 4:
        asm.ldx(H, R1, R7, ip + 2).endian(R1, 16).alu_imm(ADD, R1, -20).endian(R1, 16)
    else:
        asm.ldx(H, R1, R7, ip + 4)                     # the payload length, as the frame has it
    asm.alu_reg(ADD, R3, R1)
    _fold_into(asm, R3)
    _fold_into(asm, R3)
    asm.jmp_imm(JEQ, R4, 17, "partial_udp" + tag)
    asm.mov(R1, R7).alu_imm(ADD, R1, l4 + 18).jmp_reg(JGT, R1, R8, "pass")  # for the verifier
    asm.ldx(H, R1, R7, l4 + 16).ja("partial_cmp" + tag)
    asm.label("partial_udp" + tag)
    asm.mov(R1, R7).alu_imm(ADD, R1, l4 + 8).jmp_reg(JGT, R1, R8, "pass")
    asm.ldx(H, R1, R7, l4 + 6)
    asm.label("partial_cmp" + tag).jmp_reg(JEQ, R1, R3, "partial")


def _count_partial(asm: Asm, stats_fd: int) -> None:
    """PROGRAM_ROW's PARTIAL + 1 (the key's word at R10 − 20, free there), then pass."""
    asm.st_imm(W, R10, -20, PROGRAM_ROW)
    asm.ld_map_fd(R1, stats_fd).mov(R2, R10).alu_imm(ADD, R2, -20)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "pass")
    asm.mov_imm(R1, 1).atomic_add(DW, R0, 8 * PARTIAL, R1).ja("pass")


def _count(asm: Asm, stats_fd: int, ipv6: bool = False,
           more: list[tuple[int, int]] | None = None) -> None:
    """The MTU check (a frame too big for the hop goes to Python, which answers it), then the
    entry's packets, bytes and last time, and its real server's row of the stats map (from
    the client, or from the server for a NAT reply). ``ipv6``: 4in6 entries too; ``more``:
    other actions and their overheads (GUE's and GRE's)."""
    overheads = [(TUN, TUN_OVERHEAD)] + ([(TUN_4IN6, IP6_OVERHEAD)] if ipv6 else [])
    overheads += more or []
    _count_frame(asm, stats_fd, _ip_len, overheads, -20, "")


def _ip_len(asm: Asm) -> None:
    """R3: the IPv4 packet's total length, host order."""
    asm.ldx(H, R3, R7, IP_OFF + 2).endian(R3, 16)


def _ip6_len(asm: Asm) -> None:
    """R3: the IPv6 packet's length (header and payload), host order."""
    asm.ldx(H, R3, R7, IP6_OFF + 4).endian(R3, 16).alu_imm(ADD, R3, 40)


def _count_frame(asm: Asm, stats_fd: int, length, overheads: list[tuple[int, int]],
                 slot_key: int, suffix: str) -> None:
    """_count's steps for either family: ``length`` puts the packet's length in R3, a tunnel
    action adds its overhead for the MTU check, the slot's key goes at R10 + ``slot_key``."""
    length(asm)                                                       # host order
    asm.ldx(B, R1, R9, ACTION).mov(R4, R3)
    for i, (action, overhead) in enumerate(overheads):
        last = i == len(overheads) - 1
        following = "sized" + suffix if last else f"size{suffix}_{i}"
        asm.jmp_imm(JNE, R1, action, following).alu_imm(ADD, R4, overhead)
        if not last:
            asm.ja("sized" + suffix).label(following)
    asm.label("sized" + suffix).ldx(H, R1, R9, MTU).jmp_reg(JGT, R4, R1, "pass")
    asm.mov_imm(R1, 1).atomic_add(DW, R9, PACKETS, R1).atomic_add(DW, R9, BYTES, R3)
    asm.call(Helper.ktime_get_ns).stx(DW, R9, LAST_NS, R0)
    asm.ldx(W, R1, R9, SLOT).stx(W, R10, slot_key, R1)
    asm.ld_map_fd(R1, stats_fd).mov(R2, R10).alu_imm(ADD, R2, slot_key)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "counted" + suffix)
    length(asm)
    asm.mov_imm(R1, 1)
    asm.ldx(B, R2, R9, ACTION).jmp_imm(JEQ, R2, NAT_OUT, "count_out" + suffix)
    asm.atomic_add(DW, R0, 0, R1).atomic_add(DW, R0, 8, R3).ja("counted" + suffix)
    asm.label("count_out" + suffix).atomic_add(DW, R0, 16, R1).atomic_add(DW, R0, 24, R3)
    asm.label("counted" + suffix)


def _rewrite_endpoint(asm: Asm, addr_off: int, port_off: int) -> None:
    """The address and port from the entry, the L4 checksum by its delta (a UDP checksum of 0
    stays 0, a computed 0 is sent as 0xFFFF); the IP checksum follows with the TTL."""
    asm.ldx(W, R1, R9, ADDRESS).stx(W, R7, addr_off, R1)
    asm.ldx(H, R1, R9, PORT).stx(H, R7, port_off, R1)
    asm.ldx(B, R1, R7, IP_OFF + 9).jmp_imm(JEQ, R1, 17, "udp_" + str(addr_off))
    asm.mov(R1, R7).alu_imm(ADD, R1, 54).jmp_reg(JGT, R1, R8, "pass")  # for the verifier
    _apply_delta(asm, 50, L4_DELTA)
    asm.ja("l4_done_" + str(addr_off))
    asm.label("udp_" + str(addr_off)).ldx(H, R1, R7, 40).jmp_imm(JEQ, R1, 0, f"l4_done_{addr_off}")
    _apply_delta(asm, 40, L4_DELTA, zero_is=0xFFFF)
    asm.label("l4_done_" + str(addr_off))


def _apply_delta(asm: Asm, csum_off: int, delta_off: int, zero_is: int = 0) -> None:
    """csum' = ~(~csum + delta), folded (RFC 1624), on the frame's 16 bits at csum_off."""
    asm.ldx(H, R1, R7, csum_off).alu_imm(XOR, R1, 0xFFFF)
    asm.ldx(H, R2, R9, delta_off).alu_reg(ADD, R1, R2)
    _fold_into(asm, R1)
    asm.alu_imm(XOR, R1, 0xFFFF)
    if zero_is:
        label = f"nz_{csum_off}_{len(asm)}"
        asm.jmp_imm(JNE, R1, 0, label).mov_imm(R1, zero_is).label(label)
    asm.stx(H, R7, csum_off, R1)


def _fold_into(asm: Asm, reg) -> None:
    for _ in range(2):
        asm.mov(R2, reg).alu_imm(RSH, R2, 16).alu_imm(AND, reg, 0xFFFF).alu_reg(ADD, reg, R2)


def _decrement_ttl(asm: Asm, entry, delta_off: int, ip: int = IP_OFF) -> None:
    """TTL − 1 and the IP checksum by the entry's delta (the TTL's, and NAT's address); a
    result of 0xFFFF is written 0, as pylvs's DR rewrite (a header's sum is never 0xFFFF)."""
    asm.ldx(B, R1, R7, ip + 8).alu_imm(ADD, R1, -1).stx(B, R7, ip + 8, R1)
    asm.ldx(H, R1, R7, ip + 10).alu_imm(XOR, R1, 0xFFFF)
    asm.ldx(H, R2, entry, delta_off).alu_reg(ADD, R1, R2)
    _fold_into(asm, R1)
    asm.alu_imm(XOR, R1, 0xFFFF)
    label = f"ttl_{len(asm)}"
    asm.jmp_imm(JNE, R1, 0xFFFF, label).mov_imm(R1, 0).label(label)
    asm.stx(H, R7, ip + 10, R1)


def _copy_macs(asm: Asm) -> None:
    for off in (0, 4, 8):
        asm.ldx(W, R1, R9, MACS + off).stx(W, R7, off, R1)


def _redirect(asm: Asm) -> None:
    """Out the hop's interface: back out the one it came in on with XDP_TX, else by
    bpf_redirect (xdp_md.ingress_ifindex is at 12)."""
    label = f"tx_{len(asm)}"
    asm.ldx(W, R1, R9, IFINDEX).ldx(W, R2, R6, 12).jmp_reg(JEQ, R1, R2, label)
    asm.mov_imm(R2, 0).call(Helper.redirect).exit()
    asm.label(label).ret(XDP_TX)


def _tunnel(asm: Asm) -> None:
    """TTL − 1 inside, 20 bytes of headroom, the Ethernet header moved to the front with the
    hop's MACs, then the outer IPv4 header and its checksum."""
    _decrement_ttl(asm, R9, IP_DELTA)
    asm.mov(R1, R6).mov_imm(R2, -TUN_OVERHEAD).call(Helper.xdp_adjust_head)
    asm.jmp_imm(JNE, R0, 0, "pass")
    asm.ldx(W, R7, R6, 0).ldx(W, R8, R6, 4)                 # the packet moved: load again
    asm.mov(R1, R7).alu_imm(ADD, R1, ETH + 2 * 20).jmp_reg(JGT, R1, R8, "pass")
    _copy_macs(asm)
    asm.st_imm(H, R7, 12, 0x0008)
    inner, outer = IP_OFF + TUN_OVERHEAD, IP_OFF
    asm.st_imm(B, R7, outer, 0x45)
    asm.ldx(B, R1, R7, inner + 1).stx(B, R7, outer + 1, R1)              # TOS
    asm.mov_imm(R4, 0).alu_reg(ADD, R4, R1)
    asm.alu_imm(LSH, R4, 8)                                              # tos << 8 (LE word)
    asm.ldx(H, R1, R7, inner + 2).endian(R1, 16).alu_imm(ADD, R1, TUN_OVERHEAD)
    asm.endian(R1, 16).stx(H, R7, outer + 2, R1).alu_reg(ADD, R4, R1)    # total length
    asm.ldx(W, R1, R9, PACKETS).endian(R1, 16).stx(H, R7, outer + 4, R1)  # a fresh IP ID
    asm.alu_reg(ADD, R4, R1)
    asm.ldx(H, R1, R7, inner + 6).alu_imm(AND, R1, 0x0040)              # DF, little-endian
    asm.stx(H, R7, outer + 6, R1).alu_reg(ADD, R4, R1)
    asm.ldx(B, R1, R7, inner + 8).stx(B, R7, outer + 8, R1).alu_reg(ADD, R4, R1)  # TTL
    asm.st_imm(B, R7, outer + 9, 4)
    asm.ldx(W, R1, R9, TUN_SRC).stx(W, R7, outer + 12, R1)
    asm.ldx(W, R1, R9, ADDRESS).stx(W, R7, outer + 16, R1)
    asm.ldx(W, R1, R9, TUN_SUM).alu_reg(ADD, R4, R1)
    _fold_into(asm, R4)
    asm.alu_imm(XOR, R4, 0xFFFF).stx(H, R7, outer + 10, R4)
    _redirect(asm)


# -- IPv6 and 4in6 (issue 22) -------------------------------------------------------------------

SPILL = -72
"""Where the IPv4 path keeps a 4in6 entry's IPv6-map entry (a pointer; 0 for other actions)."""


def _lookup_4in6(asm: Asm, map6_fd: int, actions: tuple[int, ...] = (TUN_4IN6,)) -> None:
    """For a 4in6 entry (R9, of the IPv4 map; ``actions``: those with such a second entry), its
    outer addresses' entry in the IPv6 map (key4in6: the IPv4 key, zeros, the protocol with
    V4_IN_6), looked up before anything is counted; kept at SPILL. Without one: pass."""
    asm.ldx(B, R1, R9, ACTION)
    for action in actions:
        asm.jmp_imm(JEQ, R1, action, "lookup_4in6")
    asm.st_imm(DW, R10, SPILL, 0).ja("looked_up_4in6")
    asm.label("lookup_4in6")
    for i, off in enumerate((26, 30, 34)):
        asm.ldx(W, R1, R7, off).stx(W, R10, -64 + 4 * i, R1)
    for i in range(6):
        asm.st_imm(W, R10, -52 + 4 * i, 0)
    asm.ldx(W, R1, R10, -4).alu_imm(OR, R1, V4_IN_6).stx(W, R10, -28, R1)
    asm.ld_map_fd(R1, map6_fd).mov(R2, R10).alu_imm(ADD, R2, -64)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "pass")
    asm.stx(DW, R10, SPILL, R0)
    asm.label("looked_up_4in6")


def _ecn_encapsulate(asm: Asm, reg, mask: int) -> None:
    """INET_ECN_encapsulate on the ECN bits ``mask`` of ``reg``: CE (both set) becomes ECT(0)
    (the higher one only); R2 is scratch."""
    label = f"ecn_{len(asm)}"
    asm.mov(R2, reg).alu_imm(AND, R2, mask).jmp_imm(JNE, R2, mask, label)
    asm.alu_imm(XOR, reg, mask & -mask).label(label)


def _grow(asm: Asm, overhead: int, need: int) -> None:
    """``overhead`` bytes of headroom; R7 and R8 loaded again, ``need`` bytes checked."""
    asm.mov(R1, R6).mov_imm(R2, -overhead).call(Helper.xdp_adjust_head)
    asm.jmp_imm(JNE, R0, 0, "pass")
    asm.ldx(W, R7, R6, 0).ldx(W, R8, R6, 4)                 # the packet moved: load again
    asm.mov(R1, R7).alu_imm(ADD, R1, need).jmp_reg(JGT, R1, R8, "pass")


def _outer6_addresses(asm: Asm, outer: int) -> None:
    """The entry's (R9, an Entry6) tunnel source and destination into the outer IPv6 header."""
    for field, at in ((TUN_SRC6, outer + 8), (ADDRESS6, outer + 24)):
        for i in range(4):
            asm.ldx(W, R1, R9, field + 4 * i).stx(W, R7, at + 4 * i, R1)


def _tunnel_4in6(asm: Asm) -> None:
    """An IPv4 packet to an IPv6 real server: TTL − 1 and the checksum inside (R9 the IPv4
    entry), then R9 its IPv6-map entry: 40 bytes of headroom, the hop's MACs, the outer IPv6
    header (next header 4, the traffic class from the TOS by the ECN rule, flow label 0,
    payload length the inner total length, hop limit the inner TTL), as encapsulate6."""
    asm.ldx(DW, R1, R10, SPILL).jmp_imm(JEQ, R1, 0, "pass")
    _decrement_ttl(asm, R9, IP_DELTA)
    asm.ldx(DW, R9, R10, SPILL).jmp_imm(JEQ, R9, 0, "pass")  # for the verifier
    inner, outer = IP6_OFF + IP6_OVERHEAD, IP6_OFF
    _grow(asm, IP6_OVERHEAD, inner + 20)
    _copy_macs(asm)
    asm.st_imm(H, R7, 12, 0xDD86)                                      # 0x86DD, little-endian
    asm.ldx(B, R1, R7, inner + 1)                                      # TOS
    _ecn_encapsulate(asm, R1, 0x03)
    asm.mov(R2, R1).alu_imm(RSH, R2, 4).alu_imm(OR, R2, 0x60).stx(B, R7, outer, R2)
    asm.alu_imm(AND, R1, 0x0F).alu_imm(LSH, R1, 4).stx(B, R7, outer + 1, R1)
    asm.st_imm(H, R7, outer + 2, 0)                                    # flow label 0
    asm.ldx(H, R1, R7, inner + 2).stx(H, R7, outer + 4, R1)            # payload length
    asm.st_imm(B, R7, outer + 6, 4)
    asm.ldx(B, R1, R7, inner + 8).stx(B, R7, outer + 7, R1)            # hop limit
    _outer6_addresses(asm, outer)
    _redirect(asm)


def _program6(asm: Asm, map6_fd: int, stats_fd: int, tunnels: bool = False,
              partial: bool = False) -> None:
    """The IPv6 half: parse, look up in the IPv6 map, count, then DR, NAT66 either way,
    ip6ip6 or 6in4 (``tunnels``: and GUE or GRE)."""
    encaps = [action for action, (inner, _, _) in ENCAP_ACTIONS.items()
              if tunnels and inner == 6]
    _parse6(asm)
    _lookup6(asm, map6_fd)
    if partial:
        _partial_guard(asm, 6)
    _count_frame(asm, stats_fd, _ip6_len, [(TUN_6IN6, IP6_OVERHEAD), (TUN_6IN4, IP4_OVERHEAD)]
                 + [(action, encap_overhead(action)) for action in encaps], -44, "6")
    asm.ldx(B, R1, R9, ACTION)
    asm.jmp_imm(JEQ, R1, DR, "dr6").jmp_imm(JEQ, R1, NAT_IN, "nat6_in")
    asm.jmp_imm(JEQ, R1, NAT_OUT, "nat6_out").jmp_imm(JEQ, R1, TUN_6IN6, "tun6in6")
    asm.jmp_imm(JEQ, R1, TUN_6IN4, "tun6in4")
    for action in encaps:
        asm.jmp_imm(JEQ, R1, action, f"encap_{action}")
    asm.ja("pass")
    for label, offsets in (("nat6_in", (IP6_OFF + 24, L4_OFF6 + 2)),
                           ("nat6_out", (IP6_OFF + 8, L4_OFF6))):
        asm.label(label)
        _rewrite_endpoint6(asm, *offsets)
        asm.ja("dr6")
    asm.label("dr6")
    _decrement_hop_limit(asm)
    _copy_macs(asm)
    _redirect(asm)
    asm.label("tun6in6")
    _tunnel_6in6(asm)
    asm.label("tun6in4")
    _tunnel_6in4(asm)
    for action in encaps:
        asm.label(f"encap_{action}")
        _encapsulate(asm, action)


def _parse6(asm: Asm) -> None:
    """From "not_ipv4" (54 bytes known there): IPv6 whose next header is TCP (without SYN,
    FIN or RST, its header within the payload) or UDP (with a checksum), hop limit > 1, the
    payload within the frame; R5 the protocol. Else: pass."""
    asm.label("not_ipv4")
    asm.ldx(H, R1, R7, 12).jmp_imm(JNE, R1, 0xDD86, "pass")         # 0x86DD, little-endian
    asm.mov(R1, R7).alu_imm(ADD, R1, L4_OFF6 + 8).jmp_reg(JGT, R1, R8, "pass")
    asm.ldx(B, R1, R7, IP6_OFF).alu_imm(RSH, R1, 4).jmp_imm(JNE, R1, 6, "pass")
    asm.ldx(B, R1, R7, IP6_OFF + 7).jmp_imm(JGT, R1, 1, "hop_ok").ja("pass")
    # the payload within the frame: by the frame's length as a number (bpf_xdp_get_buff_len),
    # not by a packet pointer moved a variable amount, which the verifier refuses to a loader
    # without CAP_PERFMON (its Spectre v1 sanitation), as the service unit is
    asm.label("hop_ok").mov(R1, R6).call(Helper.xdp_get_buff_len)
    asm.ldx(H, R3, R7, IP6_OFF + 4).endian(R3, 16)                    # payload length
    asm.mov(R1, R3).alu_imm(ADD, R1, L4_OFF6).jmp_reg(JGT, R1, R0, "pass")  # past the frame
    asm.ldx(B, R5, R7, IP6_OFF + 6).jmp_imm(JEQ, R5, 17, "udp6")
    asm.jmp_imm(JNE, R5, 6, "pass")                                   # extension headers too
    asm.mov(R1, R7).alu_imm(ADD, R1, L4_OFF6 + 20).jmp_reg(JGT, R1, R8, "pass")
    asm.ldx(B, R1, R7, L4_OFF6 + 12).alu_imm(RSH, R1, 4).jmp_imm(JLT, R1, 5, "pass")
    asm.alu_imm(LSH, R1, 2).jmp_reg(JGT, R1, R3, "pass")              # data offset, as parse6
    asm.ldx(B, R1, R7, L4_OFF6 + 13).jmp_imm(JSET, R1, 0x07, "pass").ja("parsed6")
    asm.label("udp6").jmp_imm(JLT, R3, 8, "pass")
    asm.ldx(H, R1, R7, L4_OFF6 + 6).jmp_imm(JEQ, R1, 0, "pass")      # invalid in IPv6
    asm.label("parsed6")


def _lookup6(asm: Asm, map6_fd: int) -> None:
    """R9: the IPv6 map's entry of (saddr, daddr, sport, dport, protocol); a miss passes."""
    for i in range(9):
        asm.ldx(W, R1, R7, IP6_OFF + 8 + 4 * i).stx(W, R10, -40 + 4 * i, R1)
    asm.stx(W, R10, -4, R5)
    asm.ld_map_fd(R1, map6_fd).mov(R2, R10).alu_imm(ADD, R2, -40)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "pass").mov(R9, R0)


def _rewrite_endpoint6(asm: Asm, addr_off: int, port_off: int) -> None:
    """The address (16 bytes) and port from the entry, the L4 checksum by its delta (a UDP
    checksum computed 0 is sent as 0xFFFF; one of 0 never gets here)."""
    for i in range(4):
        asm.ldx(W, R1, R9, ADDRESS6 + 4 * i).stx(W, R7, addr_off + 4 * i, R1)
    asm.ldx(H, R1, R9, PORT6).stx(H, R7, port_off, R1)
    udp, done = f"udp6_{addr_off}", f"l4_6_done_{addr_off}"
    asm.ldx(B, R1, R7, IP6_OFF + 6).jmp_imm(JEQ, R1, 17, udp)
    asm.mov(R1, R7).alu_imm(ADD, R1, L4_OFF6 + 20).jmp_reg(JGT, R1, R8, "pass")  # verifier
    _apply_delta(asm, L4_OFF6 + 16, L4_DELTA6)
    asm.ja(done)
    asm.label(udp)
    _apply_delta(asm, L4_OFF6 + 6, L4_DELTA6, zero_is=0xFFFF)
    asm.label(done)


def _decrement_hop_limit(asm: Asm) -> None:
    asm.ldx(B, R1, R7, IP6_OFF + 7).alu_imm(ADD, R1, -1).stx(B, R7, IP6_OFF + 7, R1)


def _tunnel_6in6(asm: Asm) -> None:
    """Hop limit − 1 inside, 40 bytes of headroom, the hop's MACs, the outer IPv6 header:
    version and traffic class from the inner one (ECN: CE as ECT(0)), flow label 0, payload
    length the inner packet's, next header 41, hop limit the inner's (encapsulate6)."""
    _decrement_hop_limit(asm)
    inner, outer = IP6_OFF + IP6_OVERHEAD, IP6_OFF
    _grow(asm, IP6_OVERHEAD, inner + 40)
    _copy_macs(asm)
    asm.st_imm(H, R7, 12, 0xDD86)
    asm.ldx(B, R1, R7, inner).stx(B, R7, outer, R1)       # 6, the traffic class's high half
    asm.ldx(B, R1, R7, inner + 1).alu_imm(AND, R1, 0xF0)  # its low half (ECN's bits 0x30)
    _ecn_encapsulate(asm, R1, 0x30)
    asm.stx(B, R7, outer + 1, R1).st_imm(H, R7, outer + 2, 0)
    asm.ldx(H, R1, R7, inner + 4).endian(R1, 16).alu_imm(ADD, R1, IP6_OVERHEAD)
    asm.endian(R1, 16).stx(H, R7, outer + 4, R1)         # payload length
    asm.st_imm(B, R7, outer + 6, 41)
    asm.ldx(B, R1, R7, inner + 7).stx(B, R7, outer + 7, R1)
    _outer6_addresses(asm, outer)
    _redirect(asm)


def _tunnel_6in4(asm: Asm) -> None:
    """Hop limit − 1 inside, 20 bytes of headroom, the hop's MACs, the outer IPv4 header
    (protocol 41, TOS the traffic class by the ECN rule, DF clear, TTL the inner hop limit, a
    fresh IP ID) and its checksum from the entry's constant sum (encapsulate_6in4)."""
    _decrement_hop_limit(asm)
    inner, outer = IP_OFF + IP4_OVERHEAD, IP_OFF
    _grow(asm, IP4_OVERHEAD, inner + 40)
    _copy_macs(asm)
    asm.st_imm(H, R7, 12, 0x0008)
    asm.st_imm(B, R7, outer, 0x45)
    asm.ldx(B, R1, R7, inner).alu_imm(AND, R1, 0x0F).alu_imm(LSH, R1, 4)
    asm.ldx(B, R2, R7, inner + 1).alu_imm(RSH, R2, 4).alu_reg(OR, R1, R2)  # traffic class
    _ecn_encapsulate(asm, R1, 0x03)
    asm.stx(B, R7, outer + 1, R1).mov(R4, R1).alu_imm(LSH, R4, 8)       # tos << 8 (LE word)
    asm.ldx(H, R1, R7, inner + 4).endian(R1, 16).alu_imm(ADD, R1, IP4_OVERHEAD + 40)
    asm.endian(R1, 16).stx(H, R7, outer + 2, R1).alu_reg(ADD, R4, R1)    # total length
    asm.ldx(W, R1, R9, PACKETS).endian(R1, 16).stx(H, R7, outer + 4, R1)  # a fresh IP ID
    asm.alu_reg(ADD, R4, R1)
    asm.st_imm(H, R7, outer + 6, 0)                                      # DF clear
    asm.ldx(B, R1, R7, inner + 7).stx(B, R7, outer + 8, R1).alu_reg(ADD, R4, R1)  # TTL
    asm.st_imm(B, R7, outer + 9, 41)
    asm.ldx(W, R1, R9, TUN_SRC6).stx(W, R7, outer + 12, R1)
    asm.ldx(W, R1, R9, ADDRESS6).stx(W, R7, outer + 16, R1)
    asm.ldx(W, R1, R9, TUN_SUM6).alu_reg(ADD, R4, R1)
    _fold_into(asm, R4)
    asm.alu_imm(XOR, R4, 0xFFFF).stx(H, R7, outer + 10, R4)
    _redirect(asm)


# -- GUE and GRE (issue 24) ---------------------------------------------------------------------

def _checksum_guard(asm: Asm) -> None:
    """An IPv4 UDP frame without a checksum (0) to a GUE or GRE entry that computes the outer
    checksum passes to Python: the program's outer sum takes the inner packet's as the
    complement of its pseudo-header's (a correct checksum makes the packet's own sum that),
    which a datagram without one is not. IPv6 frames with 0 never get here (_parse6)."""
    asm.ldx(B, R1, R9, FLAGS).jmp_imm(JNE, R1, FLAG_CSUM, "csum_guarded")
    asm.ldx(B, R1, R7, IP_OFF + 9).jmp_imm(JNE, R1, 17, "csum_guarded")
    asm.ldx(H, R1, R7, 40).jmp_imm(JEQ, R1, 0, "pass")
    asm.label("csum_guarded")


def _inner_sum(asm: Asm, family: int, inner: int) -> None:
    """R5: what the one's-complement sum of the whole inner packet at ``inner`` comes to, read
    little-endian, from its headers alone. An IPv4 packet's header sums to 0 (its checksum is
    right: the program updates it as it decrements the TTL) and its TCP or UDP segment to the
    complement of the pseudo-header (addresses, protocol, length), since its checksum is right
    too; an IPv6 packet's header and segment share the addresses and the payload length, which
    cancel, leaving the first two words, the next header and hop limit word, less the next
    header. R3 holds the inner length, host order; R1 and R2 are scratch."""
    if family == 4:
        asm.mov_imm(R5, 0)
        for off in (12, 14, 16, 18):
            asm.ldx(H, R1, R7, inner + off).alu_reg(ADD, R5, R1)
        asm.ldx(B, R1, R7, inner + 9).alu_imm(LSH, R1, 8).alu_reg(ADD, R5, R1)
        asm.mov(R1, R3).alu_imm(ADD, R1, -20).endian(R1, 16).alu_reg(ADD, R5, R1)
        _fold_into(asm, R5)
        asm.alu_imm(XOR, R5, 0xFFFF)
        return
    asm.ldx(H, R5, R7, inner).ldx(H, R1, R7, inner + 2).alu_reg(ADD, R5, R1)
    asm.ldx(H, R1, R7, inner + 6).alu_reg(ADD, R5, R1)
    asm.ldx(B, R1, R7, inner + 6).alu_imm(LSH, R1, 8).alu_imm(XOR, R1, 0xFFFF)
    asm.alu_reg(ADD, R5, R1)


def _encapsulate(asm: Asm, action: int) -> None:
    """A GUE or GRE action, as encap.tunnel_xmit: the inner TTL (and checksum) or hop limit,
    the headroom, the hop's MACs, the outer IPv4 header (TOS by the ECN rule, DF copied from
    an IPv4 packet, IP ID 0 with DF and the entry's packet count without, TTL the inner one,
    its checksum from the entry's constant sum) or IPv6 header (traffic class by the ECN rule,
    flow label 0, hop limit the inner one), then UDP and GUE (the entry's ports, the length,
    the checksum when FLAG_CSUM: the entry's constant sum, the length twice, _inner_sum) or
    GRE (4 bytes, or 8 with its checksum)."""
    inner_family, outer_family, kind = ENCAP_ACTIONS[action]
    tag = f"_{action}"
    if inner_family == 4:
        _decrement_ttl(asm, R9, IP_DELTA)
    else:
        _decrement_hop_limit(asm)
    if inner_family == 4 and outer_family == 6:
        asm.ldx(DW, R9, R10, SPILL).jmp_imm(JEQ, R9, 0, "pass")  # the 4in6 side entry
    head = IP4_OVERHEAD if outer_family == 4 else IP6_OVERHEAD
    grow = head + TUNNEL_HLEN[kind]
    outer, tunnel, inner = ETH, ETH + head, ETH + grow
    proto = 17 if kind == "gue" else 47
    v4_entry = inner_family == 4 and outer_family == 4  # else an Entry6's layout
    _grow(asm, grow, inner + (20 if inner_family == 4 else 40))
    _copy_macs(asm)
    asm.st_imm(H, R7, 12, 0x0008 if outer_family == 4 else 0xDD86)
    if inner_family == 4:                                                # R3: inner length
        asm.ldx(H, R3, R7, inner + 2).endian(R3, 16)
    else:
        asm.ldx(H, R3, R7, inner + 4).endian(R3, 16).alu_imm(ADD, R3, 40)
    ttl = inner + (8 if inner_family == 4 else 7)
    if outer_family == 4:
        _outer4(asm, inner_family, outer, inner, grow, proto, ttl, v4_entry, tag)
    else:
        _outer6(asm, inner_family, outer, inner, grow - head, proto, ttl)
    if kind == "gue":
        _gue(asm, inner_family, tunnel, inner, v4_entry, tag)
    else:
        _gre(asm, inner_family, tunnel, inner, kind == "gre_csum")
    _redirect(asm)


def _outer4(asm: Asm, inner_family: int, outer: int, inner: int, grow: int, proto: int,
            ttl: int, v4_entry: bool, tag: str) -> None:
    """The outer IPv4 header and its checksum (R4, little-endian words)."""
    asm.st_imm(B, R7, outer, 0x45)
    if inner_family == 4:
        asm.ldx(B, R1, R7, inner + 1)                                    # TOS
    else:
        asm.ldx(B, R1, R7, inner).alu_imm(AND, R1, 0x0F).alu_imm(LSH, R1, 4)
        asm.ldx(B, R2, R7, inner + 1).alu_imm(RSH, R2, 4).alu_reg(OR, R1, R2)  # traffic class
    _ecn_encapsulate(asm, R1, 0x03)
    asm.stx(B, R7, outer + 1, R1).mov(R4, R1).alu_imm(LSH, R4, 8)
    asm.mov(R1, R3).alu_imm(ADD, R1, grow).endian(R1, 16)              # total length
    asm.stx(H, R7, outer + 2, R1).alu_reg(ADD, R4, R1)
    if inner_family == 4:
        asm.ldx(H, R1, R7, inner + 6).alu_imm(AND, R1, 0x0040)          # DF, little-endian
        asm.stx(H, R7, outer + 6, R1).alu_reg(ADD, R4, R1)
        asm.jmp_imm(JNE, R1, 0, "df" + tag)
    else:
        asm.st_imm(H, R7, outer + 6, 0)                                  # DF clear
    asm.ldx(W, R1, R9, PACKETS).endian(R1, 16).stx(H, R7, outer + 4, R1)  # a fresh IP ID
    asm.alu_reg(ADD, R4, R1)
    if inner_family == 4:
        asm.ja("id" + tag).label("df" + tag).st_imm(H, R7, outer + 4, 0)  # DF: ID 0
        asm.label("id" + tag)
    asm.ldx(B, R1, R7, ttl).stx(B, R7, outer + 8, R1).alu_reg(ADD, R4, R1)
    asm.st_imm(B, R7, outer + 9, proto)
    source, destination = (TUN_SRC, ADDRESS) if v4_entry else (TUN_SRC6, ADDRESS6)
    asm.ldx(W, R1, R9, source).stx(W, R7, outer + 12, R1)
    asm.ldx(W, R1, R9, destination).stx(W, R7, outer + 16, R1)
    asm.ldx(W if v4_entry else H, R1, R9, TUN_SUM if v4_entry else TUN_SUM6)
    asm.alu_reg(ADD, R4, R1)
    _fold_into(asm, R4)
    asm.alu_imm(XOR, R4, 0xFFFF).stx(H, R7, outer + 10, R4)


def _outer6(asm: Asm, inner_family: int, outer: int, inner: int, tunnel_hlen: int, proto: int,
            ttl: int) -> None:
    """The outer IPv6 header: the traffic class by the ECN rule, flow label 0, the payload
    length (the tunnel header and the inner packet), the entry's addresses."""
    if inner_family == 6:
        asm.ldx(B, R1, R7, inner).stx(B, R7, outer, R1)   # 6, the traffic class's high half
        asm.ldx(B, R1, R7, inner + 1).alu_imm(AND, R1, 0xF0)
        _ecn_encapsulate(asm, R1, 0x30)
        asm.stx(B, R7, outer + 1, R1)
    else:
        asm.ldx(B, R1, R7, inner + 1)                                    # TOS
        _ecn_encapsulate(asm, R1, 0x03)
        asm.mov(R2, R1).alu_imm(RSH, R2, 4).alu_imm(OR, R2, 0x60).stx(B, R7, outer, R2)
        asm.alu_imm(AND, R1, 0x0F).alu_imm(LSH, R1, 4).stx(B, R7, outer + 1, R1)
    asm.st_imm(H, R7, outer + 2, 0)                                      # flow label 0
    asm.mov(R1, R3).alu_imm(ADD, R1, tunnel_hlen).endian(R1, 16).stx(H, R7, outer + 4, R1)
    asm.st_imm(B, R7, outer + 6, proto)
    asm.ldx(B, R1, R7, ttl).stx(B, R7, outer + 7, R1)
    _outer6_addresses(asm, outer)


def _gue(asm: Asm, inner_family: int, udp: int, inner: int, v4_entry: bool, tag: str) -> None:
    """UDP (the entry's ports, the length, the checksum) and GUE's 4 bytes."""
    sport, dport, constant = (SPORT, PORT, L4_DELTA) if v4_entry else (SPORT6, PORT6,
                                                                        L4_DELTA6)
    asm.ldx(H, R1, R9, sport).stx(H, R7, udp, R1)
    asm.ldx(H, R1, R9, dport).stx(H, R7, udp + 2, R1)
    asm.mov(R1, R3).alu_imm(ADD, R1, 12).endian(R1, 16).stx(H, R7, udp + 4, R1)
    asm.st_imm(H, R7, udp + 6, 0)
    asm.st_imm(W, R7, udp + 8, (4 if inner_family == 4 else 41) << 8)   # 0, proto, flags 0
    asm.ldx(B, R1, R9, FLAGS).jmp_imm(JNE, R1, FLAG_CSUM, "udp_done" + tag)
    _inner_sum(asm, inner_family, inner)
    asm.ldx(H, R1, R7, udp + 4).alu_reg(ADD, R5, R1).alu_reg(ADD, R5, R1)  # length, twice
    asm.ldx(H, R1, R9, constant).alu_reg(ADD, R5, R1)
    _fold_into(asm, R5)
    asm.alu_imm(XOR, R5, 0xFFFF)
    asm.jmp_imm(JNE, R5, 0, "udp_nz" + tag).mov_imm(R5, 0xFFFF).label("udp_nz" + tag)
    asm.stx(H, R7, udp + 6, R5)
    asm.label("udp_done" + tag)


def _gre(asm: Asm, inner_family: int, gre: int, inner: int, csum: bool) -> None:
    """GRE's 4 bytes (flags 0, the EtherType), or 8: flag C, the checksum over the GRE header
    and the inner packet, 16 reserved bits."""
    ethertype = 0x0008 if inner_family == 4 else 0xDD86                  # little-endian
    asm.st_imm(W, R7, gre, (0x0080 if csum else 0) | ethertype << 16)
    if not csum:
        return
    asm.st_imm(W, R7, gre + 4, 0)
    _inner_sum(asm, inner_family, inner)
    asm.alu_imm(ADD, R5, 0x0080 + ethertype)
    _fold_into(asm, R5)
    asm.alu_imm(XOR, R5, 0xFFFF).stx(H, R7, gre + 4, R5)

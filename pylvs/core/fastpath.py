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
VALUE = struct.Struct("<QQQIBxH12s4s2sHHxx4sIIxxxx")
"""packets, bytes, last_ns, ifindex, action, mtu, macs (dst+src), address, port,
IP checksum delta, L4 checksum delta, tunnel source, tunnel header partial sum, stats slot."""
VALUE_SIZE = VALUE.size
PACKETS, BYTES, LAST_NS, IFINDEX, ACTION, MTU, MACS, ADDRESS, PORT, IP_DELTA, L4_DELTA, \
    TUN_SRC, TUN_SUM, SLOT = 0, 8, 16, 24, 28, 30, 32, 44, 48, 50, 52, 56, 60, 64
STATS = struct.Struct("<QQQQ")
"""Per real server (its slot): packets and bytes from clients, then from the server (NAT)."""
SLOTS_PER_WORKER = 1024
STATS_SLOTS = 64 * SLOTS_PER_WORKER
"""Rows of the stats map: 1,024 real servers for each of up to 64 workers."""
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

    def pack(self, packets: int = 0, octets: int = 0, last_ns: int = 0) -> bytes:
        return VALUE.pack(packets, octets, last_ns, self.ifindex, self.action, self.mtu,
                          self.macs, self.address, self.port, self.ip_delta, self.l4_delta,
                          self.tun_src, self.tun_sum, self.slot)


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
VALUE6 = struct.Struct("<QQQIBxH12sH2s16sII16s")
"""packets, bytes, last_ns, ifindex, action, mtu, macs (dst+src), L4 checksum delta, port,
address (NAT's new one; a tunnel's outer destination, 4 bytes of it for 6in4), stats slot,
the 6in4 outer header's partial sum, the tunnel's outer source (4 bytes of it for 6in4).
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

    def pack(self, packets: int = 0, octets: int = 0, last_ns: int = 0) -> bytes:
        return VALUE6.pack(packets, octets, last_ns, self.ifindex, self.action,
                           min(self.mtu, NO_MTU), self.macs, self.l4_delta, self.port,
                           self.address, self.slot, self.tun_sum, self.tun_src)


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


def program(map_fd: int, stats_fd: int, map6_fd: int | None = None) -> bytes:
    """The XDP program over the connection map ``map_fd`` and the stats map ``stats_fd``; with
    ``map6_fd``, the IPv6 connection map (KEY6_SIZE, VALUE6_SIZE), IPv6 frames and 4in6 too
    (without it, the IPv4 program alone, as before: everything else passes)."""
    ipv6 = map6_fd is not None
    asm = Asm()
    _parse(asm, ipv6)
    _lookup(asm, map_fd)
    if ipv6:
        _lookup_4in6(asm, map6_fd)  # type: ignore[arg-type]
    _count(asm, stats_fd, ipv6)
    asm.ldx(B, R1, R9, ACTION)
    asm.jmp_imm(JEQ, R1, DR, "dr").jmp_imm(JEQ, R1, NAT_IN, "nat_in")
    asm.jmp_imm(JEQ, R1, NAT_OUT, "nat_out").jmp_imm(JEQ, R1, TUN, "tun")
    if ipv6:
        asm.jmp_imm(JEQ, R1, TUN_4IN6, "tun4in6")
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
    if ipv6:
        asm.label("tun4in6")
        _tunnel_4in6(asm)
        _program6(asm, map6_fd, stats_fd)  # type: ignore[arg-type]
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


def _count(asm: Asm, stats_fd: int, ipv6: bool = False) -> None:
    """The MTU check (a frame too big for the hop goes to Python, which answers it), then the
    entry's packets, bytes and last time, and its real server's row of the stats map (from
    the client, or from the server for a NAT reply). ``ipv6``: 4in6 entries too."""
    overheads = [(TUN, TUN_OVERHEAD)] + ([(TUN_4IN6, IP6_OVERHEAD)] if ipv6 else [])
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


def _lookup_4in6(asm: Asm, map6_fd: int) -> None:
    """For a 4in6 entry (R9, of the IPv4 map), its outer addresses' entry in the IPv6 map
    (key4in6: the IPv4 key, zeros, the protocol with V4_IN_6), looked up before anything is
    counted; kept at SPILL. Without one: pass."""
    asm.ldx(B, R1, R9, ACTION).jmp_imm(JEQ, R1, TUN_4IN6, "lookup_4in6")
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


def _program6(asm: Asm, map6_fd: int, stats_fd: int) -> None:
    """The IPv6 half: parse, look up in the IPv6 map, count, then DR, NAT66 either way,
    ip6ip6 or 6in4."""
    _parse6(asm)
    _lookup6(asm, map6_fd)
    _count_frame(asm, stats_fd, _ip6_len, [(TUN_6IN6, IP6_OVERHEAD), (TUN_6IN4, IP4_OVERHEAD)],
                 -44, "6")
    asm.ldx(B, R1, R9, ACTION)
    asm.jmp_imm(JEQ, R1, DR, "dr6").jmp_imm(JEQ, R1, NAT_IN, "nat6_in")
    asm.jmp_imm(JEQ, R1, NAT_OUT, "nat6_out").jmp_imm(JEQ, R1, TUN_6IN6, "tun6in6")
    asm.jmp_imm(JEQ, R1, TUN_6IN4, "tun6in4").ja("pass")
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

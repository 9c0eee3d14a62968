"""The XDP fast path: the eBPF program that forwards frames of established connections without
Python, and the map entries the director fills for it.

The director decides; the program only looks up and rewrites. A frame is looked up by the 12
bytes at its IP source (saddr, daddr, sport, dport) and its protocol, the same key the
connection table uses for clients (``Connection.key12``) and NAT replies (``reply_key12``). Each
forwarder makes the entries of its connections (``Forwarder.xdp_entries``, from the builders
here: ``key``, ``dr``, ``nat``, ``tun``), so that on a hit the program does what that forwarder
does in Python, byte for byte; ``for_connection`` asks the connection's. The program's actions:

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
    JNE,
    JSET,
    LSH,
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


def for_connection(conn: Connection, hop: NextHop, ifindex: Mapping[str, int], slot: int = 0
                   ) -> list[tuple[bytes, Entry]]:
    """The map entries that forward ``conn`` as its forwarder would, toward its real server
    through ``hop`` (and back to the client, for NAT): the forwarder's ``xdp_entries``; [] when
    the hop's interface has no index here, or for a method the program lacks. ``slot``: the
    real server's row in the stats map."""
    if ifindex.get(hop.interface) is None:
        return []
    return conn.forwarder.xdp_entries(conn, hop, ifindex, slot)


_fold = csum_delta.fold  # end-around carries, as the program's _fold_into


def program(map_fd: int, stats_fd: int) -> bytes:
    """The XDP program over the connection map ``map_fd`` and the stats map ``stats_fd``."""
    asm = Asm()
    _parse(asm)
    _lookup(asm, map_fd)
    _count(asm, stats_fd)
    asm.ldx(B, R1, R9, ACTION)
    asm.jmp_imm(JEQ, R1, DR, "dr").jmp_imm(JEQ, R1, NAT_IN, "nat_in")
    asm.jmp_imm(JEQ, R1, NAT_OUT, "nat_out").jmp_imm(JEQ, R1, TUN, "tun").ja("pass")
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
    asm.label("pass").ret(XDP_PASS)
    return asm.assemble()


def _parse(asm: Asm) -> None:
    """R6 ctx, R7 data, R8 data_end; IPv4 with a 20-byte header, not a fragment, TTL > 1,
    TCP (without SYN, FIN or RST) or UDP; R5 the protocol. Else: pass."""
    asm.mov(R6, R1).ldx(W, R7, R6, 0).ldx(W, R8, R6, 4)
    asm.mov(R1, R7).alu_imm(ADD, R1, 54).jmp_reg(JGT, R1, R8, "short")
    asm.ldx(H, R1, R7, 12).jmp_imm(JNE, R1, 0x0008, "pass")         # 0x0800, little-endian
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


def _count(asm: Asm, stats_fd: int) -> None:
    """The MTU check (a frame too big for the hop goes to Python, which answers it), then the
    entry's packets, bytes and last time, and its real server's row of the stats map (from
    the client, or from the server for a NAT reply)."""
    asm.ldx(H, R3, R7, IP_OFF + 2).endian(R3, 16)                     # total length, host order
    asm.ldx(B, R1, R9, ACTION).mov(R4, R3).jmp_imm(JNE, R1, TUN, "sized")
    asm.alu_imm(ADD, R4, TUN_OVERHEAD)
    asm.label("sized").ldx(H, R1, R9, MTU).jmp_reg(JGT, R4, R1, "pass")
    asm.mov_imm(R1, 1).atomic_add(DW, R9, PACKETS, R1).atomic_add(DW, R9, BYTES, R3)
    asm.call(Helper.ktime_get_ns).stx(DW, R9, LAST_NS, R0)
    asm.ldx(W, R1, R9, SLOT).stx(W, R10, -20, R1)
    asm.ld_map_fd(R1, stats_fd).mov(R2, R10).alu_imm(ADD, R2, -20)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "counted")
    asm.ldx(H, R3, R7, IP_OFF + 2).endian(R3, 16).mov_imm(R1, 1)
    asm.ldx(B, R2, R9, ACTION).jmp_imm(JEQ, R2, NAT_OUT, "count_out")
    asm.atomic_add(DW, R0, 0, R1).atomic_add(DW, R0, 8, R3).ja("counted")
    asm.label("count_out").atomic_add(DW, R0, 16, R1).atomic_add(DW, R0, 24, R3)
    asm.label("counted")


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

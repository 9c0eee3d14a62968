"""A classic BPF program that lets only the director's frames reach Python.

Attached to the packet socket (SO_ATTACH_FILTER), it passes: IPv4 frames, not fragments, that are
TCP/UDP to a virtual service, TCP/UDP from a NAT real server's port, or ICMP to a VIP or from a
NAT real server; IPv6 frames to an IPv6 VIP or from an IPv6 NAT real server, whatever follows the
header (extension headers and fragments may stand before the ports: the director sorts them, and
ICMPv6 that is no one's it leaves alone). Everything else (ARP, NDP to the director's own
addresses, the director's own traffic, ...) stays in the kernel. Built from the rules, rebuilt
whenever they change. Pure: returns the instructions.

A rule is (protocol, address, port): the address may be a prefix (``192.0.2.0/31``, a mark
rule's destination) and the port a range ``(low, high)``; port 0 and ``(0, 65535)`` are any port
(pylvs.core.marks.Endpoint, what the core says a service takes).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

from pylvs.core.marks import ANY_PORT, PortRange, port_range

# opcodes (linux/filter.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_H_IND, LDX_B_MSH = 0x20, 0x28, 0x30, 0x48, 0xB1
JEQ_K, JSET_K, RET_K, JA = 0x15, 0x45, 0x06, 0x05
JGT_K, JGE_K, AND_K = 0x25, 0x35, 0x54
ACCEPT_LEN = 0x40000
MAX_INSTRUCTIONS = 4096
Instruction = tuple[int, int, int, int]   # code, jt, jf, k
Rule = tuple[str, str, int | PortRange]    # protocol, address or prefix, port or range

_PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def _addr(text: str) -> int:
    return struct.unpack("!I", socket.inet_aton(text))[0]


def _network(text: str) -> tuple[int, int]:
    """An IPv4 address or prefix: (its first address, its mask)."""
    if "/" not in text:
        return _addr(text), 0xFFFFFFFF
    network = ipaddress.IPv4Network(text, strict=False)
    return int(network.network_address), int(network.netmask)


def _words6(text: str) -> list[tuple[int, int]]:
    """An IPv6 address or prefix as four (word, mask) pairs."""
    network = ipaddress.IPv6Network(text, strict=False)
    value, mask = int(network.network_address), int(network.netmask)
    return [(value >> (96 - 32 * i) & 0xFFFFFFFF, mask >> (96 - 32 * i) & 0xFFFFFFFF)
            for i in range(4)]


def _ipv6(text: str) -> bool:
    return ":" in text


def program4(services: Iterable[Rule], replies: Iterable[Rule] = ()) -> list[Instruction]:
    """The part for IPv4: services (to VIP:port) and NAT replies (from RIP:port)."""
    blocks: list[list[tuple]] = []
    services = [rule for rule in services if not _ipv6(rule[1])]
    replies = [rule for rule in replies if not _ipv6(rule[1])]
    for proto, vip, port in services:
        blocks.append(_match(_PROTO[proto], 30, _network(vip), 16, port_range(port)))
    for proto, rip, port in replies:
        blocks.append(_match(_PROTO[proto], 26, _network(rip), 14, port_range(port)))
    for vip in dict.fromkeys(vip for _, vip, _ in services):
        blocks.append(_match(socket.IPPROTO_ICMP, 30, _network(vip), None, ANY_PORT))
    for rip in dict.fromkeys(rip for _, rip, _ in replies):
        blocks.append(_match(socket.IPPROTO_ICMP, 26, _network(rip), None, ANY_PORT))
    head = [(LD_H_ABS, 0, 0, 12), (JEQ_K, 0, "drop", 0x0800),
            (LD_H_ABS, 0, 0, 20), (JSET_K, "drop", 0, 0x3FFF)]  # MF or an offset: a fragment
    return _assemble(head, blocks)


def program6(services: Iterable[Rule], replies: Iterable[Rule] = ()) -> list[Instruction]:
    """The part for IPv6: frames to an IPv6 VIP (destination at 38) or from an IPv6 NAT real
    server (source at 22), by address alone."""
    vips = dict.fromkeys(vip for _, vip, _ in services if _ipv6(vip))
    rips = dict.fromkeys(rip for _, rip, _ in replies if _ipv6(rip))
    blocks = [*(_match6(38, vip) for vip in vips), *(_match6(22, rip) for rip in rips)]
    return _assemble([(LD_H_ABS, 0, 0, 12), (JEQ_K, 0, "drop", 0x86DD)], blocks)


def program(services: Iterable[Rule], replies: Iterable[Rule] = ()) -> list[Instruction]:
    """The filter for services (to VIP:port) and NAT replies (from RIP:port) of both families:
    IPv6 frames to ``program6``'s part (jumped to), the rest to ``program4``'s (alone when
    there is no IPv6 rule)."""
    services, replies = list(services), list(replies)
    four = program4(services, replies)
    if not any(_ipv6(address) for _, address, _ in [*services, *replies]):
        return four
    six = program6(services, replies)
    return [(LD_H_ABS, 0, 0, 12), (JEQ_K, 0, 1, 0x86DD), (JA, 0, 0, len(four)), *four, *six]


def _match6(addr_offset: int, address: str) -> list[tuple]:
    """The address (or prefix: the words its mask covers, masked) at addr_offset."""
    block: list[tuple] = []
    words = [(i, word, mask) for i, (word, mask) in enumerate(_words6(address)) if mask]
    for i, word, mask in words:
        block += [(LD_W_ABS, 0, 0, addr_offset + 4 * i),
                  *([(AND_K, 0, 0, mask)] if mask != 0xFFFFFFFF else []),
                  (JEQ_K, "accept" if (i, word, mask) == words[-1] else 0, "next", word)]
    return block


def _match(proto: int, addr_offset: int, network: tuple[int, int], port_offset: int | None,
           ports: PortRange) -> list[tuple]:
    """proto, then the address (or prefix) at addr_offset, then (if any) the port after the
    IP header within ``ports``."""
    addr, mask = network
    block = [(LD_B_ABS, 0, 0, 23), (JEQ_K, 0, "next", proto),
             (LD_W_ABS, 0, 0, addr_offset),
             *([(AND_K, 0, 0, mask)] if mask != 0xFFFFFFFF else [])]
    if port_offset is None or ports == ANY_PORT:
        return block + [(JEQ_K, "accept", "next", addr)]
    block += [(JEQ_K, 0, "next", addr), (LDX_B_MSH, 0, 0, 14), (LD_H_IND, 0, 0, port_offset)]
    low, high = ports
    if low == high:
        return block + [(JEQ_K, "accept", "next", low)]
    return block + [(JGE_K, 0, "next", low), (JGT_K, "next", "accept", high)]


def _assemble(head: list[tuple], blocks: list[list[tuple]]) -> list[Instruction]:
    """Lay out head, blocks, drop, accept; turn labels into forward jump offsets."""
    code: list[tuple] = list(head)
    nexts: list[int] = []
    for block in blocks:
        code += block
        nexts.append(len(code))
    drop, accept = len(code), len(code) + 1
    code += [(RET_K, 0, 0, 0), (RET_K, 0, 0, ACCEPT_LEN)]
    if len(code) > MAX_INSTRUCTIONS:
        raise ValueError(f"a filter of {len(code)} instructions is too long")
    out: list[Instruction] = []
    block_end = iter(nexts)
    end = next(block_end, drop)
    for i, (op, jt, jf, k) in enumerate(code):
        while i >= end and end != drop:
            end = next(block_end, drop)
        targets = {"accept": accept, "drop": drop, "next": end}
        jt = targets[jt] - i - 1 if isinstance(jt, str) else jt
        jf = targets[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError("too many rules for one filter (a jump beyond 255)")
        out.append((op, jt, jf, k))
    return out


def pack(instructions: list[Instruction]) -> bytes:
    return b"".join(struct.pack("HBBI", *ins) for ins in instructions)

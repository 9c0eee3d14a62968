"""Which worker a frame goes to: the classic BPF program of the workers' PACKET_FANOUT group.

The kernel runs it on every frame and hands the frame to member ``result % workers``. The result
is a hash of the frame's *client* endpoint, so every frame of one connection meets one worker,
whichever way it goes: a frame to a virtual service hashes its source; a NAT real server's reply
its destination; an ICMP error to a VIP (about a reply) its quoted destination, one from a NAT
real server (about a forwarded frame) its quoted source. A persistent service hashes the client's
address alone, so all of a client's connections (and its persistence template) meet too.

Offsets are from the IP header (SKF_NET_OFF), which is where the kernel's fanout demux has the
frame; quoted headers are taken as 20 bytes. Anything else: member 0. Pure: returns instructions.

IPv6 frames (version 6) go to a part of their own, which hashes the client's address alone, by
the XOR of its four words: a fragment after the first has no ports, and must meet the worker its
first fragment met. The same four rules (to a VIP, from a NAT real server, ICMPv6 about either:
the quoted packet after a 40-byte header and 8 bytes of ICMPv6) by address.

A rule's address may be a prefix and its port a range (a fwmark service's mark rules name such:
pylvs.core.marks); the rules are tried in order, a fwmark service's first, as the core looks a
packet up by its mark before its address and port.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pylvs.core.marks import (
    ANY_PORT,
    NO_MARKS,
    Endpoint,
    Marks,
    PortRange,
    port_range,
    replies_by,
    taken_by,
)
from pylvs.core.model import VirtualService
from pylvs.shell.bpf import (
    AND_K,
    JEQ_K,
    JGE_K,
    JGT_K,
    LD_B_ABS,
    LD_H_IND,
    LDX_B_MSH,
    RET_K,
    Instruction,
)

NET = -0x100000  # SKF_NET_OFF: loads relative to the network header
LD_W_ABS, LD_W_IND, LD_B_IND, LDX_MEM, ST = 0x20, 0x40, 0x50, 0x61, 0x02
XOR_X, MUL_K, RSH_K, MOD_K, RET_A, JA = 0xAC, 0x24, 0x74, 0x94, 0x16, 0x05
GOLDEN = 0x9E3779B1  # Knuth's multiplicative hash
MAX_INSTRUCTIONS = 4096

_PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


class Rule(NamedTuple):
    protocol: str
    address: str
    """An address or a prefix."""
    port: int | PortRange
    """A port, or a range (low, high); 0 or (0, 65535): any."""
    by_address: bool
    """Hash the client's address alone (persistence), not its address and port."""


def program(services: Iterable[Rule], replies: Iterable[Rule] = (),
            order: Sequence[int] | None = None) -> list[Instruction]:
    """Services are (protocol, VIP, port, ...); replies (protocol, NAT RIP, its port, ...).

    ``order``: the fanout member that serves each worker slot (``client_hash % len(order)``),
    when members left and joined since the workers started; None: member = slot."""
    code: list[tuple] = []
    services, replies = list(services), list(replies)
    vips6 = list(dict.fromkeys(r.address for r in services if _ipv6(r.address)))
    rips6 = list(dict.fromkeys(r.address for r in replies if _ipv6(r.address)))
    services = [r for r in services if not _ipv6(r.address)]
    replies = [r for r in replies if not _ipv6(r.address)]
    for rule in services:
        code += _service(rule)
    for rule in replies:
        code += _reply(rule)
    for rule in services:
        code += _icmp_to_vip(rule)
    for rule in replies:
        code += _icmp_from_server(rule)
    code.append((RET_K, 0, 0, 0))
    if vips6 or rips6:
        six = [*(_icmp6(vip, 24, 72) for vip in vips6), *(_icmp6(rip, 8, 56) for rip in rips6),
               *(_by_address6(vip, 24, 8) for vip in vips6),
               *(_by_address6(rip, 8, 24) for rip in rips6)]
        code = [(LD_B_ABS, 0, 0, NET & 0xFFFFFFFF), (RSH_K, 0, 0, 4), (JEQ_K, 0, 1, 6),
                (JA, 0, 0, len(code)), *code, *(i for block in six for i in block),
                (RET_K, 0, 0, 0)]
    tail = len(code)
    if order is not None:
        code.append((MOD_K, 0, 0, len(order)))
        for slot, member in enumerate(order):
            code += [(JEQ_K, 0, 1, slot), (RET_K, 0, 0, member)]
        code.append((RET_K, 0, 0, 0))
    if len(code) > MAX_INSTRUCTIONS:
        raise ValueError(f"a fanout program of {len(code)} instructions is too long")
    if order is None:
        return [(RET_A, 0, 0, 0) if k == "tail" else (op, jt, jf, k) for op, jt, jf, k in code]
    return [(op, jt, jf, tail - i - 1 if k == "tail" else k)
            for i, (op, jt, jf, k) in enumerate(code)]


def client_hash(address: str, port: int, by_address: bool) -> int:
    """What the program computes of a client, before the modulo: its worker slot is this
    modulo the number of workers (an IPv6 client's: by its address alone)."""
    if _ipv6(address):
        value = 0
        for word in _words(address):
            value ^= word
        return (value * GOLDEN & 0xFFFFFFFF) >> 16
    value = _addr(address)
    if not by_address:
        value ^= port * GOLDEN & 0xFFFFFFFF
    return (value * GOLDEN & 0xFFFFFFFF) >> 16


def _addr(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def _network(text: str) -> tuple[int, int]:
    """An IPv4 address or prefix: its first address and its mask."""
    if "/" not in text:
        return _addr(text), 0xFFFFFFFF
    network = ipaddress.IPv4Network(text, strict=False)
    return int(network.network_address), int(network.netmask)


def _ipv6(address: str) -> bool:
    return ":" in address


def _words(address: str) -> tuple[int, ...]:
    return struct.unpack("!4I", socket.inet_pton(socket.AF_INET6, address))


def _masked6(address: str) -> list[tuple[int, int]]:
    """An IPv6 address or prefix as four (word, mask) pairs."""
    network = ipaddress.IPv6Network(address, strict=False)
    value, mask = int(network.network_address), int(network.netmask)
    return [(value >> (96 - 32 * i) & 0xFFFFFFFF, mask >> (96 - 32 * i) & 0xFFFFFFFF)
            for i in range(4)]


def _equal6(at: int, address: str) -> list[tuple]:
    """The 16 bytes at ``at`` (from the IPv6 header) are ``address`` (or within the prefix)."""
    block: list[tuple] = []
    for i, (word, mask) in enumerate(_masked6(address)):
        if mask:
            block += [(LD_W_ABS, 0, 0, NET + at + 4 * i),
                      *([(AND_K, 0, 0, mask)] if mask != 0xFFFFFFFF else []),
                      (JEQ_K, 0, "next", word)]
    return block


def _hash6(at: int) -> list[tuple]:
    """The XOR of the four words of the address at ``at``, mixed, on to the tail."""
    block: list[tuple] = [(LD_W_ABS, 0, 0, NET + at)]
    for i in range(1, 4):
        block += [(ST, 0, 0, 0), (LD_W_ABS, 0, 0, NET + at + 4 * i), (LDX_MEM, 0, 0, 0),
                  (XOR_X, 0, 0, 0)]
    return block + [(MUL_K, 0, 0, GOLDEN), (RSH_K, 0, 0, 16), (JA, 0, 0, "tail")]


def _by_address6(address: str, at: int, client_at: int) -> list[tuple]:
    """``address`` at ``at`` (24: to a VIP; 8: from a NAT RIP): hash the client at
    ``client_at``."""
    return _resolve([*_equal6(at, address), *_hash6(client_at)])


def _icmp6(address: str, at: int, client_at: int) -> list[tuple]:
    """ICMPv6 (next header 58) with ``address`` at ``at``: hash the quoted client."""
    return _resolve([(LD_B_ABS, 0, 0, NET + 6), (JEQ_K, 0, "next", socket.IPPROTO_ICMPV6),
                     *_equal6(at, address), *_hash6(client_at)])


def _resolve(block: list[tuple]) -> list[tuple]:
    """A failed test ("next") jumps past the block; "tail" is left for program()."""
    end = len(block)
    return [(op, end - i - 1 if jt == "next" else jt, end - i - 1 if jf == "next" else jf,
             k if k == "tail" else k & 0xFFFFFFFF) for i, (op, jt, jf, k) in enumerate(block)]


def _hash(port: tuple, address: tuple, by_address: bool) -> list[tuple]:
    """A hash of the client's address (and port: loaded first, mixed, kept in M[0]), then on
    to the tail: returned as it is, or mapped to a member by the order."""
    mix = [(MUL_K, 0, 0, GOLDEN), (RSH_K, 0, 0, 16), (JA, 0, 0, "tail")]
    if by_address:
        return [address, *mix]
    return [port, (MUL_K, 0, 0, GOLDEN), (ST, 0, 0, 0), address, (LDX_MEM, 0, 0, 0),
            (XOR_X, 0, 0, 0), *mix]


def _match(proto: int, address_at: int, address: str) -> list[tuple]:
    """The protocol, an address (or within a prefix), and X = the IP header's length for what
    follows."""
    value, mask = _network(address)
    return [(LD_B_ABS, 0, 0, NET + 9), (JEQ_K, 0, "next", proto),
            (LD_W_ABS, 0, 0, NET + address_at),
            *([(AND_K, 0, 0, mask)] if mask != 0xFFFFFFFF else []),
            (JEQ_K, 0, "next", value), (LDX_B_MSH, 0, 0, NET)]


def _port(at: int, port: int | PortRange) -> list[tuple]:
    """The port at ``at`` (after the IP header: X) is ``port``, or within its range."""
    low, high = port_range(port)
    if (low, high) == ANY_PORT:
        return []
    if low == high:
        return [(LD_H_IND, 0, 0, at), (JEQ_K, 0, "next", low)]
    return [(LD_H_IND, 0, 0, at), (JGE_K, 0, "next", low), (JGT_K, "next", 0, high)]


def _service(rule: Rule) -> list[Instruction]:
    """To VIP:port: the client is the source."""
    return _resolve([*_match(_PROTO[rule.protocol], 16, rule.address),
                     *_port(NET + 2, rule.port),
                     *_hash((LD_H_IND, 0, 0, NET), (LD_W_ABS, 0, 0, NET + 12),
                            rule.by_address)])


def _reply(rule: Rule) -> list[Instruction]:
    """From a NAT RIP:port: the client is the destination."""
    return _resolve([*_match(_PROTO[rule.protocol], 12, rule.address),
                     *_port(NET, rule.port),
                     *_hash((LD_H_IND, 0, 0, NET + 2), (LD_W_ABS, 0, 0, NET + 16),
                            rule.by_address)])


# the quoted packet of an ICMP error starts 8 bytes after the outer IP header
_Q = NET + 8


def _icmp_to_vip(rule: Rule) -> list[Instruction]:
    """An error about a reply VIP:port → client: the client is the quoted destination."""
    return _resolve([*_match(socket.IPPROTO_ICMP, 16, rule.address),
                     (LD_B_IND, 0, 0, _Q + 9), (JEQ_K, 0, "next", _PROTO[rule.protocol]),
                     *_port(_Q + 20, rule.port),
                     *_hash((LD_H_IND, 0, 0, _Q + 22), (LD_W_IND, 0, 0, _Q + 16),
                            rule.by_address)])


def _icmp_from_server(rule: Rule) -> list[Instruction]:
    """An error about client → RIP:port that a NAT real server sends: the quoted source."""
    return _resolve([*_match(socket.IPPROTO_ICMP, 12, rule.address),
                     (LD_B_IND, 0, 0, _Q + 9), (JEQ_K, 0, "next", _PROTO[rule.protocol]),
                     *_port(_Q + 22, rule.port),
                     *_hash((LD_H_IND, 0, 0, _Q + 20), (LD_W_IND, 0, 0, _Q + 12),
                            rule.by_address)])


def by_address(services: Iterable[VirtualService], marks: Marks = NO_MARKS
               ) -> set[tuple[int, ...]]:
    """The keys of the services whose clients hash by address alone: the persistent ones,
    and any sharing a NAT real server's replies with one, transitively, as those replies can
    hash only one way."""
    services = list(services)
    replies = replies_by(services, marks)
    keys = {s.key for s in services if s.persistence_timeout}
    while True:
        shared = [e for e, s in replies if s.key in keys]
        more = {s.key for e, s in replies if any(_overlap(e, o) for o in shared)}
        if more <= keys:
            return keys
        keys |= more


def rules(services: Iterable[VirtualService], marks: Marks = NO_MARKS
          ) -> tuple[list[Rule], list[Rule]]:
    """The program's rules for these services: (services, NAT replies), a fwmark service's
    from the mark rules (pylvs.core.marks: ``taken_by``, ``replies_by``). A persistent
    service hashes by address; so does any sharing a NAT server with one (``by_address``)."""
    services = list(services)
    keys = by_address(services, marks)
    front = [Rule(e.protocol, e.address, e.ports, s.key in keys)
             for e, s in taken_by(services, marks)]
    shared = [e for e, s in replies_by(services, marks) if s.key in keys]
    back = dict.fromkeys(e for e, _ in replies_by(services, marks))
    return front, [Rule(*e, any(_overlap(e, o) for o in shared)) for e in back]


def _overlap(one: Endpoint, other: Endpoint) -> bool:
    """Some frame is both endpoints': one protocol and address, ports in both ranges."""
    return one.protocol == other.protocol and one.address == other.address and \
        one.ports[0] <= other.ports[1] and other.ports[0] <= one.ports[1]

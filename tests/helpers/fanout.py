"""The workers' fanout program run by a small classic-BPF interpreter (run), and the four IP
packets of one connection, either way, to which it must give one value (frames)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6, IPv6ExtHdrFragment

from pylvs.shell.fanout import NET

VIP, RIP = "192.0.2.100", "10.0.0.7"
VIP6, RIP6 = "2001:db8::100", "fd00::7"
LOADS = {0x20: 4, 0x28: 2, 0x30: 1, 0x40: 4, 0x48: 2, 0x50: 1}


def run(code: list[tuple[int, int, int, int]], packet: bytes, absolute: bool = False) -> int:
    """Classic BPF over an IP packet, offsets from SKF_NET_OFF (or, ``absolute``, over a frame
    from its first byte, as a socket filter reads it); a load out of bounds returns 0, as the
    kernel does."""
    base = 0 if absolute else NET
    a = x = pc = 0
    mem = [0] * 16
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op in LOADS:
            at = (k if absolute else (k - (1 << 32)) - base) + (x if op & 0x40 else 0)
            if at < 0 or at + LOADS[op] > len(packet):
                return 0
            a = int.from_bytes(packet[at:at + LOADS[op]], "big")
        elif op == 0xB1:
            at = k if absolute else (k - (1 << 32)) - base
            if at >= len(packet):
                return 0
            x = (packet[at] & 0xF) * 4
        elif op == 0x02:
            mem[k] = a
        elif op == 0x61:
            x = mem[k]
        elif op == 0xAC:
            a ^= x
        elif op == 0x24:
            a = a * k & 0xFFFFFFFF
        elif op == 0x74:
            a >>= k
        elif op == 0x94:
            a %= k
        elif op == 0x05:
            pc += k
        elif op == 0x15:
            pc += jt if a == k else jf
        elif op == 0x45:
            pc += jt if a & k else jf
        elif op == 0x25:
            pc += jt if a > k else jf
        elif op == 0x35:
            pc += jt if a >= k else jf
        elif op == 0x54:
            a &= k
        elif op == 0x16:
            return a
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {op:#x} not modelled")


def frames(proto, client: str, port: int, vport: int = 80, rport: int = 8080) -> list[bytes]:
    layer, quoted = (TCP, TCPerror) if proto == "tcp" else (UDP, UDPerror)
    return [bytes(IP(src=client, dst=VIP) / layer(sport=port, dport=vport)),
            bytes(IP(src=RIP, dst=client) / layer(sport=rport, dport=port)),
            bytes(IP(src="198.51.100.1", dst=VIP) / ICMP(type=11)
                  / IPerror(src=VIP, dst=client) / quoted(sport=vport, dport=port)),
            bytes(IP(src=RIP, dst="192.0.2.1") / ICMP(type=3, code=3)
                  / IPerror(src=client, dst=RIP) / quoted(sport=port, dport=rport))]


def frames6(proto, client: str, port: int, vport: int = 80, rport: int = 8080) -> list[bytes]:
    """``frames`` for IPv6, and a fragment after the first of the client's."""
    layer, quoted = (TCP, TCPerror) if proto == "tcp" else (UDP, UDPerror)
    return [bytes(IPv6(src=client, dst=VIP6) / layer(sport=port, dport=vport)),
            bytes(IPv6(src=RIP6, dst=client) / layer(sport=rport, dport=port)),
            bytes(IPv6(src="2001:db8:ff::1", dst=VIP6) / ICMPv6DestUnreach()
                  / IPerror6(src=VIP6, dst=client) / quoted(sport=vport, dport=port)),
            bytes(IPv6(src=RIP6, dst="fd00::1") / ICMPv6DestUnreach()
                  / IPerror6(src=client, dst=RIP6) / quoted(sport=port, dport=rport)),
            bytes(IPv6(src=client, dst=VIP6) / IPv6ExtHdrFragment(id=9, offset=100)
                  / (b"x" * 64))]

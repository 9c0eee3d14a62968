"""Frames per second through the sans-IO director (no sockets): new connections and established.

    python3 -m bench.core [--frames N] [--out bench/results/core.json]

Each scheduler gets a service of 8 real servers; "syn" sends N SYNs from distinct client ports
(schedule + create a connection each), "ack" then sends N ACKs on those connections (lookup, state
machine, DR rewrite). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import time

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import TCP_ACK, TCP_SYN, checksum

VIP, CLIENT = "192.0.2.100", "203.0.113.5"
SERVERS = [f"198.51.100.{i}" for i in range(1, 9)]


def frame(sport: int, flags: int) -> bytearray:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                     bytes(map(int, CLIENT.split("."))), bytes(map(int, VIP.split("."))))
    ip = ip[:10] + struct.pack("!H", checksum(ip) ^ 0xFFFF) + ip[12:]
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 0, 5 << 4, flags, 65535, 0, 0)
    return bytearray(bytes(6) + bytes(6) + b"\x08\x00" + ip + tcp)


def director(name: str) -> Director:
    service = VirtualService("tcp", VIP, 80, schedulers.get(name)())
    for i, address in enumerate(SERVERS):
        service.add_real_server(RealServer(address, 80, weight=i % 3 + 1))
    d = Director([service])
    for i, address in enumerate(SERVERS):
        d.set_hop(ip_to_int(address), NextHop(bytes(6), bytes([2, 0, 0, 0, 0, i]), "eth0"))
    return d


def rate(d: Director, frames: list[bytearray]) -> float:
    start = time.perf_counter()
    for f in frames:
        d.handle(f, 1.0)
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50000)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "core.json"))
    args = parser.parse_args()
    count = min(args.frames, 60000)
    results = {}
    print(f"{'scheduler':<10}{'syn frames/s':>14}{'ack frames/s':>14}")
    for name in ("rr", "wrr", "lc", "wlc"):
        d = director(name)
        syn = rate(d, [frame(1024 + i, TCP_SYN) for i in range(count)])
        ack = rate(d, [frame(1024 + i, TCP_ACK) for i in range(count)])
        assert d.counters["forwarded"] == 2 * count, d.counters
        results[name] = {"syn_per_s": round(syn), "ack_per_s": round(ack)}
        print(f"{name:<10}{syn:>14,.0f}{ack:>14,.0f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"frames": count, "python": platform.python_version(),
                   "machine": platform.machine(), "results": results}, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The ECMP lab's router: BIRD's multipath routes copied into resilient nexthop groups.

BIRD 2 installs a route with several next hops (``merge paths``) as a plain multipath route, in
which the kernel maps a flow's hash onto the next hops by hash-threshold: when one goes, about
half the flows of the others move too. A resilient group (Linux 5.13, ``ip nexthop ... type
resilient``) holds a table of hash buckets instead: a next hop that goes gives away only its
own buckets, and one that comes takes buckets only once they have been idle ``idle_timer``
seconds, so flows that are going stay where they are. BIRD exports into a table of its own
(``SOURCE_TABLE``); this process, run in the router's namespace, follows it every 50 ms and
keeps, for each /32 and /128 there, a resilient group of the same next hops and a route in the
main table through it (a group's members are all of the VIP's family: IPv6 next hops for an
IPv6 VIP). Run as ``python3 -m pylvs.lab.nexthops --interface eth0``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import subprocess
import sys
import time

SOURCE_TABLE = 100
BUCKETS = 120
"""Divisible by 2, 3, 4, 5, 6 and 8: that many directors share the buckets evenly."""
IDLE_TIMER = 1
POLL = 0.05
FIRST_GROUP = 1000


def supported() -> bool:
    """Whether this kernel has nexthop objects (run inside the router's namespace)."""
    made = subprocess.run(["ip", "nexthop", "add", "id", "9", "blackhole"],
                          capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "nexthop", "del", "id", "9"], capture_output=True)
    return made


def learned(table: int = SOURCE_TABLE) -> dict[str, list[str]]:
    """Each host route (/32, /128) BIRD installed in ``table`` and its gateways, in address
    order, IPv4's first."""
    routes: dict[str, list[str]] = {}
    for family, host in (("-4", "/32"), ("-6", "/128")):
        result = subprocess.run(["ip", "-j", family, "route", "show", "table", str(table)],
                                capture_output=True, text=True)
        if result.returncode != 0:  # the table does not exist before BIRD's first route
            continue
        for route in json.loads(result.stdout or "[]"):
            hops = route.get("nexthops") or [route]
            gateways = sorted({hop["gateway"] for hop in hops if "gateway" in hop},
                              key=ipaddress.ip_address)
            if gateways:
                routes[route["dst"].removesuffix(host)] = gateways
    return routes


def host_route(vip: str) -> str:
    """``vip/32``, ``vip/128``."""
    return f"{vip}/128" if ":" in vip else f"{vip}/32"


class Mirror:
    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.hops: dict[str, int] = {}
        self.groups: dict[str, tuple[int, list[str]]] = {}
        self.next_group = FIRST_GROUP

    def follow(self, routes: dict[str, list[str]]) -> None:
        for vip, gateways in routes.items():
            if self.groups.get(vip, (0, []))[1] != gateways:
                self._set(vip, gateways)
        for vip in [v for v in self.groups if v not in routes]:
            group, _ = self.groups.pop(vip)
            _ip("route", "del", host_route(vip))
            _ip("nexthop", "del", "id", str(group))

    def _set(self, vip: str, gateways: list[str]) -> None:
        for gateway in gateways:
            if gateway not in self.hops:
                self.hops[gateway] = len(self.hops) + 1
                _ip("nexthop", "replace", "id", str(self.hops[gateway]), "via", gateway,
                    "dev", self.interface)
        if vip in self.groups:
            group = self.groups[vip][0]
        else:  # never an id still in use: a VIP that went may have had an older one
            group, self.next_group = self.next_group, self.next_group + 1
        members = "/".join(str(self.hops[g]) for g in gateways)
        _ip("nexthop", "replace", "id", str(group), "group", members, "type", "resilient",
            "buckets", str(BUCKETS), "idle_timer", str(IDLE_TIMER))
        _ip("route", "replace", host_route(vip), "nhid", str(group))
        self.groups[vip] = (group, gateways)
        print(f"{host_route(vip)} via {', '.join(gateways)}", flush=True)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"ip {' '.join(args)}: {result.stderr.strip()}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m pylvs.lab.nexthops")
    parser.add_argument("--interface", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mirror = Mirror(args.interface)
    print("following", flush=True)
    while True:
        mirror.follow(learned())
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main())

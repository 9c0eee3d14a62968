"""Each real server's route and next hop, learnt from the kernel (its routing and neighbour
tables) and handed to the director core as a ``NextHop``.

As in IPVS, any destination is accepted: one the director cannot reach (no route, or a route
through an interface that cannot be opened) is logged, and its frames are dropped and counted
(no_next_hop) until a route appears; it is tried again every tick. A server routed through an
interface the director does not work on gets a link there that only sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pylvs.core.director import Director
from pylvs.core.forwarding import NextHop
from pylvs.core.model import ip_to_int
from pylvs.core.packet import ETH_HLEN
from pylvs.shell import addresses
from pylvs.shell.links import Link

log = logging.getLogger("pylvs")
NEW_SERVER_WAIT = 0.05
"""Seconds a rules change may wait for new real servers' neighbours to answer, all together."""


class NextHops:
    """``links``: the data plane's, by name; ``open_egress`` opens a send-only link (None when
    it cannot, with why)."""

    def __init__(self, director: Director, links: dict[str, Link],
                 open_egress: Callable[[str], str | None]) -> None:
        self.director, self.links, self.open_egress = director, links, open_egress
        self.routes: dict[int, addresses.Route] = {}
        self.unreachable: dict[int, str] = {}
        """Real servers without a usable route, and why."""
        self.texts: dict[int, str] = {}
        """Every real server's address as text, by its int (of either family), kept for
        as long as its route is."""

    def follow(self, resolve_timeout: float = 0.0) -> None:
        """A route and a next hop for every real server that has none yet. A server added
        while running is given ``NEW_SERVER_WAIT`` (over all of them) for its neighbour to
        answer: without a MAC its first SYNs would be dropped until the next refresh, where
        the kernel would have queued them (arp_queue)."""
        servers = self.director.real_server_addresses()
        self.texts.update(servers)
        deadline = time.monotonic() + (resolve_timeout or NEW_SERVER_WAIT)
        for ip in servers.keys() - self.routes.keys():
            self._route(ip, resolve_timeout or max(0.0, deadline - time.monotonic()))

    def _route(self, ip: int, resolve_timeout: float) -> None:
        try:
            found = addresses.route(self.texts[ip])
        except OSError as exc:
            self._unreachable(ip, str(exc.strerror or exc))
            return
        if found.interface not in self.links:
            failed = self.open_egress(found.interface)
            if failed is not None:
                self._unreachable(ip, f"reached through {found.interface}, which cannot be "
                                      f"opened: {failed}")
                return
            log.info("real server %s is reached through %s: forwarding there too",
                     self.texts[ip], found.interface)
        self.unreachable.pop(ip, None)
        self.routes[ip] = found
        resolver = self.links[found.interface].resolver
        if resolve_timeout:
            self._learn(ip, resolver.resolve(self._via(ip), resolve_timeout))
        else:
            resolver.probe(self._via(ip))  # learnt by the next refresh, without stalling

    def _unreachable(self, ip: int, why: str) -> None:
        if self.unreachable.get(ip) != why:
            log.warning("real server %s: %s; its frames are dropped until a route exists",
                        self.texts[ip], why)
        self.unreachable[ip] = why

    def _via(self, ip: int) -> str:
        """The neighbour a real server's frames go to: its gateway, or itself when on-link."""
        return self.routes[ip].gateway or self.texts[ip]

    def _learn(self, ip: int, mac: bytes | None) -> None:
        found = self.routes[ip]
        if mac is None:
            log.warning("no MAC yet for real server %s (via %s); probing", self.texts[ip],
                        self._via(ip))
            return
        link = self.links[found.interface]
        source = ip_to_int(found.source) if found.source else 0
        self.director.set_hop(ip, NextHop(link.mac, mac, link.name, source,
                                          link.max_frame - ETH_HLEN))

    def refresh(self) -> None:
        """Once a tick: the unreachable tried again, the neighbour tables read, every hop
        whose MAC changed handed in anew."""
        servers = self.director.real_server_addresses()
        self.texts.update(servers)
        for ip in list(self.unreachable):
            if ip in servers:
                self._route(ip, 0.0)
            else:
                del self.unreachable[ip]
        for link in self.links.values():
            link.resolver.refresh()
        for ip, found in self.routes.items():
            resolver, via = self.links[found.interface].resolver, self._via(ip)
            mac = resolver.lookup(via)
            hop = self.director.hops.get(ip)
            if mac is None:
                resolver.probe(via)
            elif hop is None or hop.dst_mac != mac:
                self._learn(ip, mac)

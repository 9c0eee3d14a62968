"""Announcing the VIPs over BGP, so that a router's ECMP spreads them over N equal directors.

A director announces a VIP (an IPv4 one as a /32, an IPv6 one as a /128) while it can serve it:
its data plane runs (and, with VRRP, it is MASTER) and every virtual service on that address is
up. A service is up while it has a real server of weight > 0 in the table and, if it is
checked, its quorum is up (keepalived's quorum, pylvs.ha.health); a sorry server does not count,
since another director may still reach the real servers. On a stop it withdraws first and
drains (``drain_seconds``), then ends. The BGP speaker is BIRD 2 (pylvs.ha.bird writes its
config; pylvs.shell.announcer runs it).

Each session carries its own family: a session to an IPv4 neighbour announces the IPv4 VIPs
(BIRD's ``ipv4`` channel), one to an IPv6 neighbour the IPv6 VIPs (``ipv6`` channel), each with
the session's own source address as next hop. A dual-stack director has a neighbour of each
family. pylvs never sends IPv6 routes over an IPv4 session: BIRD 2 can (an ``ipv6`` channel on
an IPv4 session), but its next hop is then the interface's first global IPv6 address in BIRD's
list, which on a director may be a VIP held there, and BFD would watch the IPv4 path only.
The router id stays a 32-bit number written as an IPv4 address, on an IPv6-only director too
(RFC 4271, RFC 6286).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pylvs.core.model import AF_INET6, VirtualService, ip_to_int
from pylvs.ha.health import ServiceHealth

DEFAULT_HOLD_TIME = 90
"""Seconds: RFC 4271's suggested hold time (BIRD's own default is 240)."""
MIN_HOLD_TIME = 3
"""RFC 4271: a hold time is 0 (no keepalives, which BIRD does not offer) or at least 3 s."""
DEFAULT_DRAIN = 5.0
FAMILIES = (4, 6)
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
HOST_PREFIX = {4: 32, 6: 128}


def family(address: str) -> int:
    """4 or 6: the family of an address's text."""
    return 6 if ":" in address else 4


def prefix(vip: str) -> str:
    """The route a VIP is announced as: ``192.0.2.1/32``, ``2001:db8::1/128``."""
    return f"{vip}/{HOST_PREFIX[family(vip)]}"


def by_family(vips: Iterable[str]) -> dict[int, list[str]]:
    """{4: [...], 6: [...]}, each in the order given."""
    split: dict[int, list[str]] = {4: [], 6: []}
    for vip in vips:
        split[family(vip)].append(vip)
    return split


def _order(vip: str) -> tuple[int, int]:
    """IPv4 before IPv6 (libipvs's order of services), then by address."""
    return family(vip), ip_to_int(vip)


@dataclass(frozen=True)
class Neighbor:
    """A BGP peer: the router in front of the directors."""
    address: str
    remote_as: int
    password: str = ""

    @property
    def family(self) -> int:
        """The session's family, and so the family of the VIPs it carries."""
        return family(self.address)


@dataclass(frozen=True)
class Bgp:
    """The [bgp] table."""
    local_as: int
    neighbors: tuple[Neighbor, ...]
    router_id: str = ""
    """"": the director interface's primary IPv4 address (an IPv6-only director names one)."""
    hold_time: int = DEFAULT_HOLD_TIME
    bfd: bool = False
    bfd_interval: float = 0.1
    """Seconds between BFD packets each way; a peer is down after bfd_multiplier of them."""
    bfd_multiplier: int = 3
    drain_seconds: float = DEFAULT_DRAIN
    bird: str = "bird"
    """The BIRD binary pylvs starts (with bird_socket: none is started)."""
    bird_socket: str = ""
    """A running BIRD's control socket; pylvs then writes only the routes, to bird_include
    (IPv4) and bird_include6 (IPv6)."""
    bird_include: str = ""
    bird_include6: str = ""
    """With bird_socket: the file of IPv6 VIP routes the running BIRD's ipv6 static protocol
    includes."""

    @property
    def keepalive_time(self) -> int:
        """A third of the hold time, as RFC 4271 suggests."""
        return max(1, self.hold_time // 3)

    @property
    def families(self) -> tuple[int, ...]:
        """The families some session carries: those whose VIPs can be announced."""
        return tuple(f for f in FAMILIES if any(n.family == f for n in self.neighbors))

    def include(self, of: int) -> str:
        """With bird_socket: the routes file of family ``of`` ("" if none is named)."""
        return self.bird_include6 if of == 6 else self.bird_include


def neighbor_problem(address: str) -> str:
    """Why ``address`` cannot be a neighbour's ("" when it can): a router's global unicast
    address of either family."""
    ip = ipaddress.ip_address(address)
    if "%" in address:
        return "has a zone: give the router's global address, without %interface"
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        return "is not a router's unicast address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return (f"is IPv4-mapped: write the router's IPv4 address ({ip.ipv4_mapped}) for "
                    f"an IPv4 session")
        if ip.is_link_local:
            return ("is link-local: give the router's global IPv6 address (over a link-local "
                    "session BIRD announces the interface's first global address as next hop, "
                    "which may be a VIP held there)")
    return ""


def unannounceable(spec: Bgp, services: Iterable[VirtualService]) -> tuple[str, str] | None:
    """(key, why) for the first service whose VIP no session could carry, or, with a running
    BIRD (bird_socket), no routes file would hold; None when every VIP has its way out."""
    for i, service in enumerate(services):
        of = 6 if service.af == AF_INET6 else 4
        name = FAMILY_NAMES[of]
        if of not in spec.families:
            return ("bgp.neighbor", f"virtual_server[{i}] ({service.endpoint}) is {name}, and "
                    f"no [[bgp.neighbor]] is: an {name} VIP is announced only over a session "
                    f"to an {name} neighbour (the router's {name} address)")
        if spec.bird_socket and not spec.include(of):
            key = "bgp.bird_include6" if of == 6 else "bgp.bird_include"
            return (key, f"virtual_server[{i}] ({service.endpoint}) is {name}: with "
                    f"bird_socket, {key.split('.')[1]} names the file of {name} routes the "
                    f"running BIRD's {'ipv6' if of == 6 else 'ipv4'} static protocol includes")
    return None


def service_up(service: VirtualService, health: ServiceHealth | None) -> bool:
    if health is not None and not health.quorum_up:
        return False
    return any(server.weight > 0 for server in service.real_servers)


def announced(services: Iterable[VirtualService], health: Iterable[ServiceHealth],
              serving: bool) -> list[str]:
    """The VIPs to announce, IPv4 before IPv6, each in address order: none while the director
    does not serve (its data plane is not running, or VRRP made it BACKUP), else each address
    whose every service is up."""
    if not serving:
        return []
    checks = {h.key: h for h in health}
    up: dict[str, bool] = {}
    for service in services:
        ok = service_up(service, checks.get(service.key))
        up[service.address] = up.get(service.address, True) and ok
    return sorted((vip for vip, ok in up.items() if ok), key=_order)

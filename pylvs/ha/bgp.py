"""Announcing the VIPs over BGP, so that a router's ECMP spreads them over N equal directors.

A director announces a VIP (as a /32) while it can serve it: its data plane runs (and, with
VRRP, it is MASTER) and every virtual service on that address is up. A service is up while it
has a real server of weight > 0 in the table and, if it is checked, its quorum is up
(keepalived's quorum, pylvs.ha.health); a sorry server does not count, since another director
may still reach the real servers. On a stop it withdraws first and drains (``drain_seconds``),
then ends. The BGP speaker is BIRD 2 (pylvs.ha.bird writes its config; pylvs.shell.announcer
runs it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pylvs.core.model import VirtualService, ip_to_int
from pylvs.ha.health import ServiceHealth

DEFAULT_HOLD_TIME = 90
"""Seconds: RFC 4271's suggested hold time (BIRD's own default is 240)."""
MIN_HOLD_TIME = 3
"""RFC 4271: a hold time is 0 (no keepalives, which BIRD does not offer) or at least 3 s."""
DEFAULT_DRAIN = 5.0


@dataclass(frozen=True)
class Neighbor:
    """A BGP peer: the router in front of the directors."""
    address: str
    remote_as: int
    password: str = ""


@dataclass(frozen=True)
class Bgp:
    """The [bgp] table."""
    local_as: int
    neighbors: tuple[Neighbor, ...]
    router_id: str = ""
    """"": the director interface's primary address."""
    hold_time: int = DEFAULT_HOLD_TIME
    bfd: bool = False
    bfd_interval: float = 0.1
    """Seconds between BFD packets each way; a peer is down after bfd_multiplier of them."""
    bfd_multiplier: int = 3
    drain_seconds: float = DEFAULT_DRAIN
    bird: str = "bird"
    """The BIRD binary pylvs starts (with bird_socket: none is started)."""
    bird_socket: str = ""
    """A running BIRD's control socket; pylvs then writes only the routes, to bird_include."""
    bird_include: str = ""

    @property
    def keepalive_time(self) -> int:
        """A third of the hold time, as RFC 4271 suggests."""
        return max(1, self.hold_time // 3)


def service_up(service: VirtualService, health: ServiceHealth | None) -> bool:
    if health is not None and not health.quorum_up:
        return False
    return any(server.weight > 0 for server in service.real_servers)


def announced(services: Iterable[VirtualService], health: Iterable[ServiceHealth],
              serving: bool) -> list[str]:
    """The VIPs to announce, in address order: none while the director does not serve (its
    data plane is not running, or VRRP made it BACKUP), else each address whose every service
    is up."""
    if not serving:
        return []
    checks = {h.key: h for h in health}
    up: dict[str, bool] = {}
    for service in services:
        ok = service_up(service, checks.get(service.key))
        up[service.address] = up.get(service.address, True) and ok
    return sorted((vip for vip, ok in up.items() if ok), key=ip_to_int)

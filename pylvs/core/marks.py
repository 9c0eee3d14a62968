"""Firewall marks: which packets a firewall-mark service (ipvsadm -f) takes.

IPVS reads the mark that iptables or nftables set in mangle PREROUTING (skb->mark). pylvs reads
frames before netfilter, so it classifies them itself by the config's mark rules, the way
keepalived's own nft map does (daddr . dport : mark). A rule is a destination (an address or a
prefix), a protocol (or any), destination ports (single ports and ranges, or any) and a mark.
Rules are tried in order and the last one that matches sets the mark, as consecutive iptables
MARK rules do (MARK does not stop the chain); 0 is no mark.

What the host must take for the services (the shell's nftables steal rules, socket filter,
fanout program and VIPs) is decided here too, pure: ``taken`` and ``replies`` give the
(protocol, address or prefix, port range) endpoints, a fwmark service contributing what its
rules name; ``vips`` the addresses to hold; ``per_address`` the services by address.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from pylvs.core.model import AF_INET, AF_INET6, RealServer, VirtualService, fwmark_key

MAX_MARK = 0xFFFFFFFF
MAX_RULE_ADDRESSES = 256
"""A rule's prefix holds at most this many addresses: pylvs takes frames for each as a VIP."""
PortRange = tuple[int, int]


@dataclass(frozen=True)
class MarkRule:
    destination: str
    """An address or a prefix: ``207.175.44.110/31``, ``2001:db8::/126``."""
    mark: int
    proto: int = 0
    """6 (TCP), 17 (UDP) or 0: either."""
    ports: tuple[PortRange, ...] = ()
    """Destination port ranges, inclusive; () is any port."""

    def __post_init__(self) -> None:
        if not 1 <= self.mark <= MAX_MARK:
            raise ValueError(f"mark {self.mark} is not in 1..{MAX_MARK}")
        if self.proto not in (0, 6, 17):
            raise ValueError(f"protocol {self.proto} is not tcp, udp or any")
        for low, high in self.ports:
            if not 0 <= low <= high <= 0xFFFF:
                raise ValueError(f"port range {low}:{high} is not within 0..65535, low first")
        if self.network.num_addresses > MAX_RULE_ADDRESSES:
            raise ValueError(f"{self.destination} holds more than {MAX_RULE_ADDRESSES} "
                             "addresses (pylvs takes each as a VIP)")

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.destination, strict=False)

    @property
    def af(self) -> int:
        return AF_INET if self.network.version == 4 else AF_INET6

    def matches(self, af: int, proto: int, daddr: int, dport: int) -> bool:
        network = self.network
        if af != self.af or self.proto and proto != self.proto:
            return False
        if daddr & int(network.netmask) != int(network.network_address):
            return False
        return not self.ports or any(low <= dport <= high for low, high in self.ports)


class Marks:
    """The config's mark rules, compiled for the director's lookups: a packet's mark in one
    dict look-up for exact (address, proto, port) keys, rules in order otherwise."""

    def __init__(self, rules: list[MarkRule] | tuple[MarkRule, ...] = ()) -> None:
        self.rules = tuple(rules)
        self._cache: dict[tuple[int, int, int, int], int] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def classify(self, af: int, proto: int, daddr: int, dport: int) -> int:
        """The mark the rules give a packet to (daddr, dport): the last matching rule's, or 0."""
        key = (af, proto, daddr, dport)
        mark = self._cache.get(key)
        if mark is None:
            mark = 0
            for rule in self.rules:
                if rule.matches(af, proto, daddr, dport):
                    mark = rule.mark
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[key] = mark
        return mark

    def addresses(self) -> list[str]:
        """Every destination address the rules name (a prefix's each address): the addresses
        pylvs must take frames for, as it does for a service's VIP."""
        out: list[str] = []
        for rule in self.rules:
            network = rule.network
            hosts = [network.network_address] if network.num_addresses == 1 else list(network)
            out += [str(h) for h in hosts if str(h) not in out]
        return out


# --- what the host must take for the services: the shell's steal rules, filters and VIPs ------

NO_MARKS = Marks()
"""No mark rules: a director's until the config gives it some."""
ANY_PORT: PortRange = (0, 0xFFFF)
PROTOCOLS = {6: ("tcp",), 17: ("udp",), 0: ("tcp", "udp")}
"""A rule's protocol number → the protocols whose frames it takes (0: either)."""


class Endpoint(NamedTuple):
    """Frames the director takes: to (or, for a NAT reply, from) ``address`` by ``protocol``
    on a port within ``ports``."""

    protocol: str
    """"tcp" or "udp"."""
    address: str
    """An address, or a prefix (``192.0.2.0/31``) as a mark rule names it."""
    ports: PortRange = ANY_PORT
    """Inclusive; ANY_PORT: every port."""


def port_range(port: int | PortRange) -> PortRange:
    """A port as a range: 0 is any port (IPVS's port-0 service), a range stays as it is."""
    if isinstance(port, tuple):
        return port
    return (port, port) if port else ANY_PORT


def rules_of(service: VirtualService, marks: Marks) -> list[MarkRule]:
    """The mark rules that give packets to a fwmark service: its mark, its family."""
    if not service.fwmark:
        return []
    return [r for r in marks.rules if r.mark == service.fwmark and r.af == service.af]


def _destination(rule: MarkRule) -> str:
    network = rule.network
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def _rule_endpoints(rule: MarkRule) -> list[Endpoint]:
    return [Endpoint(protocol, _destination(rule), ports)
            for protocol in PROTOCOLS[rule.proto] for ports in rule.ports or (ANY_PORT,)]


def taken_by(services: Iterable[VirtualService], marks: Marks
             ) -> list[tuple[Endpoint, VirtualService]]:
    """Each endpoint whose frames the services take, with the service it is for: the mark
    rules first, the last rule first (a first-match reader then gives a packet to the service
    ``Director.service_of`` gives it to: by the last matching rule's mark, before address and
    port), a rule whose mark has no service here left out; then each other service's
    (protocol, VIP, port), port 0 meaning any port."""
    services = list(services)
    by_mark = {s.key: s for s in services if s.fwmark}
    out: list[tuple[Endpoint, VirtualService]] = []
    for rule in reversed(marks.rules):
        service = by_mark.get(fwmark_key(rule.mark, rule.af))
        if service is not None:
            out += [(endpoint, service) for endpoint in _rule_endpoints(rule)]
    out += [(Endpoint(s.protocol, s.address, port_range(s.port)), s) for s in services
            if not s.fwmark]
    return list(dict.fromkeys(out))


def taken(services: Iterable[VirtualService], marks: Marks) -> list[Endpoint]:
    """``taken_by``'s endpoints alone, each once."""
    return list(dict.fromkeys(endpoint for endpoint, _ in taken_by(services, marks)))


def reply_ports(service: VirtualService, server: RealServer) -> PortRange | None:
    """The source port of a NAT real server's replies, as cp->dport is set
    (``Director``'s ``_destination_port``): the server's own port, unless it has none or a
    persistent service keeps the packet's port (a fwmark or port-0 one); None: the packet's."""
    if server.port and (not service.persistence_timeout or service.port):
        return (server.port, server.port)
    return None


def replies_by(services: Iterable[VirtualService], marks: Marks
               ) -> list[tuple[Endpoint, VirtualService]]:
    """Each NAT real server's replies, with the service they are for: (protocol, RIP, port)
    where the port is the server's own, or else every port the service takes (a fwmark
    service's: the ports and protocols its rules name)."""
    out: list[tuple[Endpoint, VirtualService]] = []
    for service in services:
        asked = (taken([service], marks) if service.fwmark else
                 [Endpoint(service.protocol, service.address, port_range(service.port))])
        for server in service.real_servers:
            if not server.forwarder.masquerades:
                continue
            fixed = reply_ports(service, server)
            out += [(Endpoint(e.protocol, server.address, fixed or e.ports), service)
                    for e in asked]
    return list(dict.fromkeys(out))


def replies(services: Iterable[VirtualService], marks: Marks) -> list[Endpoint]:
    """``replies_by``'s endpoints alone, each once."""
    return list(dict.fromkeys(endpoint for endpoint, _ in replies_by(services, marks)))


def addresses_of(service: VirtualService, marks: Marks) -> list[str]:
    """The VIPs a service has: its address, or every address its mark rules name."""
    if not service.fwmark:
        return [service.address]
    return Marks(rules_of(service, marks)).addresses()


def vips(services: Iterable[VirtualService], marks: Marks) -> list[str]:
    """Every VIP of the services, each once: the addresses the director holds."""
    return list(dict.fromkeys(a for s in services for a in addresses_of(s, marks)))


def per_address(services: Iterable[VirtualService], marks: Marks) -> list[VirtualService]:
    """The services as a reader that groups them by address sees them (BGP announces a VIP
    whose every service is up): an ordinary service as it is, a fwmark service once for each
    address its rules name, as a shallow copy with that ``address`` (the same key, real
    servers and counters)."""
    out: list[VirtualService] = []
    for service in services:
        if not service.fwmark:
            out.append(service)
            continue
        for address in addresses_of(service, marks):
            view = copy.copy(service)
            view.address = address
            out.append(view)
    return out

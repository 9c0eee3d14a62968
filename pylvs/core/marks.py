"""Firewall marks: which packets a firewall-mark service (ipvsadm -f) takes.

IPVS reads the mark that iptables or nftables set in mangle PREROUTING (skb->mark). pylvs reads
frames before netfilter, so it classifies them itself by the config's mark rules, the way
keepalived's own nft map does (daddr . dport : mark). A rule is a destination (an address or a
prefix), a protocol (or any), destination ports (single ports and ranges, or any) and a mark.
Rules are tried in order and the last one that matches sets the mark, as consecutive iptables
MARK rules do (MARK does not stop the chain); 0 is no mark.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pylvs.core.model import AF_INET, AF_INET6

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

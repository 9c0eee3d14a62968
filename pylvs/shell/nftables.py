"""The steal rules: an nftables ``netdev`` table on an interface's ingress hook that drops the
virtual services' frames, so the director's own kernel never acts on them (the AF_PACKET tap runs
before the ingress hook and still sees every frame).

IPv6 endpoints too (``ip6`` and ICMPv6 errors), chosen by the address; NDP and echo stay with the
kernel. An endpoint is (protocol, address, port): the address may be a prefix and the port a
range ``(low, high)``, port 0 or (0, 65535) any port (pylvs.core.marks.Endpoint: a fwmark
service's mark rules name such).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable

from pylvs.core.marks import ANY_PORT, PortRange, port_range
from pylvs.shell.interfaces import interface_index

Endpoint = tuple[str, str, int | PortRange]
"""(protocol, address or prefix, port or port range)."""


def _run_nft(ruleset: str) -> None:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=ruleset, capture_output=True, text=True,
                              timeout=10)
    except FileNotFoundError:
        raise RuntimeError("nft (the nftables tool) is not installed") from None
    if proc.returncode != 0:
        raise RuntimeError(f"nft -f - failed ({proc.returncode}): {proc.stderr.strip()}\n"
                           f"ruleset was:\n{ruleset}")


class StealRules:
    """nftables netdev table on the ingress hook of ifname that drops frames to the services so the
    director's own kernel never sees them (the AF_PACKET tap still does)."""

    def __init__(self, ifname: str, table: str) -> None:
        self.ifname = ifname
        self.table = table
        self.installed = False

    def ruleset(self, services: Iterable[Endpoint],
                replies: Iterable[Endpoint] = (), own: Iterable[str] = ()) -> str:
        """The nft script that (re)creates the table: one drop rule per service, and one per
        NAT real server ``(protocol, rip, rport)`` whose replies the director must rewrite,
        except those to the director's ``own`` addresses (its health checks' answers).
        Addresses may be IPv4 or IPv6 (``ip`` or ``ip6`` rules; ``own`` split by family)."""
        lines = [
            f"table netdev {self.table} {{",
            "  chain steal {",
            f'    type filter hook ingress device "{self.ifname}" priority -500; policy accept;',
        ]
        services, replies = list(services), list(replies)
        for proto, vip, port in services:
            lines.append(_drop_rule("daddr", "dport", proto, vip, port))
        to_others = _to_others(own)
        for proto, rip, port in replies:
            lines.append(_drop_rule("saddr", "sport", proto, rip, port, to_others[_ip(rip)]))
        # ICMP errors about connections belong to the director too; echo (and NDP) stay with
        # the kernel
        for vip in dict.fromkeys(vip for _, vip, _ in services):
            lines.append(_icmp_rule("daddr", vip))
        for rip in dict.fromkeys(rip for _, rip, _ in replies):
            lines.append(_icmp_rule("saddr", rip))
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def install(self, services: Iterable[Endpoint],
                replies: Iterable[Endpoint] = (), own: Iterable[str] = ()) -> None:
        """Replace the rules with drops for ``(protocol, vip, port)`` services, atomically."""
        body = self.ruleset(services, replies, own)
        # nft accepts an ingress chain on a device that does not exist (it never fires): refuse
        try:
            interface_index(self.ifname)
        except OSError as exc:
            raise RuntimeError(f"cannot steal frames on {self.ifname!r}: {exc.strerror}") from None
        # add-then-delete makes the delete safe when the table does not exist yet; the whole
        # script is one nft transaction, so no frame slips through between old and new rules
        script = f"table netdev {self.table}\ndelete table netdev {self.table}\n" + body
        _run_nft(script)
        self.installed = True

    def remove(self) -> None:
        """Delete the table (idempotent)."""
        remove_table(self.table)
        self.installed = False


def remove_table(table: str) -> None:
    """Delete a netdev table if it exists."""
    _run_nft(f"table netdev {table}\ndelete table netdev {table}\n")


def netdev_tables() -> list[str]:
    """The names of this namespace's netdev tables (``nft -j list tables netdev``)."""
    try:
        proc = subprocess.run(["nft", "-j", "list", "tables", "netdev"], capture_output=True,
                              text=True, timeout=10)
    except FileNotFoundError:
        raise RuntimeError("nft (the nftables tool) is not installed") from None
    if proc.returncode != 0:
        raise RuntimeError(f"nft list tables failed ({proc.returncode}): {proc.stderr.strip()}")
    items = json.loads(proc.stdout or "{}").get("nftables", [])
    return [item["table"]["name"] for item in items if "table" in item]


ICMP_ERRORS = "destination-unreachable, source-quench, time-exceeded"
ICMPV6_ERRORS = "destination-unreachable, packet-too-big, time-exceeded, parameter-problem"
"""ICMPv6 errors only: never nd-* (the VIP must still answer Neighbor Discovery) nor echo."""


def _ip(address: str) -> str:
    """The nft word of the address's family: ``ip6`` for IPv6, else ``ip``."""
    return "ip6" if ":" in address else "ip"


def _to_others(own: Iterable[str]) -> dict[str, str]:
    """Per family, the match that spares replies to the director's own addresses."""
    own = sorted(own)
    out = {}
    for family in ("ip", "ip6"):
        mine = [a for a in own if _ip(a) == family]
        out[family] = f" {family} daddr != {{ {', '.join(mine)} }}" if mine else ""
    return out


def _icmp_rule(addr_key: str, address: str) -> str:
    if _ip(address) == "ip6":
        return f"    ip6 {addr_key} {address} icmpv6 type {{ {ICMPV6_ERRORS} }} drop"
    return f"    ip {addr_key} {address} icmp type {{ {ICMP_ERRORS} }} drop"


def _checked(address: str) -> str:
    """The address or prefix as nft writes it; OSError when it is not one."""
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError as exc:
        raise OSError(f"{address!r} is not an address or a prefix: {exc}") from None
    return address if "/" not in address else str(network)


def _drop_rule(addr_key: str, port_key: str, proto: str, address: str,
               port: int | PortRange, more: str = "") -> str:
    proto = proto.lower()
    if proto not in ("tcp", "udp"):
        raise ValueError(f"unsupported protocol {proto!r} (tcp or udp)")
    family, address = _ip(address), _checked(address)
    low, high = port_range(port if isinstance(port, tuple) else int(port))
    if (low, high) == ANY_PORT:  # the whole address (a port-0 service, a mark rule's any port)
        return f"    {family} {addr_key} {address}{more} meta l4proto {proto} drop"
    ports = str(low) if low == high else f"{low}-{high}"
    return f"    {family} {addr_key} {address}{more} {proto} {port_key} {ports} drop"

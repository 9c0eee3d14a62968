"""ipvsadm 1.31's output, byte for byte (reference §2): -L in its layouts, -Lc, --timeout, -S.

Pure rendering from the model. Without -n, addresses and ports get the names the caller found
for them (``Names``: reverse DNS and the services database, looked up by pylvs adm before it
asks); one without a name stays a number, as ipvsadm's does when the resolver has none.
IPv6 addresses are written as glibc's inet_ntop writes them, in brackets (``[addr]:port``), and
never cut: where an IPv4 name is cut to its column (33, 28), an IPv6 one overflows it. The order
is libipvs's comparisons', IPv4 before IPv6, fwmark services last. A fwmark service is
``FWM  1`` (``FWM  1 IPv6``) in a listing and ``-f 1`` (``-f 1 -6``) in a rule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from pylvs.adm.ipvsadm import Command
from pylvs.core.conntrack import Connection, Template, Timeouts
from pylvs.core.model import (
    AF_INET6,
    PROTO_NAMES,
    RealServer,
    Stats,
    VirtualService,
    canonical,
    family_of,
)

IPVS_VERSION = "1.2.1"
CONN_TAB_SIZE = 4096
NAME_BUFFER = 60
"""addrport_to_anyname's buffer: an ``addr:port`` (or ``[addr]:port``) is cut to 59 chars."""
SERVICE_WIDTH, DEST_WIDTH = 33, 28
"""print_service_entry cuts IPv4 names there (IPv6 ones are never cut: they overflow)."""


def numeric(address: str) -> str:
    """An address as ipvsadm -n prints it (inet_ntop's text)."""
    if ":" not in address:
        return address
    return canonical(address)


class Names:
    """Addresses and ports as ipvsadm shows them: numbers with -n, else names when known.
    The names come from the caller, which looked them up (pylvs.shell.names): none here."""

    def __init__(self, numeric: bool, hosts: Mapping[str, str] | None = None,
                 services: Mapping[str, str] | None = None) -> None:
        self.numeric = numeric
        self.hosts = hosts or {}
        """Address → host name."""
        self.services = services or {}
        """"port/protocol" → service name, as /etc/services has them."""

    def host(self, address: str) -> str:
        if self.numeric or address not in self.hosts:
            return numeric(address)
        return self.hosts[address]

    def port(self, port: int, protocol: str) -> str:
        return str(port) if self.numeric else self.services.get(f"{port}/{protocol}", str(port))

    def endpoint(self, address: str, port: int, protocol: str) -> str:
        """addrport_to_anyname: ``host:port``, an IPv6 host in brackets (its name too),
        at most 59 characters."""
        host = self.host(address)
        if family_of(address) == AF_INET6:
            host = f"[{host}]"
        return f"{host}:{self.port(port, protocol)}"[:NAME_BUFFER - 1]


def service_name(service: VirtualService, names: Names) -> str:
    """The Prot LocalAddress:Port cell; an IPv4 one cut to 33 characters, an IPv6 one whole;
    a fwmark service's is print_service_entry's ``FWM  %d`` (``FWM  %d IPv6``), never cut."""
    if service.fwmark:
        return f"FWM  {mark_text(service.fwmark)}" + (" IPv6" if service.af == AF_INET6 else "")
    endpoint = names.endpoint(service.address, service.port, service.protocol)
    name = f"{PROTO_NAMES[service.proto]:<4} {endpoint}"
    return name if service.af == AF_INET6 else name[:SERVICE_WIDTH]


def mark_text(mark: int) -> str:
    """A mark as ipvsadm 1.31 prints it, with ``%d``: one of 2^31 or more is negative (the
    ``%u`` of upstream's later fix e61c8cd is not in 1.31, nor in Debian's 1.31-1)."""
    return str(_c_int(mark))


def _dest_name(service: VirtualService, dest: RealServer, names: Names) -> str:
    """The RemoteAddress:Port cell: cut to 28 characters if the real server is IPv4 (whatever
    its service's family), whole if IPv6. A fwmark service's protocol is "" (the kernel
    reports 0), so its real servers' ports stay numbers even without -n."""
    name = names.endpoint(dest.address, dest.port, service.protocol)
    return name if dest.af == AF_INET6 else name[:DEST_WIDTH]


def _service_line(service: VirtualService, names: Names) -> str:
    line = f"{service_name(service, names)} {service.scheduler.name}"
    if service.scheduler.flags:
        line += f" ({','.join(service.scheduler.flags)})"
    if service.persistence_timeout:
        line += f" persistent {service.persistence_timeout}"
        if not service.default_netmask:
            line += f" mask {service.persistence_netmask}"
    if service.one_packet:
        line += " ops"
    return line


def largenum(value: int, exact: bool) -> str:
    """ipvsadm's print_largenum: 9 characters, K/M/G/T beyond 10^8 unless --exact."""
    if exact:
        digits = len(str(value))
        return f"{value:>{max(9, digits + 1)}}"
    if value < 100_000_000:
        return f"{value:9d}"
    for limit, divisor, unit in ((10**9, 10**3, "K"), (10**11, 10**6, "M"),
                                 (10**14, 10**9, "G")):
        if value < limit:
            return f"{value // divisor:8d}{unit}"
    return f"{value // 10**12:8d}T"


def _stats_cells(stats: Stats, exact: bool) -> str:
    return "".join(largenum(v, exact) for v in (stats.conns, stats.inpkts, stats.outpkts,
                                                 stats.inbytes, stats.outbytes))


def _rate_cells(stats: Stats, exact: bool) -> str:
    cps, inpps, outpps, inbps, outbps = stats.rates()
    return f" {cps:8d} {inpps:8d} {outpps:8d}{largenum(inbps, exact)}{largenum(outbps, exact)}"


def _title(options: set[str]) -> list[str]:
    if "stats" in options or "rate" in options:
        columns = (("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes") if "stats" in options
                   else ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"))
        return ["%-33s %8s %8s %8s %8s %8s" % ("Prot LocalAddress:Port", *columns),
                "  -> RemoteAddress:Port"]
    if "thresholds" in options:
        return ["%-33s %-10s %-10s %-10s %-10s" % ("Prot LocalAddress:Port", "Uthreshold",
                                                   "Lthreshold", "ActiveConn", "InActConn"),
                "  -> RemoteAddress:Port"]
    if "persistent-conn" in options:
        return ["%-33s %-9s %-11s %-10s %-10s" % ("Prot LocalAddress:Port", "Weight",
                                                  "PersistConn", "ActiveConn", "InActConn"),
                "  -> RemoteAddress:Port"]
    if "tun-info" in options:
        return ["Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn "
                "InActConn"]
    return ["Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]


def _service_row(service: VirtualService, options: set[str], names: Names) -> str:
    exact = "exact" in options
    if "stats" in options:
        return f"{service_name(service, names):<33}{_stats_cells(service.stats, exact)}"
    if "rate" in options:
        return f"{service_name(service, names):<33}{_rate_cells(service.stats, exact)}"
    return _service_line(service, names)


def _dest_row(service: VirtualService, dest: RealServer, options: set[str], names: Names) -> str:
    name = _dest_name(service, dest, names)
    exact = "exact" in options
    method = dest.forwarder
    if "stats" in options:
        return f"  -> {name:<28}{_stats_cells(dest.stats, exact)}"
    if "rate" in options:
        return f"  -> {name:<28}{_rate_cells(dest.stats, exact)}"
    if "thresholds" in options:
        return "  -> %-28s %-10u %-10u %-10u %-10u" % (
            name, dest.upper_threshold, dest.lower_threshold, dest.activeconns, dest.inactconns)
    if "persistent-conn" in options:
        return "  -> %-28s %-9u %-11u %-10u %-10u" % (
            name, dest.weight, dest.persistconns, dest.activeconns, dest.inactconns)
    if "tun-info" in options:
        return "  -> %-28s %-7s %-13s %-6d %-10u %-10u" % (
            name, method.label, tunnel_info(dest), dest.weight, dest.activeconns,
            dest.inactconns)
    return "  -> %-28s %-7s %-6d %-10u %-10u" % (
        name, method.label, dest.weight, dest.activeconns, dest.inactconns)


TUN_FLAGS = {"nocsum": "-c", "csum": "+c", "remcsum": "r+c"}
"""ipvsadm's tunflags: how --tun-info writes each checksum option."""


def tunnel_info(dest: RealServer) -> str:
    """fwd_tun_info: ``ipip``, ``gue:PORT:FLAGS`` or ``gre:FLAGS`` for a tunnelled real server,
    ``n/a`` for any other."""
    if not dest.forwarder.tunnel_type:
        return "n/a"
    if dest.tun_type == "gue":
        return f"gue:{dest.tun_port}:{TUN_FLAGS[dest.tun_flags]}"
    if dest.tun_type == "gre":
        return f"gre:{TUN_FLAGS[dest.tun_flags]}"
    return dest.tun_type


def tunnel_rule(dest: RealServer) -> str:
    """print_tunnel_rule's end of an -S line: the type, GUE's port, the checksum option."""
    if dest.tun_type == "gue":
        return f" --tun-type gue --tun-port {dest.tun_port} --tun-{dest.tun_flags}"
    if dest.tun_type == "gre":
        return f" --tun-type gre --tun-{dest.tun_flags}"
    return f" --tun-type {dest.tun_type}"


def _c_int(difference: int) -> int:
    """A difference of two u32 kept in a C int, as libipvs's comparisons keep it: one of 2^31
    or more wraps to a negative number (so 10.0.0.1 sorts after 192.168.1.1)."""
    difference &= 0xFFFFFFFF
    return difference - (1 << 32) if difference >= 1 << 31 else difference


def _words(ip: int, af: int) -> list[int]:
    """The address as libipvs holds it: four 32-bit words, an IPv4 one in the first."""
    return [(ip >> shift) & 0xFFFFFFFF for shift in (96, 64, 32, 0)] if af == AF_INET6 else [
        ip, 0, 0, 0]


def _compare_addresses(af: int, a: list[int], b: list[int]) -> int:
    """The address part of ipvs_cmp_services / ipvs_cmp_dests: all four words if the first
    entry is IPv6, else only the first word."""
    for x, y in zip(a, b if af == AF_INET6 else b[:1], strict=False):
        r = _c_int(x - y)
        if r:
            return r
    return 0


def _compare_services(s1: VirtualService, s2: VirtualService) -> int:
    """libipvs's ipvs_cmp_services: fwmark (a u32 difference kept in an int, so services
    without one come first unless a mark is 2^31 + 1 or more), family (IPv4 first), protocol,
    address, port. A fwmark service has protocol, address and port 0 (the kernel sends none
    of them)."""
    return (_c_int(s1.fwmark - s2.fwmark) or s1.af - s2.af or s1.proto - s2.proto
            or _compare_addresses(s1.af, _address_words(s1), _address_words(s2))
            or s1.port - s2.port)


def _address_words(service: VirtualService) -> list[int]:
    """A service's address as libipvs holds it; a fwmark service's is all zeros."""
    return _words(0 if service.fwmark else service.ip, service.af)


def _compare_dests(d1: RealServer, d2: RealServer) -> int:
    """libipvs's ipvs_cmp_dests: address (as the first one's family reads it), then port."""
    return (_compare_addresses(d1.af, _words(d1.ip, d1.af), _words(d2.ip, d2.af))
            or d1.port - d2.port)


def ordered(services: Iterable[VirtualService], options: set[str]) -> list[VirtualService]:
    """ipvsadm sorts services as ipvs_cmp_services does (fwmark services after the others,
    IPv4 before IPv6, TCP before UDP, then address and port) unless --nosort."""
    services = list(services)
    return services if "nosort" in options else sorted(
        services, key=functools.cmp_to_key(_compare_services))


def _dests(service: VirtualService, options: set[str]) -> list[RealServer]:
    servers = list(service.real_servers)
    return servers if "nosort" in options else sorted(
        servers, key=functools.cmp_to_key(_compare_dests))


def render_services(services: Iterable[VirtualService], command: Command, names: Names
                    ) -> str:
    options = command.options
    lines: list[str] = []
    if command.service is None:
        lines.append(f"IP Virtual Server version {IPVS_VERSION} (size={CONN_TAB_SIZE})")
    lines += _title(options)
    for service in ordered(services, options):
        lines.append(_service_row(service, options, names))
        lines += [_dest_row(service, dest, options, names) for dest in _dests(service, options)]
    return "\n".join(lines) + "\n"


def render_connections(entries: Iterable[Connection | Template], now: float,
                       persistent_conn: bool = False) -> str:
    """-Lnc; --persistent-conn adds the persistence engine's two columns to the title, while
    the rows stay as they are: ipvsadm's print_conn uses the wider row only for a line of
    /proc/net/ip_vs_conn that has a PEName and PEData (11 fields), and no connection here has
    a persistence engine (the kernel writes none for them)."""
    if persistent_conn:
        title = "pro expire %-11s %-18s %-18s %-18s %-16s %s" % (
            "state", "source", "virtual", "destination", "pe name", "pe_data")
    else:
        title = "pro expire %-11s %-18s %-18s %s" % ("state", "source", "virtual", "destination")
    lines = ["IPVS connection entries", title]
    lines += [entry.row(now) for entry in entries]
    return "\n".join(lines) + "\n"


def render_timeout(timeouts: Timeouts) -> str:
    tcp, tcpfin, udp = timeouts.triple()
    return f"Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n"


def render_save(services: Iterable[VirtualService], names: Names) -> str:
    """ipvsadm -S: the rules as -A/-a lines that -R reads back (thresholds are not saved)."""
    lines: list[str] = []
    for service in ordered(services, set()):
        selector = rule_selector(service, names)
        line = f"-A {selector} -s {service.scheduler.name}"
        if service.persistence_timeout:
            line += f" -p {service.persistence_timeout}"
            if not service.default_netmask:
                line += f" -M {service.persistence_netmask}"
        if service.one_packet:
            line += " -o"
        if service.scheduler.flags:
            line += f" -b {','.join(service.scheduler.flags)}"
        lines.append(line)
        for dest in _dests(service, set()):
            method = dest.forwarder
            line = (f"-a {selector} -r {names.endpoint(dest.address, dest.port, service.protocol)}"
                    f" {method.flag} -w {dest.weight}")
            if method.tunnel_type:
                line += tunnel_rule(dest)
            lines.append(line)
    return "".join(line + "\n" for line in lines)


def rule_selector(service: VirtualService, names: Names) -> str:
    """print_service_entry's svc_name for FMT_RULE: ``-t addr:port``, ``-u addr:port``, or
    ``-f %d`` (``-f %d -6``) for a fwmark service (so -R refuses a mark of 2^31 or more back,
    as parse_fwmark refuses a negative one)."""
    if service.fwmark:
        return f"-f {mark_text(service.fwmark)}" + (" -6" if service.af == AF_INET6 else "")
    flag = {"tcp": "-t", "udp": "-u"}[service.protocol]
    return f"{flag} {names.endpoint(service.address, service.port, service.protocol)}"


SYSCTL_PREFIX = "net.ipv4.vs."


def render_sysctls(items: list[tuple[str, int]]) -> str:
    """As sysctl(8) prints them: ``net.ipv4.vs.drop_entry = 1``."""
    return "".join(f"{SYSCTL_PREFIX}{name} = {value}\n" for name, value in items)

"""ipvsadm 1.31's output, byte for byte (reference §2): -L in its layouts, -Lc, --timeout, -S.

Pure rendering from the model. Without -n, addresses and ports get the names the caller found
for them (``Names``: reverse DNS and the services database, looked up by pylvs adm before it
asks); one without a name stays a number, as ipvsadm's does when the resolver has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pylvs.adm.ipvsadm import Command
from pylvs.core.conntrack import Connection, Template, Timeouts
from pylvs.core.model import PROTO_NAMES, RealServer, Stats, VirtualService

IPVS_VERSION = "1.2.1"
CONN_TAB_SIZE = 4096


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
        return address if self.numeric else self.hosts.get(address, address)

    def port(self, port: int, protocol: str) -> str:
        return str(port) if self.numeric else self.services.get(f"{port}/{protocol}", str(port))

    def endpoint(self, address: str, port: int, protocol: str) -> str:
        return f"{self.host(address)}:{self.port(port, protocol)}"


def service_name(service: VirtualService, names: Names) -> str:
    endpoint = names.endpoint(service.address, service.port, service.protocol)
    return f"{PROTO_NAMES[service.proto]:<4} {endpoint}"


def _dest_name(service: VirtualService, dest: RealServer, names: Names) -> str:
    return names.endpoint(dest.address, dest.port, service.protocol)[:28]


def _service_line(service: VirtualService, names: Names) -> str:
    line = f"{service_name(service, names)} {service.scheduler.name}"
    if service.scheduler.flags:
        line += f" ({','.join(service.scheduler.flags)})"
    if service.persistence_timeout:
        line += f" persistent {service.persistence_timeout}"
        if service.persistence_netmask != "255.255.255.255":
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
            name, method.label, method.tunnel_type or "n/a", dest.weight, dest.activeconns,
            dest.inactconns)
    return "  -> %-28s %-7s %-6d %-10u %-10u" % (
        name, method.label, dest.weight, dest.activeconns, dest.inactconns)


def ordered(services: Iterable[VirtualService], options: set[str]) -> list[VirtualService]:
    """ipvsadm sorts services by (protocol, address, port) unless --nosort."""
    services = list(services)
    return services if "nosort" in options else sorted(services,
                                                       key=lambda s: (s.proto, s.ip, s.port))


def _dests(service: VirtualService, options: set[str]) -> list[RealServer]:
    servers = list(service.real_servers)
    return servers if "nosort" in options else sorted(servers, key=lambda d: (d.ip, d.port))


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
    """-Lnc; with --persistent-conn the destination is padded and the (empty) persistence
    engine name and data columns follow."""
    if persistent_conn:
        title = "pro expire %-11s %-18s %-18s %-18s %-16s %s" % (
            "state", "source", "virtual", "destination", "pe name", "pe_data")
    else:
        title = "pro expire %-11s %-18s %-18s %s" % ("state", "source", "virtual", "destination")
    lines = ["IPVS connection entries", title]
    for entry in entries:
        row = entry.row(now)
        if persistent_conn:
            head, dest = row.rsplit(" ", 1)
            row = "%s %-18s %-16s " % (head, dest, "")
        lines.append(row)
    return "\n".join(lines) + "\n"


def render_timeout(timeouts: Timeouts) -> str:
    tcp, tcpfin, udp = timeouts.triple()
    return f"Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n"


def render_save(services: Iterable[VirtualService], names: Names) -> str:
    """ipvsadm -S: the rules as -A/-a lines that -R reads back (thresholds are not saved)."""
    lines: list[str] = []
    for service in ordered(services, set()):
        flag = {"tcp": "-t", "udp": "-u"}[service.protocol]
        selector = f"{flag} {names.endpoint(service.address, service.port, service.protocol)}"
        line = f"-A {selector} -s {service.scheduler.name}"
        if service.persistence_timeout:
            line += f" -p {service.persistence_timeout}"
            if service.persistence_netmask != "255.255.255.255":
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
                line += f" --tun-type {method.tunnel_type}"
            lines.append(line)
    return "".join(line + "\n" for line in lines)


SYSCTL_PREFIX = "net.ipv4.vs."


def render_sysctls(items: list[tuple[str, int]]) -> str:
    """As sysctl(8) prints them: ``net.ipv4.vs.drop_entry = 1``."""
    return "".join(f"{SYSCTL_PREFIX}{name} = {value}\n" for name, value in items)

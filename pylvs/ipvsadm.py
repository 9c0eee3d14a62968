"""ipvsadm's command line and its exact output layouts (ipvsadm 1.31, reference §1–§2).

Parsing is pure (argv → Command); rendering is pure (model → text). Usage errors exit with 2 as
ipvsadm's fail() does; errors from the director exit with 255. This version implements the list
commands; other ipvsadm commands are refused by name, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pylvs.conntrack import Connection, Template, Timeouts
from pylvs.model import FORWARD_NAMES, PROTO_NAMES, PROTO_NUMBERS, VirtualService

VERSION_LINE = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)"
IPVS_VERSION = "1.2.1"
CONN_TAB_SIZE = 4096
EXIT_USAGE = 2
EXIT_DIRECTOR = 255

_COMMANDS = {
    "-A": "add-service", "--add-service": "add-service", "-E": "edit-service",
    "--edit-service": "edit-service", "-D": "delete-service", "--delete-service": "delete-service",
    "-C": "clear", "--clear": "clear", "-R": "restore", "--restore": "restore", "-S": "save",
    "--save": "save", "-a": "add-server", "--add-server": "add-server", "-e": "edit-server",
    "--edit-server": "edit-server", "-d": "delete-server", "--delete-server": "delete-server",
    "-L": "list", "-l": "list", "--list": "list", "-Z": "zero", "--zero": "zero", "--set": "set",
    "-h": "help", "--help": "help", "-v": "version", "--version": "version",
    "--start-daemon": "start-daemon", "--stop-daemon": "stop-daemon",
}
_LIST_FLAGS = {
    "-n": "numeric", "--numeric": "numeric", "-c": "connection", "--connection": "connection",
    "--stats": "stats", "--exact": "exact", "-X": "exact", "--timeout": "timeout",
    "--sort": "sort", "--nosort": "nosort", "--rate": "rate", "--thresholds": "thresholds",
    "--persistent-conn": "persistent-conn", "--daemon": "daemon", "--tun-info": "tun-info",
}
_SERVICE_OPTS = {"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp"}
_UNSUPPORTED_LIST = {"rate", "thresholds", "persistent-conn", "daemon", "tun-info"}
_EXCLUSIVE_LIST = ("connection", "timeout", "daemon")


class UsageError(Exception):
    """An ipvsadm usage error: printed and exit status 2."""


@dataclass
class Command:
    name: str
    flags: set[str] = field(default_factory=set)
    service: tuple[str, str, int] | None = None    # (protocol, address, port)


def _split_short(argv: Sequence[str]) -> list[str]:
    """-Lnc → -L -n -c, as popt reads clustered short options."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            head = arg[:2]
            if head in _SERVICE_OPTS:
                out += [head, arg[2:]]
            else:
                out += [f"-{ch}" for ch in arg[1:]]
        else:
            out.append(arg)
    return out


def _parse_service(proto: str, text: str) -> tuple[str, str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "0"
    if not port.isdigit() or int(port) > 65535:
        raise UsageError("illegal virtual server address[:port] specified")
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise UsageError("illegal virtual server address[:port] specified")
    return proto, ".".join(str(int(p)) for p in parts), int(port)


def parse(argv: Sequence[str]) -> Command:
    args = _split_short(argv)
    command: Command | None = None
    flags: set[str] = set()
    service = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _COMMANDS:
            if command is not None:
                raise UsageError("multiple commands specified")
            command = Command(_COMMANDS[arg])
        elif arg in _LIST_FLAGS:
            flags.add(_LIST_FLAGS[arg])
        elif arg in _SERVICE_OPTS:
            if i + 1 >= len(args):
                raise UsageError(f"option {arg} needs an argument")
            if service is not None:
                raise UsageError("multiple service options specified")
            service = _parse_service(_SERVICE_OPTS[arg], args[i + 1])
            i += 1
        else:
            raise UsageError(f"invalid option {arg}")
        i += 1
    command = command or Command("list")
    command.flags, command.service = flags, service
    _check(command)
    return command


def _check(command: Command) -> None:
    if command.name in ("help", "version"):
        return
    if command.name != "list":
        raise UsageError(f"the '{command.name}' command is not supported by this version of "
                         "pylvs yet (only list, -h and -v)")
    unsupported = command.flags & _UNSUPPORTED_LIST
    if unsupported:
        raise UsageError(f"option '--{sorted(unsupported)[0]}' is not supported by this version")
    chosen = [name for name in _EXCLUSIVE_LIST if name in command.flags]
    if command.service:
        chosen.append("service")
    if len(chosen) > 1:
        raise UsageError(f"The option '{chosen[1]}' conflicts with the '{chosen[0]}' option in "
                         "the 'list' command")
    if "stats" in command.flags and ("connection" in command.flags or "timeout" in command.flags):
        other = "connection" if "connection" in command.flags else "timeout"
        raise UsageError(f"The option 'stats' conflicts with the '{other}' option in the 'list' "
                         "command")


def service_name(service: VirtualService) -> str:
    return f"{PROTO_NAMES[service.proto]:<4} {service.endpoint}"[:38]


def _sorted(services: Iterable[VirtualService]) -> list[VirtualService]:
    return sorted(services, key=lambda s: (s.proto, s.ip, s.port))


def _service_line(service: VirtualService) -> str:
    line = f"{service_name(service)} {service.scheduler.name}"
    if service.scheduler.flags:
        line += f" ({','.join(service.scheduler.flags)})"
    if service.persistence_timeout:
        line += f" persistent {service.persistence_timeout}"
        if service.persistence_netmask != "255.255.255.255":
            line += f" mask {service.persistence_netmask}"
    return line


def largenum(value: int, exact: bool) -> str:
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


def _stats_cells(stats: object, exact: bool) -> str:
    return "".join(largenum(getattr(stats, name), exact)
                   for name in ("conns", "inpkts", "outpkts", "inbytes", "outbytes"))


def render_services(services: Iterable[VirtualService], command: Command) -> str:
    stats = "stats" in command.flags
    exact = "exact" in command.flags
    chosen = list(services) if "nosort" in command.flags else _sorted(services)
    lines: list[str] = []
    if command.service is None:
        lines.append(f"IP Virtual Server version {IPVS_VERSION} (size={CONN_TAB_SIZE})")
    if stats:
        lines.append("%-33s %8s %8s %8s %8s %8s" % ("Prot LocalAddress:Port", "Conns", "InPkts",
                                                   "OutPkts", "InBytes", "OutBytes"))
        lines.append("  -> RemoteAddress:Port")
    else:
        lines.append("Prot LocalAddress:Port Scheduler Flags")
        lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
    for service in chosen:
        servers = service.real_servers
        if "nosort" not in command.flags:
            servers = sorted(servers, key=lambda d: (d.ip, d.port))
        if stats:
            lines.append(f"{service_name(service):<33}{_stats_cells(service.stats, exact)}")
        else:
            lines.append(_service_line(service))
        for dest in servers:
            if stats:
                lines.append(f"  -> {dest.endpoint[:28]:<28}{_stats_cells(dest.stats, exact)}")
            else:
                lines.append("  -> %-28s %-7s %-6d %-10u %-10u" % (
                    dest.endpoint[:28], FORWARD_NAMES[dest.forward], dest.weight,
                    dest.activeconns, dest.inactconns))
    return "\n".join(lines) + "\n"


def render_connections(conns: Iterable[Connection | Template], now: float) -> str:
    lines = ["IPVS connection entries",
             "pro expire %-11s %-18s %-18s %s" % ("state", "source", "virtual", "destination")]
    lines += [conn.row(now) for conn in conns]
    return "\n".join(lines) + "\n"


def render_timeout(timeouts: Timeouts) -> str:
    tcp, tcpfin, udp = timeouts.triple()
    return f"Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n"


def find_service(services: Iterable[VirtualService],
                 selector: tuple[str, str, int]) -> VirtualService | None:
    proto, address, port = selector
    for service in services:
        if (service.proto, service.address, service.port) == (PROTO_NUMBERS[proto], address, port):
            return service
    return None


USAGE = f"""{VERSION_LINE}
Usage:
  pylvs adm -L|l [virtual-service] [options]
  pylvs adm -h
  pylvs adm -v

Commands (this version):
  --list         -L|-l        list the table
  --help         -h           display this help message
  --version      -v           show the version

Options:
  --tcp-service  -t service-address   service-address is host[:port]
  --udp-service  -u service-address   service-address is host[:port]
  --numeric      -n                   numeric output of addresses and ports
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --exact                             expand numbers (display exact values)
  --sort                              sorting output of service/server entries
  --nosort                            disable sorting output of service/server entries
"""

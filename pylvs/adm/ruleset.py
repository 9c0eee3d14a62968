"""Rule sets in three spellings: the model, ipvsadm command lines, and pylvs's TOML.

``commands`` gives the ipvsadm lines that build services from an empty table (real servers added
oldest first, so IPVS's newest-first order comes out the same); ``diff`` the lines that turn one
rule set into another, touching only what differs (how a reload is applied); ``to_toml`` the
config file for a rule set, and ``from_ipvsadm`` reads ``ipvsadm -S`` output into a rule set.
A fwmark service is ``-f N [-6]`` on a command line and ``fwmark = N`` (with ``family =
"ipv6"``) in TOML, where its port-0 real servers are written without a port.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pylvs.adm import ipvsadm
from pylvs.adm.commands import CHANGES, run
from pylvs.core.model import AF_INET6, RealServer, VirtualService

_SERVICE_FLAGS = {"tcp": "-t", "udp": "-u"}


def selector_argv(service: VirtualService) -> list[str]:
    """How a command names the service: ``-t addr:port``, ``-u addr:port``, ``-f N [-6]``."""
    if service.fwmark:
        return ["-f", str(service.fwmark), *(["-6"] if service.af == AF_INET6 else [])]
    return [_SERVICE_FLAGS[service.protocol], service.endpoint]


def service_argv(verb: str, service: VirtualService) -> list[str]:
    argv = [verb, *selector_argv(service)]
    if verb in ("-A", "-E"):
        argv += ["-s", service.scheduler.spec]
        if service.persistence_timeout:
            argv += ["-p", str(service.persistence_timeout)]
            if not service.default_netmask:
                argv += ["-M", service.persistence_netmask]
        if service.one_packet:
            argv.append("-o")
        if service.scheduler.flags:
            argv += ["-b", ",".join(service.scheduler.flags)]
    return argv


def server_argv(verb: str, service: VirtualService, server: RealServer) -> list[str]:
    argv = [verb, *selector_argv(service), "-r", server.endpoint]
    if verb in ("-a", "-e"):
        argv += [server.forwarder.flag, "-w", str(server.weight)]
        if server.upper_threshold:
            argv += ["-x", str(server.upper_threshold)]
        if server.lower_threshold:
            argv += ["-y", str(server.lower_threshold)]
        if server.tun_type != "ipip":
            argv += ["--tun-type", server.tun_type]
            if server.tun_type == "gue":
                argv += ["--tun-port", str(server.tun_port)]
            argv.append(f"--tun-{server.tun_flags}")
    return argv


def commands(services: Iterable[VirtualService]) -> list[list[str]]:
    out: list[list[str]] = []
    for service in services:
        out.append(service_argv("-A", service))
        out += [server_argv("-a", service, rs) for rs in reversed(service.real_servers)]
    return out


def _service_spec(service: VirtualService) -> tuple:
    return (service.scheduler.spec, service.scheduler.flags, service.persistence_timeout,
            service.persistence_netmask, service.one_packet)


def _server_spec(server: RealServer) -> tuple:
    return (server.weight, server.forward, server.upper_threshold, server.lower_threshold,
            server.tun_type, server.tun_port, server.tun_flags)


def diff(old: Iterable[VirtualService], new: Iterable[VirtualService]) -> list[list[str]]:
    before = {s.key: s for s in old}
    after = {s.key: s for s in new}
    out = [service_argv("-D", s) for key, s in before.items() if key not in after]
    for key, service in after.items():
        current = before.get(key)
        if current is None:
            out += commands([service])
            continue
        if _service_spec(current) != _service_spec(service):
            out.append(service_argv("-E", service))
        have = {(rs.af, rs.ip, rs.port): rs for rs in current.real_servers}
        want = {(rs.af, rs.ip, rs.port): rs for rs in service.real_servers}
        out += [server_argv("-d", current, rs) for k, rs in have.items() if k not in want]
        for k, rs in reversed(list(want.items())):
            if k not in have:
                out.append(server_argv("-a", service, rs))
            elif _server_spec(have[k]) != _server_spec(rs):
                out.append(server_argv("-e", service, rs))
    return out


def command_lines(lines: Iterable[str]) -> Iterator[tuple[int, str, list[str]]]:
    """ipvsadm -R's input: (line number, line, argv) per command. Split on blanks as ipvsadm
    does (a quote is a character like any other); a leading `ipvsadm` and comments from a word
    starting with # are allowed."""
    for number, line in enumerate(lines, start=1):
        argv = line.split()
        comment = next((i for i, word in enumerate(argv) if word.startswith("#")), len(argv))
        argv = argv[:comment]
        if argv[:1] == ["ipvsadm"]:
            argv = argv[1:]
        if argv:
            yield number, line, argv


def from_ipvsadm(text: str) -> list[VirtualService]:
    """Services from ipvsadm -S (or any -A/-a lines), as ipvsadm -R would build them."""
    from pylvs.core.director import Director

    director = Director([])
    for number, line, argv in command_lines(text.splitlines()):
        try:
            command = ipvsadm.parse(argv)
            if command.name not in CHANGES and command.name != "flush":
                raise ipvsadm.UsageError(f"a rule set has no place for '{command.name}'")
            run(director, command, 0.0)
        except (ipvsadm.UsageError, ipvsadm.DirectorError) as exc:
            raise ValueError(f"line {number}: {line.strip()}: {str(exc).strip()}") from None
    return list(director.services.values())


def to_toml(services: Iterable[VirtualService], interface: str = "eth0",
            inside_interface: str = "") -> str:
    lines = ["[director]", f'interface = "{interface}"']
    if inside_interface and inside_interface != interface:
        lines.append(f'inside_interface = "{inside_interface}"')
    for service in services:
        lines += ["", "[[virtual_server]]", *_toml_selector(service),
                  f'scheduler = "{service.scheduler.spec}"']
        if service.scheduler.flags:
            lines.append(f"scheduler_flags = {list(service.scheduler.flags)!r}".replace("'", '"'))
        if service.persistence_timeout:
            lines.append(f"persistence_timeout = {service.persistence_timeout}")
            if not service.default_netmask and service.af == AF_INET6:  # a prefix length
                lines.append(f"persistence_netmask = {service.persistence_netmask}")
            elif not service.default_netmask:
                lines.append(f'persistence_netmask = "{service.persistence_netmask}"')
        if service.one_packet:
            lines.append("one_packet = true")
        for server in reversed(service.real_servers):
            lines += ["", "  [[virtual_server.real_server]]",
                      f'  address = "{_toml_server_address(server)}"',
                      f"  weight = {server.weight}",
                      f'  forward = "{server.forward}"']
            if server.upper_threshold:
                lines.append(f"  upper_threshold = {server.upper_threshold}")
            if server.lower_threshold:
                lines.append(f"  lower_threshold = {server.lower_threshold}")
            if server.tun_type != "ipip":
                lines.append(f'  tun_type = "{server.tun_type}"')
                if server.tun_type == "gue":
                    lines.append(f"  tun_port = {server.tun_port}")
                lines.append(f'  tun_flags = "{server.tun_flags}"')
    return "\n".join(lines) + "\n"


def _toml_selector(service: VirtualService) -> list[str]:
    """A virtual_server's ``address`` and ``protocol``, or for a fwmark service its
    ``fwmark`` (and ``family = "ipv6"`` for -6) with ``allow_unmarked``: the rules say nothing
    of what marks packets (iptables, nft), so the config cannot either, and says so."""
    if service.fwmark:
        return [f"fwmark = {service.fwmark}",
                *(['family = "ipv6"'] if service.af == AF_INET6 else []),
                "# ipvsadm rules do not say what marks packets (iptables, nft): add [[mark]]",
                f"# tables giving mark {service.fwmark}, then drop allow_unmarked",
                "allow_unmarked = true"]
    return [f'address = "{service.endpoint}"', f'protocol = "{service.protocol}"']


def _toml_server_address(server: RealServer) -> str:
    """``addr:port`` (``[addr]:port``); a port-0 one (a fwmark service's) without its port:
    ``addr`` (``[addr]``), which the config reads as port 0."""
    if server.port:
        return server.endpoint
    return f"[{server.address}]" if server.af == AF_INET6 else server.address

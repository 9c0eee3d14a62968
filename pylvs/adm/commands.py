"""The director's control plane: ipvsadm commands applied to its services, as ip_vs_ctl.c does.

Errors are the kernel's, in libipvs's words (``Service already exists``, ``No such service``,
``Service not defined``, ``Destination already exists``, ``No such destination``, ``Scheduler or
persistence engine not found``, and every EINVAL as ``INVALID``), raised as ``DirectorError``
(exit status 255). IPv6 as ip_vs_ctl.c has it: a real server of the other family only with
tunnelling, an IPv6 real server unicast and not link-local, an IPv6 mask a prefix 1..128.
Firewall-mark services (-f) are found by mark and family, as __ip_vs_svc_fwm_find, with the
same errors; their real servers keep the port given (0 when none) whatever the method.
While a sync daemon runs (``syncing``, which the shell knows), a real server of the other
family is refused outright, tunnelled too. ipvsadm's own defaults and gotchas are kept: every
-a/-e starts from weight 1, thresholds 0 and DR, and -E without -s goes back to wlc and without
-p drops persistence. A deleted real
server's connections stop at once (IPVS's expire_nodest_conn), counted as ``nodest_expired``;
a quiesced one keeps them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import forwarders
import schedulers
from pylvs.adm import ipvsadm, layouts
from pylvs.adm.ipvsadm import Command, DirectorError, UsageError
from pylvs.core.director import Director
from pylvs.core.model import (
    AF_INET6,
    DEFAULT_SCHEDULER,
    PROTO_NUMBERS,
    RealServer,
    VirtualService,
    family_of,
    fwmark_key,
    service_key,
)

Lookup = tuple[Mapping[str, str], Mapping[str, str]]
"""Names found by the caller: host by address, service by "port/protocol"."""

INVALID = "Invalid operation.  Possibly wrong module version, address not unicast, ..."
"""libipvs's ipvs_strerror for EINVAL, whatever the call (sic: two blanks)."""


def make_scheduler(command: Command) -> schedulers.Scheduler:
    try:
        cls = schedulers.get(command.scheduler or DEFAULT_SCHEDULER)
    except schedulers.UnknownScheduler:
        raise DirectorError("Scheduler or persistence engine not found") from None
    try:
        scheduler = cls(command.sched_flags)
    except ValueError:
        raise UsageError("incompatible scheduler flag") from None
    scheduler.spec = command.scheduler or DEFAULT_SCHEDULER
    return scheduler


def _key(command: Command) -> tuple[int, ...]:
    """The director's key of the command's service: by mark and family for -f (IPVS's
    __ip_vs_svc_fwm_find), else by protocol, address and port."""
    assert command.service is not None
    if command.fwmark:
        return fwmark_key(command.fwmark, command.af)
    proto, address, port = command.service
    return service_key(PROTO_NUMBERS[proto], address, port)


def _check_netmask(command: Command) -> None:
    """ip_vs_add_service / ip_vs_edit_service: an IPv6 service's mask is a prefix 1..128."""
    assert command.service is not None
    if command.af == AF_INET6 and command.netmask is not None and not (
            command.netmask.isdigit() and 1 <= int(command.netmask) <= 128):
        raise DirectorError(INVALID)


def _check_family(service: VirtualService, command: Command) -> None:
    """ip_vs_genl_set_cmd: a real server of another family than its service only with
    tunnelling (IP_VS_CONN_F_TUNNEL), checked before the real server is looked up."""
    address = command.server[0]  # type: ignore[index]
    method = forwarders.get(command.forward or forwarders.DEFAULT)
    if family_of(address) != service.af and method.conn_flag != ipvsadm.IP_VS_CONN_F_TUNNEL:
        raise DirectorError(INVALID)


def _check_sync_family(director: Director, command: Command) -> None:
    """ip_vs_genl_set_cmd: while a sync daemon runs (``ipvs->sync_state``, either half), a real
    server of another family than its service is refused for -a and -e (EINVAL, "The
    synchronization protocol is incompatible with mixed family services"), its service looked
    up first (``Service not defined``), tunnelled or not."""
    service = _service(director, command, "Service not defined")
    if family_of(command.server[0]) != service.af:  # type: ignore[index]
        raise DirectorError(INVALID)


def _check_unicast(address: str) -> None:
    """ip_vs_new_dest: an IPv6 real server must be unicast (ipv6_addr_type: not ::, not
    multicast, not IPv4-mapped) and not link-local. (The kernel lets one through that is the
    director's own address; the core cannot know those, so it does not.)"""
    if family_of(address) != AF_INET6:
        return
    ip = ipaddress.IPv6Address(address)
    if ip.is_multicast or ip.is_link_local or ip.is_unspecified or ip.ipv4_mapped:
        raise DirectorError(INVALID)


def _service(director: Director, command: Command, missing: str) -> VirtualService:
    service = director.services.get(_key(command))
    if service is None:
        raise DirectorError(missing)
    return service


def add_service(director: Director, command: Command) -> None:
    proto, address, port = command.service  # type: ignore[misc]
    if _key(command) in director.services:
        raise DirectorError("Service already exists")
    _check_netmask(command)
    service = VirtualService(proto, address, port, make_scheduler(command), forwarders.DEFAULT,
                             command.persistent or 0, command.netmask or "",
                             one_packet="ops" in command.options, fwmark=command.fwmark,
                             af=command.af)
    service.scheduler.update(service.real_servers)
    director.services[service.key] = service


def edit_service(director: Director, command: Command) -> None:
    service = _service(director, command, "No such service")
    _check_netmask(command)
    scheduler = make_scheduler(command)
    if (scheduler.spec, scheduler.flags) != (service.scheduler.spec, service.scheduler.flags):
        service.scheduler = scheduler
        service.scheduler.update(service.real_servers)
    service.persistence_timeout = command.persistent or 0
    service.set_netmask(command.netmask or "")
    service.one_packet = "ops" in command.options  # -E without -o drops it, as -p


def delete_service(director: Director, command: Command) -> None:
    service = _service(director, command, "No such service")
    director.drop_connections(lambda conn: conn.service is service)
    del director.services[service.key]


def flush(director: Director) -> None:
    for service in list(director.services.values()):
        director.drop_connections(lambda conn, s=service: conn.service is s)
    director.services.clear()


def _server_endpoint(service: VirtualService, command: Command, forced: bool = True
                     ) -> tuple[str, int]:
    """ipvsadm forces the service's port for -a/-e with -g or -i (only -m maps ports) unless
    the service is a fwmark one, whose real server keeps the port given (0, the service's,
    when none); -d takes the port given, so a port-mapped NAT server can be deleted."""
    address, port = command.server  # type: ignore[misc]
    method = forwarders.get(command.forward or forwarders.DEFAULT)
    if port is None or (forced and not method.masquerades and not service.fwmark):
        port = service.port
    return address, port


def _tunnel(command: Command) -> dict[str, str | int]:
    """A tunnelled real server's --tun-type, --tun-port and checksum option (ipvsadm's
    defaults: ipip, 0, nocsum; -e sets them all again, as ipvsadm sends them all)."""
    return {"tun_type": command.tun_type or "ipip", "tun_port": command.tun_port or 0,
            "tun_flags": command.tun_flags or "nocsum"}


def add_server(director: Director, command: Command) -> None:
    service = _service(director, command, "Service not defined")
    _check_family(service, command)
    address, port = _server_endpoint(service, command)
    if service.find_real_server(address, port) is not None:
        raise DirectorError("Destination already exists")
    _check_unicast(address)
    try:
        service.add_real_server(RealServer(
            address, port, weight=1 if command.weight is None else command.weight,
            forward=command.forward or forwarders.DEFAULT,
            upper_threshold=command.u_threshold or 0, lower_threshold=command.l_threshold or 0,
            **_tunnel(command)))
    except ValueError:  # the scheduler's EINVAL (mh: more servers than slots): nothing added
        raise DirectorError(INVALID) from None


def edit_server(director: Director, command: Command) -> None:
    service = _service(director, command, "Service not defined")
    _check_family(service, command)
    server = service.find_real_server(*_server_endpoint(service, command))
    if server is None:
        raise DirectorError("No such destination")
    upper = command.u_threshold or 0
    if upper == 0 or upper > server.upper_threshold:
        server.overloaded = False
    server.set_weight(1 if command.weight is None else command.weight)
    server.set_forward(command.forward or forwarders.DEFAULT, **_tunnel(command))
    server.upper_threshold, server.lower_threshold = upper, command.l_threshold or 0
    service.scheduler.update(service.real_servers)


def delete_server(director: Director, command: Command) -> None:
    service = _service(director, command, "Service not defined")
    server = service.find_real_server(*_server_endpoint(service, command, forced=False))
    if server is None:
        raise DirectorError("No such destination")
    director.drop_connections(lambda conn: conn.server is server)
    service.remove_real_server(server)


def zero(director: Director, command: Command) -> None:
    services = ([_service(director, command, "No such service")] if command.service
                else list(director.services.values()))
    for service in services:
        service.stats.zero()
        for server in service.real_servers:
            server.stats.zero()


def set_timeouts(director: Director, command: Command) -> None:
    tcp, tcpfin, udp = command.timeouts  # type: ignore[misc]
    director.table.timeouts.set(tcp, tcpfin, udp)


CHANGES = {"add-service": add_service, "edit-service": edit_service,
           "delete-service": delete_service, "add-server": add_server,
           "edit-server": edit_server, "delete-server": delete_server, "zero": zero,
           "set": set_timeouts}


def adm(director: Director, argv: list[str], now: float, names: Lookup | None = None
        ) -> tuple[int, str, str]:
    """Run one ipvsadm command line; returns (exit status, stdout, stderr)."""
    try:
        command = ipvsadm.parse(argv)
    except UsageError as exc:
        return ipvsadm.EXIT_USAGE, "", f"{exc}\n"
    return answer(director, command, now, names)


def answer(director: Director, command: Command, now: float, names: Lookup | None = None,
           syncing: bool = False) -> tuple[int, str, str]:
    """``run`` with its refusals as ipvsadm reports them: (exit status, stdout, stderr)."""
    try:
        return 0, run(director, command, now, names, syncing), ""
    except UsageError as exc:
        return ipvsadm.EXIT_USAGE, "", f"{exc}\n"
    except DirectorError as exc:
        return ipvsadm.EXIT_DIRECTOR, "", f"{exc}\n"


def run(director: Director, command: Command, now: float, names: Lookup | None = None,
        syncing: bool = False) -> str:
    """One parsed command. A listing without -n names what ``names`` holds (host names by
    address, service names by "port/protocol"), found by the caller: no lookups here.
    ``syncing``: a half of the sync daemon runs (IPVS's ``sync_state``), which the shell knows."""
    name = command.name
    if name == "help":
        return ipvsadm.USAGE
    if name == "version":
        return ipvsadm.VERSION_LINE + "\n"
    if name in ("list", "save"):
        hosts, services = names or ({}, {})
        return _list(director, command, now, layouts.Names("numeric" in command.options, hosts,
                                                           services))
    if name == "restore":
        raise UsageError("-R reads rules from standard input: use pylvs adm -R")
    if name in ("start-daemon", "stop-daemon"):  # pylvs.shell.engine runs it: no socket here
        raise DirectorError("the sync daemon runs in pylvs run, not in the core")
    if syncing and name in ("add-server", "edit-server"):
        _check_sync_family(director, command)
    if name == "flush":
        flush(director)
    else:
        CHANGES[name](director, command)
    director.changed()
    return ""


def _list(director: Director, command: Command, now: float, names: layouts.Names) -> str:
    options = command.options
    if command.name == "save":
        return layouts.render_save(director.services.values(), names)
    if "connection" in options:
        return layouts.render_connections(director.table.listing(), now,
                                          "persistent-conn" in options)
    if "timeout" in options:
        return layouts.render_timeout(director.table.timeouts)
    if "daemon" in options:
        return ""  # no sync daemon in the core (pylvs.shell.engine lists its own)
    services = list(director.services.values())
    if command.service is not None:
        services = [_service(director, command, "No such service")]
    return layouts.render_services(services, command, names)


def endpoints(director: Director) -> tuple[list[str], list[str]]:
    """What a listing without -n names: every address, and every "port/protocol". A fwmark
    service has no address of its own, and its real servers' ports get no name: the kernel
    reports such a service with protocol 0, for which port_to_service looks up none."""
    addresses, ports = set(), set()
    for svc in director.services.values():
        ends = [(rs.address, rs.port) for rs in svc.real_servers]
        if not svc.fwmark:
            ends.append((svc.address, svc.port))
        for address, port in ends:
            addresses.add(address)
            if not svc.fwmark:
                ports.add(f"{port}/{svc.protocol}")
    return sorted(addresses), sorted(ports)


def mixed_family_dests(director: Director) -> int:
    """IPVS's ``mixed_address_family_dests``: real servers of another family than their
    service. While there are any, --start-daemon is refused (ip_vs_genl_new_daemon: EINVAL,
    ``INVALID``): the sync protocol cannot carry them; and while a sync daemon runs,
    ip_vs_genl_set_cmd refuses to add or edit one (EINVAL too: ``run`` with ``syncing``). The
    shell, which runs the daemon, asks."""
    return sum(rs.af != svc.af for svc in director.services.values() for rs in svc.real_servers)

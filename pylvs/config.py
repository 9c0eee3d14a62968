"""The TOML config → validated model, before anything touches the network.

Every error names the file, the key (as a dotted path such as ``virtual_server[0].real_server[1]
.weight``) and the reason. Defaults follow ipvsadm: scheduler wlc, weight 1, forwarding DR, and a
real server's port defaults to the service's.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import forwarders
import schedulers
from pylvs.model import DEFAULT_SCHEDULER, PROTO_NUMBERS, RealServer, VirtualService
from schedulers import Scheduler

DEFAULT_CONTROL_SOCKET = "/run/pylvs.sock"
IMPLEMENTED_FORWARDS = ("dr", "nat", "tun")
MAX_PERSISTENCE = 2678400

_DIRECTOR_KEYS = {"interface", "inside_interface", "control_socket", "max_connections",
                  "workers"}
MAX_WORKERS = 64
_SERVICE_KEYS = {"address", "protocol", "scheduler", "scheduler_flags", "forward",
                 "persistence_timeout", "persistence_netmask", "real_server"}
_SERVER_KEYS = {"address", "weight", "forward", "upper_threshold", "lower_threshold"}
DEFAULT_PERSISTENCE = 360  # ipvsadm -p without a value (IPVS_SVC_PERSISTENT_TIMEOUT)


class ConfigError(Exception):
    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass
class Config:
    interface: str
    control_socket: str = DEFAULT_CONTROL_SOCKET
    inside_interface: str = ""
    max_connections: int = 0
    """0: sized from the memory available when the director starts."""
    workers: int = 1
    """Processes sharing the interfaces (PACKET_FANOUT); max_connections is split among them."""
    services: list[VirtualService] = field(default_factory=list)
    source: str = "<config>"


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "-", f"cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"not valid TOML: {exc}") from None
    return _Reader(source).config(data)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)

    def config(self, data: dict[str, Any]) -> Config:
        self.only(data, {"director", "virtual_server"}, "")
        director = data.get("director")
        if not isinstance(director, dict):
            raise self.fail("director", "missing [director] table")
        self.only(director, _DIRECTOR_KEYS, "director.")
        interface = self.string(director, "interface", "director.interface", required=True)
        control = self.string(director, "control_socket", "director.control_socket")
        inside = self.string(director, "inside_interface", "director.inside_interface")
        limit = self.integer(director, "max_connections", "director.max_connections", 0, 0,
                             2**40)
        workers = self.integer(director, "workers", "director.workers", 1, 1, MAX_WORKERS)
        services = data.get("virtual_server", [])
        if not isinstance(services, list):
            raise self.fail("virtual_server", "must be an array of tables [[virtual_server]]")
        config = Config(interface=interface, control_socket=control or DEFAULT_CONTROL_SOCKET,
                        inside_interface=inside or interface, max_connections=limit,
                        workers=workers,
                        source=self.source)
        seen: set[tuple[int, int, int]] = set()
        for i, raw in enumerate(services):
            service = self.service(raw, f"virtual_server[{i}]")
            if service.key in seen:
                raise self.fail(f"virtual_server[{i}].address",
                                f"duplicate service {service.protocol} {service.endpoint}")
            seen.add(service.key)
            config.services.append(service)
        return config

    def only(self, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                allowed_text = ", ".join(sorted(allowed))
                raise self.fail(prefix + key, f"unknown key (allowed: {allowed_text})")

    def string(self, table: dict[str, Any], key: str, path: str, required: bool = False) -> str:
        if key not in table:
            if required:
                raise self.fail(path, "missing")
            return ""
        value = table[key]
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"must be a non-empty string, not {value!r}")
        return value

    def integer(self, table: dict[str, Any], key: str, path: str, default: int, lo: int,
                hi: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise self.fail(path, f"{value} is out of range {lo}..{hi}")
        return value

    def endpoint(self, text: str, path: str, default_port: int | None) -> tuple[str, int]:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
        try:
            address = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise self.fail(path, f"{text!r} is not an IPv4 address[:port]") from None
        if not port_text:
            if default_port is None:
                raise self.fail(path, f"{text!r} needs a port (ADDRESS:PORT)")
            return address, default_port
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise self.fail(path, f"port {port_text!r} is not in 1..65535")
        return address, int(port_text)

    def forward(self, table: dict[str, Any], path: str, default: str) -> str:
        method = self.string(table, "forward", path) or default
        if method not in ("dr", "nat", "tun"):
            raise self.fail(path, f"unknown forwarding method {method!r} (dr, nat or tun)")
        if method not in IMPLEMENTED_FORWARDS or method not in forwarders.REGISTRY:
            raise self.fail(path, f"forwarding method {method!r} is not supported by this version")
        return method

    def service(self, raw: Any, path: str) -> VirtualService:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        self.only(raw, _SERVICE_KEYS, path + ".")
        address, port = self.endpoint(self.string(raw, "address", path + ".address", True),
                                      path + ".address", None)
        protocol = self.string(raw, "protocol", path + ".protocol") or "tcp"
        if protocol not in PROTO_NUMBERS:
            raise self.fail(path + ".protocol", f"unknown protocol {protocol!r} (tcp or udp)")
        scheduler = self.scheduler(raw, path)
        forward = self.forward(raw, path + ".forward", "dr")
        timeout, netmask = self.persistence(raw, path)
        service = VirtualService(protocol, address, port, scheduler, forward, timeout, netmask)
        servers = raw.get("real_server", [])
        if not isinstance(servers, list):
            raise self.fail(path + ".real_server", "must be an array of tables")
        for i, server_raw in enumerate(servers):
            server = self.server(server_raw, f"{path}.real_server[{i}]", service)
            if service.find_real_server(server.address, server.port):
                raise self.fail(f"{path}.real_server[{i}].address",
                                f"duplicate real server {server.endpoint}")
            # config order is the order ipvsadm -a would run: each new one goes to the head
            service.add_real_server(server)
        return service

    def scheduler(self, raw: dict[str, Any], path: str) -> Scheduler:
        name = self.string(raw, "scheduler", path + ".scheduler") or DEFAULT_SCHEDULER
        flags = raw.get("scheduler_flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise self.fail(path + ".scheduler_flags", "must be a list of strings")
        try:
            cls = schedulers.get(name)
        except schedulers.UnknownScheduler as exc:
            raise self.fail(path + ".scheduler", str(exc)) from None
        try:
            scheduler = cls(flags)
        except ValueError as exc:
            raise self.fail(path + ".scheduler_flags", str(exc)) from None
        scheduler.spec = name
        return scheduler

    def persistence(self, raw: dict[str, Any], path: str) -> tuple[int, str]:
        """ipvsadm -p [T] and -M MASK; ``persistence_timeout = true`` is -p alone (360 s)."""
        if raw.get("persistence_timeout") is True:
            timeout = DEFAULT_PERSISTENCE
        else:
            timeout = self.integer(raw, "persistence_timeout", path + ".persistence_timeout", 0,
                                   0, MAX_PERSISTENCE)
        netmask = self.string(raw, "persistence_netmask", path + ".persistence_netmask")
        if netmask and not timeout:
            raise self.fail(path + ".persistence_netmask",
                            "only a persistent service has a netmask (set persistence_timeout)")
        try:
            mask = ipaddress.IPv4Network(f"0.0.0.0/{netmask or '255.255.255.255'}").netmask
        except ValueError:
            raise self.fail(path + ".persistence_netmask",
                            f"{netmask!r} is not an IPv4 netmask") from None
        return timeout, str(mask)

    def server(self, raw: Any, path: str, service: VirtualService) -> RealServer:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        self.only(raw, _SERVER_KEYS, path + ".")
        address, port = self.endpoint(self.string(raw, "address", path + ".address", True),
                                      path + ".address", service.port)
        forward = self.forward(raw, path + ".forward", service.forward)
        if forward != "nat" and port != service.port:
            raise self.fail(path + ".address", f"port {port} differs from the service port "
                            f"{service.port}; only nat can map ports (ipvsadm forces the "
                            "service port for dr and tun)")
        weight = self.integer(raw, "weight", path + ".weight", 1, 0, 65535)
        upper = self.integer(raw, "upper_threshold", path + ".upper_threshold", 0, 0, 2**31 - 1)
        lower = self.integer(raw, "lower_threshold", path + ".lower_threshold", 0, 0, 2**31 - 1)
        return RealServer(address, port, weight=weight, forward=forward, upper_threshold=upper,
                          lower_threshold=lower)

"""The TOML config → validated model, before anything touches the network.

Every error names the file, the key (as a dotted path such as ``virtual_server[0].real_server[1]
.weight``) and the reason. Defaults follow ipvsadm: scheduler wlc, weight 1, forwarding DR, and a
real server's port defaults to the service's.

Addresses are IPv4 (``192.0.2.1:80``) or IPv6 in brackets (``[2001:db8::1]:80``, as ipvsadm
writes them), kept in the model's canonical text; a file may mix both families. IPVS's rules:
an IPv6 service's ``persistence_netmask`` is a prefix length 1..128 (ipvsadm -M), an IPv4
one's a dotted mask; a real server (or sorry server) of the other family than its service only
with tun, and not while a sync daemon runs (ip_vs_ctl.c). VRRP instances are of one family;
BGP sessions carry their own family's VIPs.

A firewall-mark service (ipvsadm -f) is ``fwmark = N`` instead of ``address`` and ``protocol``,
with ``family = "ipv6"`` for -6; its real servers' ``address`` may leave the port out (port 0:
the packet's port is kept), so a tcp or http(s) check of such a server needs its own ``port``.
IPVS reads marks netfilter set; pylvs reads frames before netfilter, so ``[[mark]]`` tables are
the only marks there are: ``destination``, ``protocol``, ``ports``, ``mark``, or one
``iptables`` (``nft``) line (pylvs.adm.iptables), tried in order, the last match winning. A
fwmark service no rule gives its mark (in its family) is an error, unless ``allow_unmarked =
true`` (what a keepalived.conf's conversion writes: keepalived.conf has no mark rules, so it
idles and a note says why); so is a rule whose mark no service takes (its addresses would be
taken as VIPs for nothing).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import forwarders
import schedulers
from pylvs.adm import ipvsadm
from pylvs.adm.iptables import MarkLine, RuleError, parse_iptables, parse_nft
from pylvs.core.marks import MAX_MARK, MarkRule, Marks, PortRange
from pylvs.core.model import (
    AF_INET,
    AF_INET6,
    DEFAULT_NETMASK,
    DEFAULT_SCHEDULER,
    PROTO_NUMBERS,
    RealServer,
    VirtualService,
    canonical,
    endpoint_text,
    family_of,
)
from pylvs.core.sysctls import KNOBS, Sysctls
from pylvs.ha import bgp
from pylvs.ha.bgp import Bgp, Neighbor
from pylvs.ha.health import HTTP_KINDS, KINDS, CheckSpec, ServerHealth, ServiceHealth
from pylvs.ha.vrrp_group import GroupSpec
from pylvs.ha.vrrp_notify import Notifies
from pylvs.ha.vrrp_track import MAX_WEIGHT, ScriptSpec, Track
from schedulers import Scheduler

DEFAULT_CONTROL_SOCKET = "/run/pylvs.sock"
MAX_PERSISTENCE = 2678400

_DIRECTOR_KEYS = {"interface", "inside_interface", "control_socket", "max_connections",
                  "workers", "sync_daemon", "sync_interface", "syncid", "offload", "metrics"}
OFFLOADS = ("auto", "none", "xdp")
MAX_WORKERS = 64
_HEALTH_KEYS = {"check", "alpha", "inhibit_on_failure"}
_SERVICE_KEYS = {"address", "protocol", "scheduler", "scheduler_flags", "forward", "one_packet",
                 "persistence_timeout", "persistence_netmask", "real_server", "quorum",
                 "hysteresis", "sorry_server", "fwmark", "family", "allow_unmarked",
                 *_HEALTH_KEYS}
_FWMARK_ONLY = ("family", "allow_unmarked")
_MARK_KEYS = {"destination", "protocol", "ports", "mark"}
_MARK_LINES = {"iptables": parse_iptables, "nft": parse_nft}
FAMILIES = {"ipv4": AF_INET, "ipv6": AF_INET6}
PORTLESS_CHECKS = ("tcp", "http", "https")
"""Checks that connect to the server's port: a port-0 server's need their own ``port``."""
_SERVER_KEYS = {"address", "weight", "forward", "upper_threshold", "lower_threshold",
                "tun_type", "tun_port", "tun_flags", "notify_up", "notify_down", *_HEALTH_KEYS}
_VRRP_KEYS = {"interface", "virtual_router_id", "priority", "advert_int", "state", "preempt",
              "nopreempt", "preempt_delay", "version", "authentication", "unicast_peers",
              "unicast_src_ip", "name", "virtual_ipaddress", "track_interface", "track_script",
              "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify",
              "native_ipv6"}
_NOTIFY_KEYS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
_SCRIPT_KEYS = {"script", "interval", "timeout", "weight", "rise", "fall"}
_BGP_KEYS = {"local_as", "router_id", "neighbor", "hold_time", "bfd", "bfd_interval",
             "bfd_multiplier", "drain_seconds", "bird", "bird_socket", "bird_include",
             "bird_include6"}
_CHECK_KEYS = {"type", "interval", "timeout", "retry", "delay_before_retry", "path", "status",
               "command", "port"}
DEFAULT_PERSISTENCE = 360  # ipvsadm -p without a value (IPVS_SVC_PERSISTENT_TIMEOUT)
FAMILY_NAMES = {AF_INET: "IPv4", AF_INET6: "IPv6"}
ONE_FAMILY = ("a VRRP instance is of one family, as keepalived's (which drops an address of "
              "the other: 'address family must match VRRP instance'); write a [[vrrp]] for "
              "each family")


class ConfigError(Exception):
    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass(frozen=True)
class VrrpInstance:
    """A VRRP instance for the director's VIPs, in keepalived's words."""
    interface: str
    virtual_router_id: int
    priority: int = 100
    advert_int: float = 1.0
    state: str = "BACKUP"
    preempt: bool = True
    preempt_delay: float = 0.0
    version: int = 2
    auth_pass: str = ""
    unicast_peers: tuple[str, ...] = ()
    unicast_src_ip: str = ""
    name: str = "VI_1"
    virtual_ipaddress: tuple[str, ...] = ()
    """The instance's VIPs (addresses, no prefix, canonical text, in the order given: the
    adverts' order); the services' VIPs when the only instance names none (``own_vips``
    False)."""
    own_vips: bool = True
    track_interface: tuple[Track, ...] = ()
    track_script: tuple[Track, ...] = ()
    """Each with its weight: the instance's own, else the vrrp_script's."""
    notifies: Notifies = field(default_factory=Notifies)
    family: int = AF_INET
    """Its addresses' family (``native_ipv6``: IPv6): an IPv6 instance speaks VRRPv3 from the
    interface's link-local address to ff02::12 and announces its VIPs with unsolicited
    Neighbor Advertisements."""


@dataclass
class Config:
    interface: str
    control_socket: str = DEFAULT_CONTROL_SOCKET
    inside_interface: str = ""
    max_connections: int = 0
    """0: sized from the memory available when the director starts."""
    workers: int = 1
    """Processes sharing the interfaces (PACKET_FANOUT); max_connections is split among them."""
    sync_interface: str = ""
    """Where IPVS's connection sync runs (master and backup halves); "": no sync daemon."""
    syncid: int = 0
    offload: str = "auto"
    """"xdp": established connections forwarded by an XDP program (pylvs.core.fastpath);
    "auto": so on the links where it works (pylvs.core.offloaded), Python elsewhere;
    "none": every frame in Python."""
    metrics: str = ""
    """ADDRESS:PORT where the Prometheus exposition is served (pylvs.shell.metrics); "": none."""
    services: list[VirtualService] = field(default_factory=list)
    marks: list[MarkRule] = field(default_factory=list)
    """[[mark]]: the rules that mark packets for fwmark services (pylvs.core.marks)."""
    health: list[ServiceHealth] = field(default_factory=list)
    vrrp: VrrpInstance | None = None
    """The first of ``vrrp_instances``; None: the director holds the VIPs alone."""
    vrrp_instances: list[VrrpInstance] = field(default_factory=list)
    """keepalived's vrrp_instances: ``[vrrp]`` (one) or ``[[vrrp]]`` (several)."""
    vrrp_scripts: dict[str, ScriptSpec] = field(default_factory=dict)
    vrrp_sync_groups: list[GroupSpec] = field(default_factory=list)
    bgp: Bgp | None = None
    """[bgp]: the VIPs announced to routers (pylvs.ha.bgp); None: no BGP."""
    sysctls: Sysctls = field(default_factory=Sysctls)
    """IPVS's /proc/sys/net/ipv4/vs/ defences (pylvs.core.defense)."""
    source: str = "<config>"
    source_format: str = "toml"
    """How ``source`` is read, and read again on reload: "toml", or "keepalived"
    (keepalived.conf, through pylvs.adm.keepalived)."""
    interface_option: str = ""
    """keepalived.conf: the director's interface given on the command line (``--interface``)."""


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
    return build(data, source)


def build(data: dict[str, Any], source: str = "<config>") -> Config:
    """A config from the dict TOML reads to (or pylvs.adm.keepalived writes)."""
    return _Reader(source).config(data)


def split_address(text: str) -> tuple[str, int]:
    """ADDRESS:PORT (an IPv4 address, or an IPv6 one in brackets) into its address and port;
    ValueError says what is wrong with it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not ADDRESS:PORT (127.0.0.1:9300, say)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets ([::1]:9300)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sync_daemon = False
        """IPVS refuses a real server of another family than its service while one runs."""

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)

    def config(self, data: dict[str, Any]) -> Config:
        self.only(data, {"director", "virtual_server", "vrrp", "sysctl", "vrrp_script",
                         "vrrp_sync_group", "bgp", "mark"}, "")
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
        sync_interface = ""
        if self.flag(director, "sync_daemon", "director", False):
            sync_interface = (self.string(director, "sync_interface", "director.sync_interface")
                              or interface)
        else:
            for key in ("sync_interface", "syncid"):
                if key in director:
                    raise self.fail(f"director.{key}", "needs sync_daemon = true")
        syncid = self.integer(director, "syncid", "director.syncid", 0, 0, 255)
        self.sync_daemon = bool(sync_interface)
        offload = self.string(director, "offload", "director.offload") or "auto"
        if offload not in OFFLOADS:
            raise self.fail("director.offload", f"{offload!r} is not one of {', '.join(OFFLOADS)}")
        services = data.get("virtual_server", [])
        if not isinstance(services, list):
            raise self.fail("virtual_server", "must be an array of tables [[virtual_server]]")
        config = Config(interface=interface, control_socket=control or DEFAULT_CONTROL_SOCKET,
                        inside_interface=inside or interface, max_connections=limit,
                        workers=workers, sync_interface=sync_interface, syncid=syncid,
                        offload=offload, metrics=self.metrics(director),
                        sysctls=self.sysctls(data.get("sysctl", {})), source=self.source)
        placed = self.marks(data.get("mark", []))
        config.marks = [rule for _, rule in placed]
        seen: set[tuple[int, ...]] = set()
        for i, raw in enumerate(services):
            service = self.service(raw, f"virtual_server[{i}]")
            if service.key in seen:
                key = "fwmark" if service.fwmark else "address"
                raise self.fail(f"virtual_server[{i}].{key}", "duplicate service "
                                f"{_service_name(service, service.protocol)}")
            seen.add(service.key)
            config.services.append(service)
            health = self.health(raw, f"virtual_server[{i}]", service)
            if health is not None:
                config.health.append(health)
        self.marks_used(services, config.services, placed)
        self.vrrp_all(data, config)
        if "bgp" in data:
            config.bgp = self.bgp(data["bgp"])
            if (problem := bgp.unannounceable(config.bgp, config.services)) is not None:
                raise self.fail(*problem)
        return config

    # -- [[mark]]: the rules that give fwmark services their packets (pylvs.core.marks) ----------

    def marks(self, raw: Any) -> list[tuple[str, MarkRule]]:
        """The rules in the order they are tried, each with its key: as written, but where an
        iptables line inserts (-I PREROUTING N), at its place among the rules before it."""
        if not isinstance(raw, list):
            raise self.fail("mark", "must be an array of tables [[mark]]")
        placed: list[tuple[str, MarkRule]] = []
        for i, table in enumerate(raw):
            path = f"mark[{i}]"
            line = self.mark(table, path)
            if line.insert is None:
                placed.append((path, line.rule))
                continue
            if line.insert > len(placed) + 1:
                key = next(k for k in _MARK_LINES if k in table)
                raise self.fail(f"{path}.{key}", f"inserted at {line.insert}, and there are "
                                f"{len(placed)} rules before it (iptables: Index of insertion "
                                "too big)")
            placed.insert(line.insert - 1, (path, line.rule))
        return placed

    def mark(self, table: Any, path: str) -> MarkLine:
        if not isinstance(table, dict):
            raise self.fail(path, "must be a table { destination, protocol, ports, mark } or "
                            "{ iptables = \"...\" }")
        self.only(table, _MARK_KEYS | set(_MARK_LINES), path + ".")
        for key, parse_line in _MARK_LINES.items():
            if key in table:
                others = sorted(set(table) - {key})
                if others:
                    raise self.fail(f"{path}.{others[0]}", f"goes without {key} (the {key} "
                                    "line says it all)")
                try:
                    return parse_line(self.string(table, key, f"{path}.{key}"))
                except RuleError as exc:
                    raise self.fail(f"{path}.{key}", str(exc)) from None
        if "mark" not in table:
            raise self.fail(f"{path}.mark", f"missing (1..{MAX_MARK})")
        mark = self.integer(table, "mark", f"{path}.mark", 0, 1, MAX_MARK)
        protocol = self.string(table, "protocol", f"{path}.protocol")
        if protocol and protocol not in PROTO_NUMBERS:
            raise self.fail(f"{path}.protocol", f"{protocol!r} is not tcp or udp (leave it out "
                            "for both)")
        destination = self.destination(table, f"{path}.destination")
        try:
            rule = MarkRule(destination, mark, PROTO_NUMBERS.get(protocol, 0),
                            self.port_ranges(table, f"{path}.ports"))
        except ValueError as exc:
            raise self.fail(f"{path}.destination", str(exc)) from None
        return MarkLine(rule)

    def destination(self, table: dict[str, Any], path: str) -> str:
        """An address or a prefix (``207.175.44.110/31``, ``2001:db8::/126``), IPv6 without
        brackets; a prefix's host bits are dropped, as iptables -d drops them."""
        text = self.string(table, "destination", path, required=True)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise self.fail(path, f"{text!r} is not an address or address/len (IPv6 without "
                            "brackets)") from None
        return str(network) if "/" in text else str(network.network_address)

    def port_ranges(self, table: dict[str, Any], path: str) -> tuple[PortRange, ...]:
        """``ports``: numbers and "lo-hi" (or "lo:hi") ranges; absent: any port."""
        if "ports" not in table:
            return ()
        value = table["ports"]
        if not isinstance(value, list) or not value:
            raise self.fail(path, "must be a list of ports and \"lo-hi\" ranges, e.g. [80, "
                            "443, \"8000-8100\"] (leave it out for any port)")
        return tuple(self.port_range(item, f"{path}[{i}]") for i, item in enumerate(value))

    def port_range(self, item: Any, path: str) -> PortRange:
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, str) and re.fullmatch(r"\d+[-:]\d+", item):
            low, high = (int(part) for part in re.split("[-:]", item))
        else:
            raise self.fail(path, f"{item!r} is not a port or a \"lo-hi\" range")
        if not 0 <= low <= high <= 65535:
            raise self.fail(path, f"{item!r} is not within 0..65535, low first")
        return low, high

    def marks_used(self, raws: list[Any], services: list[VirtualService],
                   placed: list[tuple[str, MarkRule]]) -> None:
        """Every fwmark service has a rule giving its mark to packets of its family (unless
        ``allow_unmarked``), and every rule's mark has a service: a rule's addresses are
        taken as VIPs."""
        given = {(rule.mark, rule.af) for _, rule in placed}
        taken = {(s.fwmark, s.af) for s in services if s.fwmark}
        for i, service in enumerate(services):
            if service.fwmark and (service.fwmark, service.af) not in given and \
                    not raws[i].get("allow_unmarked", False):
                raise self.fail(f"virtual_server[{i}].fwmark", f"no [[mark]] rule gives mark "
                                f"{service.fwmark}{_to_family(service.af)}: no packet would "
                                f"reach it{_other_family(service.fwmark, service.af, given)}")
        for path, rule in placed:
            if (rule.mark, rule.af) not in taken:
                raise self.fail(path, f"no fwmark service takes mark {rule.mark}"
                                f"{_to_family(rule.af)}: pylvs would take the frames for "
                                f"{rule.destination} and mark them for nothing"
                                f"{_other_family(rule.mark, rule.af, taken)}")

    # -- BGP (pylvs.ha.bgp) ----------------------------------------------------------------------

    def bgp(self, raw: Any) -> Bgp:
        if not isinstance(raw, dict):
            raise self.fail("bgp", "must be a table [bgp]")
        self.only(raw, _BGP_KEYS, "bgp.")
        if "local_as" not in raw:
            raise self.fail("bgp.local_as", "missing (the director's AS number)")
        peers = raw.get("neighbor", [])
        if not isinstance(peers, list) or not peers:
            raise self.fail("bgp.neighbor", "at least one [[bgp.neighbor]] is needed")
        neighbors = tuple(self.neighbor(p, f"bgp.neighbor[{i}]") for i, p in enumerate(peers))
        hold = self.integer(raw, "hold_time", "bgp.hold_time", bgp.DEFAULT_HOLD_TIME,
                            bgp.MIN_HOLD_TIME, 65535)
        interval = (self.seconds(raw, "bfd_interval", "bgp.bfd_interval", zero=False)
                    if "bfd_interval" in raw else 0.1)
        socket_path = self.string(raw, "bird_socket", "bgp.bird_socket")
        include = self.string(raw, "bird_include", "bgp.bird_include")
        include6 = self.string(raw, "bird_include6", "bgp.bird_include6")
        if bool(socket_path) != bool(include or include6):
            raise self.fail("bgp.bird_include" if socket_path else "bgp.bird_socket",
                            "bird_socket and bird_include (or bird_include6) go together: a "
                            "running BIRD's control socket and the files of routes its static "
                            "protocols include (bird_include IPv4's, bird_include6 IPv6's)")
        if include and include == include6:
            raise self.fail("bgp.bird_include6", "must be another file than bird_include: a "
                            "static protocol has one channel, so each family has its own")
        return Bgp(self.integer(raw, "local_as", "bgp.local_as", 0, 1, 2**32 - 1), neighbors,
                   self.address(raw, "router_id", "bgp.router_id", "a BGP router id is a "
                                "32-bit number written as an IPv4 address"), hold,
                   self.flag(raw, "bfd", "bgp", False), interval,
                   self.integer(raw, "bfd_multiplier", "bgp.bfd_multiplier", 3, 1, 255),
                   self.seconds(raw, "drain_seconds", "bgp.drain_seconds", zero=True)
                   if "drain_seconds" in raw else bgp.DEFAULT_DRAIN,
                   self.string(raw, "bird", "bgp.bird") or "bird", socket_path, include,
                   include6)

    def neighbor(self, raw: Any, path: str) -> Neighbor:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table { address, remote_as }")
        self.only(raw, {"address", "remote_as", "password"}, f"{path}.")
        address = self.string(raw, "address", f"{path}.address")
        if not address:
            raise self.fail(f"{path}.address", "missing (the router's IPv4 or IPv6 address)")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise self.fail(f"{path}.address", f"{address!r} is not an IPv4 or IPv6 "
                            f"address") from None
        if problem := bgp.neighbor_problem(address):
            raise self.fail(f"{path}.address", f"{address} {problem}")
        if "remote_as" not in raw:
            raise self.fail(f"{path}.remote_as", "missing (the router's AS number)")
        password = self.string(raw, "password", f"{path}.password")
        if any(c in password for c in '"\\\n'):
            raise self.fail(f"{path}.password", "cannot hold a quote, a backslash or a newline")
        return Neighbor(address, self.integer(raw, "remote_as", f"{path}.remote_as", 0, 1,
                                              2**32 - 1), password)

    def metrics(self, director: dict[str, Any]) -> str:
        """[director] metrics: where Prometheus scrapes, checked here so that a typo is named
        with its key rather than found when the server cannot bind."""
        text = self.string(director, "metrics", "director.metrics")
        if text:
            try:
                split_address(text)
            except ValueError as exc:
                raise self.fail("director.metrics", str(exc)) from None
        return text

    def sysctls(self, table: object) -> Sysctls:
        """[sysctl]: IPVS's knobs, named and bounded as in /proc/sys/net/ipv4/vs/."""
        if not isinstance(table, dict):
            raise self.fail("sysctl", "must be a table [sysctl]")
        self.only(table, set(KNOBS), "sysctl.")
        sysctls = Sysctls()
        for name in table:
            value = self.integer(table, name, f"sysctl.{name}", 0, 0, 2**31 - 1)
            try:
                sysctls.check(name, value)
            except ValueError as exc:
                raise self.fail(f"sysctl.{name}", str(exc)) from None
            setattr(sysctls, name, value)
        return sysctls

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

    def endpoint(self, text: str, path: str, default_port: int | None,
                 zero: bool = False) -> tuple[str, int]:
        """ADDRESS[:PORT]: ``A.B.C.D[:PORT]``, or ``[IPv6][:PORT]`` as ipvsadm takes it;
        ``zero``: port 0 may be written (a fwmark service's server: the packet's port)."""
        if text.startswith("[") or text.count(":") > 1:
            address, port_text = self.ipv6_endpoint(text, path)
        else:
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
        if not port_text.isdigit() or not int(port_text) <= 65535 or \
                not (zero or int(port_text)):
            raise self.fail(path, f"port {port_text!r} is not in {0 if zero else 1}..65535")
        return address, int(port_text)

    def ipv6_endpoint(self, text: str, path: str) -> tuple[str, str]:
        """``[IPv6]`` or ``[IPv6]:PORT``: the canonical address and the port's text."""
        if not text.startswith("["):
            try:
                bare = ipaddress.IPv6Address(text)
            except ValueError:
                raise self.fail(path, f"{text!r} is not an IPv4 address[:port] or an IPv6 "
                                "[address][:port]") from None
            raise self.fail(path, f"{text!r}: an IPv6 address goes in brackets, as ipvsadm "
                            f"writes it ([{bare}]:PORT)")
        host, close, rest = text[1:].partition("]")
        if not close:
            raise self.fail(path, f"{text!r}: the '[' of an IPv6 address is never closed")
        if rest and not rest.startswith(":"):
            raise self.fail(path, f"{text!r}: {rest!r} after the ']' is not :PORT")
        if "%" in host:
            raise self.fail(path, f"{text!r}: an IPVS address has no zone (%{host.split('%')[1]})")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise self.fail(path, f"{text!r}: {host!r} is not an IPv6 address") from None
        return canonical(host), rest[1:]

    def family_rule(self, path: str, what: str, af: int, service: VirtualService,
                    forward: str) -> None:
        """IPVS (ip_vs_ctl.c): a destination of another family than its service only by
        tunnel, and never while the sync daemon runs (its protocol cannot carry them)."""
        if af == service.af:
            return
        family, other = FAMILY_NAMES[af], FAMILY_NAMES[service.af]
        if forward != "tun":
            raise self.fail(path, f"{what} is {family} and the service {service.endpoint} "
                            f"{other}: only tun forwards to another family (IPVS refuses "
                            f"{forward} there)")
        if self.sync_daemon:
            raise self.fail(path, f"{what} is {family} and the service {service.endpoint} "
                            f"{other}: IPVS refuses a real server of another family while the "
                            "sync daemon runs (director.sync_daemon), whose protocol cannot "
                            "carry such connections")

    def forward(self, table: dict[str, Any], path: str, default: str) -> str:
        method = self.string(table, "forward", path) or default
        if method not in forwarders.REGISTRY:
            known = ", ".join(forwarders.names())
            raise self.fail(path, f"unknown forwarding method {method!r} ({known})")
        return method

    def service(self, raw: Any, path: str) -> VirtualService:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        self.only(raw, _SERVICE_KEYS, path + ".")
        service = (self.fwmark_service(raw, path) if "fwmark" in raw
                   else self.address_service(raw, path))
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

    def address_service(self, raw: dict[str, Any], path: str) -> VirtualService:
        """A service of a protocol, an address and a port (ipvsadm -t/-u)."""
        for key in _FWMARK_ONLY:
            if key in raw:
                raise self.fail(f"{path}.{key}", "only a fwmark service has it (a service's "
                                "address says its family)")
        address, port = self.endpoint(self.string(raw, "address", path + ".address", True),
                                      path + ".address", None, zero=True)
        protocol = self.string(raw, "protocol", path + ".protocol") or "tcp"
        if protocol not in PROTO_NUMBERS:
            raise self.fail(path + ".protocol", f"unknown protocol {protocol!r} (tcp or udp)")
        scheduler = self.scheduler(raw, path)
        forward = self.forward(raw, path + ".forward", forwarders.DEFAULT)
        timeout, netmask = self.persistence(raw, path, family_of(address))
        if not port and not timeout:
            raise self.fail(path + ".address", "port 0 (every port of the address: IPVS's "
                            "catch-all) is only for a persistent service (ipvsadm: Zero port "
                            "specified for non-persistent service)")
        one_packet = self.flag(raw, "one_packet", path, False)
        if one_packet and protocol != "udp":
            raise self.fail(path + ".one_packet", "one-packet scheduling (ipvsadm -o) is only "
                            "for UDP virtual services (and fwmark ones)")
        return VirtualService(protocol, address, port, scheduler, forward, timeout, netmask,
                              one_packet=one_packet)

    def fwmark_service(self, raw: dict[str, Any], path: str) -> VirtualService:
        """ipvsadm -f N [-6]: the packets the [[mark]] rules give mark N, TCP and UDP, to any
        of their addresses and ports; ``family`` is -6's."""
        for key in ("address", "protocol"):
            if key in raw:
                raise self.fail(f"{path}.{key}", "a fwmark service has none of its own: it "
                                "takes the TCP and UDP packets the [[mark]] rules give its mark "
                                "(leave fwmark out for a service of an address)")
        mark = self.integer(raw, "fwmark", path + ".fwmark", 0, 1, MAX_MARK)
        family = self.string(raw, "family", path + ".family") or "ipv4"
        if family not in FAMILIES:
            raise self.fail(path + ".family", f"{family!r} is not \"ipv4\" (the default) or "
                            "\"ipv6\" (ipvsadm -f N -6)")
        self.flag(raw, "allow_unmarked", path, False)
        scheduler = self.scheduler(raw, path)
        forward = self.forward(raw, path + ".forward", forwarders.DEFAULT)
        timeout, netmask = self.persistence(raw, path, FAMILIES[family])
        return VirtualService("", "", 0, scheduler, forward, timeout, netmask,
                              af=FAMILIES[family], one_packet=self.flag(raw, "one_packet", path,
                                                                         False), fwmark=mark)

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

    def persistence(self, raw: dict[str, Any], path: str, af: int = AF_INET
                    ) -> tuple[int, str]:
        """ipvsadm -p [T] and -M MASK; ``persistence_timeout = true`` is -p alone (360 s).
        MASK: a dotted netmask for an IPv4 service, a prefix length 1..128 for an IPv6 one."""
        if raw.get("persistence_timeout") is True:
            timeout = DEFAULT_PERSISTENCE
        else:
            timeout = self.integer(raw, "persistence_timeout", path + ".persistence_timeout", 0,
                                   0, MAX_PERSISTENCE)
        if af == AF_INET6:
            return timeout, self.prefix_length(raw, path + ".persistence_netmask", timeout)
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

    def prefix_length(self, raw: dict[str, Any], path: str, timeout: int) -> str:
        """An IPv6 service's persistence_netmask: ipvsadm -M's prefix length, 1..128 (a number
        or its text); the family's default (128) when absent."""
        if "persistence_netmask" not in raw:
            return DEFAULT_NETMASK[AF_INET6]
        value = raw["persistence_netmask"]
        if not timeout:
            raise self.fail(path, "only a persistent service has a netmask (set "
                            "persistence_timeout)")
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not text.isdigit() or not 1 <= int(text) <= 128:
            raise self.fail(path, f"an IPv6 service's netmask is a prefix length 1..128, as "
                            f"ipvsadm -M takes it for IPv6 (64, say), not {value!r}")
        return str(int(text))

    def server(self, raw: Any, path: str, service: VirtualService) -> RealServer:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        self.only(raw, _SERVER_KEYS, path + ".")
        address, port = self.endpoint(self.string(raw, "address", path + ".address", True),
                                      path + ".address", service.port, bool(service.fwmark))
        forward = self.forward(raw, path + ".forward", service.forward)
        self.family_rule(path + ".address", endpoint_text(address, port, family_of(address)),
                         family_of(address), service, forward)
        if not service.fwmark and not forwarders.get(forward).masquerades \
                and port != service.port:
            raise self.fail(path + ".address", f"port {port} differs from the service port "
                            f"{service.port}; only nat can map ports (ipvsadm forces the "
                            "service port for dr and tun)")
        weight = self.integer(raw, "weight", path + ".weight", 1, 0, 65535)
        upper = self.integer(raw, "upper_threshold", path + ".upper_threshold", 0, 0, 2**31 - 1)
        lower = self.integer(raw, "lower_threshold", path + ".lower_threshold", 0, 0, 2**31 - 1)
        return RealServer(address, port, weight=weight, forward=forward, upper_threshold=upper,
                          lower_threshold=lower, **self.tunnel(raw, path, forward))

    def tunnel(self, raw: dict[str, Any], path: str, forward: str) -> dict[str, Any]:
        """A tun real server's tun_type (ipip, gue, gre), tun_port (GUE's, required there)
        and tun_flags (nocsum, csum, remcsum), by ipvsadm's tunnel_types_v_options."""
        given = [key for key in ("tun_type", "tun_port", "tun_flags") if key in raw]
        if not given:
            return {}
        if forward != "tun":
            raise self.fail(f"{path}.{given[0]}", f"goes with forward = \"tun\" only (ipvsadm: "
                            f"Tunnel options conflict with forward method), not {forward}")
        kind = self.string(raw, "tun_type", f"{path}.tun_type") or "ipip"
        rules = ipvsadm.TUNNEL_OPTIONS.get(kind)
        if rules is None:
            raise self.fail(f"{path}.tun_type", f"{kind!r} is not ipip, gue or gre")
        port = (self.integer(raw, "tun_port", f"{path}.tun_port", 0, 1, 65535)
                if "tun_port" in raw else 0)
        if (rules[0] == "+") != ("tun_port" in raw):
            raise self.fail(f"{path}.tun_port", f"{'required' if rules[0] == '+' else 'not'} "
                            f"for tun_type = \"{kind}\"" + (" (the UDP port the real server "
                            "listens on)" if rules[0] == "+" else ""))
        flags = self.string(raw, "tun_flags", f"{path}.tun_flags") or "nocsum"
        allowed = [name for name, rule in zip(("nocsum", "csum", "remcsum"), rules[1:],
                                              strict=True) if rule != "x"]
        if "tun_flags" in raw and not allowed:
            raise self.fail(f"{path}.tun_flags", f"not for tun_type = \"{kind}\"")
        if allowed and flags not in allowed:
            raise self.fail(f"{path}.tun_flags", f"{flags!r}: for tun_type = \"{kind}\" one "
                            f"of {', '.join(allowed)}")
        return {"tun_type": kind, "tun_port": port, "tun_flags": flags}

    # -- health checks (keepalived's checkers) -------------------------------------------------

    def health(self, raw: dict[str, Any], path: str, service: VirtualService
               ) -> ServiceHealth | None:
        """The service's checks: a real server's own ``check``, else the service's."""
        default = raw.get("check")
        servers: list[ServerHealth] = []
        raw_servers = raw.get("real_server", [])
        for i, raw_server in enumerate(raw_servers):
            where = f"{path}.real_server[{i}]"
            table = raw_server.get("check", default)
            if table is None:
                for key in ("notify_up", "notify_down", "alpha", "inhibit_on_failure"):
                    if key in raw_server:
                        raise self.fail(f"{where}.{key}", "needs a check (here or on the "
                                        "service)")
                continue
            check_path = f"{where}.check" if "check" in raw_server else f"{path}.check"
            spec = self.check(table, check_path)
            address, port = self.endpoint(raw_server["address"], where + ".address",
                                          service.port, bool(service.fwmark))
            if not port and spec.kind in PORTLESS_CHECKS and not spec.port:
                raise self.fail(check_path + ".port", "missing: the real server "
                                f"{endpoint_text(address, port, family_of(address))} has port 0 "
                                f"(the packet's port is kept), so a {spec.kind} check needs "
                                "the port to connect to")
            live = service.find_real_server(address, port)
            assert live is not None
            servers.append(ServerHealth(
                RealServer(address, port, weight=live.weight, forward=live.forward,
                           upper_threshold=live.upper_threshold,
                           lower_threshold=live.lower_threshold, tun_type=live.tun_type,
                           tun_port=live.tun_port, tun_flags=live.tun_flags), spec,
                inhibit=self.flag(raw_server, "inhibit_on_failure", where,
                                  self.flag(raw, "inhibit_on_failure", path, False)),
                alive=not self.flag(raw_server, "alpha", where, self.flag(raw, "alpha", path,
                                                                          False)),
                notify_up=self.string(raw_server, "notify_up", where + ".notify_up"),
                notify_down=self.string(raw_server, "notify_down", where + ".notify_down")))
        for key in ("quorum", "hysteresis", "sorry_server"):
            if key in raw and not servers:
                raise self.fail(f"{path}.{key}", "needs health checks (a check table)")
        if not servers:
            if default is not None:
                self.check(default, f"{path}.check")
            return None
        return ServiceHealth(service.key, _service_name(service),
                             servers, self.integer(raw, "quorum", path + ".quorum", 1, 1, 2**31),
                             self.integer(raw, "hysteresis", path + ".hysteresis", 0, 0, 2**31),
                             self.sorry(raw, path, service))

    def sorry(self, raw: dict[str, Any], path: str, service: VirtualService
              ) -> tuple[str, int] | None:
        text = self.string(raw, "sorry_server", path + ".sorry_server")
        if not text:
            return None
        address, port = self.endpoint(text, path + ".sorry_server", service.port,
                                      bool(service.fwmark))
        endpoint = endpoint_text(address, port, family_of(address))
        self.family_rule(path + ".sorry_server", f"the sorry server {endpoint}",
                         family_of(address), service, service.forward)
        if not service.fwmark and not forwarders.get(service.forward).masquerades \
                and port != service.port:
            raise self.fail(path + ".sorry_server", f"port {port} differs from the service "
                            f"port {service.port}; only nat can map ports")
        if service.find_real_server(address, port):
            raise self.fail(path + ".sorry_server", f"{endpoint} is also a real server")
        return address, port

    def flag(self, table: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"must be true or false, not {value!r}")
        return value

    def check(self, table: Any, path: str) -> CheckSpec:
        if not isinstance(table, dict):
            raise self.fail(path, "must be a table, e.g. { type = \"tcp\" }")
        self.only(table, _CHECK_KEYS, path + ".")
        kind = self.string(table, "type", path + ".type", required=True)
        if kind not in KINDS:
            raise self.fail(path + ".type", f"unknown check {kind!r} (tcp, http, https or misc)")
        given: dict[str, Any] = {}
        for key in ("interval", "timeout", "delay_before_retry"):
            if key in table:
                given[key] = self.seconds(table, key, f"{path}.{key}", zero=key != "interval"
                                          and key != "timeout")
        if "retry" in table:
            given["retry"] = self.integer(table, "retry", path + ".retry", 1, 0, 1000)
        if "port" in table:
            given["port"] = self.integer(table, "port", path + ".port", 0, 1, 65535)
        if kind in HTTP_KINDS:
            given["path"] = self.string(table, "path", path + ".path") or "/"
            if not given["path"].startswith("/"):
                raise self.fail(path + ".path", "must start with /")
            given["status"] = self.statuses(table.get("status", []), path + ".status")
        elif {"path", "status"} & table.keys():
            raise self.fail(path + ".path" if "path" in table else path + ".status",
                            "only an http or https check has it")
        if kind == "misc":
            given["command"] = self.string(table, "command", path + ".command", required=True)
        elif "command" in table:
            raise self.fail(path + ".command", "only a misc check has it")
        return CheckSpec.with_defaults(kind, **given)

    def seconds(self, table: dict[str, Any], key: str, path: str, zero: bool) -> float:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number of seconds, not {value!r}")
        if value < 0 or (value == 0 and not zero) or value > 86400:
            raise self.fail(path, f"{value} is out of range ({'0' if zero else 'above 0'}.."
                            "86400 s)")
        return float(value)

    def statuses(self, value: Any, path: str) -> tuple[int, ...]:
        codes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(codes, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
            raise self.fail(path, f"must be an HTTP status code or a list of them, not {value!r}")
        return tuple(codes)

    # -- VRRP (keepalived's vrrp_instance) -----------------------------------------------------

    def vrrp_all(self, data: dict[str, Any], config: Config) -> None:
        """[vrrp] or [[vrrp]], [vrrp_script.NAME] and [[vrrp_sync_group]]."""
        config.vrrp_scripts = self.vrrp_scripts(data.get("vrrp_script", {}))
        raw = data.get("vrrp")
        if raw is None:
            for key in ("vrrp_script", "vrrp_sync_group"):
                if key in data:
                    raise self.fail(key, "needs a [vrrp] instance")
            return
        tables = [(raw, "vrrp")] if isinstance(raw, dict) else [
            (table, f"vrrp[{i}]") for i, table in enumerate(raw if isinstance(raw, list) else [])]
        if not tables:
            raise self.fail("vrrp", "must be a table [vrrp] or an array of tables [[vrrp]]")
        single = isinstance(raw, dict) or len(tables) == 1
        seen: dict[str, str] = {}
        for i, (table, path) in enumerate(tables):
            families = {s.af for s in config.services}
            default = (families.pop(), "virtual_servers") if single and len(families) == 1 \
                and isinstance(table, dict) and "virtual_ipaddress" not in table \
                else (AF_INET, "default")
            instance = self.vrrp(table, config.interface, path, i + 1, config.vrrp_scripts,
                                 default)
            if not instance.virtual_ipaddress:
                if not single:
                    raise self.fail(f"{path}.virtual_ipaddress", "missing: with several "
                                    "instances each names its VIPs")
                if not config.services:
                    raise self.fail("vrrp", "needs at least one virtual_server (its address "
                                    "is what VRRP moves) or virtual_ipaddress")
                instance = self.services_vips(instance, table, config, path)
            for other in config.vrrp_instances:
                if other.name == instance.name:
                    raise self.fail(f"{path}.name", f"instance {instance.name!r} twice")
                if (other.interface, other.family, other.virtual_router_id) == (
                        instance.interface, instance.family, instance.virtual_router_id):
                    raise self.fail(f"{path}.virtual_router_id", f"{instance.virtual_router_id}"
                                    f" on {instance.interface} is {other.name}'s already"
                                    + (" (in IPv6: a VRID is a family's)" if
                                       instance.family == AF_INET6 else ""))
            for vip in instance.virtual_ipaddress:
                if vip in seen:
                    raise self.fail(f"{path}.virtual_ipaddress", f"{vip} is {seen[vip]}'s "
                                    "already")
                seen[vip] = instance.name
            config.vrrp_instances.append(instance)
        config.vrrp = config.vrrp_instances[0]
        config.vrrp_sync_groups = self.sync_groups(data.get("vrrp_sync_group", []),
                                                   [v.name for v in config.vrrp_instances])

    def services_vips(self, instance: VrrpInstance, table: dict[str, Any], config: Config,
                      path: str) -> VrrpInstance:
        """A lone instance without virtual_ipaddress moves every service's address (a fwmark
        service's: every address its [[mark]] rules name): they must be of one family, the
        instance's (keepalived's rule for an instance's addresses)."""
        services = config.services
        families = {s.af for s in services}
        given = _peek_family(table)
        if len(families) > 1:
            raise self.fail(f"{path}.virtual_ipaddress", "missing, so the instance would move "
                            "every virtual_server's address, and they are IPv4 and IPv6: "
                            f"{ONE_FAMILY} (and name its VIPs), or name this one's VIPs here "
                            "(the others are then held by the director alone)")
        (af,) = families
        if given is not None and given[0] != af:
            n, service = next((n, s) for n, s in enumerate(services) if s.af == af)
            raise self.fail(f"{path}.virtual_ipaddress", "missing, so the instance would move "
                            f"every virtual_server's address, and virtual_server[{n}] "
                            f"({service.endpoint}) is {FAMILY_NAMES[af]} while this instance "
                            f"is {FAMILY_NAMES[given[0]]} (its {given[1]}): {ONE_FAMILY}")
        vips = sorted(set(_vips(services, config.marks)), key=ipaddress.ip_address)
        if not vips:
            raise self.fail(f"{path}.virtual_ipaddress", "missing, and no service has an "
                            "address to move: a fwmark service's are its [[mark]] rules' "
                            "destinations, and there are none")
        return replace(instance, virtual_ipaddress=tuple(vips), own_vips=False, family=af)

    def vrrp_scripts(self, raw: Any) -> dict[str, ScriptSpec]:
        if not isinstance(raw, dict):
            raise self.fail("vrrp_script", "must be tables [vrrp_script.NAME]")
        scripts = {}
        for name, table in raw.items():
            path = f"vrrp_script.{name}"
            if not isinstance(table, dict):
                raise self.fail(path, "must be a table [vrrp_script.NAME]")
            self.only(table, _SCRIPT_KEYS, path + ".")
            given: dict[str, Any] = {}
            for key in ("interval", "timeout"):
                if key in table:
                    given[key] = self.seconds(table, key, f"{path}.{key}", zero=False)
            for key in ("rise", "fall"):
                given[key] = self.integer(table, key, f"{path}.{key}", 1, 1, 2**31 - 1)
            scripts[name] = ScriptSpec(
                name, self.string(table, "script", f"{path}.script", required=True),
                weight=self.integer(table, "weight", f"{path}.weight", 0, -MAX_WEIGHT,
                                    MAX_WEIGHT), **given)
        return scripts

    def sync_groups(self, raw: Any, instances: list[str]) -> list[GroupSpec]:
        if not isinstance(raw, list):
            raise self.fail("vrrp_sync_group", "must be an array of tables [[vrrp_sync_group]]")
        groups: list[GroupSpec] = []
        member_of: dict[str, str] = {}
        for i, table in enumerate(raw):
            path = f"vrrp_sync_group[{i}]"
            if not isinstance(table, dict):
                raise self.fail(path, "must be a table")
            self.only(table, {"name", "group", *_NOTIFY_KEYS}, path + ".")
            name = self.string(table, "name", path + ".name", required=True)
            members = table.get("group")
            if not isinstance(members, list) or not members or not all(
                    isinstance(m, str) for m in members):
                raise self.fail(path + ".group", "must be a list of instance names")
            for member in members:
                if member not in instances:
                    raise self.fail(path + ".group", f"no vrrp instance named {member!r} "
                                    f"(there are: {', '.join(instances)})")
                if member in member_of:
                    raise self.fail(path + ".group", f"{member} is in group "
                                    f"{member_of[member]} already")
                member_of[member] = name
            if any(g.name == name for g in groups):
                raise self.fail(path + ".name", f"group {name!r} twice")
            groups.append(GroupSpec(name, tuple(members), self.notifies(table, path)))
        return groups

    def notifies(self, table: dict[str, Any], path: str) -> Notifies:
        found = {key: self.string(table, key, f"{path}.{key}") for key in _NOTIFY_KEYS}
        return Notifies(found["notify_master"], found["notify_backup"], found["notify_fault"],
                        found["notify_stop"], found["notify"])

    def vips(self, raw: dict[str, Any], path: str, family: tuple[int, str]
             ) -> tuple[str, ...]:
        value = raw.get("virtual_ipaddress", [])
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of addresses (\"A.B.C.D\", \"2001:db8::1\", "
                            "each with /len or not)")
        vips = []
        for i, text in enumerate(value):
            try:
                if not isinstance(text, str) or "%" in text:
                    raise ValueError
                vip = ipaddress.ip_interface(text).ip
            except ValueError:
                raise self.fail(f"{path}[{i}]", f"{text!r} is not A.B.C.D or A.B.C.D/len"
                                if ":" not in str(text) else f"{text!r} is not an IPv6 "
                                "address or address/len (without a zone)") from None
            vips.append(self.same_family(str(vip), family, f"{path}[{i}]"))
        return tuple(dict.fromkeys(vips))

    def same_family(self, address: str, family: tuple[int, str], path: str) -> str:
        """``address`` if of the instance's family (and what gave it that family); else the
        error keepalived's config check would log."""
        af = AF_INET6 if ":" in address else AF_INET
        if af != family[0]:
            raise self.fail(path, f"{address!r} is {FAMILY_NAMES[af]}, and this instance is "
                            f"{FAMILY_NAMES[family[0]]} (its {family[1]}): {ONE_FAMILY}")
        return address

    def tracks(self, raw: dict[str, Any], key: str, path: str,
               scripts: dict[str, ScriptSpec]) -> tuple[Track, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", "must be a list of names or { name, weight }")
        kind = "interface" if key == "track_interface" else "script"
        tracks = []
        for i, item in enumerate(value):
            where = f"{path}.{key}[{i}]"
            table = {"name": item} if isinstance(item, str) else item
            if not isinstance(table, dict):
                raise self.fail(where, "must be a name or { name, weight }")
            self.only(table, {"name", "weight"}, where + ".")
            name = self.string(table, "name", where + ".name", required=True)
            default = 0
            if kind == "script":
                if name not in scripts:
                    raise self.fail(where, f"no [vrrp_script.{name}]")
                default = scripts[name].weight
            weight = self.integer(table, "weight", where + ".weight", default, -MAX_WEIGHT,
                                  MAX_WEIGHT)
            tracks.append(Track(kind, name, weight))
        return tuple(tracks)

    def vrrp(self, raw: Any, interface: str, path: str = "vrrp", number: int = 1,
             scripts: dict[str, ScriptSpec] | None = None,
             default: tuple[int, str] = (AF_INET, "default")) -> VrrpInstance:
        """``default``: the family when no key says one (a lone instance over IPv6 services
        is IPv6)."""
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        self.only(raw, _VRRP_KEYS, path + ".")
        family = _peek_family(raw) or default
        instance = self.vrrp_instance(raw, interface, path, family)
        return replace(
            instance, name=self.string(raw, "name", path + ".name") or f"VI_{number}",
            virtual_ipaddress=self.vips(raw, path + ".virtual_ipaddress", family),
            track_interface=self.tracks(raw, "track_interface", path, scripts or {}),
            track_script=self.tracks(raw, "track_script", path, scripts or {}),
            notifies=self.notifies(raw, path))

    def vrrp_instance(self, raw: dict[str, Any], interface: str, path: str,
                      family: tuple[int, str] = (AF_INET, "default")) -> VrrpInstance:
        """``family``: the instance's, and what says so (pylvs.adm.config._peek_family)."""
        if "virtual_router_id" not in raw:
            raise self.fail(f"{path}.virtual_router_id", "missing (1..255)")
        vrid = self.integer(raw, "virtual_router_id", f"{path}.virtual_router_id", 0, 1, 255)
        ipv6 = family[0] == AF_INET6
        if self.flag(raw, "native_ipv6", path, False) and not ipv6:
            raise self.fail(f"{path}.native_ipv6", f"this instance is IPv4 (its {family[1]}): "
                            f"{ONE_FAMILY}")
        version = self.integer(raw, "version", f"{path}.version", 3 if ipv6 else 2, 2, 3)
        if ipv6 and version == 2:
            raise self.fail(f"{path}.version", _V2_IPV6)
        state = (self.string(raw, "state", f"{path}.state") or "BACKUP").upper()
        if state not in ("MASTER", "BACKUP"):
            raise self.fail(f"{path}.state", f"must be MASTER or BACKUP, not {raw['state']!r}")
        preempt = self.flag(raw, "preempt", path, True)
        if self.flag(raw, "nopreempt", path, False):
            if state == "MASTER":
                raise self.fail(f"{path}.nopreempt", "needs state BACKUP (keepalived's rule)")
            preempt = False
        advert = self.seconds(raw, "advert_int", f"{path}.advert_int", zero=False) \
            if "advert_int" in raw else 1.0
        if version == 2 and advert != int(advert):
            raise self.fail(f"{path}.advert_int", "VRRPv2 counts whole seconds (use version 3)")
        if advert > (255 if version == 2 else 40.95):
            raise self.fail(f"{path}.advert_int", f"at most {255 if version == 2 else 40.95} s "
                            f"in VRRPv{version}")
        return VrrpInstance(self.string(raw, "interface", f"{path}.interface") or interface, vrid,
                    self.integer(raw, "priority", f"{path}.priority", 100, 1, 255), advert, state,
                    preempt, self.seconds(raw, "preempt_delay", f"{path}.preempt_delay", zero=True)
                    if "preempt_delay" in raw else 0.0, version,
                    self.authentication(raw, version, path), self.peers(raw, path, family),
                    self.vrrp_address(raw, "unicast_src_ip", f"{path}.unicast_src_ip", family),
                    family=family[0])

    def authentication(self, raw: dict[str, Any], version: int, path: str) -> str:
        table = raw.get("authentication")
        if table is None:
            return ""
        if version == 3:
            raise self.fail(f"{path}.authentication", "VRRPv3 has no authentication")
        if not isinstance(table, dict):
            raise self.fail(f"{path}.authentication", "must be a table { auth_type, auth_pass }")
        self.only(table, {"auth_type", "auth_pass"}, f"{path}.authentication.")
        kind = self.string(table, "auth_type", f"{path}.authentication.auth_type") or "PASS"
        if kind != "PASS":
            raise self.fail(f"{path}.authentication.auth_type", f"only PASS is supported, not "
                            f"{kind!r}")
        return self.string(table, "auth_pass", f"{path}.authentication.auth_pass", required=True)

    def peers(self, raw: dict[str, Any], path: str,
              family: tuple[int, str] = (AF_INET, "default")) -> tuple[str, ...]:
        peers = raw.get("unicast_peers", [])
        if not isinstance(peers, list):
            raise self.fail(f"{path}.unicast_peers", "must be a list of addresses")
        return tuple(self.vrrp_address({"p": p}, "p", f"{path}.unicast_peers[{i}]", family)
                     for i, p in enumerate(peers))

    def vrrp_address(self, table: dict[str, Any], key: str, path: str,
                     family: tuple[int, str]) -> str:
        """An address of the instance's family (an IPv6 one may be link-local; no zone: the
        instance's interface is it), in its canonical text; "" when not given."""
        text = self.string(table, key, path)
        if not text:
            return ""
        try:
            if "%" in text:
                raise ValueError
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise self.fail(path, f"{text!r} is not an IPv4 address" if ":" not in text else
                            f"{text!r} is not an IPv6 address (without a zone: the instance's "
                            "interface is it)") from None
        return self.same_family(address, family, path)

    def address(self, table: dict[str, Any], key: str, path: str, no_ipv6: str) -> str:
        """An IPv4 address; ``no_ipv6`` says why an IPv6 one is refused here."""
        text = self.string(table, key, path)
        if text:
            try:
                ipaddress.IPv4Address(text)
            except ValueError:
                if _is_ipv6(text):
                    raise self.fail(path, f"{text!r} is IPv6, and {no_ipv6}") from None
                raise self.fail(path, f"{text!r} is not an IPv4 address") from None
        return text


_V2_IPV6 = ("VRRPv2 is IPv4's: an IPv6 instance speaks VRRPv3, as keepalived runs every IPv6 "
            "instance (leave version out, or write 3)")


def _vips(services: list[VirtualService], marks: list[MarkRule]) -> list[str]:
    """Each service's address; a fwmark service's: every address its mark's rules name."""
    out: list[str] = []
    for service in services:
        if not service.fwmark:
            out.append(service.address)
            continue
        out += Marks([r for r in marks if (r.mark, r.af) == (service.fwmark, service.af)]
                     ).addresses()
    return out


def _service_name(service: VirtualService, protocol: str = "") -> str:
    """``TCP 192.0.2.1:80`` (``protocol`` as given, else upper case), or a fwmark service's
    ``FWM 1`` (``FWM 1 IPv6``)."""
    if service.fwmark:
        return service.endpoint
    return f"{protocol or service.protocol.upper()} {service.endpoint}"


def _to_family(af: int) -> str:
    return " to IPv6 packets" if af == AF_INET6 else ""


def _other_family(mark: int, af: int, found: set[tuple[int, int]]) -> str:
    """A hint when the mark is there in the other family."""
    other = AF_INET if af == AF_INET6 else AF_INET6
    if (mark, other) not in found:
        return ""
    return (f" (mark {mark} is {FAMILY_NAMES[other]}'s here: a fwmark service's family = "
            f"\"{'ipv6' if other == AF_INET6 else 'ipv4'}\" goes with its rules' addresses)")


def _peek_family(raw: dict[str, Any]) -> tuple[int, str] | None:
    """An instance's family as keepalived gives it: from the first of its keys, in the order
    written, that says one (native_ipv6 = true, a VIP, unicast_src_ip, a unicast peer), with
    what said it; None when none does. Nothing is checked here: the keys' own checks are."""
    for key, value in raw.items():
        if key == "native_ipv6" and value is True:
            return AF_INET6, "native_ipv6"
        texts = [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) \
            else [(key, value)]
        if key not in ("virtual_ipaddress", "unicast_src_ip", "unicast_peers"):
            continue
        for where, text in texts:
            try:
                address = ipaddress.ip_interface(text).ip if isinstance(text, str) else None
            except ValueError:
                continue
            if address is not None:
                return (AF_INET6 if address.version == 6 else AF_INET), f"{where} {address}"
    return None


def _is_ipv6(text: object) -> bool:
    """An IPv6 address, with or without a /len."""
    try:
        return isinstance(text, str) and ipaddress.ip_interface(text).version == 6
    except ValueError:
        return False

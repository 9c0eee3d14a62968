"""`pylvs check` and `pylvs run`'s pre-flight: a config against the facts of this host (its
interfaces, their addresses, the routes to the real servers, what the process may do), read by
the shell (pylvs.shell.check) and judged here, without I/O.

Each check is a ``Finding``: ok, warn (``pylvs run`` would start, and this is worth knowing) or
FAIL (a config that names what this host has not: ``pylvs run`` refuses it, exit 2, naming the
key). ``plan`` says what ``pylvs run`` would do. ``choose_interface`` is a keepalived.conf's
director interface when no vrrp_instance names it: the one the real servers are routed through.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pylvs.adm.config import Config, VrrpInstance, split_address
from pylvs.core import marks
from pylvs.core.model import AF_INET, AF_INET6, RealServer, VirtualService

OK, WARN, FAIL = "ok", "warn", "FAIL"
NEEDED_CAPS = ("CAP_NET_ADMIN", "CAP_NET_RAW")
"""What `pylvs run` cannot start without (CAP_BPF too, for offload = "xdp")."""
WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Link:
    """An interface of this host: its name, state, MTU, kind (veth, bridge; "" for a NIC),
    addresses as ``address/prefixlen`` and the id of an XDP program attached to it (0: none)."""
    name: str
    up: bool = True
    mtu: int = 1500
    kind: str = ""
    addresses: tuple[str, ...] = ()
    xdp_program: int = 0

    def own(self, family: int = 0) -> list[str]:
        """Its addresses without their prefix, of ``family`` (0: both)."""
        found = [a.split("/")[0] for a in self.addresses]
        return [a for a in found if not family or _family(a) == family]


@dataclass(frozen=True)
class Route:
    """The kernel's route to a real server: through ``interface``, via ``gateway`` (None:
    on-link), from ``source``."""
    interface: str
    gateway: str | None = None
    source: str | None = None


@dataclass
class Facts:
    """What the shell read of this host, read-only."""
    links: dict[str, Link] = field(default_factory=dict)
    routes: dict[str, Route | str] = field(default_factory=dict)
    """A real server's address → its route, or why there is none."""
    missing_caps: tuple[str, ...] = ()
    """Of NEEDED_CAPS, those this process lacks: what it could not check says so."""
    xdp: str | None = None
    """offload "xdp" or "auto": "" when the fast path's program and maps load here, else why
    not; None: not tried."""
    control_socket: str = "free"
    """"free", "alive" (a director answers on it) or "no directory"."""
    programs: dict[str, str] = field(default_factory=dict)
    """A program the config runs (BIRD, a vrrp_script's) → where it is; missing: not found."""


@dataclass(frozen=True)
class Finding:
    verdict: str
    key: str
    text: str

    def line(self) -> str:
        return f"{self.verdict:<4}  {self.key}: {self.text}"


# -- what to read -------------------------------------------------------------------------------

def real_server_addresses(config: Config) -> list[str]:
    """Every real server's address, each once: the routes the shell reads."""
    return list(dict.fromkeys(rs.address for s in config.services for rs in s.real_servers))


def programs(config: Config) -> list[str]:
    """The programs the config has pylvs run: BIRD (unless it talks to a running one), each
    tracked vrrp_script's."""
    found = [config.bgp.bird] if config.bgp is not None and not config.bgp.bird_socket else []
    found += [s.script.split()[0] for s in config.vrrp_scripts.values() if s.script.split()]
    return list(dict.fromkeys(found))


# -- the checks ---------------------------------------------------------------------------------

def check(config: Config, facts: Facts) -> list[Finding]:
    """Every finding, in the order a reader meets the config."""
    return [*_privileges(facts), *_interfaces(config, facts), *_vips(config, facts),
            *_routes(config, facts), *_vrrp(config, facts), *_director(config, facts),
            *_offload(config, facts), *_programs(config, facts)]


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict == FAIL]


def _privileges(facts: Facts) -> Iterator[Finding]:
    if facts.missing_caps:
        yield Finding(WARN, "privileges", f"without {', '.join(facts.missing_caps)} (not root): "
                      "`pylvs run` needs them; not checked here: the XDP program's loading")


def interface_keys(config: Config) -> list[tuple[str, str]]:
    """(key, interface) for every interface the config names, the director's first."""
    keys = [(_director_key(config), config.interface)]
    if config.inside_interface and config.inside_interface != config.interface:
        keys.append(("director.inside_interface", config.inside_interface))
    if config.sync_interface:
        keys.append(("director.sync_interface", config.sync_interface))
    for path, instance in _instances(config):
        keys.append((f"{path}.interface", instance.interface))
    return keys


def _director_key(config: Config) -> str:
    """Where the director's interface comes from: a keepalived.conf's is --interface, or the
    vrrp_instance holding the VIPs (else it was found from the routes)."""
    if config.source_format != "keepalived":
        return "director.interface"
    if config.interface_option:
        return "--interface"
    named = [path for path, i in _instances(config) if i.interface == config.interface]
    return f"{named[0]}.interface" if named else "director.interface"


def _instances(config: Config) -> list[tuple[str, VrrpInstance]]:
    """Each VRRP instance with its key: [vrrp] alone is "vrrp" (a keepalived.conf's, as its
    conversion names them, "vrrp[0]")."""
    alone = len(config.vrrp_instances) == 1 and config.source_format != "keepalived"
    return [("vrrp" if alone else f"vrrp[{i}]", instance)
            for i, instance in enumerate(config.vrrp_instances)]


def _interfaces(config: Config, facts: Facts) -> Iterator[Finding]:
    seen: set[str] = set()
    for key, name in interface_keys(config):
        if name in seen:
            continue
        seen.add(name)
        link = facts.links.get(name)
        if link is None:
            yield Finding(FAIL, key, missing_interface(name, facts.links))
        elif not link.up:
            yield Finding(WARN, key, f"{name} is down: nothing arrives on it until it is up "
                          f"({describe(link)})")
        else:
            yield Finding(OK, key, f"{name}: {describe(link)}")
    for path, instance in _instances(config):
        for track in instance.track_interface:
            if track.name not in facts.links:
                yield Finding(WARN, f"{path}.track_interface", missing_interface(
                    track.name, facts.links) + ": the instance would stay in FAULT")


def missing_interface(name: str, links: Mapping[str, Link]) -> str:
    near = difflib.get_close_matches(name, list(links), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"no interface {name!r} on this host (it has: {', '.join(sorted(links))}){hint}"


def describe(link: Link) -> str:
    parts = [link.kind or "device", "up" if link.up else "down", f"mtu {link.mtu}"]
    return ", ".join(parts + list(link.addresses or ("no addresses",)))


def _vips(config: Config, facts: Facts) -> Iterator[Finding]:
    where = _addresses(facts)
    for vip in marks.vips(config.services, marks.Marks(config.marks)):
        holders = [n for n in where.get(_canonical(vip), []) if n != config.interface]
        if holders:
            yield Finding(WARN, _service_key(config, vip), f"the VIP {vip} is already on "
                          f"{', '.join(holders)}: this host answers for it there too")


def _service_key(config: Config, vip: str) -> str:
    rules = marks.Marks(config.marks)
    for i, service in enumerate(config.services):
        if vip in marks.addresses_of(service, rules):
            return f"virtual_server[{i}].address" if not service.fwmark else \
                f"virtual_server[{i}].fwmark"
    return "virtual_server"


def _routes(config: Config, facts: Facts) -> Iterator[Finding]:
    for i, service in enumerate(config.services):
        for j, rs in enumerate(in_config_order(service)):
            key = f"virtual_server[{i}].real_server[{j}]"
            yield _route_finding(config, key, rs.address, rs.forward,
                                 facts.routes.get(rs.address), facts.links)


def in_config_order(service: VirtualService) -> list[RealServer]:
    """The real servers as the config lists them (the service holds them newest first, as
    ipvsadm -a inserts them)."""
    return list(reversed(service.real_servers))


def _route_finding(config: Config, key: str, address: str, forward: str,
                   route: Route | str | None, links: Mapping[str, Link]) -> Finding:
    if not isinstance(route, Route):
        return Finding(WARN, key, f"no route to {address} ({route or 'not looked up'}): its "
                       "frames are dropped (and counted) until one exists")
    said = f"{address} ({forward}) {hop(route)}"
    if route.interface == "lo":
        return Finding(WARN, key, f"{said}: an address of this host")
    if forward == "dr" and route.gateway:
        return Finding(WARN, key, f"{said}: direct routing needs the real server on a link of "
                       f"the director; its frames would go to the router {route.gateway}")
    if config.interface in links and route.interface not in _director_interfaces(config):
        return Finding(OK, key, f"{said}: pylvs also sends through {route.interface}")
    return Finding(OK, key, said)


def hop(route: Route) -> str:
    via = f"via {route.gateway}" if route.gateway else "on-link"
    source = f", from {route.source}" if route.source else ""
    return f"{via} through {route.interface}{source}"


def _vrrp(config: Config, facts: Facts) -> Iterator[Finding]:
    everywhere = _addresses(facts)
    for path, instance in _instances(config):
        link = facts.links.get(instance.interface)
        if link is None:
            continue  # said above
        if instance.unicast_src_ip:
            yield _source_finding(f"{path}.unicast_src_ip", instance, link, everywhere)
            continue
        own = [a for a in link.own(instance.family) if a not in instance.virtual_ipaddress]
        if instance.family == AF_INET6:
            own = [a for a in own if ipaddress.ip_address(a).is_link_local]
        if not own:
            kind = "IPv6 link-local" if instance.family == AF_INET6 else "IPv4"
            yield Finding(FAIL, f"{path}.interface", f"{instance.interface} has no {kind} "
                          "address of its own to send VRRP adverts from")


def _source_finding(key: str, instance: VrrpInstance, link: Link,
                    everywhere: Mapping[str, list[str]]) -> Finding:
    source = instance.unicast_src_ip
    holders = everywhere.get(_canonical(source), [])
    if link.name in holders:
        return Finding(OK, key, f"{source} is on {link.name}")
    if holders:
        return Finding(WARN, key, f"{source} is on {', '.join(holders)}, not on {link.name}")
    return Finding(FAIL, key, f"{source} is not an address of this host ({link.name} has: "
                   f"{', '.join(link.own()) or 'none'})")


def _director(config: Config, facts: Facts) -> Iterator[Finding]:
    if config.metrics:
        yield _metrics(config.metrics, facts)
    if facts.control_socket == "alive":
        yield Finding(WARN, "director.control_socket", f"a director already answers on "
                      f"{config.control_socket}: `pylvs run` would not start beside it "
                      "(`pylvs reload` gives it this file)")
    elif facts.control_socket == "no directory":
        yield Finding(FAIL, "director.control_socket", f"{config.control_socket}: its directory "
                      "does not exist")
    if config.bgp is not None and not config.bgp.router_id and not _ipv4_of(config, facts):
        yield Finding(FAIL, "bgp.router_id", f"{config.interface} has no IPv4 address to be "
                      "the router id: name one")


def _metrics(metrics: str, facts: Facts) -> Finding:
    host, _ = split_address(metrics)
    if host in WILDCARDS or _canonical(host) in _addresses(facts):
        return Finding(OK, "director.metrics", f"{metrics} is an address of this host")
    return Finding(FAIL, "director.metrics", f"{host} is not an address of this host: the "
                   "metrics server could not listen there")


def _ipv4_of(config: Config, facts: Facts) -> list[str]:
    """The director interface's own IPv4 addresses, its VIPs aside (BGP's router id)."""
    link = facts.links.get(config.interface)
    vips = set(marks.vips(config.services, marks.Marks(config.marks)))
    return [a for a in link.own(AF_INET) if a not in vips] if link is not None else []


def _offload(config: Config, facts: Facts) -> Iterator[Finding]:
    if config.offload == "none" or facts.xdp is None:
        return
    if facts.xdp:  # "auto" expects it on some hosts; "xdp" asked for it
        yield Finding(OK if config.offload == "auto" else WARN, "director.offload",
                      f"the XDP fast path cannot load here ({facts.xdp}): every frame would "
                      "go through Python")
        return
    yield Finding(OK, "director.offload", "the XDP fast path's program and maps load here")
    for name in _director_interfaces(config):
        link = facts.links.get(name)
        if link is not None and link.xdp_program:
            yield Finding(WARN, "director.offload", f"{name} already has an XDP program (id "
                          f"{link.xdp_program}): pylvs's would replace it")


def _programs(config: Config, facts: Facts) -> Iterator[Finding]:
    for program in programs(config):
        key = "bgp.bird" if config.bgp is not None and program == config.bgp.bird \
            else "vrrp_script"
        if program in facts.programs:
            yield Finding(OK, key, f"{program}: {facts.programs[program]}")
        else:
            yield Finding(FAIL if key == "bgp.bird" else WARN, key, f"{program}: not found")


# -- what pylvs run would do --------------------------------------------------------------------

def plan(config: Config, facts: Facts) -> list[str]:
    """What `pylvs run` would do with this config on this host, a line each."""
    rules = marks.Marks(config.marks)
    lines = [_listening(config), _vip_line(config, rules)]
    lines += _steals(config, rules)
    for service in config.services:
        lines += _service_lines(service, facts)
    lines += _health(config) + _ha(config) + [_offload_line(config, facts)]
    lines.append(f"control socket {config.control_socket}"
                 + (f"; metrics on http://{config.metrics}/metrics" if config.metrics else ""))
    return lines


def _director_interfaces(config: Config) -> list[str]:
    return list(dict.fromkeys((config.interface, config.inside_interface or config.interface)))


def _listening(config: Config) -> str:
    inside = config.inside_interface or config.interface
    where = f"{config.interface} (clients)" + (f" and {inside} (real servers' replies)"
                                               if inside != config.interface else "")
    workers = f"{config.workers} workers" if config.workers > 1 else "1 process"
    return f"read frames on {where}, {workers}"


def _vip_line(config: Config, rules: marks.Marks) -> str:
    vips = marks.vips(config.services, rules)
    if not vips:
        return "add no VIPs"
    shown = ", ".join(f"{v}/{128 if _family(v) == AF_INET6 else 32}" for v in vips)
    when = " while VRRP says MASTER" if config.vrrp_instances else ""
    return f"add to {config.interface}{when}: {shown}"


def _steals(config: Config, rules: marks.Marks) -> list[str]:
    """The nftables rules (a netdev table on the ingress hook) that keep the kernel off."""
    taken = marks.taken(config.services, rules)
    replies = marks.replies(config.services, rules)
    inside = config.inside_interface or config.interface
    lines = [f"steal on {config.interface} (nftables, netdev ingress): "
             + "; ".join(_endpoint(e, "to") for e in taken)] if taken else []
    if replies:
        lines.append(f"steal on {inside} the NAT replies: "
                     + "; ".join(_endpoint(e, "from") for e in replies))
    return lines


def _endpoint(endpoint: marks.Endpoint, way: str) -> str:
    low, high = endpoint.ports
    ports = "any port" if (low, high) == marks.ANY_PORT else \
        f"port {low}" if low == high else f"ports {low}-{high}"
    return f"{endpoint.protocol} {way} {endpoint.address} {ports}"


def _service_lines(service: VirtualService, facts: Facts) -> list[str]:
    name = service.endpoint if service.fwmark else \
        f"{service.protocol.upper()} {service.endpoint}"
    persistent = f", persistent {service.persistence_timeout} s" \
        if service.persistence_timeout else ""
    lines = [f"service {name} {service.scheduler.name}{persistent}:"]
    for rs in in_config_order(service):
        route = facts.routes.get(rs.address)
        where = hop(route) if isinstance(route, Route) else f"no route ({route})"
        lines.append(f"  -> {rs.endpoint} {rs.forward} weight {rs.weight}: {where}")
    return lines


def _health(config: Config) -> list[str]:
    lines = []
    for health in config.health:
        kinds = Counter(s.spec.kind for s in health.servers)
        if kinds:
            said = ", ".join(f"{k} ({n})" for k, n in kinds.items())
            lines.append(f"check the real servers of {health.name}: {said}")
    return lines


def _ha(config: Config) -> list[str]:
    lines = [f"VRRP {i.name} on {i.interface}: vrid {i.virtual_router_id}, priority "
             f"{i.priority}, starts {i.state}, VIPs {', '.join(i.virtual_ipaddress) or '-'}"
             for i in config.vrrp_instances]
    if config.sync_interface:
        lines.append(f"sync connections on {config.sync_interface}, syncid {config.syncid}")
    if config.bgp is not None:
        peers = ", ".join(f"{n.address} (AS {n.remote_as})" for n in config.bgp.neighbors)
        lines.append(f"announce the VIPs over BGP from AS {config.bgp.local_as} to {peers}")
    return lines


def _offload_line(config: Config, facts: Facts) -> str:
    mode, where = config.offload, ", ".join(_director_interfaces(config))
    if mode == "none" or facts.xdp:
        return f"offload {mode}: every frame through Python"
    if mode == "auto":
        return (f"offload auto: established connections through the XDP fast path on those of "
                f"{where} where it works (chosen at start: `pylvs status` says), Python "
                "elsewhere")
    return f"offload xdp: established connections forwarded by an XDP program on {where}"


# -- a keepalived.conf's interface --------------------------------------------------------------

def choose_interface(routes: Mapping[str, str | None]) -> tuple[str, str]:
    """The director's interface from the routes to the real servers (address → the interface
    the kernel routes it through, None: no route): the one most of them go through, and how
    it was chosen; ValueError (why, naming the candidates) when none or a tie."""
    through = {a: i for a, i in routes.items() if i and i != "lo"}
    counts = Counter(through.values()).most_common()
    if not counts:
        raise ValueError(f"the real servers ({', '.join(routes) or 'none'}) have no route "
                         "through an interface of this host")
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        tied = [name for name, n in counts if n == counts[0][1]]
        raise ValueError("the routes to the real servers go through " + " and ".join(
            f"{name} ({_servers(through, name)})" for name in tied) + " as often")
    name, count = counts[0]
    return name, (f"{name}, the interface the routes to {count} of {len(routes)} real servers "
                  f"go through ({_servers(through, name)})")


def _servers(through: Mapping[str, str], name: str) -> str:
    return ", ".join(a for a, i in through.items() if i == name)


# -- addresses ----------------------------------------------------------------------------------

def _addresses(facts: Facts) -> dict[str, list[str]]:
    """Every address of this host (canonical text) → the interfaces it is on."""
    found: dict[str, list[str]] = {}
    for link in facts.links.values():
        for address in link.own():
            found.setdefault(_canonical(address), []).append(link.name)
    return found


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("%")[0]))
    except ValueError:
        return address


def _family(address: str) -> int:
    return AF_INET6 if ":" in address else AF_INET

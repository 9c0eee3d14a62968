"""`pylvs lab ecmp`: N directors behind a router's ECMP, each announcing the VIP over BGP.

    client 10.1.0.2 ── router 10.1.0.1 / 10.0.0.1 (BIRD: BGP from each director, ECMP, L4 hash)
                          │ 10.0.0.0/24 (a bridge)
          ┌───────────────┼──────────────────┬─────────────────┐
     director 1       director 2   ...   rs1 10.0.0.101   rs2 ... (DR: VIP on lo)
     10.0.0.11        10.0.0.12          (default route: the router)
     (pylvs + BIRD)   (pylvs + BIRD)

Each director runs `pylvs run` with a [bgp] table (its own BIRD, one session to the router) and
the same service: mh over the same real servers with the same weights, so every director picks
the same real server for a flow, and sloppy_tcp, so a director that the router hands a flow half
way through takes it from its first packet. The real servers answer the client through the
router (DR). The router's BIRD merges the directors' routes into one multipath route; where the
kernel has resilient nexthop groups (pylvs.lab.nexthops), a group holds them, so a director that
goes gives away only its own flows and one that comes takes only idle buckets.

IPv6 (``families=(6,)``, `pylvs lab ecmp --ipv6`) is the same lab in documentation prefixes,
each IPv4 network's numbers written into an IPv6 one: the LAN 2001:db8:10::/64 (router ::1,
director i ::10+i, rs i ::100+i), the client's 2001:db8:10:1::/64 (client ::2, router ::1) and
the VIP 2001:db8:10:100::1, announced as a /128 over a BGP session over IPv6 to the router's
2001:db8:10::1. The directors have no IPv4 address, so each names its BGP router id (10.0.0.10+i:
a 32-bit number, which is all a router id is). Every address is added with ``nodad`` and DAD is
off in the namespaces; the bridges' namespace has IPv6 off (a switch sends nothing of its own).
``families=(4, 6)``: every host in both families, a VIP of each, and two sessions per director
(one of each family), as a dual-stack site runs it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from pylvs.ha.bgp import prefix
from pylvs.lab import nexthops
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import Hosts, _ip, _wait_for_line, curl_argv, endpoint

LAN = "10.0.0"
PREFIX_LEN = 24
ROUTER_IP = f"{LAN}.1"
CLIENT_NET = "10.1.0"
CLIENT_IP, ROUTER_CLIENT_IP = f"{CLIENT_NET}.2", f"{CLIENT_NET}.1"
VIP = "10.0.100.1"
LAN6, CLIENT_NET6 = "2001:db8:10::", "2001:db8:10:1::"
ROUTER_IP6 = f"{LAN6}1"
CLIENT_IP6, ROUTER_CLIENT_IP6 = f"{CLIENT_NET6}2", f"{CLIENT_NET6}1"
VIP6 = "2001:db8:10:100::1"
PREFIX_LEN6 = 64
PORT = 80
ROUTER_AS, DIRECTOR_AS = 65000, 65001
IFACE = "eth0"
MAX_DIRECTORS = 8
BFD_INTERVAL_MS = 100
HOLD_TIME = 3
WAIT = 20.0


@dataclass(frozen=True)
class Plan:
    """One family's addresses in the ECMP lab."""
    family: int
    lan: str
    """The LAN's hosts are ``lan`` + their number: 10.0.0. + 11, 2001:db8:10:: + 11."""
    prefix_len: int
    router: str
    client: str
    router_client: str
    vip: str

    def host(self, number: int) -> str:
        return str(ipaddress.ip_address(f"{self.lan}{number}"))

    def director(self, i: int) -> str:
        """Director ``i`` (1-based)."""
        return self.host(10 + i)

    def server(self, i: int) -> str:
        return self.host(100 + i)


PLANS = {4: Plan(4, f"{LAN}.", PREFIX_LEN, ROUTER_IP, CLIENT_IP, ROUTER_CLIENT_IP, VIP),
         6: Plan(6, LAN6, PREFIX_LEN6, ROUTER_IP6, CLIENT_IP6, ROUTER_CLIENT_IP6, VIP6)}
FAMILY_SETS = ((4,), (6,), (4, 6))


class EcmpLab(Hosts):
    def __init__(self, directors: int = 3, servers: int = 3, bfd: bool = True,
                 resilient: bool | None = None, families: tuple[int, ...] = (4,)) -> None:
        """``resilient``: None uses a resilient nexthop group where the kernel has one;
        ``families``: (4,), (6,) or (4, 6), the first being the one the lab's plain attributes
        (``vip``, ``director_ips``, ...) speak of."""
        super().__init__()
        if not 1 <= directors <= MAX_DIRECTORS:
            raise ValueError(f"directors must be 1..{MAX_DIRECTORS}, not {directors}")
        if not 1 <= servers <= 50:
            raise ValueError(f"servers must be 1..50, not {servers}")
        if tuple(families) not in FAMILY_SETS:
            raise ValueError(f"families must be (4,), (6,) or (4, 6), not {families!r}")
        self.bfd, self.resilient = bfd, resilient
        self.families = tuple(families)
        self.family = self.families[0]
        self.plans = {f: PLANS[f] for f in self.families}
        self.prefix = f"pylvs-{secrets.token_hex(3)}"
        self.client_ns, self.router_ns = f"{self.prefix}-client", f"{self.prefix}-router"
        self.bridge_ns = f"{self.prefix}-bridge"
        self.director_ns = [f"{self.prefix}-d{i}" for i in range(1, directors + 1)]
        self.control_sockets = [f"/run/{self.prefix}-d{i}.sock" for i in range(1, directors + 1)]
        self.server_ns = [f"{self.prefix}-rs{i}" for i in range(1, servers + 1)]
        self.server_names = [f"rs{i}" for i in range(1, servers + 1)]
        plan = self.plans[self.family]
        self.director_ips = [plan.director(i) for i in range(1, directors + 1)]
        self.server_ips = [plan.server(i) for i in range(1, servers + 1)]
        self.vip, self.client_ip, self.router_ip = plan.vip, plan.client, plan.router
        self.router_dir = f"/run/{self.prefix}-router"
        self.router_bird: subprocess.Popen[Any] | None = None

    def __enter__(self) -> EcmpLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ipv6(self) -> bool:
        return 6 in self.families

    def directors_of(self, family: int) -> list[str]:
        """The directors' addresses in ``family`` (the router's BGP neighbours of it)."""
        return [self.plans[family].director(i) for i in range(1, len(self.director_ns) + 1)]

    def servers_of(self, family: int) -> list[str]:
        return [self.plans[family].server(i) for i in range(1, len(self.server_ns) + 1)]

    def where(self) -> str:
        return (f"namespaces {self.prefix}-* (e.g. ip netns exec {self.router_ns} birdc -s "
                f"{self.router_dir}/bird.ctl show route), removed when the lab ends")

    # -- the wires -------------------------------------------------------------------------------

    def setup(self) -> None:
        self._add_namespace(self.bridge_ns)
        if self.ipv6:  # a switch: no addresses, so no router solicitations or MLD of its own
            self.run_in(self.bridge_ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                         "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        self._add_host(self.client_ns)
        self._add_host(self.router_ns)
        _ip("-n", self.client_ns, "link", "add", IFACE, "type", "veth", "peer", "name", "eth1",
            "netns", self.router_ns)
        for plan in self.plans.values():
            self._address(self.client_ns, IFACE, plan.client, plan.prefix_len)
            self._address(self.router_ns, "eth1", plan.router_client, plan.prefix_len)
            self._default_route(self.client_ns, plan.router_client)
        self._add_link(self.router_ns, "router", [p.router for p in self.plans.values()])
        sysctls = []
        if 4 in self.families:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
                        "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0"]
        if 6 in self.families:
            sysctls += ["net.ipv6.conf.all.forwarding=1", "net.ipv6.fib_multipath_hash_policy=1"]
        self.run_in(self.router_ns, ["sysctl", "-qw", *sysctls], check=True)
        for i, ns in enumerate(self.director_ns, start=1):
            self._add_host(ns)
            self._add_link(ns, f"d{i}", [p.director(i) for p in self.plans.values()])
            for plan in self.plans.values():
                self._default_route(ns, plan.router)
        for i, (ns, name) in enumerate(zip(self.server_ns, self.server_names, strict=True),
                                       start=1):
            self._add_host(ns)
            self._add_link(ns, name, [p.server(i) for p in self.plans.values()])
            for plan in self.plans.values():
                self._default_route(ns, plan.router)
                self.run_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--mode", "dr",
                                 "--vip", plan.vip, "--interface", IFACE],
                            capture_output=True, text=True, check=True)

    def _add_host(self, ns: str) -> None:
        """A namespace; in a lab with IPv6, DAD off (its link-local addresses too)."""
        self._add_namespace(ns)
        if self.ipv6:
            self.run_in(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                             "net.ipv6.conf.default.accept_dad=0"], check=True)

    def _add_link(self, ns: str, port: str, addresses: list[str]) -> None:
        _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", IFACE,
            "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        for address in addresses:
            self._address(ns, IFACE, address, PLANS[6 if ":" in address else 4].prefix_len)

    @staticmethod
    def _address(ns: str, ifname: str, address: str, prefix_len: int = PREFIX_LEN) -> None:
        nodad = ["nodad"] if ":" in address else []
        _ip("-n", ns, "addr", "add", f"{address}/{prefix_len}", "dev", ifname, *nodad)
        _ip("-n", ns, "link", "set", ifname, "up")

    @staticmethod
    def _default_route(ns: str, via: str) -> None:
        _ip("-n", ns, *(["-6"] if ":" in via else []), "route", "add", "default", "via", via)

    # -- the router ------------------------------------------------------------------------------

    def start_router(self) -> None:
        """BIRD in the router's namespace, and the resilient groups' mirror where it can."""
        if self.resilient is None:
            self.resilient = self.run_in(
                self.router_ns, [sys.executable, "-c", "import sys; from pylvs.lab import "
                                 "nexthops; sys.exit(0 if nexthops.supported() else 1)"]
            ).returncode == 0
        subprocess.run(["mkdir", "-m", "700", self.router_dir], check=True)
        self.created.append(self.router_dir)
        conf = f"{self.router_dir}/bird.conf"
        with open(conf, "w") as fh:
            fh.write(router_config({f: self.directors_of(f) for f in self.families}, self.bfd,
                                   self.resilient))
        self.router_bird = self.popen_in(self.router_ns, ["bird", "-f", "-c", conf, "-s",
                                                          self.router_socket])
        self.processes.append(self.router_bird)
        if self.resilient:
            mirror = self.popen_in(self.router_ns, [sys.executable, "-m", "pylvs.lab.nexthops",
                                                    "--interface", IFACE],
                                   stdout=subprocess.PIPE, text=True)
            self.processes.append(mirror)
            _wait_for_line(mirror, "following", "the nexthop mirror")

    @property
    def router_socket(self) -> str:
        return f"{self.router_dir}/bird.ctl"

    def birdc(self, *command: str) -> str:
        return self.run_in(self.router_ns, ["birdc", "-s", self.router_socket, *command],
                           capture_output=True, text=True).stdout

    def _route(self, vip: str) -> dict[str, Any]:
        """The router's main-table route to ``vip`` as ``ip -j`` gives it ({} if none)."""
        text = self.run_in(self.router_ns, ["ip", "-j", "-6" if ":" in vip else "-4", "route",
                                            "show", prefix(vip)],
                           capture_output=True, text=True).stdout
        routes = json.loads(text or "[]")
        return routes[0] if routes else {}

    def next_hops(self, family: int | None = None) -> list[str]:
        """The directors the router now sends the VIP of ``family`` (default: the lab's first)
        to: its resilient group's members, or the next hops of its multipath route."""
        vip = self.plans[family or self.family].vip
        if not self.resilient:
            route = self._route(vip)
            hops = route.get("nexthops") or ([route] if route else [])
            return sorted(h["gateway"] for h in hops if "gateway" in h)
        text = self.run_in(self.router_ns, ["ip", "-j", "nexthop", "show"],
                           capture_output=True, text=True).stdout
        objects = json.loads(text or "[]")
        via = {o["id"]: o["gateway"] for o in objects if "gateway" in o}
        group = self._route(vip).get("nhid")
        for o in objects:
            if o["id"] == group and "group" in o:
                return sorted(via[m["id"]] for m in o["group"] if m["id"] in via)
        return []

    def route_text(self, family: int | None = None) -> str:
        """What a person would look at on the router: the route, and the group behind it."""
        vip = self.plans[family or self.family].vip
        text = self.run_in(self.router_ns, ["ip", *(["-6"] if ":" in vip else []), "route",
                                            "show", prefix(vip)],
                           capture_output=True, text=True).stdout
        if self.resilient:
            text += self.run_in(self.router_ns, ["ip", "nexthop", "show"], capture_output=True,
                                text=True).stdout
        return text

    def wait_for_hops(self, wanted: list[str], timeout: float = WAIT,
                      family: int | None = None) -> float:
        vip = self.plans[family or self.family].vip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.next_hops(family) == sorted(wanted):
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"the router did not come to route {vip} via "
                           f"{', '.join(wanted) or 'nobody'} in {timeout:.0f} s (it has "
                           f"{', '.join(self.next_hops(family)) or 'nothing'}):\n"
                           f"{self.birdc('show', 'protocols')}")

    # -- the hosts' programs ---------------------------------------------------------------------

    def director_config(self, i: int, drain_seconds: float = 1.0, sloppy: bool = True,
                        extra: tuple[str, ...] = (), scheduler: str = "mh",
                        metrics: str = "") -> str:
        """Director ``i`` (0-based): the same service on every director (one per family), its
        own [bgp] with a session to the router in each family; mh hashes the client's port too
        (mh-port), so that one client's flows spread. ``extra``: more keys of each service."""
        flags = ['scheduler_flags = ["mh-port"]'] if scheduler == "mh" else []
        router_id = [] if 4 in self.families else [f'router_id = "{LAN}.{11 + i}"']
        lines = ["[director]", f'interface = "{IFACE}"',
                 f'control_socket = "{self.control_sockets[i]}"',
                 *([f'metrics = "{metrics}"'] if metrics else []), "",
                 "[sysctl]", f"sloppy_tcp = {int(sloppy)}", "",
                 "[bgp]", f"local_as = {DIRECTOR_AS}", *router_id, f"hold_time = {HOLD_TIME}",
                 f"bfd = {str(self.bfd).lower()}", f"bfd_interval = {BFD_INTERVAL_MS / 1000}",
                 f"drain_seconds = {drain_seconds}"]
        for plan in self.plans.values():
            lines += ["", "  [[bgp.neighbor]]", f'  address = "{plan.router}"',
                      f"  remote_as = {ROUTER_AS}"]
        for plan in self.plans.values():
            lines += ["", "[[virtual_server]]", f'address = "{endpoint(plan.vip, PORT)}"',
                      'protocol = "tcp"', f'scheduler = "{scheduler}"', *flags, 'forward = "dr"',
                      *extra]
            for address in self.servers_of(plan.family):
                lines += ["", "  [[virtual_server.real_server]]",
                          f'  address = "{endpoint(address, PORT)}"', "  weight = 1"]
        return "\n".join(lines) + "\n"

    def start_http_servers(self) -> None:
        bind = "::" if self.ipv6 else "0.0.0.0"
        for ns, name in zip(self.server_ns, self.server_names, strict=True):
            proc = self.popen_in(ns, [sys.executable, "-m", "pylvs.lab.httpserver", "--name",
                                      name, "--port", str(PORT), "--bind", bind],
                                 stdout=subprocess.PIPE, text=True)
            self.processes.append(proc)
            _wait_for_line(proc, "serving", name)

    def url(self, path: str = "/", family: int | None = None) -> str:
        """http://10.0.100.1/..., http://[2001:db8:10:100::1]:80/... for IPv6."""
        vip = self.plans[family or self.family].vip
        return f"http://[{vip}]:{PORT}{path}" if ":" in vip else f"http://{vip}{path}"

    def curl_argv(self, path: str = "/", local_port: int = 0, max_time: int = 10,
                  family: int | None = None) -> list[str]:
        argv = curl_argv(self.url(path, family), max_time=max_time)
        return argv + (["--local-port", str(local_port)] if local_port else [])


def router_config(directors: dict[int, list[str]] | list[str], bfd: bool,
                  resilient: bool) -> str:
    """The upstream router's BIRD: a BGP session to each director in each family (``d1`` over
    IPv4, ``d1v6`` over IPv6), their routes merged into one ECMP route per VIP (into
    nexthops.SOURCE_TABLE when a resilient group takes them from there). ``directors``: each
    family's director addresses (a plain list: IPv4's)."""
    if isinstance(directors, list):
        directors = {4: directors}
    table = f" kernel table {nexthops.SOURCE_TABLE};" if resilient else ""
    lines = [f"router id {ROUTER_IP};", "protocol device { scan time 10; }"]
    for family in directors:
        channel = f"ipv{family}"
        name = "" if family == 4 else " kernel6"
        lines.append(f"protocol kernel{name} {{{table} merge paths on; {channel} {{ import none; "
                     f"export all; }}; }}")
    if bfd:
        lines.append(f'protocol bfd {{ interface "*" {{ min rx interval {BFD_INTERVAL_MS} ms; '
                     f"min tx interval {BFD_INTERVAL_MS} ms; multiplier 3; }}; }}")
    for family in directors:
        name = "director" if family == 4 else "director6"
        lines.append(f"template bgp {name} {{ local as {ROUTER_AS}; hold time {HOLD_TIME}; "
                     f"keepalive time 1; connect retry time 1; error wait time 1, 10;"
                     f"{' bfd on;' if bfd else ''} ipv{family} {{ import all; export none; }}; }}")
    for family, addresses in directors.items():
        template, suffix = ("director", "") if family == 4 else ("director6", "v6")
        lines += [f"protocol bgp d{i}{suffix} from {template} {{ neighbor {address} as "
                  f"{DIRECTOR_AS}; }}" for i, address in enumerate(addresses, start=1)]
    return "\n".join(lines) + "\n"


# -- the demonstration ---------------------------------------------------------------------------

DOWNLOAD = 4_000_000
RATE = "1000k"
DOWNLOADS_PER_DIRECTOR = 4
KILL_AFTER = 1.5
SHORT_REQUESTS = 60


@dataclass
class Download:
    """One rate-limited curl of /blob/DOWNLOAD from a fixed client port."""
    port: int
    proc: subprocess.Popen[bytes]
    path: str
    before: tuple[str, str] = ("", "")
    """(director, real server) holding it before the kill."""
    after: tuple[str, str] = ("", "")

    def result(self) -> tuple[bool, int]:
        """(intact, bytes) once curl is done."""
        self.proc.wait(120)
        with open(self.path, "rb") as fh:
            body = fh.read()
        return (self.proc.returncode == 0
                and hashlib.sha256(body).digest() == _WANTED_SHA), len(body)


_WANTED_SHA = hashlib.sha256(blob(DOWNLOAD)).digest()


def run(directors: int = 3, servers: int = 3, bfd: bool = True, family: int = 4) -> int:
    """The demonstration; ``family`` 6: the IPv6 lab (`pylvs lab ecmp --ipv6`)."""
    with EcmpLab(directors, servers, bfd, families=(family,)) as lab, \
            tempfile.TemporaryDirectory() as tmp:
        over = " over IPv6" if family == 6 else ""
        print(f"lab (ecmp{' IPv6' if family == 6 else ''}): client {lab.client_ip} -> router "
              f"{lab.router_ip} (BIRD, ECMP, layer-4 hash) -> directors "
              f"{', '.join(lab.director_ips)} (pylvs + BIRD, AS {DIRECTOR_AS}, BGP{over}) -> "
              f"real servers {', '.join(lab.server_ips)} (DR), VIP {lab.vip}")
        print(f"  {lab.where()}")
        lab.setup()
        lab.start_http_servers()
        lab.start_router()
        running: list[DirectorProcess | None] = []
        try:
            running += [_start_director(lab, i, tmp) for i in range(directors)]
            lab.wait_for_hops(lab.director_ips)
            _show_routes(lab)
            _share(lab, running, "new connections")
            return _failover(lab, running, tmp)
        finally:
            for director in running:
                if director is not None:
                    director.stop()


def _start_director(lab: EcmpLab, i: int, tmp: str) -> DirectorProcess:
    directory = os.path.join(tmp, f"d{i + 1}")
    os.makedirs(directory, exist_ok=True)
    return DirectorProcess(lab, lab.director_config(i), ns=lab.director_ns[i],  # type: ignore[arg-type]
                           control_socket=lab.control_sockets[i], directory=directory)


def _show_routes(lab: EcmpLab) -> None:
    print(f"\nthe router learnt {prefix(lab.vip)} from every director:\n"
          f"$ birdc show route  # router")
    print("\n".join(lab.birdc("show", "route").splitlines()[1:]))
    how = ("a resilient nexthop group" if lab.resilient else "one multipath route")
    six = "-6 " if lab.family == 6 else ""
    print(f"$ ip {six}route show {lab.vip}; ip nexthop show  # router: {how}")
    print(lab.route_text(), end="")


def _conns(director: DirectorProcess) -> int:
    for line in director.adm("-Ln", "--stats").splitlines():
        fields = line.split()
        if fields[:1] == ["TCP"]:
            return int(fields[2])
    return 0


def _share(lab: EcmpLab, running: list[DirectorProcess | None], what: str) -> None:
    before = [_conns(d) if d is not None else 0 for d in running]
    for _ in range(SHORT_REQUESTS):
        lab.run_in(lab.client_ns, lab.curl_argv(), capture_output=True, check=True)
    after = [_conns(d) if d is not None else 0 for d in running]
    print(f"\n{SHORT_REQUESTS} {what} from the client (curl {lab.url()}), by director:")
    width = max(11, *(len(ip) for ip in lab.director_ips))
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        state = "" if running[i] is not None else "  (down)"
        print(f"  director {i + 1} {lab.director_ips[i]:<{width}} {a - b:3d} "
              f"({100 * (a - b) / SHORT_REQUESTS:4.1f} %){state}")


def _holders(lab: EcmpLab, running: list[DirectorProcess | None]) -> dict[int, tuple[str, str]]:
    """Client port → (director, real server) from every running director's -Lnc. A flow that
    moved leaves an entry behind on the director it left: the one whose timer was refreshed
    last (the most time left) holds it now."""
    names = {address: name for family in lab.families
             for address, name in zip(lab.servers_of(family), lab.server_names, strict=True)}
    held: dict[int, tuple[int, str, str]] = {}
    for i, director in enumerate(running):
        if director is None:
            continue
        for line in director.adm("-Lnc").splitlines()[2:]:
            fields = line.split()
            if len(fields) >= 6 and fields[2] == "ESTABLISHED":
                port = int(fields[3].rsplit(":", 1)[1])
                minutes, seconds = fields[1].split(":")
                left = int(minutes) * 60 + int(seconds)
                if port not in held or left > held[port][0]:
                    server = fields[5].rsplit(":", 1)[0].strip("[]")
                    held[port] = (left, f"d{i + 1}", names.get(server, fields[5]))
    return {port: (director, server) for port, (_, director, server) in held.items()}


def _failover(lab: EcmpLab, running: list[DirectorProcess | None], tmp: str) -> int:
    lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
               check=True)  # IPv6's TCP too: the kernel has one tcp_rmem
    victim = 1 if len(running) > 1 else 0
    count = DOWNLOADS_PER_DIRECTOR * len(running)
    print(f"\n{count} downloads (curl --limit-rate {RATE} {lab.url(f'/blob/{DOWNLOAD}')}); "
          f"kill -9 of director {victim + 1} after {KILL_AFTER} s:")
    downloads = [_download(lab, 42000 + k, tmp) for k in range(count)]
    time.sleep(KILL_AFTER)
    held = _holders(lab, running)
    for d in downloads:
        d.before = held.get(d.port, ("?", "?"))
    start = time.monotonic()
    killed = running[victim]
    assert killed is not None
    killed.proc.kill()
    killed.proc.wait()
    running[victim] = None
    survivors = [ip for i, ip in enumerate(lab.director_ips) if running[i] is not None]
    took = lab.wait_for_hops(survivors) - start
    print(f"  the router withdrew director {victim + 1} {took:.2f} s after the kill "
          f"(its guard ended its BIRD: the session closed)")
    _follow(lab, running, [d for d in downloads if d.before[0] == f"d{victim + 1}"])
    intact = _report(downloads, f"d{victim + 1}")
    running[victim] = _start_director(lab, victim, tmp)
    lab.wait_for_hops(lab.director_ips)
    print(f"\ndirector {victim + 1} started again; the router routes through all "
          f"{len(running)} again:")
    print(lab.route_text(), end="")
    _share(lab, running, "new connections")
    ok = intact == len(downloads)
    print(f"\n{'ECMP failover works' if ok else 'something broke'}: {intact} of "
          f"{len(downloads)} transfers arrived intact; the killed director's went on through "
          f"the others, to the same real servers (mh + sloppy_tcp).")
    return 0 if ok else 1


def _follow(lab: EcmpLab, running: list[DirectorProcess | None], moved: list[Download],
            timeout: float = 5.0) -> None:
    """Where the killed director's downloads went: each shows up on another director once the
    client's next segment reaches it (a retransmission, after the real server's timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = _holders(lab, running)
        for d in moved:
            d.after = held.get(d.port, d.after)
        if all(d.after[0] or d.proc.poll() is not None for d in moved):
            return
        time.sleep(0.1)


def _download(lab: EcmpLab, port: int, tmp: str) -> Download:
    path = os.path.join(tmp, f"download-{port}")
    argv = [*lab.curl_argv(f"/blob/{DOWNLOAD}", port, max_time=90), "--limit-rate", RATE,
            "-o", path]
    return Download(port, lab.popen_in(lab.client_ns, argv), path)


def _report(downloads: list[Download], victim: str) -> int:
    print(f"  {'client port':>11}  {'before':<9}  {'after the kill':<16}  result")
    intact = 0
    for d in downloads:
        ok, size = d.result()
        intact += ok
        after = "unchanged"
        if d.before[0] == victim:
            after = " ".join(d.after) if d.after[0] else "(not seen again)"
        print(f"  {d.port:>11}  {' '.join(d.before):<9}  {after:<16}  "
              f"{'intact' if ok else 'BROKEN'} ({size:,} bytes)")
    return intact

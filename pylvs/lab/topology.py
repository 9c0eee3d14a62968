"""A lab of network namespaces: a client, a director and N real servers behind bridges.

DR, the seed's topology: one L2 segment 192.168.1.0/24, client .5, director .2, real server i at
.10+i, the VIP .100. NAT: the client and the director's eth0 on that outside segment; the
director's eth1 (10.0.0.1) and real server i (10.0.0.10+i, default route via 10.0.0.1) on an
inside one. TUN: the real servers (172.16.0.10+i) in a subnet of their own behind a router
namespace (192.168.1.1 / 172.16.0.1, rp_filter off) that the director tunnels through and the
real servers answer the client through, never through the director.

IPv6 (``family=6``, `pylvs lab MODE --ipv6`) mirrors it in documentation prefixes: the segment
2001:db8:1::/64 (client ::5, director ::2, VIP ::100, real server i at ::10+i written as the IPv4
lab's last number, router ::1), the NAT inside 2001:db8:10::/64 (director ::1), the TUN subnet
2001:db8:172:16::/64 (router ::1). Every address is added with ``nodad`` and DAD is off in the
namespaces (``accept_dad=0``), so no address waits a second as tentative; the bridges' own
namespace has IPv6 off, so a switch sends no router solicitation or MLD report of its own.
An IPv4 lab has IPv6 off in every namespace (``disable_ipv6``, set before any link exists), so
its pcaps hold no DAD, MLD or router solicitation, and its bridges no IGMP snooping (which
sends a report for 224.0.0.106): they open with the first ARP.

``dualstack`` (`pylvs lab dualstack`): the TUN topology with every host in both families, one
director and one config with an IPv4 VIP and an IPv6 VIP, each with two services: port 80
tunnelled to the real servers of its own family (IP-in-IP, ip6ip6) and port 8080 to those of
the other family (4in6, 6in4): IPVS allows a real server of another family only with TUN.

``mistake`` (`pylvs lab MODE --mistake NAME`, pylvs/lab/mistakes.py): the real servers do their
steps with that mistake.

The bridges live in a namespace of their own, so nothing is created in the machine's own
namespace; every name carries a prefix unique to the run, and ``close`` removes every namespace
(their veths go with them) and every process the lab started, also when setup fails half way.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pylvs.lab import mistakes

SUBNET = "192.168.1"
PREFIX_LEN = 24
CLIENT_IP = f"{SUBNET}.5"
DIRECTOR_IP = f"{SUBNET}.2"
DIRECTOR2_IP = f"{SUBNET}.3"  # the second director of an --ha lab
VIP = f"{SUBNET}.100"
INSIDE_SUBNET = "10.0.0"
INSIDE_IP = f"{INSIDE_SUBNET}.1"
TUN_SUBNET = "172.16.0"
ROUTER_OUTSIDE, ROUTER_INSIDE = f"{SUBNET}.1", f"{TUN_SUBNET}.1"
PORT = 80
CROSS_PORT = 8080
"""The dual-stack lab's services whose real servers are of the other family."""
IFACE, INSIDE_IFACE = "eth0", "eth1"
MODES = ("dr", "nat", "tun", "mixed", "dualstack")
TUN_PORTS = {"ipip": 0, "gue": 6080, "gre": 0}
"""The lab's TUN encapsulations (--tun-type) and the UDP port a GUE real server listens on."""
SUBNETS = {"dr": SUBNET, "nat": INSIDE_SUBNET, "tun": TUN_SUBNET}
BRIDGES = {"dr": "br0", "nat": "br1", "tun": "br2"}
PREFIXES6 = {"dr": "2001:db8:1::", "nat": "2001:db8:10::", "tun": "2001:db8:172:16::"}
"""IPv6's segments (documentation prefixes, RFC 3849), /64 each, mirroring SUBNETS."""
PREFIX_LENS = {4: PREFIX_LEN, 6: 64}
SERVER_START_TIMEOUT = 10.0


def host_address(family: int, segment: str, number: int) -> str:
    """Host ``number`` of a lab segment (``dr``: the client's, ``nat``: the inside one,
    ``tun``: the TUN real servers'): 192.168.1.5, or 2001:db8:1::5 for IPv6, where the
    number is written as IPv4's last byte is (so ::11 is rs1, as .11 is)."""
    if family == 4:
        return f"{SUBNETS[segment]}.{number}"
    return str(ipaddress.IPv6Address(f"{PREFIXES6[segment]}{number}"))


def segment_prefix(family: int, segment: str) -> str:
    """The segment's network: 192.168.1.0/24, 2001:db8:1::/64."""
    return str(ipaddress.ip_network(f"{host_address(family, segment, 0)}/"
                                    f"{PREFIX_LENS[family]}"))


@dataclass(frozen=True)
class Addresses:
    """One family's addresses in a lab: what the IPv4 lab's constants say, for 4 or 6."""

    family: int
    client: str
    director: str
    director2: str
    vip: str
    inside: str
    router_outside: str
    router_inside: str
    servers: tuple[str, ...]

    @classmethod
    def plan(cls, family: int, server_modes: list[str]) -> Addresses:
        def on(segment: str, number: int) -> str:
            return host_address(family, segment, number)
        return cls(family, on("dr", 5), on("dr", 2), on("dr", 3), on("dr", 100), on("nat", 1),
                   on("dr", 1), on("tun", 1),
                   tuple(on(m, 10 + i) for i, m in enumerate(server_modes, start=1)))

    @property
    def prefix_len(self) -> int:
        return PREFIX_LENS[self.family]


@dataclass(frozen=True)
class Target:
    """A virtual service the client sends to: its VIP and port, the real servers' family and
    addresses, and how the director reaches them (the service's forward)."""

    vip: str
    port: int
    server_family: int
    servers: tuple[str, ...]

    @property
    def family(self) -> int:
        return 6 if ":" in self.vip else 4

    @property
    def endpoint(self) -> str:
        return endpoint(self.vip, self.port)

    def url(self, path: str = "/") -> str:
        """What curl is given: http://VIP/ (IPv4, port 80), http://[VIP]:80/ (IPv6)."""
        if self.family == 6:
            return f"http://[{self.vip}]:{self.port}{path}"
        return f"http://{self.vip}{path}" if self.port == PORT else \
            f"http://{self.vip}:{self.port}{path}"

    @property
    def encapsulation(self) -> str:
        """What a TUN real server of this service unwraps."""
        return {(4, 4): "IP-in-IP", (6, 6): "ip6ip6", (4, 6): "4in6",
                (6, 4): "6in4"}[(self.family, self.server_family)]


def endpoint(address: str, port: int) -> str:
    """``addr:port``, ``[addr]:port`` for IPv6 (as ipvsadm, ss and the config write them)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Hosts:
    """What a lab made and started: its namespaces (and folders, by absolute path) and its
    processes; running commands inside a namespace; removing all of it."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.processes: list[subprocess.Popen[Any]] = []
        self.stderr: Any = None
        """Where the processes started in the lab write their errors (None: this process's
        own stderr; a kept lab's log file, so that none holds the terminal's or a pipe's)."""

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def run_in(self, ns: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], **kwargs)

    def popen_in(self, ns: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stderr", self.stderr)
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        for name in reversed(self.created):
            if name.startswith("/"):
                subprocess.run(["rm", "-rf", name], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.created.clear()


class Lab(Hosts):
    """``mode`` dr, nat or tun for every real server; ``mixed`` gives rs1 DR, rs2 NAT, rs3 TUN
    and so on round, one virtual service serving all three ways; ``dualstack``: TUN real
    servers of both families behind the router, four services (see the module's notes).
    ``family`` 6: the same lab in IPv6."""

    def __init__(self, servers: int = 3, mode: str = "dr", ha: bool = False,
                 mistake: str | None = None, family: int = 4, tun_type: str = "ipip") -> None:
        if not 1 <= servers <= 50:
            raise ValueError(f"servers must be 1..50, not {servers}")
        if mode not in MODES:
            raise ValueError(f"lab mode must be one of {', '.join(MODES)}, not {mode!r}")
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {family!r}")
        if ha and mode != "dr":
            raise ValueError("a lab with two directors (--ha) is a DR lab")
        if mistake is not None and (family != 4 or mode == "dualstack"):
            raise ValueError("the --mistake labs are IPv4's (their mistakes are the ARP "
                             "sysctls, rp_filter and the route back): without --ipv6")
        if tun_type not in TUN_PORTS:
            raise ValueError(f"tun_type must be one of {', '.join(TUN_PORTS)}, not {tun_type!r}")
        if tun_type != "ipip" and mode not in ("tun", "mixed"):
            raise ValueError("--tun-type goes with the tun and mixed labs (their TUN real "
                             "servers)")
        self.tun_type = tun_type
        self.mistake = None if mistake is None else mistakes.validate(mode, mistake)
        self.mode, self.ha = mode, ha
        self.families = (4, 6) if mode == "dualstack" else (family,)
        self.family = self.families[0]
        self.prefix = f"pylvs-{secrets.token_hex(3)}"
        self.client_ns = f"{self.prefix}-client"
        self.director_ns = f"{self.prefix}-director"
        self.bridge_ns = f"{self.prefix}-bridge"
        self.router_ns = f"{self.prefix}-router"
        numbers = range(1, servers + 1)
        if mode == "dualstack":
            self.server_modes = ["tun"] * servers
        else:
            self.server_modes = [MODES[(i - 1) % 3] if mode == "mixed" else mode
                                 for i in numbers]
        self.server_ns = [f"{self.prefix}-rs{i}" for i in numbers]
        self.server_names = [f"rs{i}" for i in numbers]
        self.plans = {f: Addresses.plan(f, self.server_modes) for f in self.families}
        plan = self.plans[self.family]
        self.server_ips = list(plan.servers)
        self.client_ip, self.director_ip, self.vip = plan.client, plan.director, plan.vip
        self.director_if = IFACE
        has_nat = "nat" in self.server_modes
        self.director_inside_if = INSIDE_IFACE if has_nat else IFACE
        self.director_inside_ip = plan.inside if has_nat else plan.director
        self.control_socket = f"/run/{self.prefix}.sock"
        self.director2_ns = f"{self.prefix}-director2"
        self.director2_ip = plan.director2
        self.control_socket2 = f"/run/{self.prefix}-2.sock"
        super().__init__()

    @property
    def ipv6(self) -> bool:
        return 6 in self.families

    @property
    def label(self) -> str:
        """The lab's name in its report: dr, dr IPv6, dualstack."""
        return f"{self.mode} IPv6" if self.families == (6,) else self.mode

    @property
    def vips(self) -> list[str]:
        return [self.plans[f].vip for f in self.families]

    def targets(self, port: int = PORT) -> list[Target]:
        """The services the client sends to: one; the dual-stack lab's four (each VIP's own
        family on ``port``, the other family on CROSS_PORT)."""
        if self.mode != "dualstack":
            return [Target(self.vip, PORT, self.family, tuple(self.server_ips))]
        v4, v6 = self.plans[4], self.plans[6]
        return [Target(v4.vip, PORT, 4, v4.servers), Target(v6.vip, PORT, 6, v6.servers),
                Target(v4.vip, CROSS_PORT, 6, v6.servers),
                Target(v6.vip, CROSS_PORT, 4, v4.servers)]

    def traced_target(self) -> Target:
        """The service whose first connection --trace shows: the dual-stack lab's IPv6 VIP
        tunnelled over IPv4 (6in4: NDP on the client's side, ARP on the tunnel's)."""
        return self.targets()[-1]

    def server_addresses(self, index: int) -> list[str]:
        """Real server ``index``'s own addresses, every family of the lab."""
        return [self.plans[f].servers[index] for f in self.families]

    def where(self) -> str:
        """Where to look inside while it runs: what this run names, and that it goes after."""
        return (f"namespaces {self.prefix}-* (e.g. ip netns exec {self.client_ns} ...), "
                f"removed when the lab ends")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _addresses(self, role: str) -> list[str]:
        """``role``'s address in each family of the lab."""
        return [getattr(self.plans[f], role) for f in self.families]

    def setup(self) -> None:
        """Namespaces, the bridges and one veth per host and segment, addresses, links up."""
        self._add_namespace(self.bridge_ns)
        if self.ipv6:  # a switch: no addresses, so no router solicitations or MLD of its own
            self._sysctls(self.bridge_ns, {"net.ipv6.conf.all.disable_ipv6": 1,
                                           "net.ipv6.conf.default.disable_ipv6": 1})
        # IPv4 only: no IGMP snooping either, so a bridge joins no all-snoopers group
        # (224.0.0.106) and sends no IGMP report of its own (it floods multicast as before)
        snooping = [] if self.ipv6 else ["mcast_snooping", "0"]
        for bridge in dict.fromkeys(["br0"] + [BRIDGES[m] for m in self.server_modes]):
            _ip("-n", self.bridge_ns, "link", "add", bridge, "type", "bridge", *snooping)
            _ip("-n", self.bridge_ns, "link", "set", bridge, "up")
        self._add_namespace(self.client_ns)
        self._add_link(self.client_ns, "br0", "client", IFACE, self._addresses("client"))
        self._add_namespace(self.director_ns)
        self._add_link(self.director_ns, "br0", "director", IFACE, self._addresses("director"))
        if self.ha:
            self._add_namespace(self.director2_ns)
            self._add_link(self.director2_ns, "br0", "director2", IFACE, [self.director2_ip])
        if "nat" in self.server_modes:
            self._add_link(self.director_ns, BRIDGES["nat"], "dir-in", INSIDE_IFACE,
                           self._addresses("inside"))
        if "tun" in self.server_modes:
            self._add_router()
        for index, (ns, name, mode) in enumerate(zip(self.server_ns, self.server_names,
                                                     self.server_modes, strict=True)):
            self._add_namespace(ns)
            self._add_link(ns, BRIDGES[mode], name, IFACE, self.server_addresses(index))
            if mode == "tun":
                for family in self.families:
                    _ip("-n", ns, f"-{family}", "route", "add", "default", "via",
                        self.plans[family].router_inside)

    def _add_namespace(self, ns: str) -> None:
        """A namespace; in an IPv6 lab with DAD off, so that no address waits as tentative
        (the addresses are added with nodad too; this covers the link-local ones)."""
        super()._add_namespace(ns)
        if self.ipv6 and ns != self.bridge_ns:
            self._sysctls(ns, {"net.ipv6.conf.all.accept_dad": 0,
                               "net.ipv6.conf.default.accept_dad": 0})
        elif not self.ipv6:  # IPv4 only: no IPv6, so no DAD, MLD or router solicitations
            self._sysctls(ns, {"net.ipv6.conf.all.disable_ipv6": 1,
                               "net.ipv6.conf.default.disable_ipv6": 1})

    def _sysctls(self, ns: str, values: dict[str, int]) -> None:
        self.run_in(ns, ["sysctl", "-qw", *(f"{k}={v}" for k, v in values.items())],
                    check=True, capture_output=True)

    def _add_router(self) -> None:
        self._add_namespace(self.router_ns)
        self._add_link(self.router_ns, "br0", "router", IFACE, self._addresses("router_outside"))
        self._add_link(self.router_ns, BRIDGES["tun"], "router-in", INSIDE_IFACE,
                       self._addresses("router_inside"))
        values: dict[str, int] = {}
        if 4 in self.families:
            values.update({"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0,
                           "net.ipv4.conf.eth0.rp_filter": 0, "net.ipv4.conf.eth1.rp_filter": 0})
        if 6 in self.families:  # IPv6 has no rp_filter sysctl: nothing else to turn off
            values["net.ipv6.conf.all.forwarding"] = 1
        self._sysctls(self.router_ns, values)
        for family in self.families:
            _ip("-n", self.director_ns, f"-{family}", "route", "add",
                segment_prefix(family, "tun"), "via", self.plans[family].router_outside)

    def _add_link(self, ns: str, bridge: str, bridge_port: str, ifname: str,
                  addresses: str | list[str]) -> None:
        """A veth from ``ns`` into ``bridge`` with ``addresses`` (one, or one per family)."""
        _ip("-n", self.bridge_ns, "link", "add", bridge_port, "type", "veth",
            "peer", "name", ifname, "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", bridge_port, "master", bridge, "up")
        for address in [addresses] if isinstance(addresses, str) else addresses:
            if ":" in address:
                _ip("-n", ns, "addr", "add", f"{address}/{PREFIX_LENS[6]}", "dev", ifname,
                    "nodad")
            else:
                _ip("-n", ns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", ifname)
        _ip("-n", ns, "link", "set", ifname, "up")

    def configure_real_servers(self) -> list[str]:
        """Each real server's own steps for its mode; returns what each printed."""
        steps = {"dr": self._configure_dr, "nat": self._configure_nat, "tun": self._configure_tun}
        return [steps[mode](ns) for ns, mode in zip(self.server_ns, self.server_modes,
                                                    strict=True)]

    def _configure_dr(self, ns: str) -> str:
        """`pylvs realserver --mode dr`, as a user would run it (or the steps of a mistake)."""
        if self.mistake is not None:
            return self._run_steps(ns, mistakes.dr_steps(self.mistake.name, self.vip, IFACE))
        return "".join(self.run_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--mode",
                                        "dr", "--vip", vip, "--interface", IFACE],
                                   capture_output=True, text=True, check=True).stdout
                       for vip in self.vips)

    def _configure_nat(self, ns: str) -> str:
        """NAT's one real-server step: the way back to the client passes the director."""
        if self.mistake is not None:
            return self._run_steps(ns, mistakes.nat_steps(self.mistake.name))
        said = ""
        for family in self.families:
            argv = ["ip", *(["-6"] if family == 6 else []), "route", "replace", "default",
                    "via", self.plans[family].inside]
            self.run_in(ns, argv, capture_output=True, text=True, check=True)
            said += " ".join(argv) + "\n"
        return said

    def _configure_tun(self, ns: str) -> str:
        """`pylvs realserver --mode tun`, left running until close(): one decapsulator per
        VIP (the dual-stack lab's real servers run two)."""
        said = ""
        tunnel = ["--tun-type", self.tun_type] if self.tun_type != "ipip" else []
        if TUN_PORTS[self.tun_type]:
            tunnel += ["--tun-port", str(TUN_PORTS[self.tun_type])]
        for vip in self.vips:
            proc = self.popen_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--mode",
                                      "tun", "--vip", vip, *tunnel], stdout=subprocess.PIPE,
                                 text=True)
            self.processes.append(proc)
            said += _wait_for_line(proc, "running;", f"the decapsulator in {ns}")
        if self.mistake is not None:
            said += self._run_steps(ns, mistakes.tun_steps(self.mistake.name))
        return said

    def _run_steps(self, ns: str, steps: list[mistakes.Step]) -> str:
        """Run a mistake's steps in ``ns``; returns them as typed, one a line."""
        for argv, _ in steps:
            if argv is not None:
                self.run_in(ns, argv, capture_output=True, text=True, check=True)
        return "".join(f"{mistakes.step_line(step)}\n" for step in steps)

    def ready_for_xdp(self) -> None:
        """What the director's XDP fast path needs of a lab of veths, which a NIC has:
        NAPI on the far end of the director's links (an XDP program that passes everything
        there, on the bridge), so that frames redirected into a veth are taken; and senders
        that put full TCP/UDP checksums in their frames (``ethtool -K eth0 tx off``): a
        veth leaves them to "hardware", and XDP, which sees only the frame, cannot complete
        them as the Python path does."""
        ports = ["director"] + (["dir-in"] if "nat" in self.server_modes else [])
        self.run_in(self.bridge_ns, [sys.executable, "-c", _ATTACH_PASS, *ports], check=True,
                    capture_output=True)
        for ns in (self.client_ns, *self.server_ns):
            self.run_in(ns, ["ethtool", "-K", IFACE, "tx", "off"], check=True,
                        capture_output=True)

    def start_http_servers(self, port: int = PORT) -> None:
        """Each real server's HTTP server on ``port`` (the dual-stack lab's on CROSS_PORT
        too), bound to every IPv4 address, or in an IPv6 lab to '::' (both families)."""
        bind = "::" if self.ipv6 else "0.0.0.0"
        ports = [port, CROSS_PORT] if self.mode == "dualstack" else [port]
        for ns, name in zip(self.server_ns, self.server_names, strict=True):
            for number in ports:
                proc = self.popen_in(ns, [sys.executable, "-m", "pylvs.lab.httpserver", "--name",
                                          name, "--port", str(number), "--bind", bind],
                                     stdout=subprocess.PIPE, text=True)
                self.processes.append(proc)
                _wait_for_line(proc, "serving", name)

    def url(self, path: str = "/") -> str:
        return self.targets()[0].url(path)

    def curl(self, path: str = "/", target: Target | None = None) -> str:
        url = (target or self.targets()[0]).url(path)
        return self.run_in(self.client_ns, curl_argv(url), capture_output=True, text=True,
                           check=True).stdout


def curl_argv(url: str, max_time: int = 10) -> list[str]:
    """A plain curl that never goes through a proxy from the environment; for an IPv6
    literal (http://[VIP]:80/), -6 and -g (globbing off, so the brackets are the address's)."""
    family = ["-6", "-g"] if url.split("//", 1)[-1].startswith("[") else []
    return ["curl", "-sS", *family, "--noproxy", "*", "--max-time", str(max_time), url]


def lab_config(lab: Lab, scheduler: str, weights: list[int] | None = None,
               server_port: int = PORT, persistence: int = 0, workers: int = 1,
               service_keys: tuple[str, ...] = (), priority: int = 0,
               control_socket: str = "", offload: str = "auto", metrics: str = "") -> str:
    """The TOML a user would write for this lab; real servers in ipvsadm -a order;
    ``service_keys``: more lines for the virtual service (a health check, say); ``priority``:
    a VRRP instance (IPv6: VRRPv3, no password) with the connection sync daemon, as each
    director of an --ha lab has;
    ``metrics``: [director] metrics, where the Prometheus exposition is served. The
    dual-stack lab's four services each get the same keys (its cross-family ones are served
    on CROSS_PORT, which TUN cannot map)."""
    weights = weights or [1] * len(lab.server_ips)
    lines = ["[director]", f'interface = "{lab.director_if}"',
             f'inside_interface = "{lab.director_inside_if}"',
             f'control_socket = "{control_socket or lab.control_socket}"']
    if priority:
        lines.append("sync_daemon = true")
    if workers > 1:
        lines.append(f"workers = {workers}")
    lines.append(f'offload = "{offload}"')
    if metrics:
        lines.append(f'metrics = "{metrics}"')
    for target in lab.targets():
        port = server_port if target.port == PORT else target.port
        lines += ["", "[[virtual_server]]",
                  f'address = "{target.endpoint}"', 'protocol = "tcp"',
                  f'scheduler = "{scheduler}"', f'forward = "{lab.server_modes[0]}"']
        if persistence:
            lines.append(f"persistence_timeout = {persistence}")
        lines += service_keys
        for address, weight, mode in zip(target.servers, weights, lab.server_modes,
                                         strict=True):
            lines += ["", "  [[virtual_server.real_server]]",
                      f'  address = "{endpoint(address, port)}"', f"  weight = {weight}"]
            if mode != lab.server_modes[0]:
                lines.append(f'  forward = "{mode}"')
            if mode == "tun" and lab.tun_type != "ipip":
                lines.append(f'  tun_type = "{lab.tun_type}"')
                if TUN_PORTS[lab.tun_type]:
                    lines.append(f"  tun_port = {TUN_PORTS[lab.tun_type]}")
    if priority:
        lines += ["", "[vrrp]", "virtual_router_id = 51", f"priority = {priority}",
                  "advert_int = 1"]
        if lab.family == 4:
            lines.append('authentication = { auth_type = "PASS", auth_pass = "lab" }')
    return "\n".join(lines) + "\n"


_ATTACH_PASS = """
import sys
from pylvs.core.ebpf import XDP_PASS, Assembler
from pylvs.shell import xdp
program = xdp.Program(Assembler().ret(XDP_PASS).assemble(), "pylvs_pass")
for name in sys.argv[1:]:
    xdp.attach(name, program)
"""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _wait_for_line(proc: subprocess.Popen[Any], start: str, what: str) -> str:
    """Read the process's output up to a line starting with ``start``; returns what was read.

    Reads the descriptor itself: a buffered reader may hold the line while select() waits.
    """
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
        lines = seen.decode(errors="replace").splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith(start) and line.endswith("\n"):
                return "".join(lines[:i + 1])
    raise RuntimeError(f"{what} did not start (exit code {proc.poll()}):\n"
                       f"{seen.decode(errors='replace')}")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 5 s; its output pipe closed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()

"""A lab of network namespaces: a client, a director and N real servers behind bridges.

DR, the seed's topology: one L2 segment 192.168.1.0/24, client .5, director .2, real server i at
.10+i, the VIP .100. NAT: the client and the director's eth0 on that outside segment; the
director's eth1 (10.0.0.1) and real server i (10.0.0.10+i, default route via 10.0.0.1) on an
inside one. TUN: the real servers (172.16.0.10+i) in a subnet of their own behind a router
namespace (192.168.1.1 / 172.16.0.1, rp_filter off) that the director tunnels through and the
real servers answer the client through, never through the director.

``mistake`` (`pylvs lab MODE --mistake NAME`, pylvs/lab/mistakes.py): the real servers do their
steps with that mistake.

The bridges live in a namespace of their own, so nothing is created in the machine's own
namespace; every name carries a prefix unique to the run, and ``close`` removes every namespace
(their veths go with them) and every process the lab started, also when setup fails half way.
"""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import time
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
IFACE, INSIDE_IFACE = "eth0", "eth1"
MODES = ("dr", "nat", "tun", "mixed")
SUBNETS = {"dr": SUBNET, "nat": INSIDE_SUBNET, "tun": TUN_SUBNET}
BRIDGES = {"dr": "br0", "nat": "br1", "tun": "br2"}
SERVER_START_TIMEOUT = 10.0


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
    and so on round, one virtual service serving all three ways."""

    def __init__(self, servers: int = 3, mode: str = "dr", ha: bool = False,
                 mistake: str | None = None) -> None:
        if not 1 <= servers <= 50:
            raise ValueError(f"servers must be 1..50, not {servers}")
        if mode not in MODES:
            raise ValueError(f"lab mode must be one of {', '.join(MODES)}, not {mode!r}")
        if ha and mode != "dr":
            raise ValueError("a lab with two directors (--ha) is a DR lab")
        self.mistake = None if mistake is None else mistakes.validate(mode, mistake)
        self.mode, self.ha = mode, ha
        self.prefix = f"pylvs-{secrets.token_hex(3)}"
        self.client_ns = f"{self.prefix}-client"
        self.director_ns = f"{self.prefix}-director"
        self.bridge_ns = f"{self.prefix}-bridge"
        self.router_ns = f"{self.prefix}-router"
        numbers = range(1, servers + 1)
        self.server_modes = [MODES[(i - 1) % 3] if mode == "mixed" else mode for i in numbers]
        self.server_ns = [f"{self.prefix}-rs{i}" for i in numbers]
        self.server_names = [f"rs{i}" for i in numbers]
        self.server_ips = [f"{SUBNETS[m]}.{10 + i}" for i, m in zip(numbers, self.server_modes,
                                                                   strict=True)]
        self.client_ip, self.director_ip, self.vip = CLIENT_IP, DIRECTOR_IP, VIP
        self.director_if = IFACE
        has_nat = "nat" in self.server_modes
        self.director_inside_if = INSIDE_IFACE if has_nat else IFACE
        self.director_inside_ip = INSIDE_IP if has_nat else DIRECTOR_IP
        self.control_socket = f"/run/{self.prefix}.sock"
        self.director2_ns = f"{self.prefix}-director2"
        self.director2_ip = DIRECTOR2_IP
        self.control_socket2 = f"/run/{self.prefix}-2.sock"
        super().__init__()

    def where(self) -> str:
        """Where to look inside while it runs: what this run names, and that it goes after."""
        return (f"namespaces {self.prefix}-* (e.g. ip netns exec {self.client_ns} ...), "
                f"removed when the lab ends")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        """Namespaces, the bridges and one veth per host and segment, addresses, links up."""
        self._add_namespace(self.bridge_ns)
        for bridge in dict.fromkeys(["br0"] + [BRIDGES[m] for m in self.server_modes]):
            _ip("-n", self.bridge_ns, "link", "add", bridge, "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", bridge, "up")
        self._add_namespace(self.client_ns)
        self._add_link(self.client_ns, "br0", "client", IFACE, self.client_ip)
        self._add_namespace(self.director_ns)
        self._add_link(self.director_ns, "br0", "director", IFACE, self.director_ip)
        if self.ha:
            self._add_namespace(self.director2_ns)
            self._add_link(self.director2_ns, "br0", "director2", IFACE, self.director2_ip)
        if "nat" in self.server_modes:
            self._add_link(self.director_ns, BRIDGES["nat"], "dir-in", INSIDE_IFACE, INSIDE_IP)
        if "tun" in self.server_modes:
            self._add_router()
        for ns, name, address, mode in zip(self.server_ns, self.server_names, self.server_ips,
                                           self.server_modes, strict=True):
            self._add_namespace(ns)
            self._add_link(ns, BRIDGES[mode], name, IFACE, address)
            if mode == "tun":
                _ip("-n", ns, "route", "add", "default", "via", ROUTER_INSIDE)

    def _add_router(self) -> None:
        self._add_namespace(self.router_ns)
        self._add_link(self.router_ns, "br0", "router", IFACE, ROUTER_OUTSIDE)
        self._add_link(self.router_ns, BRIDGES["tun"], "router-in", INSIDE_IFACE, ROUTER_INSIDE)
        for key in ("ipv4/ip_forward", "ipv4/conf/all/rp_filter", "ipv4/conf/eth0/rp_filter",
                    "ipv4/conf/eth1/rp_filter"):
            value = "1" if key.endswith("ip_forward") else "0"
            self.run_in(self.router_ns, ["sysctl", "-qw", f"net.{key.replace('/', '.')}={value}"],
                        check=True)
        _ip("-n", self.director_ns, "route", "add", f"{TUN_SUBNET}.0/{PREFIX_LEN}",
            "via", ROUTER_OUTSIDE)

    def _add_link(self, ns: str, bridge: str, bridge_port: str, ifname: str,
                  address: str) -> None:
        _ip("-n", self.bridge_ns, "link", "add", bridge_port, "type", "veth",
            "peer", "name", ifname, "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", bridge_port, "master", bridge, "up")
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
        return self.run_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--mode", "dr",
                                "--vip", self.vip, "--interface", IFACE],
                           capture_output=True, text=True, check=True).stdout

    def _configure_nat(self, ns: str) -> str:
        """NAT's one real-server step: the way back to the client passes the director."""
        if self.mistake is not None:
            return self._run_steps(ns, mistakes.nat_steps(self.mistake.name))
        argv = ["ip", "route", "replace", "default", "via", self.director_inside_ip]
        self.run_in(ns, argv, capture_output=True, text=True, check=True)
        return " ".join(argv) + "\n"

    def _configure_tun(self, ns: str) -> str:
        """`pylvs realserver --mode tun`, left running until close()."""
        proc = self.popen_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--mode", "tun",
                                  "--vip", self.vip], stdout=subprocess.PIPE, text=True)
        self.processes.append(proc)
        said = _wait_for_line(proc, "running;", f"the decapsulator in {ns}")
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
        for ns, name in zip(self.server_ns, self.server_names, strict=True):
            proc = self.popen_in(ns, [sys.executable, "-m", "pylvs.lab.httpserver", "--name", name,
                                      "--port", str(port)], stdout=subprocess.PIPE, text=True)
            self.processes.append(proc)
            _wait_for_line(proc, "serving", name)

    def curl(self, path: str = "/") -> str:
        return self.run_in(self.client_ns, curl_argv(f"http://{self.vip}{path}"),
                           capture_output=True, text=True, check=True).stdout



def curl_argv(url: str, max_time: int = 10) -> list[str]:
    """A plain curl that never goes through a proxy from the environment."""
    return ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time), url]


def lab_config(lab: Lab, scheduler: str, weights: list[int] | None = None,
               server_port: int = PORT, persistence: int = 0, workers: int = 1,
               service_keys: tuple[str, ...] = (), priority: int = 0,
               control_socket: str = "", offload: str = "none", metrics: str = "") -> str:
    """The TOML a user would write for this lab; real servers in ipvsadm -a order;
    ``service_keys``: more lines for the virtual service (a health check, say); ``priority``:
    a VRRP instance with the connection sync daemon, as each director of an --ha lab has;
    ``metrics``: [director] metrics, where the Prometheus exposition is served."""
    weights = weights or [1] * len(lab.server_ips)
    lines = ["[director]", f'interface = "{lab.director_if}"',
             f'inside_interface = "{lab.director_inside_if}"',
             f'control_socket = "{control_socket or lab.control_socket}"']
    if priority:
        lines.append("sync_daemon = true")
    if workers > 1:
        lines.append(f"workers = {workers}")
    if offload != "none":
        lines.append(f'offload = "{offload}"')
    if metrics:
        lines.append(f'metrics = "{metrics}"')
    lines += ["", "[[virtual_server]]",
             f'address = "{lab.vip}:{PORT}"', 'protocol = "tcp"', f'scheduler = "{scheduler}"',
             f'forward = "{lab.server_modes[0]}"']
    if persistence:
        lines.append(f"persistence_timeout = {persistence}")
    lines += service_keys
    for address, weight, mode in zip(lab.server_ips, weights, lab.server_modes, strict=True):
        lines += ["", "  [[virtual_server.real_server]]",
                  f'  address = "{address}:{server_port}"', f"  weight = {weight}"]
        if mode != lab.server_modes[0]:
            lines.append(f'  forward = "{mode}"')
    if priority:
        lines += ["", "[vrrp]", "virtual_router_id = 51", f"priority = {priority}",
                  "advert_int = 1", 'authentication = { auth_type = "PASS", auth_pass = "lab" }']
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

"""tcpdump on every wire of a lab, and what each host is (addresses, MACs, role).

Each wire is one host's veth into a bridge; it is captured on the bridge's end of it, in the
bridge namespace. There the capture sees both directions and sees what a host really put on
the wire, whatever its transmit path (qdisc bypass or XDP on the director would hide frames
from a tap on the director's own interface). tcpdump runs with ``--immediate-mode``, which a
capture in a namespace needs on this kernel, and writes a plain pcap (Ethernet link type,
nanosecond timestamps) per wire.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from pylvs.lab.topology import BRIDGES, TUN_PORTS, Lab, segment_prefix, stop_process

LISTEN_TIMEOUT = 10.0
ROLE_OF_BRIDGE = {"br0": "the client's segment", "br1": "the NAT inside segment",
                  "br2": "the TUN real servers' subnet"}
SEGMENT_OF_BRIDGE = {bridge: mode for mode, bridge in BRIDGES.items()}


def bridge_text(bridge: str, families: tuple[int, ...] = (4,)) -> str:
    """What a bridge is: its prefixes in the lab's families, and its role."""
    prefixes = " and ".join(segment_prefix(f, SEGMENT_OF_BRIDGE[bridge]) for f in families)
    return f"{prefixes}, {ROLE_OF_BRIDGE[bridge]}"


@dataclass(frozen=True)
class Wire:
    """One capture point: ``host``'s ``interface``, whose other end is ``port`` on ``bridge``."""

    file: str
    host: str
    interface: str
    port: str
    bridge: str
    link: str


def wires(lab: Lab) -> list[Wire]:
    """Every wire of the lab, client first, then the director, the router, the real servers."""
    points = [("client", "eth0", "client", "br0"), ("director", "eth0", "director", "br0")]
    if lab.ha:
        points.append(("director2", "eth0", "director2", "br0"))
    if "nat" in lab.server_modes:
        points.append(("director", "eth1", "dir-in", BRIDGES["nat"]))
    if "tun" in lab.server_modes:
        points += [("router", "eth0", "router", "br0"), ("router", "eth1", "router-in", "br2")]
    points += [(name, "eth0", name, BRIDGES[mode])
               for name, mode in zip(lab.server_names, lab.server_modes, strict=True)]
    return [Wire(f"{host}-{ifname}.pcap", host, ifname, port, bridge,
                 f"{host} {ifname} <-> {bridge} ({bridge_text(bridge, lab.families)})")
            for host, ifname, port, bridge in points]


def host_namespaces(lab: Lab) -> dict[str, tuple[str, str]]:
    """Each host's name → (namespace, role)."""
    hosts = {"client": (lab.client_ns, "client"), "director": (lab.director_ns, "director")}
    if lab.ha:
        hosts["director2"] = (lab.director2_ns, "director")
    if "tun" in lab.server_modes:
        hosts["router"] = (lab.router_ns, "router")
    for name, ns in zip(lab.server_names, lab.server_ns, strict=True):
        hosts[name] = (ns, "real_server")
    return hosts


def describe_hosts(lab: Lab) -> dict[str, dict[str, object]]:
    """The manifest's hosts: addresses of the lab's families (loopback's VIP included; IPv6's
    link-local ones too, the source of most NDP), MAC per interface, role."""
    families = {"inet"} if lab.families == (4,) else \
        {"inet6"} if lab.families == (6,) else {"inet", "inet6"}
    hosts: dict[str, dict[str, object]] = {}
    for name, (ns, role) in host_namespaces(lab).items():
        out = lab.run_in(ns, ["ip", "-j", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
        ips, macs = [], {}
        for link in json.loads(out):
            for addr in link.get("addr_info", []):
                if addr.get("family") in families and addr["local"] not in ("127.0.0.1",
                                                                            "::1"):
                    ips.append(f"{addr['local']}/{addr['prefixlen']}")
            if link.get("link_type") == "ether":
                macs[link["ifname"]] = link["address"]
        hosts[name] = {"role": role, "ip": ips, "mac": list(macs.values()), "interfaces": macs}
    return hosts


class Captures:
    """tcpdump on each wire of ``lab``, writing into ``directory``; ``stop`` ends them all."""

    def __init__(self, lab: Lab, directory: str) -> None:
        self.lab, self.directory = lab, directory
        self.wires = wires(lab)
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for wire in self.wires:
                self.procs.append(self._start(wire))
        except BaseException:
            self.stop()
            raise

    def _start(self, wire: Wire) -> subprocess.Popen[bytes]:
        path = os.path.join(self.directory, wire.file)
        proc = self.lab.popen_in(self.lab.bridge_ns, [
            "tcpdump", "-i", wire.port, "--immediate-mode", "-U", "-n", "-s", "0", "-Z", "root",
            "--time-stamp-precision", "nano", "-w", path], stderr=subprocess.PIPE)
        _wait_listening(proc, wire.port)
        return proc

    def stop(self, settle: float = 0.3) -> None:
        """Let the last frames reach the files, then end every tcpdump."""
        if self.procs:
            time.sleep(settle)
        for proc in self.procs:
            stop_process(proc)
            if proc.stderr is not None:
                proc.stderr.close()
        self.procs.clear()

    def manifest(self) -> list[dict[str, str]]:
        return [{k: v for k, v in asdict(w).items()} for w in self.wires]


def _wait_listening(proc: subprocess.Popen[bytes], port: str) -> None:
    """tcpdump says "listening on PORT" once its socket is open: frames from then on count."""
    assert proc.stderr is not None
    deadline = time.monotonic() + LISTEN_TIMEOUT
    seen = b""
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([proc.stderr], [], [], remaining)[0]:
            break
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if b"listening on" in seen:
            return
    stop_process(proc)
    raise RuntimeError(f"tcpdump on {port} did not start: {seen.decode(errors='replace')}")


def write_trace(lab: Lab, captures: Captures, hosts: dict[str, dict[str, object]]) -> str:
    """Read the pcaps, write trace.json, trace.txt, trace.html and trace.svg beside them (and
    trace.png where headless Chromium is installed); returns trace.txt, and a note when there
    is no PNG. Called while the director runs: its -Ln names the scheduler and the forwarding
    method the trace page's layers speak of."""
    from pylvs.lab import trace, trace_page
    frames = {w.file: trace.read_pcap(os.path.join(captures.directory, w.file))
              for w in captures.wires}
    target = lab.traced_target()
    gue_ports = (TUN_PORTS["gue"],) if lab.tun_type == "gue" else ()  # UDP there is GUE
    built = trace.build(lab.mode, hosts, captures.manifest(), frames, target.vip, target.port,
                        family=6 if lab.families == (6,) else 4, gue_ports=gue_ports)
    service = director_service(lab, target.endpoint)
    if service is not None:
        built["service"] = service
    text = trace.render(built)
    svg = trace_page.sequence_svg(built)
    for name, content in (("trace.json", json.dumps(built, indent=1) + "\n"),
                          ("trace.txt", text), ("trace.html", trace_page.page(built)),
                          ("trace.svg", svg)):
        with open(os.path.join(captures.directory, name), "w") as fh:
            fh.write(content)
    missing = png(os.path.join(captures.directory, "trace.svg"), svg)
    return text + (f"  ({missing})\n" if missing else "")


def director_service(lab: Lab, endpoint: str) -> dict[str, object] | None:
    """The traced service as the running director lists it (-Ln): its scheduler and each real
    server's forwarding method; None if the director does not answer."""
    try:
        listing = subprocess.run([sys.executable, "-m", "pylvs", "adm", "--socket",
                                  lab.control_socket, "-Ln"], capture_output=True, text=True,
                                 timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_service(listing, endpoint)


def parse_service(listing: str, endpoint: str) -> dict[str, object] | None:
    """``{"scheduler": "rr", "real_servers": {"192.168.1.13:80": "Route", ...}}`` of the
    service ``endpoint`` in an ipvsadm -Ln listing."""
    service: dict[str, object] | None = None
    servers: dict[str, str] = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("TCP", "UDP", "SCTP", "FWM"):
            if service is not None:
                break
            if parts[1] == endpoint:
                service = {"scheduler": parts[2], "real_servers": servers}
        elif service is not None and len(parts) >= 3 and parts[0] == "->":
            servers[parts[1]] = parts[2]
    return service


def png(svg_path: str, svg: str) -> str:
    """The diagram as a PNG beside the SVG (twice its size, for slides), drawn by headless
    Chromium if it is here: "", or why there is none."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    match = re.search(r'width="(\d+)" height="(\d+)"', svg)
    if browser is None or match is None:
        return ("no trace.png: headless Chromium is not installed (scripts/install.sh --test "
                "installs it)")
    out = svg_path[:-4] + ".png"
    with tempfile.TemporaryDirectory(prefix="pylvs-chromium-") as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                               "--hide-scrollbars", f"--user-data-dir={profile}",
                               "--force-device-scale-factor=2",
                               f"--window-size={match.group(1)},{match.group(2)}",
                               f"--screenshot={out}", f"file://{os.path.abspath(svg_path)}"],
                              capture_output=True, timeout=60, check=False)
    if not os.path.exists(out):
        return f"no trace.png: chromium exited {done.returncode} without drawing it"
    return ""

"""Data-plane speed: the kernel, pylvs (DR, NAT, TUN) and a scapy forwarder on one topology.

    python3 -m bench.dataplane [--seconds 5] [--json PATH]

Namespaces made for the run (removed after, also on Ctrl-C): a generator, the director and a
sink, on two veth links. trafgen (netsniff-ng, C, zero-copy) sends 60-byte frames at full speed
from CPU 0; the forwarder under test runs on CPU 1. The rate is what reaches the sink's link
(its kernel drops the frames at ingress so it answers nothing). Cases, all in the same run:

- kernel: the director's own IP forwarding (ip_forward=1), the reference;
- pylvs dr / nat / tun: established UDP flows (1,024 clients) through `pylvs run`; TUN also by
  GUE (checksum off and on) and GRE;
- the same over IPv6 (kernel IPv6 forwarding, pylvs dr / nat66 / ip6ip6 and their replies),
  rows named "ipv6";
- pylvs nat replies: the real server's answers to those flows, back through the director;
- 2 workers (`[director] workers = 2`): pinned to CPU 1 as one worker is, and on every CPU;
- pylvs syn: TCP SYNs from distinct clients, each a new connection (scheduling + insert);
- null: bench/null_forwarder.py, pylvs's rings and DR rewrite with no decision (the ceiling
  of the Python data plane, in the same run);
- scapy: bench/scapy_forwarder.py, L2listen + L2socket;
- xdp: the same pylvs cases with `offload = "xdp"` (after the rest: the generator's and the
  sink's veths then get an XDP program that passes everything, the NAPI a redirect into a veth
  needs, and the kernel is measured again with them); with the Python process's CPU per frame.

Also the memory a tracked connection costs: RSS growth of a Director fed 1,000,000 SYNs.
Prints a table, writes JSON.

    python3 -m bench.dataplane --default [--seconds 5]

measures only what the default (offload = "auto") does, against "none" and "xdp": on the
bare veths (a lab's: no program on the peers, so auto keeps to Python, and xdp's frames are
dropped until the director sees it and goes back to Python), then with the pass program on the
peers (auto takes the fast path), DR and NAT; the kernel on each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Any

GEN_IP, DIR_OUT, DIR_IN, SINK_IP = "198.51.100.2", "198.51.100.1", "203.0.113.1", "203.0.113.2"
VIP = "198.51.100.100"
GEN6, DIR_OUT6, DIR_IN6, SINK6 = "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:2::2"
VIP6 = "2001:db8:1::100"
PYTHON = sys.executable


class Topology:
    def __init__(self) -> None:
        prefix = f"pylvs-bench-{secrets.token_hex(2)}"
        self.gen, self.dir, self.sink = (f"{prefix}-gen", f"{prefix}-dir", f"{prefix}-sink")
        self.made: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = tempfile.mkdtemp(prefix="pylvs-bench-")

    def __enter__(self) -> Topology:
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.gen, self.dir, self.sink):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.gen, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", self.dir)
        sh("ip", "-n", self.sink, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
           "netns", self.dir)
        for ns, dev, addr, addr6 in ((self.gen, "eth0", GEN_IP, GEN6),
                                     (self.dir, "eth0", DIR_OUT, DIR_OUT6),
                                     (self.dir, "eth1", DIR_IN, DIR_IN6),
                                     (self.sink, "eth0", SINK_IP, SINK6)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.gen, "route", "add", "default", "via", DIR_OUT)
        sh("ip", "-n", self.sink, "route", "add", "default", "via", DIR_IN)
        sh("ip", "-n", self.gen, "-6", "route", "add", "default", "via", DIR_OUT6)
        sh("ip", "-n", self.sink, "-6", "route", "add", "default", "via", DIR_IN6)
        for ns in (self.sink, self.gen):  # both ends count what arrives and answer nothing
            self.run_in(ns, ["nft", "-f", "-"], input=(
                'table netdev sink {\n  chain sinkhole {\n    type filter hook ingress device '
                '"eth0" priority 0; policy drop;\n  }\n}\n'))
        self.dir_mac = mac(self.dir, "eth0")
        self.dir_in_mac = mac(self.dir, "eth1")
        self.sink_mac = mac(self.sink, "eth0")
        self.gen_mac = mac(self.gen, "eth0")
        for sink in (SINK_IP, SINK6):
            self.run_in(self.dir, ["ip", "neigh", "replace", sink, "lladdr", self.sink_mac,
                                   "dev", "eth1", "nud", "permanent"])

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            stop_group(proc)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_in(self, ns: str, argv: list[str], check: bool = True, **kw: Any) -> str:
        result = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                                text=True, **kw)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def popen_in(self, ns: str, argv: list[str], cpu: int | str, **kw: Any
                 ) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "taskset", "-c", str(cpu), *argv],
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def rx_packets(self, ns: str) -> int:
        return int(self.run_in(ns, ["cat", "/sys/class/net/eth0/statistics/rx_packets"]))


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a process and everything it started: trafgen leaves its sending child running when
    only the parent gets SIGTERM (seen: it went on sending into the next case)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            break
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def sh(*argv: str) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def mac(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/address"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


def trafgen_packet(topo: Topology, dst: str, syn: bool) -> str:
    """60-byte frames: UDP from 1,024 client ports, or TCP SYNs from ever-new clients; to an
    IPv6 destination, 64-byte frames of UDP."""
    eth = f"eth(da={topo.dir_mac}, sa={topo.gen_mac})"
    if ":" in dst:
        return (f"{{ {eth}, ipv6(saddr={GEN6}, daddr={dst}, hoplimit=64), "
                f"udp(sport=dinc(1024, 2047), dport=9), fill(0x41, 2) }}")
    if syn:
        return (f"{{ {eth}, ipv4(saddr=dinc(), daddr={dst}, ttl=64, df), "
                f"tcp(sport=dinc(1024, 65000), dport=80, syn), fill(0, 6) }}")
    return (f"{{ {eth}, ipv4(saddr={GEN_IP}, daddr={dst}, ttl=64), "
            f"udp(sport=dinc(1024, 2047), dport=9), fill(0x41, 18) }}")


def reply_packet(topo: Topology, ipv6: bool = False) -> str:
    """60-byte frames: the NAT real server's (the sink's) replies to the 1,024 client ports."""
    if ipv6:
        return (f"{{ eth(da={topo.dir_in_mac}, sa={topo.sink_mac}), ipv6(saddr={SINK6}, "
                f"daddr={GEN6}, hoplimit=64), udp(sport=9, dport=dinc(1024, 2047)), "
                f"fill(0x42, 2) }}")
    return (f"{{ eth(da={topo.dir_in_mac}, sa={topo.sink_mac}), ipv4(saddr={SINK_IP}, "
            f"daddr={GEN_IP}, ttl=64), udp(sport=9, dport=dinc(1024, 2047)), fill(0x42, 18) }}")


TUNNELS = {"gue": '  tun_type = "gue"\n  tun_port = 6080\n',
           "gue csum": '  tun_type = "gue"\n  tun_port = 6080\n  tun_flags = "csum"\n',
           "gre": '  tun_type = "gre"\n'}
"""The TUN rows' other encapsulations (ipvsadm --tun-type): the real server's config keys."""

CPU: dict[str, float] = {}
"""Per case: the forwarding process's CPU seconds per million frames that arrived."""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(topo: Topology, dst: str, seconds: float, syn: bool = False,
            reply: bool = False, pid: int = 0, name: str = "") -> float:
    """Frames per second that reached the other end while trafgen sent at full speed: from the
    generator to the sink, or (``reply``) from the sink back to the generator; with ``pid``,
    that process's CPU per frame goes into CPU[name]."""
    sender, counter = (topo.sink, topo.gen) if reply else (topo.gen, topo.sink)
    packet = reply_packet(topo, ":" in dst) if reply else trafgen_packet(topo, dst, syn)
    gen = topo.popen_in(sender, ["trafgen", "-o", "eth0", "-P", "1", "-Q", "-C", packet], cpu=0,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    start, t0 = topo.rx_packets(counter), time.monotonic()
    cpu0 = cpu_seconds(pid) if pid else 0.0
    time.sleep(seconds)
    end, t1 = topo.rx_packets(counter), time.monotonic()
    if pid:
        CPU[name] = (cpu_seconds(pid) - cpu0) / max(1, end - start) * 1e6
    stop_group(gen)
    topo.procs.remove(gen)
    return (end - start) / (t1 - t0)


def kernel(topo: Topology, seconds: float, ipv6: bool = False) -> float:
    knob = "net.ipv6.conf.all.forwarding" if ipv6 else "net.ipv4.ip_forward"
    topo.run_in(topo.dir, ["sysctl", "-qw", f"{knob}=1"])
    try:
        return measure(topo, SINK6 if ipv6 else SINK_IP, seconds)
    finally:
        topo.run_in(topo.dir, ["sysctl", "-qw", f"{knob}=0"])


def pylvs(topo: Topology, seconds: float, method: str, syn: bool = False, workers: int = 1,
          cpus: str = "1", reply: bool = False, offload: str = "none", name: str = "",
          ipv6: bool = False, tunnel: str = "") -> float:
    """pylvs run on ``cpus``; ``reply``: NAT replies, once the clients' frames made the
    connections; ``ipv6``: the IPv6 service (and real server) instead; ``tunnel``: the real
    server's tun_* keys (GUE, GRE)."""
    protocol = "tcp" if syn else "udp"
    port = 80 if syn else 9
    vip, sink = (f"[{VIP6}]", f"[{SINK6}]") if ipv6 else (VIP, SINK_IP)
    config = os.path.join(topo.tmp, f"{method}.toml")
    with open(config, "w") as fh:
        fh.write(f'[director]\ninterface = "eth0"\ninside_interface = "eth1"\n'
                 f'control_socket = "{topo.tmp}/{method}.sock"\nworkers = {workers}\n'
                 f'offload = "{offload}"\n\n'
                 f'[[virtual_server]]\n'
                 f'address = "{vip}:{port}"\nprotocol = "{protocol}"\nscheduler = "rr"\n'
                 f'forward = "{method}"\n\n  [[virtual_server.real_server]]\n'
                 f'  address = "{sink}:{port}"\n{tunnel}')
    director = topo.popen_in(topo.dir, [PYTHON, "-m", "pylvs", "run", config], cpu=cpus,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not os.path.exists(f"{topo.tmp}/{method}.sock"):
        if director.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pylvs did not start: {director.stderr.read()}")
        time.sleep(0.1)
    try:
        target = VIP6 if ipv6 else VIP
        if reply:
            measure(topo, target, 1.0)
        return measure(topo, target, seconds, syn, reply,
                       pid=director.pid if workers == 1 else 0, name=name)
    finally:
        stop_group(director)
        topo.procs.remove(director)


def null(topo: Topology, seconds: float) -> float:
    forwarder = topo.popen_in(topo.dir, [PYTHON, "-m", "bench.null_forwarder", "eth0", "eth1",
                                         topo.sink_mac, VIP], cpu=1, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        forwarder.stdout.readline()
        return measure(topo, VIP, seconds, pid=forwarder.pid, name="null")
    finally:
        stop_group(forwarder)
        topo.procs.remove(forwarder)


PASS_PROGRAM = """
from pylvs.core.ebpf import XDP_PASS, Assembler
from pylvs.shell import xdp
xdp.attach("eth0", xdp.Program(Assembler().ret(XDP_PASS).assemble(), "pylvs_pass"))
"""


def ready_for_xdp(topo: Topology) -> None:
    """NAPI on the far ends of the director's links, for frames it redirects into them."""
    for ns in (topo.gen, topo.sink):
        topo.run_in(ns, [PYTHON, "-c", PASS_PROGRAM])


def scapy(topo: Topology, seconds: float) -> float:
    topo.run_in(topo.dir, ["nft", "-f", "-"], input=(
        f'table netdev scapybench {{\n  chain steal {{\n    type filter hook ingress device '
        f'"eth0" priority -500;\n    ip daddr {VIP} drop\n  }}\n}}\n'))
    forwarder = topo.popen_in(topo.dir, [PYTHON, "-m", "bench.scapy_forwarder", "eth0", "eth1",
                                         topo.sink_mac, VIP], cpu=1, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        forwarder.stdout.readline()
        return measure(topo, VIP, seconds)
    finally:
        stop_group(forwarder)
        topo.procs.remove(forwarder)
        topo.run_in(topo.dir, ["nft", "delete", "table", "netdev", "scapybench"], check=False)


def bytes_per_connection(count: int = 1_000_000) -> float:
    """RSS growth of a Director that tracks ``count`` new connections, per connection."""
    code = f"""
import resource, struct
import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import checksum
svc = VirtualService("tcp", "{VIP}", 80, schedulers.get("rr")())
svc.add_real_server(RealServer("{SINK_IP}", 80))
d = Director([svc])
d.set_hop(ip_to_int("{SINK_IP}"), NextHop(bytes(6), bytes(6), "eth0"))
vip = bytes(map(int, "{VIP}".split(".")))
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
base = rss()
for i in range({count}):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0,
                     (0x0A000000 + i).to_bytes(4, "big"), vip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    d.handle(bytearray(bytes(12) + b"\\x08\\x00" + ip + tcp), 1.0)
assert len(d.table) == {count}, len(d.table)
print((rss() - base) / {count})
"""
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def default_rows(topo: Topology, seconds: float) -> dict[str, float]:
    """offload = "auto" (the default) against "none" and "xdp", peers bare, then ready."""
    results = {"kernel": kernel(topo, seconds)}
    for method in ("dr", "nat"):
        for offload in ("none", "auto", "xdp"):  # xdp: its drops seen, then Python's
            name = f"pylvs {method}, {offload}, bare peers"
            results[name] = pylvs(topo, seconds, method, offload=offload, name=name)
    ready_for_xdp(topo)
    results["kernel, peers with XDP"] = kernel(topo, seconds)
    for method in ("dr", "nat"):
        for offload in ("none", "auto", "xdp"):
            name = f"pylvs {method}, {offload}, peers with xdp"
            results[name] = pylvs(topo, seconds, method, offload=offload, name=name)
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--default", action="store_true",
                        help='only offload = "auto" against "none" and "xdp"')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.dataplane builds network namespaces: run it as root")
    if not shutil.which("trafgen"):
        sys.exit("needs trafgen: apt-get install netsniff-ng")
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, float] = {}
    if args.default:
        with Topology() as topo:
            results = default_rows(topo, args.seconds)
        _print_default(results)
        return
    with Topology() as topo:
        results["kernel"] = kernel(topo, args.seconds)
        for method in ("dr", "nat", "tun"):
            results[f"pylvs {method}"] = pylvs(topo, args.seconds, method,
                                               name=f"pylvs {method}")
        results["pylvs nat replies"] = pylvs(topo, args.seconds, "nat", reply=True)
        for kind, keys in TUNNELS.items():
            results[f"pylvs tun, {kind}"] = pylvs(topo, args.seconds, "tun", tunnel=keys,
                                                  name=f"pylvs tun, {kind}")
        results["kernel ipv6"] = kernel(topo, args.seconds, ipv6=True)
        for method in ("dr", "nat", "tun"):
            name = f"pylvs {method} ipv6"
            results[name] = pylvs(topo, args.seconds, method, name=name, ipv6=True)
        results["pylvs nat replies ipv6"] = pylvs(topo, args.seconds, "nat", reply=True,
                                                  ipv6=True)
        cores = f"0-{os.cpu_count() - 1}"
        results["pylvs dr, 2 workers, CPU 1"] = pylvs(topo, args.seconds, "dr", workers=2)
        results[f"pylvs dr, 2 workers, CPUs {cores}"] = pylvs(topo, args.seconds, "dr",
                                                              workers=2, cpus=cores)
        results[f"pylvs nat, 2 workers, CPUs {cores}"] = pylvs(topo, args.seconds, "nat",
                                                               workers=2, cpus=cores)
        results["pylvs syn (new connections)"] = pylvs(topo, args.seconds, "dr", syn=True)
        results["null (rings + DR rewrite)"] = null(topo, args.seconds)
        results["scapy"] = scapy(topo, args.seconds)
        ready_for_xdp(topo)
        results["kernel, peers with XDP"] = kernel(topo, args.seconds)
        for method in ("dr", "nat", "tun"):
            name = f"pylvs {method}, xdp"
            results[name] = pylvs(topo, args.seconds, method, offload="xdp", name=name)
        results["pylvs nat replies, xdp"] = pylvs(topo, args.seconds, "nat", reply=True,
                                                  offload="xdp")
        results["pylvs syn, xdp"] = pylvs(topo, args.seconds, "dr", syn=True, offload="xdp")
        for kind, keys in TUNNELS.items():
            name = f"pylvs tun, {kind}, xdp"
            results[name] = pylvs(topo, args.seconds, "tun", offload="xdp", tunnel=keys,
                                  name=name)
        results["kernel ipv6, peers with XDP"] = kernel(topo, args.seconds, ipv6=True)
        for method in ("dr", "nat", "tun"):
            name = f"pylvs {method} ipv6, xdp"
            results[name] = pylvs(topo, args.seconds, method, offload="xdp", name=name,
                                  ipv6=True)
    per_conn = bytes_per_connection()
    null_rate = results["null (rings + DR rewrite)"]
    print(f"{'path':<34}{'frames/s':>12}{'× kernel':>10}{'× null':>8}{'× scapy':>9}"
          f"{'CPU µs/frame':>14}")
    for name, rate in results.items():
        reference = "kernel ipv6" if "ipv6" in name else "kernel"
        kernel_rate = results[f"{reference}, peers with XDP" if "xdp" in name else reference]
        cpu = f"{CPU[name]:.2f}" if CPU.get(name) else ""
        print(f"{name:<34}{rate:>12,.0f}{rate / kernel_rate:>10.2f}{rate / null_rate:>8.2f}"
              f"{rate / max(results['scapy'], 1):>9.0f}{cpu:>14}")
    print(f"memory per tracked connection (1,000,000): {per_conn:.0f} bytes")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "python": platform.python_version(),
                       "machine": platform.machine(), "cpus": os.cpu_count(),
                       "seconds": args.seconds, "frames_per_s": results,
                       "cpu_us_per_frame": {k: v for k, v in CPU.items() if v},
                       "bytes_per_connection": per_conn,
                       "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss},
                      fh, indent=2)
        print(f"wrote {args.json}")


def _print_default(results: dict[str, float]) -> None:
    print(f"{'path':<34}{'frames/s':>12}{'× kernel':>10}{'CPU µs/frame':>14}")
    for name, rate in results.items():
        kernel_rate = results["kernel, peers with XDP" if "peers with" in name
                              else "kernel"]
        cpu = f"{CPU[name]:.2f}" if CPU.get(name) else ""
        print(f"{name:<34}{rate:>12,.0f}{rate / kernel_rate:>10.2f}{cpu:>14}")


if __name__ == "__main__":
    main()

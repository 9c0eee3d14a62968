"""A SYN flood at a DR and at a NAT director while a real client downloads through the VIP.

    python3 -m bench.synflood [--seconds 20] [--mode dr|nat|both] [--json PATH]

Per mode one lab (`Lab(servers=2)`, nginx in each real server serving the same file of random
bytes, 512 MB by default) and, per defence setting, a fresh `pylvs run` with
``max_connections = 100000`` in [director] (small enough for the flood to fill it in both
modes) and the setting's [sysctl] table (IPVS's /proc/sys/net/ipv4/vs knobs; mode 3 is "always
on"):

- off: the defaults (every defence 0);
- entry+secure: drop_entry = 3, secure_tcp = 3;
- all: drop_entry = 3, secure_tcp = 3, drop_packet = 3, am_droprate = 10.

For each: one download with no flood (capped at --before-seconds), then a download started just
before trafgen sends TCP SYNs at full rate (one process, pinned by trafgen to CPU 0) from the
client's eth0 to VIP:80, from random sources in 10.64.0.0/12 (2^20 addresses, none of the lab's)
and random ports, for --seconds. If that download ends before the flood does, the next one
starts (a new connection through a table the flood fills). Every download's bytes are checked
by sha256 against the file, or against its same-length prefix when the flood's end cut it off.
Once a second during the flood: `pylvs status` (the table's size, the counters), the director's
RSS (VmRSS of `pylvs run`; in the JSON also the Pss of it and its forked guard) and the wall
time of an `-L -n` on the control socket; every 4 s a new connection (curl of a small file, 3 s
at most) probes whether clients still get in. The SYN-ACKs go nowhere: a DR real server has no
route to 10.64.0.0/12, and a NAT director sends its replies to the MAC the SYNs came from (the
client's eth0, whose kernel drops them: not its address).

MB is 10^6 bytes. Needs nginx, curl and trafgen (netsniff-ng); run as root; everything runs in
namespaces the lab makes and removes, also on Ctrl-C or a failure. About 3 minutes with the
defaults (2 minutes with --seconds 12).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from bench.dataplane import stop_group
from bench.http import server_conf
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import Lab, curl_argv, lab_config
from pylvs.shell import control
from pylvs.shell.host import BYTES_PER_CONNECTION
from pylvs.shell.messages import Status, Sysctl

MB = 1_000_000
SETTINGS: dict[str, dict[str, int]] = {
    "off": {},
    "entry+secure": {"drop_entry": 3, "secure_tcp": 3},
    "all": {"drop_entry": 3, "secure_tcp": 3, "drop_packet": 3, "am_droprate": 10},
}
SOURCES = "10.64.0.0/12"
"""The flood's sources: 10, 64..79 (trafgen's dinc), two random bytes; the lab's subnets are
192.168.1/24, 10.0.0/24 and 172.16.0/24."""
SHOWN = ("table_full", "defense_dropped_packets", "defense_dropped_entries", "no_connection",
         "forwarded")
CONTROL_TIMEOUT = 10.0
SAMPLE_EVERY, PROBE_EVERY, PROBE_TIMEOUT = 1.0, 4.0, 3
SMALL = "ok\n"
LEGEND = f"""before/during: MB/s (10^6 B) of the download with no flood, and while the flood ran
intact: every download during the flood matched by sha256 (whole, or the prefix the end cut)
dl: downloads during the flood (the next starts when one ends); table max: of the samples
RSS MB: VmRSS of `pylvs run`, max during the flood; bound: its RSS before the flood +
  max_connections x {BYTES_PER_CONNECTION} B; -Ln: seconds for an `-L -n` on the control socket,
  lost: no answer in {CONTROL_TIMEOUT:g} s; new conns: curl probes (3 s each) that got in
kpps: SYNs trafgen sent, and frames the director forwarded (`forwarded`), per second"""


@dataclass
class BigFile:
    """The file every real server serves, and its hash."""
    root: str
    size: int
    sha256: str = ""

    @property
    def path(self) -> str:
        return os.path.join(self.root, "big")

    def write(self) -> None:
        digest, chunk = hashlib.sha256(), 4 << 20
        with open(self.path, "wb") as fh:
            for start in range(0, self.size, chunk):
                block = os.urandom(min(chunk, self.size - start))
                digest.update(block)
                fh.write(block)
        self.sha256 = digest.hexdigest()
        with open(os.path.join(self.root, "small"), "w") as fh:
            fh.write(SMALL)

    def intact(self, path: str) -> bool:
        """The download at ``path`` is the file, or (cut off) the file's first bytes."""
        size = os.path.getsize(path)
        if size == 0 or size > self.size:
            return False
        with open(path, "rb") as fh:
            got = hashlib.file_digest(fh, "sha256").hexdigest()
        return got == (self.sha256 if size == self.size else _prefix_sha256(self.path, size))


def _prefix_sha256(path: str, size: int) -> str:
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as fh:
        while left > 0:
            block = fh.read(min(left, 4 << 20))
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def link_mac(ns: str, dev: str = "eth0") -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", dev], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def rx_packets(ns: str, dev: str = "eth0") -> int:
    out = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", dev], capture_output=True,
                         text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def trafgen_conf(dst_mac: str, src_mac: str, vip: str) -> str:
    """An Ethernet/IPv4/TCP SYN to vip:80, from SOURCES and a random port (54 bytes: padding
    would enter csumtcp's length)."""
    mac = ", ".join(f"0x{byte}" for byte in (dst_mac + ":" + src_mac).split(":"))
    dst = ", ".join(vip.split("."))
    return (f"{{\n  {mac}, c16(0x0800),\n"
            "  0x45, 0x00, c16(40), drnd(2), c16(0x4000), 64, 6, csumip(14, 33),\n"
            f"  10, dinc(64, 79, 1), drnd(2), {dst},\n"
            "  drnd(2), c16(80), drnd(4), c32(0), c16((5 << 12) | 0x02), c16(65535),\n"
            "  csumtcp(14, 34), c16(0),\n}\n")


def serve(lab: Lab, big: BigFile, tmp: str) -> None:
    """nginx in every real server, all serving ``big.root``; waits until each answers."""
    for ns, name in zip(lab.server_ns, lab.server_names, strict=True):
        own = os.path.join(tmp, f"nginx-{lab.mode}-{name}")
        os.makedirs(own)
        conf = os.path.join(own, "nginx.conf")
        with open(conf, "w") as fh:
            fh.write(server_conf(big.root, own))
        lab.processes.append(lab.popen_in(ns, ["nginx", "-c", conf]))
    for ns in lab.server_ns:
        deadline = time.monotonic() + 10
        while lab.run_in(ns, curl_argv("http://127.0.0.1/small", 1),
                         capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx in {ns} did not answer")
            time.sleep(0.2)


def config_text(lab: Lab, max_connections: int, sysctls: dict[str, int]) -> str:
    text = lab_config(lab, "rr").replace(
        "[director]\n", f"[director]\nmax_connections = {max_connections}\n", 1)
    if sysctls:
        text += "\n[sysctl]\n" + "".join(f"{k} = {v}\n" for k, v in sysctls.items())
    return text


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for parent in pids:
        for path in glob.glob(f"/proc/{parent}/task/*/children"):
            try:
                with open(path) as fh:
                    pids += [int(p) for p in fh.read().split()]
            except OSError:
                pass
    return pids


def rss_bytes(pid: int) -> int:
    """VmRSS of the `pylvs run` that `ip netns exec` execs: the process that holds the table
    (its forked guard holds nothing that grows)."""
    return _proc_kb(f"/proc/{pid}/status", "VmRSS:") * 1024


def pss_bytes(pid: int) -> int:
    """Pss of `pylvs run` and its children (the guard; workers, if any): their memory with the
    pages they share after fork() counted once."""
    return sum(_proc_kb(f"/proc/{each}/smaps_rollup", "Pss:") for each in process_tree(pid)) * 1024


def _proc_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith(key)), 0)
    except OSError:
        return 0


def download_once(lab: Lab, big: BigFile, seconds: float, tmp: str) -> dict[str, Any]:
    """One download of /big with no flood, at most ``seconds``: MB/s and whether intact."""
    out = os.path.join(tmp, "before")
    argv = [*curl_argv(f"http://{lab.vip}/big", max(1, round(seconds))), "-o", out,
            "-w", "%{size_download} %{time_total}"]
    result = lab.run_in(lab.client_ns, argv, capture_output=True, text=True)
    words = result.stdout.split()[-2:] if result.stdout.strip() else ["0", "0"]
    size, took = int(float(words[0])), float(words[1])
    intact = os.path.exists(out) and big.intact(out)
    if os.path.exists(out):
        os.unlink(out)
    return {"bytes": size, "seconds": took, "mb_s": size / took / MB if took else 0.0,
            "complete": size == big.size, "intact": intact, "rc": result.returncode}


class Downloads:
    """/big from the client, one after another, while the flood runs; each one checked."""

    def __init__(self, lab: Lab, big: BigFile, tmp: str) -> None:
        self.lab, self.big, self.tmp = lab, big, tmp
        self.done: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[str] | None = None
        self.path = ""

    def start(self) -> None:
        self.path = os.path.join(self.tmp, f"during-{len(self.done) + 1}")
        argv = [*curl_argv(f"http://{self.lab.vip}/big", 3600), "-o", self.path]
        self.proc = self.lab.popen_in(self.lab.client_ns, argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
        self.lab.processes.append(self.proc)

    def current(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def received(self) -> int:
        return sum(d["bytes"] for d in self.done) + (self.current() if self.proc else 0)

    def poll(self, again: bool) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self._finish()
            if again:
                self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self._finish(cut=True)

    def _finish(self, cut: bool = False) -> None:
        assert self.proc is not None
        _, err = self.proc.communicate()
        self.lab.processes.remove(self.proc)
        size = self.current()
        self.done.append({"bytes": size, "complete": size == self.big.size,
                          "intact": size > 0 and self.big.intact(self.path),
                          "rc": self.proc.returncode, "cut_by_flood_end": cut,
                          "error": err.strip()})
        self.proc = None
        if os.path.exists(self.path):
            os.unlink(self.path)


class Probes:
    """A new connection every PROBE_EVERY s: does a client still get in?"""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.running: list[subprocess.Popen[str]] = []
        self.ok = self.tried = 0

    def start(self) -> None:
        proc = self.lab.popen_in(self.lab.client_ns,
                                 curl_argv(f"http://{self.lab.vip}/small", PROBE_TIMEOUT),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lab.processes.append(proc)
        self.running.append(proc)
        self.tried += 1

    def poll(self, wait: bool = False) -> None:
        for proc in list(self.running):
            if wait or proc.poll() is not None:
                out, _ = proc.communicate(timeout=PROBE_TIMEOUT + 5)
                self.ok += proc.returncode == 0 and out == SMALL
                self.running.remove(proc)
                self.lab.processes.remove(proc)


def sample(sock: str, pid: int) -> dict[str, Any]:
    """The -L -n wall time (None: no answer in CONTROL_TIMEOUT), the table, the RSS."""
    start = time.monotonic()
    try:
        rc, _, _ = control.request(sock, ["-L", "-n"], timeout=CONTROL_TIMEOUT)
        ln = time.monotonic() - start if rc == 0 else None
    except (OSError, ValueError):
        ln = None
    data = _status(sock)
    return {"ln_seconds": ln, "connections": data.get("connections"),
            "max_connections": data.get("max_connections"), "rss": rss_bytes(pid),
            "tree_pss": pss_bytes(pid)}


def _status(sock: str) -> dict[str, Any]:
    """`pylvs status --json`'s data: connections, max_connections, counters ({}: no answer)."""
    try:
        return control.ask(sock, Status(), timeout=CONTROL_TIMEOUT).data or {}
    except (OSError, ValueError):
        return {}


@dataclass
class Flood:
    """trafgen from the client's eth0, in its own process group (its sending child too)."""
    lab: Lab
    conf: str
    rate: int
    log: str
    proc: subprocess.Popen[Any] | None = None
    sent: int = 0
    started: float = 0.0

    def start(self) -> None:
        argv = ["trafgen", "--dev", "eth0", "--conf", self.conf, "--cpus", "1",
                "--no-sock-mem", "--notouch-irq"]
        if self.rate:
            argv += ["--rate", f"{self.rate}pps"]
        with open(self.log, "w") as out:
            self.proc = self.lab.popen_in(self.lab.client_ns, argv, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.lab.processes.append(self.proc)  # a backstop: stop() ends its whole group
        self.started = time.monotonic()

    def stop(self) -> float:
        """Stops it (SIGINT: trafgen prints its count); the seconds it ran."""
        took = time.monotonic() - self.started
        if self.proc is None:
            return took
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        stop_group(self.proc)
        self.lab.processes.remove(self.proc)
        self.proc = None
        with open(self.log) as fh:
            found = re.findall(r"(\d+) packets outgoing", fh.read())
        self.sent = max((int(n) for n in found), default=0)
        return took


def flood_phase(lab: Lab, director: DirectorProcess, big: BigFile, conf: str,
                args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """The download, the flood and the samples; what was measured."""
    downloads, probes = Downloads(lab, big, tmp), Probes(lab)
    flood = Flood(lab, conf, args.rate, os.path.join(tmp, "trafgen.log"))
    samples: list[dict[str, Any]] = []
    downloads.start()
    try:
        deadline = time.monotonic() + 5
        while downloads.received() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        rx0, got0 = rx_packets(lab.director_ns), downloads.received()
        back0 = rx_packets(lab.client_ns)
        fwd0 = _status(director.control_socket).get("counters", {}).get("forwarded", 0)
        flood.start()
        end = flood.started + args.seconds
        next_sample, next_probe = flood.started + 0.5, flood.started + 1.0
        while (now := time.monotonic()) < end:
            downloads.poll(again=True)
            probes.poll()
            if now >= next_probe:
                probes.start()
                next_probe += PROBE_EVERY
            if now >= next_sample:
                samples.append(sample(director.control_socket, director.proc.pid))
                next_sample = time.monotonic() + SAMPLE_EVERY
            time.sleep(0.05)
        got1, rx1 = downloads.received(), rx_packets(lab.director_ns)
        back1, span = rx_packets(lab.client_ns), time.monotonic() - flood.started
        fwd1 = _status(director.control_socket).get("counters", {}).get("forwarded", 0)
    finally:
        took = flood.stop()
        downloads.stop()
        probes.poll(wait=True)
    return {"flood_seconds": took, "sent": flood.sent, "sent_pps": flood.sent / took,
            "arrived_pps": (rx1 - rx0) / span, "client_rx_pps": (back1 - back0) / span,
            "forwarded_pps": (fwd1 - fwd0) / span, "mb_s": (got1 - got0) / span / MB,
            "downloads": downloads.done, "probes_ok": probes.ok, "probes_tried": probes.tried,
            "samples": samples}


def run_setting(lab: Lab, name: str, sysctls: dict[str, int], conf: str, big: BigFile,
                args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    print(f"{lab.mode} / {name}: {args.seconds:g} s of flood ...", flush=True)
    director = DirectorProcess(lab, config_text(lab, args.max_connections, sysctls))
    try:
        shown = control.ask(director.control_socket, Sysctl()).stdout
        before = download_once(lab, big, args.before_seconds, tmp)
        base_rss = rss_bytes(director.proc.pid)
        during = flood_phase(lab, director, big, conf, args, tmp)
        time.sleep(0.5)
        after = sample(director.control_socket, director.proc.pid)
        after["counters"] = _status(director.control_socket).get("counters", {})
        alive = director.proc.poll() is None
    finally:
        director.stop()
    log = director.final_output.splitlines()
    return {"mode": lab.mode, "setting": name, "sysctl_config": sysctls,
            "sysctl_shown": shown.splitlines(), "before": before, "during": during,
            "max_connections": args.max_connections,
            "base_rss": base_rss, "rss_bound": base_rss + args.max_connections
            * BYTES_PER_CONNECTION, "after": after, "director_alive": alive,
            "log_lines": len(log), "log_tail": log[-15:]}


def run_mode(mode: str, big: BigFile, args: argparse.Namespace, tmp: str
             ) -> list[dict[str, Any]]:
    with Lab(servers=args.servers, mode=mode) as lab:
        lab.setup()
        lab.configure_real_servers()
        serve(lab, big, tmp)
        conf = os.path.join(tmp, f"syn-{mode}.cfg")
        with open(conf, "w") as fh:
            fh.write(trafgen_conf(link_mac(lab.director_ns), link_mac(lab.client_ns), lab.vip))
        return [run_setting(lab, name, sysctls, conf, big, args, tmp)
                for name, sysctls in SETTINGS.items()]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The figures of one mode and setting, as the table shows them."""
    during, samples = row["during"], row["during"]["samples"]
    lns = [s["ln_seconds"] for s in samples if s["ln_seconds"] is not None]
    tables = [s["connections"] for s in samples if s["connections"] is not None]
    with_bytes = [d for d in during["downloads"] if d["bytes"]]
    return {"before_mb_s": row["before"]["mb_s"], "during_mb_s": during["mb_s"],
            "intact": bool(with_bytes) and all(d["intact"] for d in with_bytes),
            "before_intact": row["before"]["intact"],
            "downloads": len(during["downloads"]),
            "table_max": max(tables, default=None),
            "limit": row["after"]["max_connections"] or row["max_connections"],
            "rss_max_mb": max((s["rss"] for s in samples), default=0) / MB,
            "rss_bound_mb": row["rss_bound"] / MB,
            "ln_median": statistics.median(lns) if lns else None,
            "ln_max": max(lns, default=None), "ln_unanswered": len(samples) - len(lns),
            "probes": f"{during['probes_ok']}/{during['probes_tried']}",
            "sent_kpps": during["sent_pps"] / 1000,
            "forwarded_kpps": during["forwarded_pps"] / 1000,
            "counters": {k: row["after"]["counters"].get(k, 0) for k in SHOWN},
            "director_alive": row["director_alive"]}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'mode':<5}{'setting':<14}{'before':>8}{'during':>8}{'intact':>8}{'dl':>4}"
          f"{'table max / limit':>20}{'RSS MB':>8}{'bound':>7}{'-Ln med/max s':>15}{'-Ln lost':>9}"
          f"{'new conns':>10}{'kpps sent/fwd':>15}")
    for row in rows:
        s = row["summary"]
        ln = (f"{s['ln_median']:.2f}/{s['ln_max']:.2f}" if s["ln_median"] is not None else "-")
        print(f"{row['mode']:<5}{row['setting']:<14}{s['before_mb_s']:>8.1f}"
              f"{s['during_mb_s']:>8.1f}{'yes' if s['intact'] else 'NO':>8}{s['downloads']:>4}"
              f"{s['table_max'] or 0:>11,} / {s['limit']:<7,}{s['rss_max_mb']:>8.0f}"
              f"{s['rss_bound_mb']:>7.0f}{ln:>15}{s['ln_unanswered']:>9}{s['probes']:>10}"
              f"{s['sent_kpps']:>9.0f}/{s['forwarded_kpps']:<5.0f}")
    print(f"\n{'mode':<5}{'setting':<14}{'director':>9}" + "".join(f"{k:>25}" for k in SHOWN))
    for row in rows:
        s = row["summary"]
        print(f"{row['mode']:<5}{row['setting']:<14}{'up' if s['director_alive'] else 'DIED':>9}"
              + "".join(f"{s['counters'][k]:>25,}" for k in SHOWN))
    print(f"\n{LEGEND}")


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: once; a second one (GNU timeout sends two) must not cut the
    cleanup short, which is bounded anyway."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.synflood")
    parser.add_argument("--seconds", type=float, default=20.0, help="flood per setting")
    parser.add_argument("--mode", choices=("dr", "nat", "both"), default="both")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--size-mb", type=int, default=512, help="the file downloaded")
    parser.add_argument("--before-seconds", type=float, default=5.0)
    parser.add_argument("--max-connections", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=0, help="flood pps (0: full rate)")
    parser.add_argument("--servers", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.synflood builds network namespaces: run it as root")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pylvs-synflood-") as tmp:
        big = BigFile(os.path.join(tmp, "www"), args.size_mb * MB)
        os.makedirs(big.root)
        big.write()
        for mode in ("dr", "nat") if args.mode == "both" else (args.mode,):
            rows += run_mode(mode, big, args, tmp)
    for row in rows:
        row["summary"] = summary(row)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "seconds": args.seconds, "size_mb": args.size_mb,
                       "max_connections": args.max_connections, "servers": args.servers,
                       "rate": args.rate or "full", "sources": SOURCES, "settings": SETTINGS,
                       "results": rows}, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

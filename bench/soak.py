"""Soak: traffic through a 2-worker DR director while its rules churn and a worker is killed.

    python3 -m bench.soak [--seconds 90] [--downloads 40] [--rate 200k] [--json PATH]

As root; everything runs in the namespaces of a DR lab (pylvs.lab.topology, 5 real servers, rs1-rs4
in the config, rs5 added and deleted on the way), removed on exit, Ctrl-C or failure. The
director has ``workers = 2`` and an HTTP_GET check of every real server on a health port of its
own (8081, a second pylvs.lab.httpserver), so a check can fail while port 80 keeps serving.

Traffic, from the client namespace to the VIP:

- long downloads: ``--downloads`` curl processes, each from a fixed client port, fetching
  ``/blob/N`` at ``--rate`` (curl --limit-rate) sized to last most of the soak; each one's bytes
  and SHA-256 are checked, a stalled one ends by curl's --speed-time (exit 28);
- short requests: one new connection per request, 20 a second, each answered by a server name.

Churn, each on its own schedule: a reload every second (control socket, every 10th by SIGHUP)
of a config that alternates rs1's weight 1/2 and follows the churn below, so a reload undoes
none of it; rs5 added and deleted with ``pylvs adm -a/-d``; rs2 quiesced (``-e -w 0``) and given
its weight back; rs3's health port stopped and started (the check takes rs3 out and back);
worker 1 killed with SIGKILL at half time (the supervisor forks it again). A check removes a
server with -d, as keepalived without inhibit_on_failure does. ``--retry-delay`` is the check's
delay_before_retry (0.3 s); above the reload period (1 s) no check ever fails often enough to
remove a server, as the reload starts the checks afresh.

A download that broke is put down to the first of these that came before it stalled: the
killed worker (its client port hashes to worker 1, pylvs.shell.fanout), its server's deletion
with -d, its server's removal by a failed check (both by design: IPVS's expire_nodest_conn), or
nothing of that (the target: 0). Also: RSS of the supervisor and the workers at start and end,
the director's log lines that say error/failed/died/Traceback, its counters (``pylvs status
--json``) and the short requests' success rate. Prints a table; --json writes it all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import Lab, _wait_for_line, curl_argv, stop_process
from pylvs.shell import control, fanout
from pylvs.shell.messages import Reload

WORKERS = 2
KILLED = 1
"""The worker index killed at half time."""
CHECK_PORT = 8081
FIRST_PORT = 20000
"""Client port of download i: FIRST_PORT + i, below the ephemeral range."""
SHORT_RATE = 20.0
STALL = 3.0
SPEED_TIME = 10
"""curl gives up on a download after this many seconds below 1 KB/s (exit 28)."""
ERROR_LINE = re.compile(r"error|failed|died|traceback|exception|refused", re.IGNORECASE)
EXPECTED_LINE = re.compile(r"health: \S+ is (down|up) |worker \d+ \(pid \d+\) died")
HEALTH_EDIT = re.compile(r"health: (-[ade]) -t \S+ -r ([\d.]+):\d+")
WORKER_UP = re.compile(r"worker (\d+) up \(pid (\d+)\)")
CONN_ROW = re.compile(r"^TCP\s+\S+\s+(\S+)\s+([\d.]+):(\d+)\s+\S+\s+([\d.]+):\d+", re.MULTILINE)
SERVER_ROW = re.compile(r"^\s+->\s+([\d.]+):\d+\s+\S+\s+(\d+)", re.MULTILINE)

SHORT_CLIENT = """\
import http.client, sys, time
vip, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
start, n = time.monotonic(), 0
while time.monotonic() < start + seconds:
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(vip, 80, timeout=3)
        c.request("GET", "/")
        name = c.getresponse().read().decode().strip()
        c.close()
        print(f"{t:.3f} ok {name}", flush=True)
    except Exception as exc:
        print(f"{t:.3f} err {type(exc).__name__}: {exc}", flush=True)
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


@dataclass
class Event:
    t: float
    what: str
    detail: str = ""


@dataclass
class Download:
    index: int
    port: int
    size: int
    slot: int
    """The worker its client hashes to."""
    server: str = ""
    bytes: int = 0
    sha_ok: bool = False
    rc: int | None = None
    error: str = ""
    started: float = 0.0
    last_data: float = 0.0
    stalled: float | None = None
    """A broken download's end of data: where its last pause of STALL seconds or more began if
    that pause lasted until curl gave up (it then writes out what it held), else its last
    data."""
    gaps: list[tuple[float, float]] = field(default_factory=list)
    """(from, seconds) of every pause of STALL seconds or more, the first 10."""
    ended: float = 0.0
    cause: str = ""

    @property
    def complete(self) -> bool:
        return self.rc == 0 and self.bytes == self.size and self.sha_ok


@dataclass
class Absence:
    """A real server missing from -Ln (or a weight change), as the monitor saw it."""
    ip: str
    left: float
    back: float | None = None


@dataclass
class Results:
    seconds: float
    extra: str = ""
    """The address of rs5, out of the table most of the time by design."""
    names: dict[str, str] = field(default_factory=dict)
    """Real server names by address."""
    downloads: list[Download] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    absences: list[Absence] = field(default_factory=list)
    short: list[tuple[float, bool, str]] = field(default_factory=list)
    rss: dict[str, dict[str, int]] = field(default_factory=dict)
    rss_series: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    health_edits: dict[str, int] = field(default_factory=dict)
    """The director's own table edits for health (log lines `health: -d ...`), by verb and
    server."""
    reloads: dict[str, int] = field(default_factory=dict)
    reload_seconds: list[float] = field(default_factory=list)
    """How long each reload through the control socket took to be answered."""
    listing_seconds: list[float] = field(default_factory=list)
    """How long each of the monitor's -Ln took (5 s: it timed out)."""


class Soak:
    """The running soak: the lab, the director, the traffic and the churn threads."""

    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab, self.args = lab, args
        self.ips = dict(zip(lab.server_names, lab.server_ips, strict=True))
        self.names = {ip: name for name, ip in self.ips.items()}
        self.weights = {self.ips[f"rs{i}"]: 1 for i in range(1, 5)}
        self.phase = 0
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.res = Results(args.seconds, self.ips["rs5"], self.names)
        self.checks: dict[str, subprocess.Popen[Any]] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self.threads: list[threading.Thread] = []
        self.director: DirectorProcess | None = None

    # -- the lab ---------------------------------------------------------------------------------

    def setup(self) -> None:
        lab = self.lab
        lab.setup()
        lab.configure_real_servers()
        lab.start_http_servers()
        for name in lab.server_names:
            self.start_check(name)
        # a small receive buffer: a broken download stalls within ~1 s, not after a buffer's worth
        lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 262144"],
                   check=True)
        self.director = DirectorProcess(lab, self.config_text())

    def start_check(self, name: str) -> None:
        ns = self.lab.server_ns[self.lab.server_names.index(name)]
        proc = self.lab.popen_in(ns, [sys.executable, "-m", "pylvs.lab.httpserver", "--name",
                                      f"{name}-health", "--port", str(CHECK_PORT)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # stderr: http.server's BrokenPipe traceback each time an HTTP_GET probe hangs up after
        # the status line, as keepalived's does
        self.lab.processes.append(proc)
        _wait_for_line(proc, "serving", f"{name}'s health port")
        self.checks[name] = proc

    def config_text(self) -> str:
        """The director's config as the churn has it now, rs1's weight as the phase says."""
        check = (f'{{ type = "http", path = "/", port = {CHECK_PORT}, interval = 1, timeout = 1, '
                 f'retry = 1, delay_before_retry = {self.args.retry_delay} }}')
        lines = ["[director]", f'interface = "{self.lab.director_if}"',
                 f'control_socket = "{self.lab.control_socket}"', f"workers = {WORKERS}", "",
                 "[[virtual_server]]", f'address = "{self.lab.vip}:80"', 'protocol = "tcp"',
                 'scheduler = "wrr"', 'forward = "dr"', f"check = {check}"]
        for ip, weight in self.weights.items():
            if ip == self.ips["rs1"]:
                weight = 1 + self.phase
            lines += ["", "  [[virtual_server.real_server]]", f'  address = "{ip}:80"',
                      f"  weight = {weight}"]
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        assert self.director is not None
        path = self.director.config_path
        with open(path + ".new", "w") as fh:
            fh.write(self.config_text())
        os.replace(path + ".new", path)

    # -- helpers ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, what: str, detail: str = "") -> None:
        event = Event(round(self.now(), 2), what, detail)  # the time before the lock's wait
        with self.lock:
            self.res.events.append(event)

    def adm(self, *argv: str) -> str:
        assert self.director is not None
        try:
            return self.director.adm(*argv)
        except (RuntimeError, OSError) as exc:
            self.note("adm error", str(exc).strip())
            return ""

    def spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=self._guard, args=(target, name), name=name,
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[[], None], name: str) -> None:
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - a churn thread's failure is a result
            self.note("thread failed", f"{name}: {exc!r}")

    def sleep_until(self, t: float) -> bool:
        """Wait until soak time ``t``; False when the soak is over first."""
        return not self.stop.wait(max(0.0, t - self.now())) and self.now() < self.args.seconds

    def every(self, first: float, period: float, length: float,
              on: Callable[[], None], off: Callable[[], None]) -> None:
        """``on`` at first + k*period, ``off`` length later, while both fit in the soak."""
        t = first
        while t + length + 2 < self.args.seconds and self.sleep_until(t):
            on()
            self.sleep_until(t + length)
            off()
            t += period

    # -- traffic ---------------------------------------------------------------------------------

    def start_downloads(self) -> None:
        size = int(self.args.rate_bytes * max(10.0, self.args.seconds - 15))
        digest = hashlib.sha256(blob(size)).hexdigest()
        for i in range(self.args.downloads):
            port = FIRST_PORT + i
            slot = fanout.client_hash(self.lab.client_ip, port, False) % WORKERS
            self.start_download(Download(i, port, size, slot), digest)
            time.sleep(0.05)

    def start_download(self, dl: Download, digest: str) -> None:
        url = f"http://{self.lab.vip}/blob/{dl.size}"
        argv = curl_argv(url, max_time=int(self.args.seconds) + 60)[:-1] + [
            "--fail", "--local-port", str(dl.port), "--limit-rate", self.args.rate,
            "--speed-limit", "1024", "--speed-time", str(SPEED_TIME), "-o", "-", url]
        proc = self.lab.popen_in(self.lab.client_ns, argv, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        self.procs.append(proc)
        dl.started = self.now()
        self.res.downloads.append(dl)
        self.spawn(lambda: self.read_download(dl, proc, digest), f"download {dl.index}")

    def read_download(self, dl: Download, proc: subprocess.Popen[Any], digest: str) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        sha = hashlib.sha256()
        pause = (0.0, 0.0)
        while chunk := proc.stdout.read1(1 << 16):
            now = self.now()
            if dl.bytes and now - dl.last_data >= STALL:
                pause = (dl.last_data, now)
                if len(dl.gaps) < 10:
                    dl.gaps.append((round(dl.last_data, 2), round(now - dl.last_data, 2)))
            sha.update(chunk)
            dl.bytes += len(chunk)
            dl.last_data = now
        dl.rc = proc.wait()
        dl.ended = self.now()
        if dl.rc != 0:  # a pause that ended as curl gave up is where it broke
            dl.stalled = round(pause[0] if pause[1] >= dl.ended - 0.5 else dl.last_data, 2)
        dl.sha_ok = sha.hexdigest() == digest
        dl.error = proc.stderr.read().decode(errors="replace").strip()[:200]

    def run_short(self) -> None:
        argv = [sys.executable, "-c", SHORT_CLIENT, self.lab.vip, str(self.args.seconds),
                str(SHORT_RATE)]
        proc = self.lab.popen_in(self.lab.client_ns, argv, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            t, verdict, what = (line.split(maxsplit=2) + ["", ""])[:3]
            self.res.short.append((round(float(t) - self.t0, 2), verdict == "ok", what.strip()))
        proc.wait()

    # -- churn -----------------------------------------------------------------------------------

    def reloads(self) -> None:
        t, n = 1.0, 0
        while self.sleep_until(t):
            with self.lock:
                self.phase = 1 - self.phase
                self.write_config()
                self.reload(n)
            n += 1
            t += 1.0

    def reload(self, n: int) -> None:
        if n % 10 == 9:
            os.kill(self.supervisor(), signal.SIGHUP)
            self.count_reload("sighup")
            self.stop.wait(0.5)  # the lock held while it reads the file: no churn under it
            return
        start = time.monotonic()
        try:
            reply = control.ask(self.lab.control_socket, Reload(), timeout=10)
        except OSError as exc:
            self.count_reload("unanswered")
            self.note("reload error", str(exc))
            return
        finally:
            self.res.reload_seconds.append(round(time.monotonic() - start, 3))
        self.count_reload("ok" if reply.rc == 0 else "refused")
        if reply.rc != 0:
            self.note("reload refused", reply.stderr.strip())

    def count_reload(self, how: str) -> None:
        self.res.reloads[how] = self.res.reloads.get(how, 0) + 1

    def extra_server(self) -> None:
        rs5 = self.ips["rs5"]

        def add() -> None:
            with self.lock:
                self.adm("-a", "-t", f"{self.lab.vip}:80", "-r", f"{rs5}:80", "-g", "-w", "1")
                self.weights[rs5] = 1
                self.write_config()
            self.note("rs5 added", "pylvs adm -a")

        def delete() -> None:
            with self.lock:
                self.adm("-d", "-t", f"{self.lab.vip}:80", "-r", f"{rs5}:80")
                del self.weights[rs5]
                self.write_config()
            self.note("rs5 deleted", "pylvs adm -d")

        self.every(6, 16, 8, add, delete)

    def quiesce(self) -> None:
        rs2 = self.ips["rs2"]

        def weight(w: int) -> Callable[[], None]:
            def change() -> None:
                with self.lock:
                    self.adm("-e", "-t", f"{self.lab.vip}:80", "-r", f"{rs2}:80", "-g",
                             "-w", str(w))
                    self.weights[rs2] = w
                    self.write_config()
                self.note("rs2 weight", f"pylvs adm -e -w {w}")
            return change

        self.every(10, 20, 10, weight(0), weight(1))

    def flap(self) -> None:
        def down() -> None:
            stop_process(self.checks["rs3"])
            self.note("rs3 health port stopped")

        def up() -> None:
            self.start_check("rs3")
            self.note("rs3 health port started")

        self.every(14, 24, 6, down, up)

    def kill_worker(self) -> None:
        if not self.sleep_until(self.args.seconds / 2):
            return
        old = self.worker_pids().get(KILLED)
        if old is None:
            self.note("kill skipped", f"no pid known for worker {KILLED}")
            return
        self.record_rss("before kill")
        os.kill(old, signal.SIGKILL)
        self.note("worker killed", f"worker {KILLED} pid {old}, SIGKILL")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.worker_pids().get(KILLED) == old:
            time.sleep(0.1)
        new = self.worker_pids().get(KILLED)
        self.note("worker forked again" if new != old else "worker not forked again",
                  f"worker {KILLED} pid {new}")

    # -- watching --------------------------------------------------------------------------------

    def supervisor(self) -> int:
        assert self.director is not None
        return self.director.proc.pid  # `ip netns exec` execs the command itself

    def worker_pids(self) -> dict[int, int]:
        assert self.director is not None
        return {int(i): int(p) for i, p in WORKER_UP.findall(self.director.output())}

    def record_rss(self, label: str) -> None:
        pids = {"supervisor": self.supervisor()}
        pids |= {f"worker {i}": pid for i, pid in sorted(self.worker_pids().items())}
        row: dict[str, Any] = {"t": round(self.now(), 1), "label": label}
        for name, pid in pids.items():
            row[name] = {"pid": pid, "rss_kib": rss_kib(pid)}
        self.res.rss_series.append(row)

    def monitor(self) -> None:
        """-Ln twice a second (who is in the table), -Lnc every 5 s (who serves a download),
        RSS every 10 s."""
        absent: dict[str, Absence] = {}
        tick = 0
        while not self.stop.wait(0.5):
            start = time.monotonic()
            listing = self.adm("-Ln")
            self.res.listing_seconds.append(round(time.monotonic() - start, 3))
            if listing:
                self.track(absent, {ip for ip, _ in SERVER_ROW.findall(listing)})
            if tick % 10 == 0:
                self.map_downloads(self.adm("-Lnc"))
            if tick % 20 == 0:
                self.record_rss("periodic")
            tick += 1

    def track(self, absent: dict[str, Absence], seen: set[str]) -> None:
        for ip in self.ips.values():
            if ip not in seen and ip not in absent:
                absent[ip] = Absence(ip, round(self.now(), 2))
                self.res.absences.append(absent[ip])
            elif ip in seen and ip in absent:
                absent.pop(ip).back = round(self.now(), 2)

    def map_downloads(self, listing: str) -> None:
        by_port = {dl.port: dl for dl in self.res.downloads}
        for _state, client, port, server in CONN_ROW.findall(listing):
            dl = by_port.get(int(port))
            if client == self.lab.client_ip and dl is not None and not dl.server:
                dl.server = self.names.get(server, server)

    def status(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "pylvs", "status", "--json", "--socket",
                              self.lab.control_socket], capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except json.JSONDecodeError:
            return {"error": (out.stdout + out.stderr).strip()[:300]}

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Results:
        self.t0 = time.monotonic()
        self.start_downloads()
        self.spawn(self.run_short, "short requests")
        self.spawn(self.monitor, "monitor")
        time.sleep(max(0.0, 4 - self.now()))
        self.res.counters["start"] = self.status()
        self.record_rss("start")
        for target in (self.reloads, self.extra_server, self.quiesce, self.flap,
                       self.kill_worker):
            self.spawn(target, target.__name__)
        self.stop.wait(max(0.0, self.args.seconds - self.now()))
        self.record_rss("end")
        self.res.counters["end"] = self.status()
        self.stop.set()
        self.wait_downloads(SPEED_TIME + 10)
        assert self.director is not None
        log = self.director.output()
        self.res.log_lines = [line for line in log.splitlines() if ERROR_LINE.search(line)]
        edits = Counter(f"{self.names.get(ip, ip)} {verb}" for verb, ip in HEALTH_EDIT.findall(log))
        self.res.health_edits = dict(sorted(edits.items()))
        return self.res

    def wait_downloads(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for thread in self.threads:
            thread.join(2)

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for thread in self.threads:
            thread.join(2)
        for proc in self.procs:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self.director is not None:
            self.director.stop()


# -- results -------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def classify(res: Results) -> None:
    """Each broken download's cause: the first of the events that can break it."""
    kill = next((e.t for e in res.events if e.what == "worker killed"), None)
    for dl in res.downloads:
        if dl.complete:
            dl.cause = "complete"
            continue
        stalled = (dl.ended if dl.stalled is None else dl.stalled) + 0.5
        causes: list[tuple[float, str]] = []
        if kill is not None and dl.slot == KILLED and kill < stalled:
            causes.append((kill, "killed worker"))
        for gone in res.absences:
            if res.names.get(gone.ip) == dl.server and gone.left < stalled:
                causes.append((gone.left, absence_cause(gone, dl.server, res.events)))
        dl.cause = min(causes)[1] if causes else "other"


def absence_cause(gone: Absence, server: str, events: list[Event]) -> str:
    """Why a server left the table: -d (rs5), a failed check (rs3 with its health port down),
    or nothing this soak did."""
    if server == "rs5":
        return "deleted"
    stops = [e.t for e in events if e.what == "rs3 health port stopped"]
    starts = [e.t for e in events if e.what == "rs3 health port started"]
    if server == "rs3" and any(s <= gone.left <= next((u for u in starts if u > s),
                                                       float("inf")) + 3 for s in stops):
        return "health-removed"
    return f"other ({server} left the table at {gone.left} s with no -d and no failed check)"


def summary(res: Results) -> dict[str, Any]:
    classify(res)
    causes = Counter(dl.cause.split(" (")[0] for dl in res.downloads)
    on_killed = [dl for dl in res.downloads if dl.slot == KILLED]
    ok_short = sum(1 for _, ok, _ in res.short if ok)
    start, end = res.counters.get("start", {}), res.counters.get("end", {})
    deltas = {k: v - start.get("counters", {}).get(k, 0)
              for k, v in end.get("counters", {}).items()
              if v != start.get("counters", {}).get(k, 0)}
    return {
        "downloads": len(res.downloads), "complete": causes["complete"],
        "lost_killed_worker": causes["killed worker"], "lost_deleted": causes["deleted"],
        "lost_health_removed": causes["health-removed"], "lost_other": causes["other"],
        "on_killed_worker": len(on_killed),
        "on_killed_worker_complete": sum(dl.complete for dl in on_killed),
        "by_server": dict(Counter(f"{dl.server or '?'} {dl.cause.split(' (')[0]}"
                                  for dl in res.downloads)),
        "short_total": len(res.short), "short_ok": ok_short,
        "short_failures": [(t, what) for t, ok, what in res.short if not ok],
        "short_failure_causes": dict(Counter(short_cause(res, t) for t, ok, _ in res.short
                                             if not ok)),
        "short_servers": dict(Counter(what for _, ok, what in res.short if ok)),
        "counter_deltas": deltas, "connections_end": end.get("connections"),
        "reloads": dict(res.reloads), "error_lines": len(res.log_lines),
        "slowest_reload": max(res.reload_seconds, default=0.0),
        "reloads_over_1s": sum(1 for x in res.reload_seconds if x > 1),
        "slowest_listing": max(res.listing_seconds, default=0.0),
        "listings_over_1s": sum(1 for x in res.listing_seconds if x > 1),
        "unexpected_lines": [line for line in res.log_lines if not EXPECTED_LINE.search(line)],
        "health_edits": res.health_edits,
    }


def rss_table(res: Results) -> list[tuple[str, int, int, int, int]]:
    """(process, start pid, start RSS, end pid, end RSS) in KiB."""
    first = next((r for r in res.rss_series if r["label"] == "start"), None)
    last = next((r for r in reversed(res.rss_series) if r["label"] == "end"), None)
    if first is None or last is None:
        return []
    rows = []
    for name in [k for k in first if k not in ("t", "label")]:
        end = last.get(name, {"pid": 0, "rss_kib": 0})
        rows.append((name, first[name]["pid"], first[name]["rss_kib"], end["pid"],
                     end["rss_kib"]))
    return rows


def report(res: Results, facts: dict[str, Any], args: argparse.Namespace) -> None:
    n = facts["downloads"]
    print(f"\nsoak: {args.seconds:g} s, {WORKERS} workers, {n} long downloads at "
          f"{args.rate}/s, {SHORT_RATE:g} short requests/s")
    print("\nevents:")
    for e in sorted(res.events, key=lambda e: e.t):
        print(f"  {e.t:7.2f}  {e.what}{': ' + e.detail if e.detail else ''}")
    print("  table changes seen by -Ln: " + (", ".join(
        f"{res.names.get(a.ip, a.ip)} out {a.left}-{a.back if a.back is not None else 'end'}"
        for a in res.absences) or "none"))
    rows = [("completed, size and sha256 right", facts["complete"]),
            (f"lost on the killed worker {KILLED} (expected)", facts["lost_killed_worker"]),
            ("lost on a server deleted with -d (by design)", facts["lost_deleted"]),
            ("lost on a health-removed server (by design)", facts["lost_health_removed"]),
            ("lost otherwise (target 0)", facts["lost_other"])]
    print(f"\n{'long downloads':<52}{n:>6}")
    for label, value in rows:
        print(f"  {label:<50}{value:>6}")
    print(f"  {'hashed to the killed worker (of them complete)':<50}"
          f"{facts['on_killed_worker']:>6} ({facts['on_killed_worker_complete']})")
    print("  by server: " + ", ".join(f"{k} {v}" for k, v in sorted(facts["by_server"].items())))
    for dl in res.downloads:
        if dl.cause.startswith("other"):
            print(f"    download {dl.index} port {dl.port} on {dl.server or '?'} worker "
                  f"{dl.slot}: rc {dl.rc}, {dl.bytes}/{dl.size} B, stalled at "
                  f"{dl.stalled} s, pauses {dl.gaps}: {dl.cause}")
    total, ok = facts["short_total"], facts["short_ok"]
    print(f"\nshort requests: {ok}/{total} answered ({100 * ok / max(1, total):.2f}%); by "
          "server: " + ", ".join(f"{k} {v}" for k, v in sorted(facts["short_servers"].items())))
    print(f"  failed: {facts['short_failure_causes'] or 'none'}")
    for t, what in facts["short_failures"][:20]:
        print(f"    at {t:7.2f} s: {what}: {short_cause(res, t)}; around it: {context(res, t)}")
    print(f"\n{'RSS (KiB)':<14}{'pid':>9}{'start':>9}{'pid':>9}{'end':>9}{'growth':>9}")
    for name, pid0, rss0, pid1, rss1 in rss_table(res):
        print(f"{name:<14}{pid0:>9}{rss0:>9}{pid1:>9}{rss1:>9}{rss1 - rss0:>+9}")
    print("supervisor RSS over time (s: KiB): " + ", ".join(
        f"{r['t']:g}: {r['supervisor']['rss_kib']}" for r in res.rss_series))
    print(f"\nreloads: {facts['reloads']}; slowest answered in {facts['slowest_reload']:.2f} s, "
          f"{facts['reloads_over_1s']} took over 1 s")
    print(f"-Ln every 0.5 s: slowest answered in {facts['slowest_listing']:.2f} s, "
          f"{facts['listings_over_1s']} took over 1 s (5 s: timed out)")
    print(f"counters, end minus start: {facts['counter_deltas'] or 'no change'}; "
          f"connections at the end {facts['connections_end']}")
    print("the director's health edits of the table (log): " + (", ".join(
        f"{k} {v}" for k, v in facts["health_edits"].items()) or "none"))
    print(f"director log, lines saying error/failed/died/refused/Traceback: "
          f"{facts['error_lines']}, of them not a check's verdict or the killed worker: "
          f"{len(facts['unexpected_lines'])}")
    for line in facts["unexpected_lines"][:15]:
        print(f"    {line[:150]}")


def short_cause(res: Results, t: float) -> str:
    """A failed short request (3 s timeout) by what happened while it was under way."""
    during = [e.what for e in res.events if t - 0.5 <= e.t <= t + 3.5]
    if "worker killed" in during:
        return "killed worker"
    if "rs5 deleted" in during:
        return "rs5 deleted under it (by design)"
    return "other"


def context(res: Results, t: float) -> str:
    """What went on around soak time ``t``: servers out of the table, events of the 5 s
    before."""
    out = [f"{res.names.get(a.ip, a.ip)} out of the table" for a in res.absences
           if a.left <= t <= (a.back if a.back is not None else res.seconds)
           and a.ip != res.extra]
    out += [f"{e.what} at {e.t}" for e in res.events if t - 5 <= e.t <= t + 3.5]
    return ", ".join(out) or "nothing near"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_rate(text: str) -> int:
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    return int(float(text.rstrip("kKmM")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.soak")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--downloads", type=int, default=40)
    parser.add_argument("--rate", default="200k", help="each download's curl --limit-rate")
    parser.add_argument("--retry-delay", type=float, default=0.3,
                        help="the check's delay_before_retry (s)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    args.rate_bytes = parse_rate(args.rate)
    if os.geteuid() != 0:
        raise SystemExit("bench.soak builds network namespaces: run it as root")
    if not 30 <= args.seconds <= 3600 or not 1 <= args.downloads <= 200:
        raise SystemExit("--seconds 30..3600 and --downloads 1..200")
    signal.signal(signal.SIGTERM, _interrupt)
    with Lab(servers=5, mode="dr") as lab:
        soak = Soak(lab, args)
        try:
            soak.setup()
            res = soak.run()
        finally:
            soak.close()
    facts = summary(res)
    report(res, facts, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "args": {k: v for k, v in vars(args).items()},
                       "summary": facts, "rss": rss_table(res), **asdict(res)}, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

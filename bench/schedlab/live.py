"""The live runs of the scheduler laboratory: a real director, real servers, an open-loop client.

The lab is pylvs's DR lab (``pylvs.lab.topology.Lab`` with its second director's namespace):
the client namespace, one or two directors and up to N real servers on one bridge, each real
server holding the VIP as `pylvs realserver --mode dr` sets it. The client namespace gets
``clients`` extra source addresses (192.168.1.128 on) and reaches the VIP through director 1
(a route via it); for two directors, the odd-numbered sources are routed via director 2 by a
policy rule each (``ip rule from SRC table 102``), both directors holding the VIP and
balancing over the same servers, each with its own connection table: the herd.

Each (scenario, scheduler) run starts afresh: the scenario's servers (``bench.schedlab.server``,
whose speed changes through its stdin), a `pylvs run` per director with the scenario's weights,
the client (``bench.schedlab.client``), which says when its schedule's time 0 is; the changes are
made at their times (a "slow" through the server's control, "add" and "remove" with `pylvs adm
-a/-d` on each director's control socket). Then everything of the run is stopped and the
client's records summarized (``summarize``, no root needed): latency percentiles with every
failed request counted as the timeout, shares per server per interval, requests broken by each
change (failed in the 2 s after it), requests per second answered, the pacing error.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

from bench.schedlab.results import Result, cdf, percentiles
from bench.schedlab.scenarios import Change, Scenario, Server
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import _ATTACH_PASS, IFACE, SUBNET, Lab, stop_process

TIMEOUT = 2.0
"""A request not answered this long after its scheduled time failed (and counts as this)."""
INTERVAL = 1.0
"""Seconds per share sample."""
BROKEN_WINDOW = 2.0
"""A request that fails within this long after a change counts as broken by it."""
FIRST_SOURCE = 128
MAX_SOURCES = 96
PORT = 80
ROUTE_TABLE = "102"
NICE = -10
"""The lab's processes (director, servers, client: started from this one, which takes it) run
at this niceness, so that other work on the machine disturbs what is measured less; the
pacing error reported says how well that went."""
PLUGINS = {"prequal": "bench.schedlab.prequal:Prequal"}
"""Schedulers the director loads as plug-ins (``module:Class``), by their table name."""
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

Record = Sequence[Any]
"""One request as the client writes it: (offset s, source, lag ms, latency ms, server, error)."""


def server_names(scenario: Scenario) -> list[str]:
    """rs1... for the scenario's servers, then for each server a change adds."""
    count = len(scenario.servers) + sum(1 for c in scenario.changes if c.action == "add")
    return [f"rs{i}" for i in range(1, count + 1)]


def change_key(change: Change) -> str:
    return f"{change.action}@{change.at:g}s"


def summarize(scenario: Scenario, scheduler: str, source: str, records: Sequence[Record],
              timeout: float = TIMEOUT, interval: float = INTERVAL) -> Result:
    """The client's records as a Result (pure: no root, no network)."""
    failed = [r for r in records if r[5]]
    latencies = [timeout * 1e3 if r[5] else r[3] for r in records]
    names = server_names(scenario)
    return Result(
        scenario=scenario.name, scheduler=scheduler, source=source,
        latency_ms=percentiles(latencies), requests=len(records), failed=len(failed),
        achieved_rps=(len(records) - len(failed)) / scenario.duration,
        share=shares(records, names, scenario.duration, interval), interval=interval,
        broken={change_key(c): broken_by(c, records) for c in scenario.changes},
        extra={"offered_rps": scenario.rate, "directors": scenario.directors,
               "pacing_ms": pacing(records), "errors": dict(Counter(r[5] for r in failed)),
               "overall_share": overall_share(records, names), "timeout_s": timeout,
               "cdf_ms": cdf(latencies)})





def shares(records: Sequence[Record], names: list[str], duration: float,
           interval: float) -> dict[str, list[float]]:
    """Per server, its share of the answered requests scheduled in each interval."""
    slots = max(1, round(duration / interval))
    counts = [Counter() for _ in range(slots)]
    for r in records:
        if not r[5]:
            counts[min(slots - 1, int(r[0] / interval))][r[4]] += 1
    totals = [sum(c.values()) for c in counts]
    return {name: [c[name] / t if t else 0.0 for c, t in zip(counts, totals, strict=True)]
            for name in names}


def overall_share(records: Sequence[Record], names: list[str]) -> dict[str, float]:
    answered = Counter(r[4] for r in records if not r[5])
    total = sum(answered.values())
    return {name: answered[name] / total if total else 0.0 for name in names}


def broken_by(change: Change, records: Sequence[Record]) -> int:
    """Requests that failed (their end: scheduled time + latency) in the window after it."""
    return sum(1 for r in records
               if r[5] and change.at <= r[0] + r[3] / 1e3 < change.at + BROKEN_WINDOW)


def pacing(records: Sequence[Record]) -> dict[str, float]:
    """The sender's lateness (actual send − scheduled), in ms: p50, p99, p99.9, max."""
    got = percentiles([r[2] for r in records])
    return {k: round(got[k], 3) for k in ("p50", "p99", "p99.9", "max") if k in got}


def director_config(lab: Lab, scheduler: str, servers: Sequence[tuple[str, int]],
                    control_socket: str, offload: str) -> str:
    """The TOML of one director: the VIP's one DR service over ``servers`` (address,
    weight)."""
    spec = PLUGINS.get(scheduler, scheduler)
    lines = ["[director]", f'interface = "{IFACE}"', f'control_socket = "{control_socket}"',
             f'offload = "{offload}"']
    lines += ["", "[[virtual_server]]", f'address = "{lab.vip}:{PORT}"', 'protocol = "tcp"',
              f'scheduler = "{spec}"', 'forward = "dr"']
    for address, weight in servers:
        lines += ["", "  [[virtual_server.real_server]]", f'  address = "{address}:{PORT}"',
                  f"  weight = {weight}"]
    return "\n".join(lines) + "\n"


def _read_line(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited before it was ready (exit code {proc.wait()})")
    return line


class LiveLab:
    """The lab for a series of runs: built once, each run's processes started and stopped.

    ``servers``: real servers to make (the most any scenario needs); ``clients``: source
    addresses. A context manager: leaving it removes the namespaces, processes and files."""

    def __init__(self, servers: int, clients: int = 64) -> None:
        self.lab = Lab(servers=servers, ha=True)
        self.sources = [f"{SUBNET}.{FIRST_SOURCE + i}" for i in range(min(clients, MAX_SOURCES))]
        self.tmp = tempfile.TemporaryDirectory(prefix=f"{self.lab.prefix}-schedlab-")
        self.log: IO[str] = open(os.path.join(self.tmp.name, "lab.log"), "w")  # noqa: SIM115
        self.lab.stderr = self.log
        # the directors (a plug-in scheduler), servers and client import bench from here
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *(p for p in paths if p != REPO and p)])
        self.procs: list[subprocess.Popen[Any]] = []
        self.xdp_ready = False
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, NICE)

    def __enter__(self) -> LiveLab:
        try:
            self.lab.setup()
            self.lab.configure_real_servers()
            self._client_addresses()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_all()
        self.lab.close()
        self.log.close()
        self.tmp.cleanup()

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        with open(self.log.name) as fh:
            return "".join(fh.readlines()[-lines:])

    def _ip(self, *argv: str) -> None:
        self.lab.run_in(self.lab.client_ns, ["ip", *argv], check=True, capture_output=True)

    def _client_addresses(self) -> None:
        for address in self.sources:
            self._ip("addr", "add", f"{address}/24", "dev", IFACE)
        self._ip("route", "add", f"{self.lab.vip}/32", "via", self.lab.director_ip)
        self._ip("route", "add", f"{self.lab.vip}/32", "via", self.lab.director2_ip,
                 "table", ROUTE_TABLE)

    def _split(self, on: bool) -> None:
        """Odd-numbered sources via director 2 (``on``), or all via director 1."""
        for address in self.sources[1::2]:
            argv = ["rule", "add" if on else "del", "from", address, "table", ROUTE_TABLE]
            if on:
                self._ip(*argv)
            else:
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._ip(*argv)

    def ready_for_xdp(self) -> None:
        """The lab's XDP preparation, and NAPI on director 2's bridge port too."""
        if self.xdp_ready:
            return
        self.lab.ready_for_xdp()
        self.lab.run_in(self.lab.bridge_ns, [sys.executable, "-c", _ATTACH_PASS, "director2"],
                        check=True, capture_output=True)
        self.xdp_ready = True

    def _popen(self, ns: str, argv: list[str]) -> subprocess.Popen[str]:
        proc = self.lab.popen_in(ns, [sys.executable, "-m", *argv], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.procs.append(proc)
        return proc

    def _stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            stop_process(proc)
        self.procs.clear()

    def _start_servers(self, scenario: Scenario) -> list[subprocess.Popen[str]]:
        specs = [*scenario.servers, *(c.server or Server() for c in scenario.changes
                                      if c.action == "add")]
        procs = [self._popen(self.lab.server_ns[i], _server_argv(f"rs{i + 1}", spec,
                                                                  scenario.seed * 100 + i))
                 for i, spec in enumerate(specs)]
        for i, proc in enumerate(procs):
            _read_line(proc, f"server rs{i + 1}")
        return procs

    def _start_directors(self, scenario: Scenario, scheduler: str,
                         offload: str) -> list[DirectorProcess]:
        servers = [(self.lab.server_ips[i], s.weight) for i, s in enumerate(scenario.servers)]
        places = [(self.lab.director_ns, self.lab.control_socket),
                  (self.lab.director2_ns, self.lab.control_socket2)][:scenario.directors]
        directors: list[DirectorProcess] = []
        try:
            for ns, sock in places:
                config = director_config(self.lab, scheduler, servers, sock, offload)
                directors.append(DirectorProcess(self.lab, config, ns, sock))
        except BaseException:
            for director in directors:
                director.stop()
            raise
        return directors

    def _start_client(self, scenario: Scenario, out: str) -> subprocess.Popen[str]:
        sources = self.sources[:scenario.clients]
        return self._popen(self.lab.client_ns, [
            "bench.schedlab.client", "--target", f"{self.lab.vip}:{PORT}",
            "--rate", repr(scenario.rate), "--duration", repr(scenario.duration),
            "--sources", ",".join(sources), "--seed", str(scenario.seed),
            "--timeout", repr(TIMEOUT), "--out", out])

    def _apply(self, change: Change, scenario: Scenario, servers: list[subprocess.Popen[str]],
               directors: list[DirectorProcess]) -> None:
        if change.action == "slow":
            _tell(servers[change.index], f"factor {change.factor}")
            return
        service = f"{self.lab.vip}:{PORT}"
        if change.action == "add":
            index = len(scenario.servers) + [c for c in scenario.changes
                                             if c.action == "add"].index(change)
            weight = (change.server or Server()).weight
            argv = ["-a", "-t", service, "-r", f"{self.lab.server_ips[index]}:{PORT}", "-g",
                    "-w", str(weight)]
        elif change.action == "remove":
            argv = ["-d", "-t", service, "-r", f"{self.lab.server_ips[change.index]}:{PORT}"]
        else:
            raise ValueError(f"unknown change {change.action!r}")
        for director in directors:
            director.adm(*argv)

    def run(self, scenario: Scenario, scheduler: str, offload: str = "none") -> Result:
        """One scenario with one scheduler, live: everything started afresh, then stopped."""
        if offload == "xdp":
            self.ready_for_xdp()
        out = os.path.join(self.tmp.name, f"{scenario.name}-{scheduler}-{offload}.json")
        directors: list[DirectorProcess] = []
        self._split(scenario.directors > 1)
        try:
            servers = self._start_servers(scenario)
            directors = self._start_directors(scenario, scheduler, offload)
            client = self._start_client(scenario, out)
            start = float(_read_line(client, "the client").split()[1])
            for proc in servers:
                _tell(proc, f"epoch {start!r}")
            for change in sorted(scenario.changes, key=lambda c: c.at):
                _sleep_until(start + change.at)
                self._apply(change, scenario, servers, directors)
            if client.wait(scenario.duration + TIMEOUT + 60) != 0:
                raise RuntimeError(f"the client failed ({client.returncode})")
            with open(out) as fh:
                records = json.load(fh)["records"]
        finally:
            for director in directors:
                director.stop()
            self._stop_all()
            self._split(False)
        result = summarize(scenario, scheduler, f"live-{offload}", records)
        result.extra["offload"] = offload
        if scheduler in PLUGINS:
            result.extra["note"] = ("loaded by the director as a plug-in; the director feeds "
                                    "it no health-check times (observe), so live it balances "
                                    "by requests in flight only")
        return result


def _server_argv(name: str, spec: Server, seed: int) -> list[str]:
    return ["bench.schedlab.server", "--name", name, "--mean-ms", repr(spec.mean_ms),
            "--distribution", spec.distribution, "--concurrency", str(spec.concurrency),
            "--pause-every", repr(spec.pause_every), "--pause-for", repr(spec.pause_for),
            "--seed", str(seed)]


def _tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _sleep_until(when: float) -> None:
    while (left := when - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))

"""A discrete-event model of a scenario: the same scheduler code, no network.

Each director has its own scheduler instance (``schedulers.get(name)()``) and its own pylvs
``RealServer`` objects, kept in IPVS's order (newest first), counted as its connection table
counts a short HTTP request under DR: the client's SYN creates the connection (bound inactive)
and moves it to SYN_RECV (active); it stays active while ESTABLISHED; the client's FIN moves it
to FIN_WAIT (inactive), where it stays ``fin_wait`` seconds (conntrack's timeout, 120) before it
is dropped (unbind). Those inactive connections weigh in lc's and wlc's overhead.

Requests arrive open loop (Poisson, the scenario's rate) from ``clients`` addresses, client
``c`` going to director ``c % directors``; the flow a scheduler sees has a real source address
and port (sh and mh hash them). Each server is a FIFO queue with ``concurrency`` workers
(M/G/c): service times from its distribution, times its slow-down factor, frozen during its
pauses ([k·every, k·every + pause_for), k ≥ 1, as bench.schedlab.server). A removed server's
requests in flight (served or queued) are broken (``break_on_remove``). Latency = finish −
arrival + ``rtt_ms``; a request refused, broken or slower than ``timeout`` counts as failed at
``timeout``; shares are of the answered requests, by the interval they were sent in (as the live
run's). The arrivals, clients and request sizes come from one seeded stream, the same for every
scheduler (common random numbers); a scheduler with an ``rng`` (twos, prequal) gets a seeded one.

A scheduler with ``observe`` (prequal) gets what health checks would give it: every
``delay_loop`` seconds each director probes each server with one request, served like the
others, and is told that probe's response time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import NormalDist

import schedulers
from bench.schedlab import prequal  # noqa: F401  (registers "prequal")
from bench.schedlab.results import Result, cdf, percentiles
from bench.schedlab.scenarios import Change, Scenario, Server
from pylvs.core.conntrack import DEFAULT_TIMEOUTS, FIN_WAIT
from pylvs.core.model import RealServer
from pylvs.core.packet import Flow

VPORT = 80
LAB = 0xC0A80100
"""192.168.1.0: the live lab's DR segment (pylvs.lab.topology), whose addresses the model
takes, so sh and mh hash what they hash live: the VIP .100, real servers .11 on, client
sources .128 on (bench.schedlab.live: at most 96)."""
VIP = LAB + 100
LAB_SERVERS, LAB_CLIENTS = 89, 96
WIDE_CLIENTS = 0x64400001  # 100.64.0.1: a scaled scenario's clients
INF = math.inf
"""The latency CDF's levels, as the live run's (bench.schedlab.live.cdf): what the plots draw."""
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Knobs:
    rtt_ms: float = 0.2
    """The network's round trip, added to every response time."""
    interval: float = 1.0
    """Seconds per share sample."""
    timeout: float = 2.0
    """A client's timeout: what a failed request counts as, in seconds."""
    delay_loop: float = 1.0
    """Seconds between two health checks of a server (for a scheduler with ``observe``)."""
    fin_wait: float = float(DEFAULT_TIMEOUTS[FIN_WAIT])
    """How long a closed connection stays in the table, counted inactive."""
    break_on_remove: bool = True
    """A removed server's requests in flight fail (it is stopped with its removal); False:
    it answers them (DR after ``ipvsadm -d``: answers go straight to the client)."""


class Backend:
    """One real server as a machine: ``concurrency`` workers and a FIFO queue."""

    __slots__ = ("name", "mean", "dist", "workers", "every", "pause", "factor", "busy",
                 "queue", "clients", "alive")

    def __init__(self, name: str, spec: Server) -> None:
        self.name = name
        self.mean = spec.mean_ms / 1000.0
        self.dist = spec.distribution
        if self.dist not in ("exp", "lognormal", "const"):
            raise ValueError(f"unknown distribution {self.dist!r}")
        self.workers = spec.concurrency
        self.every, self.pause = spec.pause_every, spec.pause_for
        self.factor = 1.0
        self.busy = 0
        self.queue: deque[int] = deque()
        self.clients = 0
        """Client requests here, served or queued (a removal breaks them)."""
        self.alive = True

    def work(self, u: float) -> float:
        """Seconds of service for a request of quantile ``u`` (0 ≤ u < 1)."""
        if self.dist == "exp":
            return -self.mean * math.log(1.0 - u) * self.factor
        if self.dist == "lognormal":  # sigma 1: mean = exp(mu + 1/2)
            z = _NORMAL.inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12))
            return self.mean * math.exp(z - 0.5) * self.factor
        return self.mean * self.factor

    def finish(self, start: float, work: float) -> float:
        """When ``work`` seconds of service begun at ``start`` end, the pauses skipped (a pause
        is [k·every, k·every + pause_for) for k ≥ 1)."""
        every, pause = self.every, self.pause
        if every <= 0.0 or pause <= 0.0:
            return start + work
        t = start
        while True:
            k = math.floor(t / every)
            if k >= 1 and t < k * every + pause:
                t = k * every + pause
            ahead = (k + 1) * every - t
            if work <= ahead:
                return t + work
            work -= ahead
            t = (k + 1) * every


class Director:
    """One director: its scheduler, its RealServers (IPVS's order), the flow it reuses."""

    def __init__(self, name: str, index: int, seed: int) -> None:
        self.scheduler = schedulers.get(name)()
        if hasattr(self.scheduler, "rng"):
            self.scheduler.rng = random.Random(f"{seed}/{index}")
        self.servers: list[RealServer] = []
        self.by_backend: list[RealServer | None] = []
        self.backend_of: dict[RealServer, int] = {}
        self.flow = Flow(6, 0, VIP, 0, VPORT, 34, 0x02, 64, 60)
        self.observe: Callable[[RealServer, float], None] | None = getattr(
            self.scheduler, "observe", None)

    def add(self, backend: int, server: RealServer, tell: bool = True) -> None:
        self.servers.insert(0, server)
        self.by_backend.append(server)
        self.backend_of[server] = backend
        if tell:
            self.scheduler.update(self.servers)

    def remove(self, backend: int) -> None:
        server = self.by_backend[backend]
        if server is not None:
            self.servers.remove(server)
            self.by_backend[backend] = None
            self.scheduler.update(self.servers)


def server_address(index: int) -> str:
    """The live lab's address of server ``index`` (192.168.1.11 on); 10.x.y.z beyond."""
    if index < LAB_SERVERS:
        return f"192.168.1.{11 + index}"
    return f"10.{index // 62500}.{index // 250 % 250}.{index % 250 + 1}"


class Model:
    """The state of one run and its event loop."""

    def __init__(self, scenario: Scenario, scheduler: str, knobs: Knobs) -> None:
        self.scenario, self.knobs = scenario, knobs
        self.rng = random.Random(scenario.seed)
        """Draw for draw the live client's schedule (bench.schedlab.client.schedule)."""
        self.sizes = random.Random(f"sizes/{scenario.seed}")
        self.probe_rng = random.Random(f"probes/{scenario.seed}")
        self.first_client = (LAB + 128 if scenario.clients <= LAB_CLIENTS
                             else WIDE_CLIENTS)
        self.directors = [Director(scheduler, i, scenario.seed)
                          for i in range(scenario.directors)]
        self.backends: list[Backend] = []
        added = sum(1 for c in scenario.changes if c.action == "add")
        self.slots = max(1, round(scenario.duration / knobs.interval))
        self.counts = [[0] * (len(scenario.servers) + added) for _ in range(self.slots)]
        """Answered requests per interval (of their arrival) and server, as the live run's."""
        self.heap: list[tuple[float, int]] = []
        self.specials: list[Callable[[float], None]] = []
        self.inflight: dict[int, tuple[float, RealServer | None, int, float]] = {}
        self.probing: dict[int, Director] = {}
        """The director each health-check request in flight is for."""
        self.closing: deque[tuple[float, RealServer]] = deque()
        self.latencies: list[float] = []
        self.ports = [1024 + (c * 7919) % 64512 for c in range(scenario.clients)]
        self.next_id = 0
        self.requests = self.failed = self.refused = self.timed_out = self.probes = 0
        self.broken: dict[str, int] = {}
        for spec in scenario.servers:
            self._add_backend(spec, 0.0, tell=False)
        for director in self.directors:
            director.scheduler.update(director.servers)
        for change in scenario.changes:
            self._at(change.at, self._change_handler(change))

    # -- setting up ---------------------------------------------------------------------------

    def _at(self, t: float, handler: Callable[[float], None]) -> int:
        self.specials.append(handler)
        key = -len(self.specials)
        heapq.heappush(self.heap, (t, key))
        return key

    def _add_backend(self, spec: Server, now: float, tell: bool = True) -> None:
        index = len(self.backends)
        self.backends.append(Backend(f"rs{index + 1}", spec))
        for director in self.directors:
            director.add(index, RealServer(server_address(index), 80, spec.weight), tell)
            if director.observe is not None:
                self._start_probes(director, index, now)

    def _start_probes(self, director: Director, backend: int, now: float) -> None:
        """Health checks of one server by one director, every ``delay_loop``, staggered."""
        loop = self.knobs.delay_loop

        def tick(t: float) -> None:
            server = director.by_backend[backend]
            if server is None or t >= self.scenario.duration:
                return
            self._probe(t, backend, director)
            heapq.heappush(self.heap, (t + loop, key))

        key = self._at(now + loop * ((backend * 0.618034) % 1.0), tick)

    def _change_handler(self, change: Change) -> Callable[[float], None]:
        label = f"{change.action}@{change.at:g}s"
        self.broken[label] = 0

        def handle(t: float) -> None:
            if change.action == "slow":
                self.backends[change.index].factor = change.factor
            elif change.action == "add":
                self._add_backend(change.server or Server(), t)
            elif change.action == "remove":
                self.broken[label] += self._remove(change.index)
            else:
                raise ValueError(f"unknown change {change.action!r}")

        return handle

    def _remove(self, index: int) -> int:
        """ipvsadm -d on every director; the server's requests in flight are broken."""
        backend = self.backends[index]
        for director in self.directors:
            director.remove(index)
        if not self.knobs.break_on_remove:
            return 0
        backend.alive = False
        broken, backend.clients = backend.clients, 0
        self.failed += broken
        self.latencies.extend([self.knobs.timeout * 1000.0] * broken)
        return broken

    # -- the events ---------------------------------------------------------------------------

    def arrive(self, t: float, client: int) -> None:
        u = self.sizes.random()
        self.requests += 1
        director = self.directors[client % len(self.directors)]
        flow = director.flow
        flow.saddr = self.first_client + client
        port = self.ports[client]
        flow.sport = port
        self.ports[client] = port + 1 if port < 65535 else 1024
        scheduler = director.scheduler
        scheduler.now = t
        server = scheduler.pick(director.servers, flow)
        if server is None:
            self.refused += 1
            self._fail()
            return
        server.bind(active=False)  # ip_vs_conn_new
        server.stats.conns += 1
        server.set_active(False, True)  # SYN: NONE -> SYN_RECV
        b = director.backend_of[server]
        self.backends[b].clients += 1
        self._enter(t, b, server, u)

    def _fail(self) -> None:
        self.failed += 1
        self.latencies.append(self.knobs.timeout * 1000.0)

    def _probe(self, t: float, b: int, director: Director) -> None:
        self.probes += 1
        rid = self._enter(t, b, None, self.probe_rng.random())
        self.probing[rid] = director

    def _enter(self, t: float, b: int, server: RealServer | None, u: float) -> int:
        rid = self.next_id
        self.next_id = rid + 1
        self.inflight[rid] = (t, server, b, u)
        backend = self.backends[b]
        if backend.busy < backend.workers:
            backend.busy += 1
            heapq.heappush(self.heap, (backend.finish(t, backend.work(u)), rid))
        else:
            backend.queue.append(rid)
        return rid

    def complete(self, t: float, rid: int) -> None:
        born, server, b, _ = self.inflight.pop(rid)
        backend = self.backends[b]
        if server is None:
            self._checked(t, born, b, self.probing.pop(rid))
        if not backend.alive:
            return
        self._next(t, backend)
        if server is None:
            return
        backend.clients -= 1
        server.set_active(True, False)  # FIN: ESTABLISHED -> FIN_WAIT
        self.closing.append((t + self.knobs.fin_wait, server))
        took = (t - born) * 1000.0 + self.knobs.rtt_ms
        if took > self.knobs.timeout * 1000.0:
            self.timed_out += 1
            self._fail()
            return
        self.latencies.append(took)
        self.counts[min(self.slots - 1, int(born / self.knobs.interval))][b] += 1

    def _checked(self, t: float, born: float, b: int, director: Director) -> None:
        """A health check's answer: its response time to the director's scheduler."""
        server = director.by_backend[b]
        if server is not None and director.observe is not None:
            director.observe(server, (t - born) * 1000.0 + self.knobs.rtt_ms)

    def _next(self, t: float, backend: Backend) -> None:
        """A worker is free: the next queued request starts."""
        if backend.queue:
            rid = backend.queue.popleft()
            u = self.inflight[rid][3]
            heapq.heappush(self.heap, (backend.finish(t, backend.work(u)), rid))
        else:
            backend.busy -= 1

    def expire(self, t: float) -> None:
        closing = self.closing
        while closing and closing[0][0] <= t:
            closing.popleft()[1].unbind(active=False)  # FIN_WAIT's timer ran out

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        heap, pop, rng = self.heap, heapq.heappop, self.rng
        rate, end = self.scenario.rate, self.scenario.duration
        closing, specials = self.closing, self.specials
        arrival = rng.expovariate(rate) if rate > 0 else INF
        clients = self.scenario.clients
        while True:
            due = heap[0][0] if heap else INF
            if arrival <= due:
                if arrival >= end:
                    if not heap:
                        break
                    arrival = INF
                    continue
                t = arrival
                if closing and closing[0][0] <= t:
                    self.expire(t)
                self.arrive(t, rng.randrange(clients))
                arrival = t + rng.expovariate(rate)
                continue
            t, key = pop(heap)
            if closing and closing[0][0] <= t:
                self.expire(t)
            if key >= 0:
                self.complete(t, key)
            else:
                specials[-key - 1](t)

    def result(self, scheduler: str) -> Result:
        scenario = self.scenario
        ok = self.requests - self.failed
        share: dict[str, list[float]] = {b.name: [] for b in self.backends}
        for row in self.counts:
            total = sum(row) or 1
            for backend, count in zip(self.backends, row, strict=False):
                share[backend.name].append(count / total)
        inactive = sum(s.inactconns for d in self.directors for s in d.servers)
        return Result(
            scenario=scenario.name, scheduler=scheduler, source="model",
            latency_ms=percentiles(self.latencies), requests=self.requests, failed=self.failed,
            achieved_rps=ok / scenario.duration, share=share, interval=self.knobs.interval,
            broken=dict(self.broken),
            extra={"servers": len(scenario.servers), "directors": scenario.directors,
                   "refused": self.refused, "timed_out": self.timed_out,
                   "probes": self.probes, "rtt_ms": self.knobs.rtt_ms,
                   "timeout_s": self.knobs.timeout, "fin_wait_s": self.knobs.fin_wait,
                   "inactconns_end": inactive, "cdf_ms": cdf(self.latencies)})



def sized(scenario: Scenario, servers: int | None, requests: int | None) -> Scenario:
    """The scenario at ``servers`` servers (``Scenario.scaled``), and long enough for about
    ``requests`` requests (its changes moved in proportion)."""
    if servers is not None and servers != len(scenario.servers):
        scenario = scenario.scaled(servers)
    if requests is not None:
        duration = requests / scenario.rate
        stretch = duration / scenario.duration
        changes = tuple(replace(c, at=c.at * stretch) for c in scenario.changes)
        scenario = replace(scenario, duration=duration, changes=changes)
    return scenario


def run(scenario: Scenario, scheduler: str, servers: int | None = None, *,
        requests: int | None = None, knobs: Knobs | None = None) -> Result:
    """One scenario with one scheduler in the model (``servers``: scaled to that many)."""
    model = Model(sized(scenario, servers, requests), scheduler, knobs or Knobs())
    model.run()
    return model.result(scheduler)

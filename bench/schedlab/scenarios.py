"""The scenarios of the scheduler laboratory, as data both the live runs and the model read.

A scenario is servers (each a weight as configured, a true capacity, a service-time
distribution and pauses), an arrival rate, a duration, the changes made while it runs (a server
made slower, one added, one removed) and how many directors share the servers. Times are in
seconds, service times in milliseconds. ``scaled`` gives the same scenario at another size (the
model's 1,000 servers); ``QUICK`` and ``FULL`` are the two runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "twos", "sh", "mh")
"""Compared in every scenario (the plug-in adds itself: ``bench.schedlab.prequal``)."""


@dataclass(frozen=True)
class Server:
    weight: int = 1
    """The weight the director is given (ipvsadm -w)."""
    mean_ms: float = 20.0
    """Mean service time of one request when the server is otherwise idle."""
    distribution: str = "exp"
    """"exp" (exponential), "lognormal" (sigma 1) or "const"."""
    concurrency: int = 2
    """Requests served at once (workers); more wait in its queue."""
    pause_every: float = 0.0
    """Every so many seconds the server stops serving (a GC pause, a noisy neighbour)..."""
    pause_for: float = 0.0
    """...for this long; 0: never."""


@dataclass(frozen=True)
class Change:
    at: float
    """Seconds after the start."""
    action: str
    """"slow" (server ``index`` serves ``factor`` × slower), "add" (``server`` joins),
    "remove" (server ``index`` is removed from the service: ipvsadm -d)."""
    index: int = 0
    factor: float = 1.0
    server: Server | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    servers: tuple[Server, ...]
    rate: float
    """Requests per second offered, open loop (Poisson arrivals), over all clients."""
    duration: float
    changes: tuple[Change, ...] = ()
    directors: int = 1
    """Directors sharing the servers, each taking an equal share of the clients."""
    clients: int = 64
    """Client addresses the requests come from (sh and mh hash them)."""
    seed: int = 1
    notes: str = field(default="", compare=False)

    def scaled(self, servers: int, rate_per_server: float | None = None) -> Scenario:
        """The same scenario with ``servers`` servers (the pattern of the first ones repeated)
        and the rate grown to keep each server's load."""
        base = self.servers
        grown = tuple(base[i % len(base)] for i in range(servers))
        per_server = rate_per_server or self.rate / len(base)
        return replace(self, servers=grown, rate=per_server * servers,
                       clients=max(self.clients, servers * 16))


def _equal(n: int = 4, **kw: object) -> tuple[Server, ...]:
    return tuple(Server(**kw) for _ in range(n))  # type: ignore[arg-type]


LOAD = 0.7
"""Offered load as a share of the servers' total capacity (concurrency / mean service time)."""


def _rate(servers: tuple[Server, ...], load: float = LOAD) -> float:
    return load * sum(s.concurrency * 1000.0 / s.mean_ms for s in servers)


def _scenarios(duration: float) -> tuple[Scenario, ...]:
    equal = _equal()
    slow = (*_equal(3), Server(mean_ms=60.0))
    paused = (*_equal(3), Server(pause_every=2.0, pause_for=0.3))
    wrong = (Server(weight=2), Server(weight=2), Server(weight=1, mean_ms=10.0),
             Server(weight=1, mean_ms=10.0))
    return (
        Scenario("equal", "four equal servers", equal, _rate(equal), duration),
        Scenario("one_slow", "one server 3× slower", slow, _rate(slow), duration),
        Scenario("pauses", "one server pauses 0.3 s every 2 s", paused, _rate(paused),
                 duration),
        Scenario("wrong_weights", "weights wrong by 2× (the fast servers weighted low)",
                 wrong, _rate(wrong), duration),
        Scenario("churn", "a server added and one removed mid-run", equal, _rate(equal),
                 duration, (Change(round(duration / 3, 1), "add", server=Server()),
                            Change(round(2 * duration / 3, 1), "remove", index=0))),
        Scenario("slowdown", "one server turns 3× slower mid-run", equal, _rate(equal),
                 duration, (Change(duration / 2, "slow", index=1, factor=3.0),)),
        Scenario("two_directors", "two directors sharing the servers", equal, _rate(equal),
                 duration, directors=2),
    )


QUICK = _scenarios(8.0)
"""About 2 minutes live for the lot (``--quick``)."""
FULL = _scenarios(30.0)


def by_name(name: str, quick: bool = False) -> Scenario:
    for scenario in QUICK if quick else FULL:
        if scenario.name == name:
            return scenario
    raise KeyError(name)

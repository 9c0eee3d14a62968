"""Health checks with keepalived's meaning (sans-IO): what a check's result does to its real
server, and what the service's table should then hold.

A real server is alive until a check fails and ``retry`` more, each ``delay_before_retry``
after the last, fail too (keepalived's TCP_CHECK, HTTP_GET and MISC_CHECK); one success makes
it alive again. ``alpha`` starts it dead. A dead server leaves the table (``ipvsadm -d``), or
stays with weight 0 when ``inhibit_on_failure`` (keepalived's perform_svr_state). Quorum, as
keepalived's update_quorum_state: the live weight is the sum of the alive servers' weights; the
quorum is lost when it falls below ``quorum − hysteresis`` (or to 0) and won back at
``quorum + hysteresis``; while it is lost a ``sorry_server`` takes the alive servers' place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pylvs.core.model import RealServer, VirtualService, endpoint_text, family_of

KINDS = ("tcp", "http", "https", "misc")
HTTP_KINDS = ("http", "https")
"""HTTP_GET, and SSL_GET: the same request over TLS."""
# keepalived's defaults: delay_loop 60 s, connect_timeout 5 s, retry 1 (MISC_CHECK 0),
# delay_before_retry 3 s for HTTP_GET and SSL_GET and 1 s otherwise, misc_timeout = delay_loop
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 5.0



def endpoint(address: str, port: int) -> str:
    """``addr:port``, an IPv6 address in brackets."""
    return endpoint_text(address, port, family_of(address))

@dataclass(frozen=True)
class CheckSpec:
    kind: str
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retry: int = 1
    delay_before_retry: float = 1.0
    path: str = "/"
    status: tuple[int, ...] = ()
    """Accepted HTTP status codes; empty: any of 200–299 (keepalived's default)."""
    command: str = ""
    port: int = 0
    """keepalived's connect_port; 0: the real server's own."""

    @classmethod
    def with_defaults(cls, kind: str, **given: object) -> CheckSpec:
        interval = float(given.get("interval", DEFAULT_INTERVAL))  # type: ignore[arg-type]
        defaults = {"interval": interval,
                    "timeout": interval if kind == "misc" else DEFAULT_TIMEOUT,
                    "retry": 0 if kind == "misc" else 1,
                    "delay_before_retry": 3.0 if kind in HTTP_KINDS else 1.0}
        return cls(kind, **{**defaults, **given})  # type: ignore[arg-type]

    def status_ok(self, code: int) -> bool:
        return code in self.status if self.status else 200 <= code <= 299


@dataclass(eq=False)
class ServerHealth:
    """One real server's check and what it has found."""
    server: RealServer
    """As configured: what goes back into the table when it comes back."""
    spec: CheckSpec
    inhibit: bool = False
    alive: bool = True
    notify_up: str = ""
    notify_down: str = ""
    failures: int = 0
    """Failed checks in a row (keepalived's retry_it, plus the first)."""
    checks: int = 0
    last: str = "not checked yet"
    latency: float | None = None
    """Seconds the last timed probe took (a tcp connect, an http status line), kept through
    the failures that timed nothing; None until one did."""
    since: float = 0.0
    due: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return self.server.address, self.server.port

    @property
    def weight(self) -> int:
        return self.server.weight

    def begin(self, now: float) -> None:
        """The checks start at ``now``: a first check due now, up or down since now, unless
        carried over a reload (ServiceHealth.carry)."""
        self.due = self.due or now
        self.since = self.since or now

    def result(self, ok: bool, detail: str, now: float, latency: float | None = None) -> bool:
        """Take one check's result (``latency``: seconds, when the probe timed an answer);
        True when the server changed between alive and dead."""
        self.checks += 1
        self.last = detail
        if latency is not None:
            self.latency = latency
        if ok:
            self.failures = 0
            self.due = now + self.spec.interval
            return self._become(True, now)
        self.failures += 1
        if self.failures <= self.spec.retry:
            self.due = now + self.spec.delay_before_retry
            return False
        self.failures = 0
        self.due = now + self.spec.interval
        return self._become(False, now)

    def _become(self, alive: bool, now: float) -> bool:
        if alive == self.alive:
            return False
        self.alive, self.since = alive, now
        return True


@dataclass(eq=False)
class ServiceHealth:
    """A virtual service's checked servers, its quorum and its sorry server."""
    key: tuple[int, ...]
    """The director's key of the service (model.service_key)."""
    name: str
    servers: list[ServerHealth] = field(default_factory=list)
    quorum: int = 1
    hysteresis: int = 0
    sorry_server: tuple[str, int] | None = None
    quorum_up: bool = True

    def carry(self, old: ServiceHealth) -> None:
        """What the checks of ``old`` (the same service, before a reload) found, for the
        servers both know: a reload neither forgets a failure count nor checks anew."""
        known = {s.key: s for s in old.servers}
        for server in self.servers:
            before = known.get(server.key)
            if before is not None:
                for name in ("alive", "failures", "checks", "last", "latency", "since",
                             "due"):
                    setattr(server, name, getattr(before, name))

    def live_weight(self) -> int:
        return sum(s.weight for s in self.servers if s.alive)

    def start(self) -> None:
        self.quorum_up = self.live_weight() >= self.quorum

    def update_quorum(self) -> bool:
        """keepalived's update_quorum_state; True when the quorum was lost or won back."""
        live = self.live_weight()
        if not self.quorum_up and live >= self.quorum + self.hysteresis:
            self.quorum_up = True
            return True
        if self.quorum_up and (live == 0 or live < self.quorum - self.hysteresis):
            self.quorum_up = False
            return True
        return False

    def desired(self, current: VirtualService) -> VirtualService:
        """``current`` as the checks want it: checked servers present, at weight 0 or absent as
        their health and the quorum say; servers the checks do not know stay as they are."""
        checked = {s.key: s for s in self.servers}
        have = {(rs.address, rs.port): rs for rs in current.real_servers}
        sorry = self.sorry_server if not self.quorum_up else None
        wanted: list[RealServer] = []
        for health in self.servers:
            up = health.alive and sorry is None
            if up or health.inhibit:  # an alive server configured at weight 0 stays, as 0
                wanted.append(dataclasses.replace(health.server,
                                                  weight=health.weight if up else 0))
        wanted += [rs for key, rs in have.items() if key not in checked and key != sorry]
        if sorry is not None:
            wanted.append(have.get(sorry) or RealServer(*sorry, forward=current.forward))
        return dataclasses.replace(current, real_servers=wanted)


def render_status(services: list[ServiceHealth], now: float) -> str:
    """`pylvs status`: every check's state and its last result."""
    if not services:
        return "no health checks configured\n"
    lines = []
    for svc in services:
        sorry = endpoint(*svc.sorry_server) if svc.sorry_server else "none"
        lines.append(f"{svc.name}  quorum {'up' if svc.quorum_up else 'DOWN'} (live weight "
                     f"{svc.live_weight()}, quorum {svc.quorum}, hysteresis {svc.hysteresis}), "
                     f"sorry server {sorry}")
        for s in svc.servers:
            state = "UP" if s.alive else "DOWN"
            lines.append(f"  -> {endpoint(*s.key):<21} {s.spec.kind:<4} {state:<4} for "
                         f"{max(0, int(now - s.since))}s  checks {s.checks}  "
                         f"last: {s.last}")
    return "\n".join(lines) + "\n"

"""`[director] metrics = "ADDRESS:PORT"`: the Prometheus text exposition, served by
prometheus-client from the process that owns the host state (the engine with one worker, the
supervisor with several), its counts summed over the workers.

The IPVS part has node_exporter's IPVS collector's names, types, help texts and labels
(collector/ipvs_linux.go), so dashboards and alerts made for node_exporter work unchanged:
five counters without labels, the totals of /proc/net/ip_vs_stats, and three gauges per
(service, real server) with the labels local_address, local_port, remote_address, remote_port,
proto and local_mark, valued as procfs gives them. ``pylvs_*`` metrics add what only pylvs
knows: its counters by reason, the table's size and bound, each worker's counters, the health
checks and VRRP.

Why a queue, not a lock. The HTTP server answers in threads of its own, but the director's
state (services, real servers, counters) is changed by its loop without locks, and with
workers it lives in other processes that only the loop may ask over their socketpairs. So a
scrape does not read that state: it puts a request on a queue and waits; the loop takes it
between batches of frames, as it serves the control socket (``serve``), builds a ``Scrape``
of plain values and hands it back. A scrape therefore sees one consistent moment of the
director, never a half-made change, and costs the data path what a `pylvs adm -Ln --stats`
costs it; it waits at most the loop's poll interval (0.1 s). Pure helpers (labels, the metric
families of a Scrape) are at the top and need no director.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pylvs.adm.config import split_address
from pylvs.core.model import PROTO_NAMES, RealServer, VirtualService, int_to_ip
from pylvs.ha.health import ServiceHealth

log = logging.getLogger("pylvs")

SCRAPE_TIMEOUT = 5.0
"""How long a scrape waits for the loop before it answers 500."""
BACKEND_LABELS = ("local_address", "local_port", "remote_address", "remote_port", "proto",
                  "local_mark")
"""node_exporter's fullIpvsBackendLabels, in its order."""
TOTALS = (("connections_total", "The total number of connections made."),
          ("incoming_packets_total", "The total number of incoming packets."),
          ("outgoing_packets_total", "The total number of outgoing packets."),
          ("incoming_bytes_total", "The total amount of incoming data."),
          ("outgoing_bytes_total", "The total amount of outgoing data."))
"""node_exporter's IPVS counters (names without the node_ipvs_ prefix) and their help, in the
order of Stats.counters()."""
BACKEND_GAUGES = (
    ("backend_connections_active",
     "The current active connections by local and remote address."),
    ("backend_connections_inactive",
     "The current inactive connections by local and remote address."),
    ("backend_weight", "The current backend weight by local and remote address."))
HEALTH_LABELS = (*BACKEND_LABELS[:5], "check")
VRRP_STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOP")


# --- pure: what a scrape shows, from the director's objects ---------------------------------

def service_labels(proto: int, ip: int, port: int, *family: int) -> tuple[str, str, str, str]:
    """A service key's local_address, local_port, proto and local_mark as node_exporter reads
    them from /proc/net/ip_vs: a fwmark service's line is ``FWM  %08X``, so no address, port
    0, proto "FWM" and the mark in 8 hex digits; another's has no mark."""
    if not proto:
        return "", "0", "FWM", f"{ip:08X}"
    return int_to_ip(ip, *family), str(port), PROTO_NAMES[proto], ""


def backend_labels(service: VirtualService, server: RealServer) -> tuple[str, ...]:
    """procfs's view of one /proc/net/ip_vs row: addresses without ports, proto as ipvsadm
    prints it, local_mark a fwmark service's mark (``service_labels``)."""
    address, port, proto, mark = service_labels(*service.key)
    return (address, port, server.address, str(server.port), proto, mark)


@dataclass(frozen=True)
class Backend:
    labels: tuple[str, ...]
    active: int
    inactive: int
    weight: int


@dataclass(frozen=True)
class Check:
    """One real server's health check: its labels (HEALTH_LABELS) and what it found."""
    labels: tuple[str, ...]
    up: bool
    checks: int
    last_ok: bool
    latency: float | None
    """Seconds the last timed probe took (ServerHealth.latency); None before one."""


@dataclass(frozen=True)
class VrrpRow:
    instance: str
    """keepalived's instance name (VI_1 for a lone [vrrp])."""
    interface: str
    state: str
    vips_held: bool
    transitions: dict[str, int] = field(default_factory=dict)
    """State entered → how many times."""


@dataclass
class Scrape:
    """One moment of the director in plain values: safe to hand to another thread."""
    totals: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    backends: list[Backend] = field(default_factory=list)
    connections: int = 0
    max_connections: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    workers: list[dict[str, int]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    vrrp: list[VrrpRow] = field(default_factory=list)
    sync: dict[str, int] | None = None
    """The sync daemon's counters (pylvs.shell.sync_socket), None while no half runs."""
    bgp: Bgp | None = None
    """[bgp]: what is announced and the sessions (pylvs.shell.announcer), None without."""
    offload: dict[str, Any] | None = None
    """The XDP fast path's links (Engine.offload_report), None when not read."""


@dataclass
class Bgp:
    announced: dict[str, bool]
    """Each service address: announced or not."""
    sessions: list[tuple[str, int, bool]]
    """(neighbour address, its AS, Established)."""


def ipvs_part(services: Iterable[VirtualService]) -> tuple[tuple[int, int, int, int, int],
                                                            list[Backend]]:
    """The totals (the sum over services, as IPVS's tot_stats counts every packet a service
    counts) and a Backend per real server."""
    totals = [0] * 5
    backends = []
    for service in services:
        totals = [a + b for a, b in zip(totals, service.stats.counters(), strict=True)]
        backends += [Backend(backend_labels(service, rs), rs.activeconns, rs.inactconns,
                             rs.weight) for rs in service.real_servers]
    return (totals[0], totals[1], totals[2], totals[3], totals[4]), backends


def health_part(services: Iterable[ServiceHealth]) -> list[Check]:
    """Each checked server's state. The last check passed when the server is alive with no
    failure counted since (a dead server comes back on its first success)."""
    found = []
    for service in services:
        address, port, proto, _ = service_labels(*service.key)
        for server in service.servers:
            labels = (address, port, server.server.address, str(server.server.port), proto,
                      server.spec.kind)
            found.append(Check(labels, server.alive, server.checks,
                               server.alive and server.failures == 0 and server.checks > 0,
                               server.latency))
    return found


def families(scrape: Scrape) -> list[Metric]:
    """The metric families of one scrape: node_exporter's first, then pylvs's own."""
    found: list[Metric] = []
    for (name, help_text), value in zip(TOTALS, scrape.totals, strict=True):
        found.append(CounterMetricFamily(f"node_ipvs_{name}", help_text, value=value))
    for index, (name, help_text) in enumerate(BACKEND_GAUGES):
        gauge = GaugeMetricFamily(f"node_ipvs_{name}", help_text, labels=BACKEND_LABELS)
        for backend in scrape.backends:
            value = (backend.active, backend.inactive, backend.weight)[index]
            gauge.add_metric(backend.labels, value)
        found.append(gauge)
    found += _sync(scrape)
    return (found + _table(scrape) + _workers(scrape) + _checks(scrape) + _vrrp(scrape)
            + _bgp(scrape) + _offload(scrape))


def _offload(scrape: Scrape) -> list[Metric]:
    """Per link: the fast path sends into it or not, and what it dropped while the program was
    on (its RX and TX dropped); the frames passed to Python for a partial checksum."""
    report = scrape.offload
    if report is None or "links" not in report:
        return []
    fast = GaugeMetricFamily("pylvs_xdp_fast_path", "1 while the XDP fast path sends frames "
                             "into the interface, 0 where Python forwards (at start, or "
                             "withdrawn for its drops).", labels=["interface"])
    dropped = CounterMetricFamily("pylvs_xdp_dropped", "Frames the interface dropped (RX and "
                                  "TX dropped) since the XDP program went on: the fast path's "
                                  "failed XDP_TX and redirects show here.",
                                  labels=["interface"])
    for name, link in sorted(report["links"].items()):
        fast.add_metric([name], int(link["fast"]))
        dropped.add_metric([name], link["dropped"])
    partial = CounterMetricFamily("pylvs_xdp_partial_checksum", "Frames of offloaded "
                                  "connections the XDP program passed to Python because their "
                                  "TCP or UDP checksum was partial.", value=report["partial"])
    return [fast, dropped, partial]


def _bgp(scrape: Scrape) -> list[Metric]:
    if scrape.bgp is None:
        return []
    announced = GaugeMetricFamily("pylvs_bgp_announced", "1 while the VIP is announced over "
                                  "BGP (pylvs.ha.bgp decides when).", labels=["address"])
    for address, on in sorted(scrape.bgp.announced.items()):
        announced.add_metric([address], int(on))
    up = GaugeMetricFamily("pylvs_bgp_session_up", "1 while the BGP session with the "
                           "neighbour is Established.", labels=["neighbor", "remote_as"])
    for address, remote_as, established in scrape.bgp.sessions:
        up.add_metric([address, str(remote_as)], int(established))
    return [announced, up]


def _table(scrape: Scrape) -> list[Metric]:
    counters = CounterMetricFamily(
        "pylvs_director_events", "The director's counters by reason (pylvs status): frames "
        "forwarded and replied, frames dropped and why, host errors, expired connections.",
        labels=["reason"])
    for reason, value in sorted(scrape.counters.items()):
        counters.add_metric([reason], value)
    return [GaugeMetricFamily("pylvs_connections", "Entries in the connection table "
                              "(connections and persistence templates), all workers.",
                              value=scrape.connections),
            GaugeMetricFamily("pylvs_max_connections", "The connection table's bound "
                              "(max_connections), all workers.", value=scrape.max_connections),
            counters]


def _workers(scrape: Scrape) -> list[Metric]:
    events = CounterMetricFamily("pylvs_worker_events", "Each data-plane worker's counters "
                                 "by reason (worker 0 alone with workers = 1).",
                                 labels=["worker", "reason"])
    for index, counters in enumerate(scrape.workers):
        for reason, value in sorted(counters.items()):
            events.add_metric([str(index), reason], value)
    return [events]


def _checks(scrape: Scrape) -> list[Metric]:
    if not scrape.checks:
        return []
    up = GaugeMetricFamily("pylvs_health_check_up", "1 while the real server's health check "
                           "finds it alive, 0 while it is out.", labels=HEALTH_LABELS)
    last = GaugeMetricFamily("pylvs_health_check_last_ok", "1 when the last check passed.",
                             labels=HEALTH_LABELS)
    runs = CounterMetricFamily("pylvs_health_checks", "Checks run.", labels=HEALTH_LABELS)
    latency = GaugeMetricFamily("pylvs_health_check_latency_seconds", "How long the last "
                                "timed probe took.", labels=HEALTH_LABELS)
    for check in scrape.checks:
        up.add_metric(check.labels, int(check.up))
        last.add_metric(check.labels, int(check.last_ok))
        runs.add_metric(check.labels, check.checks)
        if check.latency is not None:
            latency.add_metric(check.labels, check.latency)
    return [up, last, runs, latency]


def _vrrp(scrape: Scrape) -> list[Metric]:
    if not scrape.vrrp:
        return []
    state = GaugeMetricFamily("pylvs_vrrp_state", "1 for the VRRP instance's current state.",
                              labels=["instance", "interface", "state"])
    held = GaugeMetricFamily("pylvs_vrrp_vips_held", "1 while this director holds the VIPs "
                             "and forwards.", labels=["instance", "interface"])
    moves = CounterMetricFamily("pylvs_vrrp_transitions", "VRRP state changes, by the state "
                                "entered.", labels=["instance", "to"])
    for vrrp in scrape.vrrp:
        for name in VRRP_STATES:
            state.add_metric([vrrp.instance, vrrp.interface, name], int(vrrp.state == name))
            moves.add_metric([vrrp.instance, name], vrrp.transitions.get(name, 0))
        held.add_metric([vrrp.instance, vrrp.interface], int(vrrp.vips_held))
    return [state, held, moves]


def _sync(scrape: Scrape) -> list[Metric]:
    """The sync daemon's messages, counted where they were sent and read (received counts
    every datagram, the rejected ones too), and what became of the connections they carried."""
    counts = scrape.sync
    if counts is None:
        return []
    messages = CounterMetricFamily("pylvs_sync_messages", "Sync daemon messages sent (master "
                                   "half) and received (backup half, rejected ones included).",
                                   labels=["direction"])
    rejected = CounterMetricFamily("pylvs_sync_messages_rejected", "Received sync messages "
                                   "dropped whole: malformed, or another SyncID's.",
                                   labels=["reason"])
    for direction in ("sent", "received"):
        messages.add_metric([direction], counts.get(direction, 0))
    for reason in ("malformed", "other_syncid"):
        rejected.add_metric([reason], counts.get(reason, 0))
    errors = CounterMetricFamily("pylvs_sync_send_errors", "Sync messages the socket refused "
                                 "to send (a full buffer, a link down).",
                                 value=counts.get("send_failed", 0))
    conns = CounterMetricFamily("pylvs_sync_connections", "Connections the received messages "
                                "carried, by what the backup did with them.", labels=["result"])
    for result in ("created", "refreshed", "table_full", "unknown_destination"):
        conns.add_metric([result], counts.get(result, 0))
    return [messages, rejected, errors, conns]


# --- the shell: a scrape asks the loop --------------------------------------------------------

class _Request:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.scrape: Scrape | None = None


class LoopCollector(Collector):
    """prometheus-client's collector: each scrape asks the director's loop for a Scrape."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()

    def describe(self) -> list[Metric]:
        return []  # registering must not wait for a loop that is not running yet

    def collect(self) -> Iterator[Metric]:
        request = _Request()
        self.requests.put(request)
        if not request.done.wait(SCRAPE_TIMEOUT) or request.scrape is None:
            raise TimeoutError(f"the director's loop did not answer in {SCRAPE_TIMEOUT:g} s")
        yield from families(request.scrape)

    def serve(self, gather: Callable[[], Scrape]) -> None:
        """In the loop: answer every scrape waiting (each is woken, answered or not)."""
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            try:
                request.scrape = gather()
            finally:
                request.done.set()


    def drop(self) -> None:
        """Wake every scrape waiting without an answer: the loop is going away."""
        while True:
            try:
                self.requests.get_nowait().done.set()
            except queue.Empty:
                return


class MetricsServer:
    """The HTTP server (prometheus-client's, in its thread) on ``address`` (ADDRESS:PORT)."""

    def __init__(self, address: str) -> None:
        host, port = split_address(address)
        self.address = address
        self.collector = LoopCollector()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        self.server, self.thread = start_http_server(port, host, registry)
        log.info("metrics: Prometheus exposition on http://%s/metrics", address)

    def serve(self, gather: Callable[[], Scrape]) -> None:
        self.collector.serve(gather)

    def close_in_child(self) -> None:
        """A forked worker lets go of the listening socket (its thread is not in the child)."""
        self.server.socket.close()

    def close(self) -> None:
        """Stop answering, free the port, and wake any scrape still waiting (it answers 500:
        no made-up zeros)."""
        self.server.shutdown()
        self.collector.drop()
        self.server.server_close()
        self.thread.join(SCRAPE_TIMEOUT)

"""The Prometheus exposition (pylvs.shell.metrics) and `pylvs top`'s reading of ipvsadm's texts
(pylvs.shell.top), without root: an engine that is not started, a real HTTP server on loopback
whose scrapes a thread of the test answers as the director's loop would, and listings rendered
by the director core itself."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

import schedulers
from pylvs.adm import commands
from pylvs.adm.config import Config, ConfigError, parse, split_address
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService
from pylvs.ha.health import CheckSpec, ServerHealth, ServiceHealth
from pylvs.shell import metrics, top
from pylvs.shell.engine import Engine

BACKEND = {"local_address", "local_port", "remote_address", "remote_port", "proto",
           "local_mark"}
NODE_EXPORTER = {  # collector/ipvs_linux.go: name → (type, help)
    "node_ipvs_connections": ("counter", "The total number of connections made."),
    "node_ipvs_incoming_packets": ("counter", "The total number of incoming packets."),
    "node_ipvs_outgoing_packets": ("counter", "The total number of outgoing packets."),
    "node_ipvs_incoming_bytes": ("counter", "The total amount of incoming data."),
    "node_ipvs_outgoing_bytes": ("counter", "The total amount of outgoing data."),
    "node_ipvs_backend_connections_active": (
        "gauge", "The current active connections by local and remote address."),
    "node_ipvs_backend_connections_inactive": (
        "gauge", "The current inactive connections by local and remote address."),
    "node_ipvs_backend_weight": ("gauge", "The current backend weight by local and remote "
                                 "address."),
}


def _engine() -> Engine:
    """Two services (TCP and UDP), three real servers, counters set as traffic would."""
    web = VirtualService("tcp", "192.0.2.100", 80, schedulers.get("rr")())
    for address, weight in (("10.0.0.1", 1), ("10.0.0.2", 3)):
        web.add_real_server(RealServer(address, 8080, weight=weight))
    dns = VirtualService("udp", "192.0.2.100", 53, schedulers.get("rr")())
    dns.add_real_server(RealServer("10.0.0.3", 53))
    web.real_servers[0].activeconns, web.real_servers[0].inactconns = 4, 7
    web.stats.conns, web.stats.inpkts, web.stats.inbytes = 11, 50, 4000
    dns.stats.conns, dns.stats.inpkts, dns.stats.outpkts = 2, 2, 2
    engine = Engine(Config("lo", services=[web, dns]))
    engine.director.counters.update({"forwarded": 52, "table_full": 3})
    return engine


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _exposition(engine: Engine) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    class Fixed(metrics.LoopCollector):
        def collect(self):
            yield from metrics.families(engine.scrape())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_the_ipvs_part_has_node_exporters_names_types_help_and_labels():
    families = _families(_exposition(_engine()))
    for name, (kind, help_text) in NODE_EXPORTER.items():
        assert (families[name].type, families[name].documentation) == (kind, help_text), name
    totals = {name: families[name].samples for name in NODE_EXPORTER if "backend" not in name}
    assert {n: [(s.name, s.labels, s.value) for s in v] for n, v in totals.items()} == {
        "node_ipvs_connections": [("node_ipvs_connections_total", {}, 13.0)],
        "node_ipvs_incoming_packets": [("node_ipvs_incoming_packets_total", {}, 52.0)],
        "node_ipvs_outgoing_packets": [("node_ipvs_outgoing_packets_total", {}, 2.0)],
        "node_ipvs_incoming_bytes": [("node_ipvs_incoming_bytes_total", {}, 4000.0)],
        "node_ipvs_outgoing_bytes": [("node_ipvs_outgoing_bytes_total", {}, 0.0)],
    }
    active = {s.labels["remote_address"]: (s.labels, s.value)
              for s in families["node_ipvs_backend_connections_active"].samples}
    assert active["10.0.0.2"] == ({"local_address": "192.0.2.100", "local_port": "80",
                                   "remote_address": "10.0.0.2", "remote_port": "8080",
                                   "proto": "TCP", "local_mark": ""}, 4.0)
    assert active["10.0.0.3"][0]["proto"] == "UDP" and active["10.0.0.3"][1] == 0.0
    weights = {s.labels["remote_address"]: s.value
               for s in families["node_ipvs_backend_weight"].samples}
    assert weights == {"10.0.0.1": 1.0, "10.0.0.2": 3.0, "10.0.0.3": 1.0}
    inactive = families["node_ipvs_backend_connections_inactive"].samples
    assert all(set(s.labels) == BACKEND for s in inactive)
    assert sorted(s.value for s in inactive) == [0.0, 0.0, 7.0]


def test_pylvs_part_has_the_counters_by_reason_the_table_and_the_workers():
    families = _families(_exposition(_engine()))
    events = {s.labels["reason"]: s.value for s in families["pylvs_director_events"].samples}
    assert events == {"forwarded": 52.0, "table_full": 3.0}
    assert families["pylvs_director_events"].type == "counter"
    assert families["pylvs_connections"].samples[0].value == 0.0
    per_worker = {(s.labels["worker"], s.labels["reason"]): s.value
                  for s in families["pylvs_worker_events"].samples}
    assert per_worker == {("0", "forwarded"): 52.0, ("0", "table_full"): 3.0}
    assert "pylvs_health_check_up" not in families and "pylvs_vrrp_state" not in families


def _scraped(scrape: metrics.Scrape) -> dict:
    """The families a fixed scrape gives, through prometheus-client's own exposition."""
    from prometheus_client import CollectorRegistry, generate_latest

    class Fixed(metrics.LoopCollector):
        def collect(self):
            yield from metrics.families(scrape)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return _families(generate_latest(registry).decode())


def test_each_vrrp_instance_has_its_state_and_its_transitions():
    families = _scraped(metrics.Scrape(vrrp=[
        metrics.VrrpRow("VI_A", "eth0", "MASTER", True, {"BACKUP": 1, "MASTER": 1}),
        metrics.VrrpRow("VI_B", "eth0", "FAULT", False, {"BACKUP": 1, "FAULT": 1})]))
    state = {(s.labels["instance"], s.labels["state"]): s.value
             for s in families["pylvs_vrrp_state"].samples}
    assert state[("VI_A", "MASTER")] == 1 and state[("VI_B", "FAULT")] == 1
    assert sum(state.values()) == 2
    moves = {(s.labels["instance"], s.labels["to"]): s.value
             for s in families["pylvs_vrrp_transitions"].samples if s.name.endswith("_total")}
    assert families["pylvs_vrrp_transitions"].type == "counter"
    assert moves[("VI_B", "FAULT")] == 1 and moves[("VI_A", "FAULT")] == 0
    held = {s.labels["instance"]: s.value for s in families["pylvs_vrrp_vips_held"].samples}
    assert held == {"VI_A": 1, "VI_B": 0}


def test_bgp_shows_each_address_announced_and_each_session():
    families = _scraped(metrics.Scrape(bgp=metrics.Bgp(
        {"10.0.100.1": True, "10.0.100.2": False},
        [("10.0.0.1", 65000, True), ("10.0.0.2", 65002, False)])))
    assert {s.labels["address"]: s.value for s in families["pylvs_bgp_announced"].samples} == {
        "10.0.100.1": 1, "10.0.100.2": 0}
    assert {(s.labels["neighbor"], s.labels["remote_as"]): s.value
            for s in families["pylvs_bgp_session_up"].samples} == {
        ("10.0.0.1", "65000"): 1, ("10.0.0.2", "65002"): 0}
    assert "pylvs_bgp_announced" not in _families(_exposition(_engine()))


def test_health_checks_show_state_last_result_and_latency():
    engine = _engine()
    web = engine.director.services[(6, 0xC0000264, 80)]
    up, down = (ServerHealth(rs, CheckSpec("http")) for rs in web.real_servers)
    up.result(True, "HTTP 200 in 2.5 ms", 1.0, 0.0025)
    down.result(False, "Connection refused", 1.0)
    down.result(False, "Connection refused", 2.0)  # retry 1: the second failure takes it out
    engine.config.health = [ServiceHealth(web.key, "TCP 192.0.2.100:80", [up, down])]
    families = _families(_exposition(engine))
    state = {s.labels["remote_address"]: s.value
             for s in families["pylvs_health_check_up"].samples}
    assert state == {"10.0.0.2": 1.0, "10.0.0.1": 0.0}
    last = {s.labels["remote_address"]: s.value
            for s in families["pylvs_health_check_last_ok"].samples}
    assert last == {"10.0.0.2": 1.0, "10.0.0.1": 0.0}
    latency = families["pylvs_health_check_latency_seconds"].samples
    assert [(s.labels["remote_address"], s.labels["check"], s.value) for s in latency] == [
        ("10.0.0.2", "http", 0.0025)]
    runs = {s.labels["remote_address"]: s.value for s in families["pylvs_health_checks"].samples}
    assert runs == {"10.0.0.2": 1.0, "10.0.0.1": 2.0}


def test_the_latency_is_the_number_the_probe_timed_not_its_text():
    engine = _engine()
    web = engine.director.services[(6, 0xC0000264, 80)]
    timed, untimed = (ServerHealth(rs, CheckSpec("tcp")) for rs in web.real_servers)
    timed.result(True, "connected in 0.1 ms", 1.0, 0.000123456)  # the text is rounded
    timed.result(False, "no answer in 5 s", 2.0)  # timed nothing: the last number stays
    untimed.result(True, "exit status 0", 1.0)
    engine.config.health = [ServiceHealth(web.key, "TCP 192.0.2.100:80", [timed, untimed])]
    latency = _families(_exposition(engine))["pylvs_health_check_latency_seconds"].samples
    assert [(s.labels["remote_address"], s.value) for s in latency] == [
        ("10.0.0.2", 0.000123456)]


def _sync_engine() -> Engine:
    """_engine() with both halves of the sync daemon on loopback (multicast to the group
    through lo), their counters as the real sockets leave them."""
    from pylvs.shell.sync_socket import SyncBackup, SyncMaster
    engine = _engine()
    engine.ha.sync_daemons = {"master": SyncMaster(engine.director, "lo", 0),
                              "backup": SyncBackup(engine.director, "lo", 7)}
    return engine


def _sync_families(engine: Engine) -> dict[str, dict[str, float]]:
    families = _families(_exposition(engine))
    return {name: {"|".join(s.labels.values()): s.value for s in families[name].samples}
            for name in ("pylvs_sync_messages", "pylvs_sync_messages_rejected",
                         "pylvs_sync_send_errors", "pylvs_sync_connections")}


def test_no_sync_daemon_no_sync_metrics_and_a_running_one_shows_zeros():
    """Before any message (no poll yet): every count there, at 0 (tests/e2e/test_metrics.py
    counts real ones)."""
    assert "pylvs_sync_messages" not in _families(_exposition(_engine()))
    engine = _sync_engine()
    try:
        found = _sync_families(engine)
    finally:
        for half in engine.ha.sync_daemons.values():
            half.close()
    assert found == {
        "pylvs_sync_messages": {"sent": 0.0, "received": 0.0},
        "pylvs_sync_messages_rejected": {"malformed": 0.0, "other_syncid": 0.0},
        "pylvs_sync_send_errors": {"": 0.0},
        "pylvs_sync_connections": {"created": 0.0, "refreshed": 0.0, "table_full": 0.0,
                                   "unknown_destination": 0.0}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_a_scrape_is_answered_by_the_loop_and_reads_live_values():
    engine = _engine()
    server = metrics.MetricsServer(f"127.0.0.1:{_free_port()}")
    stop = threading.Event()
    served = []

    def loop() -> None:  # as the engine's loop: between "batches", change and serve
        while not stop.is_set():
            engine.director.counters["forwarded"] += 1
            server.serve(lambda: served.append(1) or engine.scrape())
            time.sleep(0.01)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        url = f"http://{server.address}/metrics"
        first, second = _get(url), _get(url)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert first[0] == second[0] == 200 and len(served) == 2
    counts = [{s.labels["reason"]: s.value for s in _families(text)["pylvs_director_events"]
               .samples}["forwarded"] for _, text in (first, second)]
    assert 52 < counts[0] < counts[1]  # each scrape read the loop's values of its moment


def test_no_loop_no_made_up_values_and_close_frees_the_port(monkeypatch):
    monkeypatch.setattr(metrics, "SCRAPE_TIMEOUT", 0.3)
    address = f"127.0.0.1:{_free_port()}"
    server = metrics.MetricsServer(address)
    try:
        status, _ = _get(f"http://{address}/metrics")
    finally:
        server.close()
    assert status == 500
    metrics.MetricsServer(address).close()  # the port is free again (binding it would fail)


@pytest.mark.parametrize(("value", "reason"), [
    ("9300", "is not ADDRESS:PORT"), ("localhost:9300", "'localhost' is not an IP address"),
    ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ("127.0.0.1:http", "the port must be"), ("::1:9300", "IPv6 address goes in brackets")])
def test_a_bad_metrics_address_names_the_key_and_the_reason(value, reason):
    with pytest.raises(ConfigError) as caught:
        parse(f'[director]\ninterface = "eth0"\nmetrics = "{value}"\n', "d.toml")
    assert caught.value.key == "director.metrics" and reason in caught.value.reason


def test_the_metrics_address_is_read():
    config = parse('[director]\ninterface = "eth0"\nmetrics = "127.0.0.1:9300"\n')
    assert config.metrics == "127.0.0.1:9300"
    assert parse('[director]\ninterface = "eth0"\n').metrics == ""
    assert split_address("[::1]:9300") == ("::1", 9300)


# --- pylvs top: ipvsadm's own texts, rendered by the director core ---

def _listing(director: Director, *argv: str) -> str:
    rc, out, err = commands.adm(director, ["-L", "-n", *argv], 0.0)
    assert rc == 0, err
    return out


def test_top_reads_every_service_and_server_with_ipvsadms_numbers():
    director = _engine().director
    web = director.services[(6, 0xC0000264, 80)]
    rs1 = web.find_real_server("10.0.0.1", 8080)
    rs1.stats.conns, rs1.stats.inpkts = 7, 31
    for _ in range(3):  # the estimator's ticks: rates appear
        web.stats.conns += 10
        web.stats.estimate()
    status = ("TCP 192.0.2.100:80  quorum up (live weight 4, quorum 1, hysteresis 0), sorry "
              "server none\n  -> 10.0.0.2:8080         http UP   for 3s  checks 2  last: x\n"
              "  -> 10.0.0.9:8080         http DOWN for 1s  checks 5  last: refused\n"
              "BGP: announcing 192.0.2.100/32\n  neighbor 10.0.0.1 AS 65000: Established\n"
              "VRRP instance 51 on eth0: MASTER [VI_A: 192.0.2.100]\n"
              "VRRP instance 52 on eth0: BACKUP [VI_B: 192.0.2.101]\n")
    view = top.frame(_listing(director), _listing(director, "--rate", "--exact"),
                     _listing(director, "--stats", "--exact"), status,
                     {"connections": 5, "max_connections": 9, "counters": {"table_full": 3}})
    rows = {(r.name, r.server): r for r in view.rows}
    assert list(rows) == [("TCP 192.0.2.100:80", False), ("10.0.0.1:8080", True),
                          ("10.0.0.2:8080", True), ("10.0.0.9:8080", True),
                          ("UDP 192.0.2.100:53", False), ("10.0.0.3:53", True)]
    service = rows[("TCP 192.0.2.100:80", False)]
    assert service.totals == ["41", "50", "0"] and service.method == "rr"
    assert service.rates == [str(v) for v in web.stats.rates()] and service.rates[0] != "0"
    rs1, rs2 = rows[("10.0.0.1:8080", True)], rows[("10.0.0.2:8080", True)]
    assert (rs1.method, rs1.weight, rs1.active, rs1.inactive, rs1.totals, rs1.health) == (
        "Route", "1", "0", "0", ["7", "31", "0"], "-")
    assert (rs2.weight, rs2.active, rs2.inactive, rs2.health) == ("3", "4", "7", "UP")
    assert rows[("10.0.0.9:8080", True)].health == "DOWN (out)"
    console = Console(width=200, record=True)
    console.print(top.render(view, "/run/test.sock"))
    text = console.export_text()
    assert "drops: table_full 3" in text and "connections 5 (max 9)" in text
    assert all(line in text for line in ("BGP: announcing 192.0.2.100/32", "AS 65000: Est",
                                         "MASTER [VI_A", "BACKUP [VI_B"))
    assert all(f"-> {name}" in text for name, server in rows if server)


def test_ipv6_labels_are_the_addresses_as_node_exporter_writes_them():
    """procfs's ip_vs rows give node_exporter the address alone (no brackets, no port), in
    Go's net.IP.String form: RFC 5952's, as pylvs keeps IPv6 addresses."""
    service = VirtualService("tcp", "2001:DB8:0::100", 80, schedulers.get("rr")())
    server = RealServer("2001:db8:0:0::11", 8080, forward="tun")
    assert metrics.backend_labels(service, server) == ("2001:db8::100", "80", "2001:db8::11",
                                                       "8080", "TCP", "")

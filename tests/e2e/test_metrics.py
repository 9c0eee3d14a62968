"""[director] metrics end to end: a lab director (one worker and two) serves the exposition on
loopback in its namespace; it parses with prometheus_client's parser, has node_exporter's IPVS
names, types and labels, and its backend gauges are what `-Ln` shows per real server. Then a real
Prometheus (Debian's package), started by the test in the director's namespace, scrapes it, and
its HTTP API answers node_ipvs_backend_connections_active per real server as `-Ln` does. Nothing
is left running: Prometheus is stopped by the test and, failing that, by the lab's close."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pylvs.ha import sync
from pylvs.ha.sync import SyncConn
from pylvs.lab.demo import DirectorProcess, HeldConnections
from pylvs.lab.topology import Lab, curl_argv, lab_config

METRICS = "127.0.0.1:9300"
PROMETHEUS = "127.0.0.1:9090"
BACKEND = ["local_address", "local_port", "remote_address", "remote_port", "proto",
           "local_mark"]


class MetricsLab:
    """A DR lab of 3 real servers whose director serves metrics on METRICS in its namespace."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.lab = Lab(servers=3, mode="dr")
        self.director: DirectorProcess | None = None
        self.held: HeldConnections | None = None
        try:
            self.lab.setup()
            self.lab.configure_real_servers()
            self.lab.start_http_servers(80)
            self.director = DirectorProcess(self.lab, lab_config(
                self.lab, "rr", workers=workers, metrics=METRICS))
        except BaseException:
            self.lab.close()
            raise

    def get(self, url: str) -> str:
        """``url`` fetched with curl from inside the director's namespace."""
        return self.lab.run_in(self.lab.director_ns, curl_argv(url), capture_output=True,
                               text=True, check=True).stdout

    def close(self) -> None:
        try:
            if self.held is not None:
                self.held.close()
            if self.director is not None:
                self.director.stop()
        finally:
            self.lab.close()


@pytest.fixture
def metrics_lab(request) -> Iterator[MetricsLab]:
    run = MetricsLab(getattr(request, "param", 1))
    yield run
    run.close()


def traffic(run: MetricsLab) -> None:
    """9 requests (closed: inactive), then 3 connections held open (active)."""
    for _ in range(9):
        run.lab.curl("/")
    run.held = HeldConnections(run.lab, 3)


def listing(run: MetricsLab) -> dict[str, tuple[int, int, int]]:
    """-Ln per real server: (weight, ActiveConn, InActConn)."""
    assert run.director is not None
    rows = {}
    for line in run.director.adm("-L", "-n").splitlines():
        cells = line.split()
        if cells[:1] == ["->"] and cells[1] != "RemoteAddress:Port":
            rows[cells[1].split(":")[0]] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return rows


def exposition(run: MetricsLab) -> dict[str, object]:
    return {family.name: family
            for family in text_string_to_metric_families(run.get(f"http://{METRICS}/metrics"))}


def steady(run: MetricsLab, read):
    """``read()`` at a moment when -Ln is the same before and after it, with that -Ln."""
    for _ in range(10):
        before = listing(run)
        value = read()
        if listing(run) == before:
            return before, value
        time.sleep(0.2)
    pytest.fail("-Ln never held still around a read")


@pytest.mark.parametrize("metrics_lab", [1, 2], indirect=True, ids=["1worker", "2workers"])
def test_the_exposition_is_node_exporters_and_matches_the_listing(metrics_lab):
    run = metrics_lab
    traffic(run)
    table, families = steady(run, lambda: exposition(run))
    assert sum(active for _, active, _ in table.values()) == 3
    for name in ("connections", "incoming_packets", "outgoing_packets", "incoming_bytes",
                 "outgoing_bytes"):
        family = families[f"node_ipvs_{name}"]
        assert family.type == "counter"
        assert [(s.name, s.labels) for s in family.samples] == [(f"node_ipvs_{name}_total", {})]
    assert families["node_ipvs_connections"].samples[0].value == 12
    assert families["node_ipvs_incoming_packets"].samples[0].value > 12 * 3
    gauges = {}
    for name, column in (("backend_weight", 0), ("backend_connections_active", 1),
                         ("backend_connections_inactive", 2)):
        family = families[f"node_ipvs_{name}"]
        assert family.type == "gauge"
        for sample in family.samples:
            assert sorted(sample.labels) == sorted(BACKEND)
            assert sample.labels | {"remote_address": ""} == {
                "local_address": run.lab.vip, "local_port": "80", "remote_address": "",
                "remote_port": "80", "proto": "TCP", "local_mark": ""}
            gauges.setdefault(sample.labels["remote_address"], [0, 0, 0])[column] = int(
                sample.value)
    assert {ip: tuple(v) for ip, v in gauges.items()} == table
    events = {s.labels["reason"]: s.value for s in families["pylvs_director_events"].samples}
    assert events["forwarded"] >= families["node_ipvs_incoming_packets"].samples[0].value
    assert families["pylvs_connections"].samples[0].value == 12
    workers = {s.labels["worker"] for s in families["pylvs_worker_events"].samples}
    assert workers == {str(i) for i in range(run.workers)}


PROMETHEUS_CONFIG = f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pylvs
    static_configs:
      - targets: ["{METRICS}"]
"""


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="needs Prometheus (apt-get install prometheus; scripts/install.sh "
                    "--test)")
def test_a_real_prometheus_scrapes_the_director(metrics_lab, tmp_path):
    run = metrics_lab
    traffic(run)
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG)
    proc = run.lab.popen_in(run.lab.director_ns, [
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={PROMETHEUS}"], stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"))
    run.lab.processes.append(proc)  # the lab's close stops it if this test does not
    try:
        series = query_until_matching(run, proc, tmp_path)
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode is not None
    assert len(series) == 3
    assert all(s["metric"]["job"] == "pylvs" and s["metric"]["proto"] == "TCP" for s in series)


def query_until_matching(run: MetricsLab, proc: subprocess.Popen, tmp_path) -> list[dict]:
    """Prometheus's answer to node_ipvs_backend_connections_active once it agrees with -Ln
    (it scrapes every second); fails with its log if it never does."""
    url = f"http://{PROMETHEUS}/api/v1/query?query=node_ipvs_backend_connections_active"
    deadline = time.monotonic() + 60
    answer: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
        try:
            answer = json.loads(run.get(url))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            time.sleep(0.5)
            continue
        series = answer["data"]["result"] if answer.get("status") == "success" else []
        found = {s["metric"]["remote_address"]: int(float(s["value"][1])) for s in series}
        active = {ip: row[1] for ip, row in listing(run).items()}
        if len(series) == 3 and found == active:
            return series
        time.sleep(0.5)
    pytest.fail(f"Prometheus never agreed with -Ln: last answer {answer}; log:\n"
                f"{(tmp_path / 'prometheus.log').read_text()[-3000:]}")


PEER = """
import select, socket, sys
from pylvs.ha import sync
from pylvs.shell import addresses
iface = sys.argv[1]
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
rx.bind((sync.SYNC_GROUP, sync.SYNC_PORT))
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              addresses.multicast_request(sync.SYNC_GROUP, iface))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
              addresses.multicast_request(sync.SYNC_GROUP, iface))
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)  # rx hears the director alone
heard = 0
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "send":
        for message in args:
            tx.sendto(bytes.fromhex(message), (sync.SYNC_GROUP, sync.SYNC_PORT))
        print("sent", flush=True)
    elif command == "count":
        while select.select([rx], [], [], 0)[0]:
            rx.recv(65535)
            heard += 1
        print(heard, flush=True)
"""
"""A second director's sync daemon, by hand, on the client's side of the segment: it sends what
the test gives it and counts every sync message it hears from the director."""
SYNCID = 7


class SyncPeer:
    def __init__(self, lab: Lab) -> None:
        self.proc = lab.popen_in(lab.client_ns, [sys.executable, "-c", PEER, "eth0"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lab.processes.append(self.proc)
        assert self.say("") == "ready"

    def say(self, line: str) -> str:
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def send(self, messages: list[bytes]) -> None:
        assert self.say("send " + " ".join(m.hex() for m in messages)) == "sent"

    def heard(self) -> int:
        return int(self.say("count"))


def synced(lab: Lab, server: str, cport: int, vport: int = 80) -> SyncConn:
    return SyncConn(6, lab.client_ip, cport, lab.vip, vport, server, 80,
                    sync.IP_VS_TCP_S_ESTABLISHED, sync.IP_VS_CONN_F_DROUTE, 0)


@pytest.fixture
def sync_lab(request) -> Iterator[MetricsLab]:
    """A MetricsLab whose director runs the sync daemon (SyncID 7) and an HTTP check."""
    run = MetricsLab.__new__(MetricsLab)
    run.workers, run.lab, run.director, run.held = (getattr(request, "param", 1),
                                                    Lab(servers=3, mode="dr"), None, None)
    try:
        run.lab.setup()
        run.lab.configure_real_servers()
        run.lab.start_http_servers(80)
        text = lab_config(run.lab, "rr", metrics=METRICS, workers=run.workers, service_keys=(
            'check = { type = "http", interval = 1, timeout = 2 }',))
        run.director = DirectorProcess(run.lab, text.replace(
            "[director]\n", f"[director]\nsync_daemon = true\nsyncid = {SYNCID}\n", 1))
        yield run
    finally:
        run.close()


def sync_counts(run: MetricsLab) -> dict[str, dict[str, float]]:
    families = exposition(run)
    return {name: {"|".join(s.labels.values()): s.value for s in families[name].samples}
            for name in ("pylvs_sync_messages", "pylvs_sync_messages_rejected",
                         "pylvs_sync_send_errors", "pylvs_sync_connections")}


@pytest.mark.parametrize("sync_lab", [1, 2], indirect=True, ids=["1worker", "2workers"])
def test_sync_messages_are_counted_as_they_go_out_and_come_in(sync_lab):
    """What the director sent (with workers: each worker's master half, summed) is what a
    listener on the segment heard; what it received is what the peer sent: 3 good messages
    (5 connections, one for a service it does not have), 2 malformed, 1 of another SyncID."""
    run = sync_lab
    peer = SyncPeer(run.lab)
    rips = run.lab.server_ips
    good = [sync.encode([synced(run.lab, rips[0], 40001), synced(run.lab, rips[1], 40002)],
                        SYNCID)[0],
            sync.encode([synced(run.lab, rips[2], 40003)], SYNCID)[0],
            sync.encode([synced(run.lab, rips[0], 40004),
                         synced(run.lab, rips[1], 40005, vport=81)], SYNCID)[0]]
    cut = good[0][:-4]  # its size field says 4 bytes more than the datagram has
    other = sync.encode([synced(run.lab, rips[0], 40006)], SYNCID + 1)[0]
    peer.send([*good, cut, b"\x00\x07", other])
    for _ in range(9):
        run.lab.curl("/")
    deadline = time.monotonic() + 20
    while True:  # the director's messages in flight arrive; the peer's are read by its loop
        counts, heard = sync_counts(run), peer.heard()
        messages = counts["pylvs_sync_messages"]
        if (messages["received"] == 6 and messages["sent"] == heard > 0) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert messages == {"sent": heard, "received": 6.0}, (counts, heard)
    assert counts["pylvs_sync_messages_rejected"] == {"malformed": 2.0, "other_syncid": 1.0}
    assert counts["pylvs_sync_send_errors"] == {"": 0.0}
    assert counts["pylvs_sync_connections"] == {"created": 4.0, "refreshed": 0.0,
                                                "table_full": 0.0, "unknown_destination": 1.0}
    sources = set(re.findall(rf"{run.lab.client_ip}:(4000\d) ", run.director.adm("-Lnc")))
    assert sources == {"40001", "40002", "40003", "40004"}  # what was counted, installed


def test_the_check_latency_is_each_real_servers_last_probe(sync_lab):
    run = sync_lab
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        families = exposition(run)
        latency = {s.labels["remote_address"]: (s.labels["check"], s.value)
                   for s in families["pylvs_health_check_latency_seconds"].samples}
        if len(latency) == 3:
            break
        time.sleep(0.3)
    assert set(latency) == set(run.lab.server_ips)
    assert all(check == "http" and 0 < value < 2 for check, value in latency.values()), latency
    status = subprocess.run([sys.executable, "-m", "pylvs", "status", "--socket",
                             run.lab.control_socket], capture_output=True, text=True,
                            timeout=30).stdout
    assert status.count("last: HTTP 200 in ") == 3  # the texts say the same probes passed

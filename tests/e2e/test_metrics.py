"""[director] metrics end to end: a lab director (one worker and two) serves the exposition on
loopback in its namespace; it parses with prometheus_client's parser, has node_exporter's IPVS
names, types and labels, and its backend gauges are what `-Ln` shows per real server. Then a real
Prometheus (Debian's package), started by the test in the director's namespace, scrapes it, and
its HTTP API answers node_ipvs_backend_connections_active per real server as `-Ln` does. Nothing
is left running: Prometheus is stopped by the test and, failing that, by the lab's close."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

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

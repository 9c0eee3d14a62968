"""The scheduler laboratory's client and server without root: the open-loop schedule, the
answer's parsing, the server's service times and pauses, and one short run on loopback that
checks the sender keeps to its schedule."""

from __future__ import annotations

import json
import random
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.schedlab.client import body_name, schedule
from bench.schedlab.results import percentiles
from bench.schedlab.server import draw, finish_time

ROOT = Path(__file__).resolve().parents[2]


def test_schedule_is_poisson_at_the_rate_and_repeatable():
    plan = schedule(500.0, 20.0, 8, seed=3)
    assert plan == schedule(500.0, 20.0, 8, seed=3)
    assert plan != schedule(500.0, 20.0, 8, seed=4)
    assert abs(len(plan) - 10_000) < 4 * 100  # Poisson: sd = sqrt(10,000)
    times = [t for t, _ in plan]
    assert times == sorted(times) and 0 <= times[0] and times[-1] < 20.0
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 500, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 500, rel=0.1)  # exponential: sd = mean
    assert {s for _, s in plan} == set(range(8))


def test_schedule_of_nothing():
    assert schedule(0.0, 5.0, 4, seed=1) == []


def test_body_name():
    assert body_name(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nrs3\n") == "rs3"
    assert body_name(b"HTTP/1.1 503 Busy\r\n\r\nrs3\n") == ""
    assert body_name(b"") == ""


@pytest.mark.parametrize("distribution", ["exp", "lognormal", "const"])
def test_service_times_have_the_mean(distribution):
    rng = random.Random(1)
    times = [draw(rng, distribution, 20.0) for _ in range(40_000)]
    assert statistics.mean(times) == pytest.approx(20.0, rel=0.05)
    assert min(times) >= 0


def test_unknown_distribution():
    with pytest.raises(ValueError, match="unknown distribution"):
        draw(random.Random(1), "pareto", 20.0)


def test_finish_time_without_pauses():
    assert finish_time(5.0, 0.25, 0.0, 0.0, 0.0) == 5.25


def test_finish_time_stands_still_in_pauses():
    # pauses at [2, 2.3), [4, 4.3), ... after epoch 0
    assert finish_time(1.0, 0.5, 0.0, 2.0, 0.3) == pytest.approx(1.5)
    assert finish_time(1.9, 0.2, 0.0, 2.0, 0.3) == pytest.approx(2.4)  # 0.1 before, 0.1 after
    assert finish_time(2.1, 0.1, 0.0, 2.0, 0.3) == pytest.approx(2.4)  # starts in a pause
    assert finish_time(1.0, 3.0, 0.0, 2.0, 0.3) == pytest.approx(4.6)  # spans two pauses
    assert finish_time(0.0, 0.5, 10.0, 2.0, 0.3) == pytest.approx(0.5)  # before the epoch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_and_server_on_loopback(tmp_path):
    """100 requests/s for 1.5 s to a server of constant 5 ms: every request answered with its
    name, no faster than the service time, the sender on schedule."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.schedlab.server", "--name", "rs7", "--bind", "127.0.0.1",
         "--port", str(port), "--mean-ms", "5", "--distribution", "const",
         "--concurrency", "4"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "serving\n"
        out = tmp_path / "records.json"
        subprocess.run([sys.executable, "-m", "bench.schedlab.client", "--target",
                        f"127.0.0.1:{port}", "--rate", "100", "--duration", "1.5",
                        "--sources", "127.0.0.1,127.0.0.2", "--out", str(out)],
                       cwd=ROOT, check=True, capture_output=True, timeout=30)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)
    records = json.loads(out.read_text())["records"]
    assert len(records) == len(schedule(100, 1.5, 2, 1))
    assert {r[4] for r in records} == {"rs7"} and not any(r[5] for r in records)
    assert min(r[3] for r in records) >= 5.0
    assert {r[1] for r in records} == {0, 1}
    lag = percentiles([r[2] for r in records])
    assert lag["p50"] < 20.0, lag  # a loaded 2-core machine: generous, but not a closed loop

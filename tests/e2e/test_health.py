"""Health checks end to end: a real server's HTTP server dies mid-stream and comes back; the
director's checks (keepalived's HTTP_GET and TCP_CHECK semantics) take it out of the table and
put it back, with one worker and with two. Labs as in the other e2e tests."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pylvs.lab.topology import _wait_for_line
from tests.helpers.http_stream import STREAM

HTTP_CHECK = ('check = { type = "http", interval = 0.5, timeout = 0.5, retry = 1, '
              'delay_before_retry = 0.2 }')


def kill_server(run, index: int) -> None:
    proc = run.lab.processes[index]
    proc.kill()
    proc.wait()


def restart_server(run, index: int) -> None:
    lab = run.lab
    proc = lab.popen_in(lab.server_ns[index], [sys.executable, "-m", "pylvs.lab.httpserver",
                                               "--name", lab.server_names[index], "--port", "80"],
                        stdout=subprocess.PIPE, text=True)
    lab.processes.append(proc)
    _wait_for_line(proc, "serving", lab.server_names[index])


def wait_until(predicate, seconds: float = 15.0) -> float:
    """When ``predicate()`` first held (time.time()); fails the test if it never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.05)
    pytest.fail(f"still not so after {seconds} s")


def row(run, address: str) -> list[str] | None:
    for line in run.director.adm("-Ln").splitlines():
        if line.strip().startswith(f"-> {address}:"):
            return line.split()
    return None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dead_server_leaves_the_table_and_comes_back(make_lab, workers):
    run = make_lab(3, "rr", service_keys=(HTTP_CHECK,), workers=workers)
    lab, rs1 = run.lab, run.lab.server_ips[0]
    stream = lab.popen_in(lab.client_ns, [sys.executable, "-c", STREAM, "9", lab.vip],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    killed = time.time()
    kill_server(run, 0)
    removed = wait_until(lambda: row(run, rs1) is None)
    time.sleep(1.0)
    restart_server(run, 0)
    back = wait_until(lambda: row(run, rs1) is not None)
    out, _ = stream.communicate(timeout=30)
    answers = [(float(t), name) for t, name in (line.split() for line in out.splitlines())]
    print(f"detected in {removed - killed:.2f} s; back {back - removed:.2f} s after")
    assert [n for t, n in answers if t > removed and n.startswith("ERROR")] == []
    assert {n for t, n in answers if removed < t < back - 0.5} <= {"rs2", "rs3"}
    assert "rs1" in {n for t, n in answers if t > back}
    assert "health: -d -t" in run.director.output()


def test_inhibit_on_failure_keeps_the_server_at_weight_zero(make_lab):
    check = ('check = { type = "tcp", interval = 0.5, timeout = 0.5, retry = 0 }\n'
             'inhibit_on_failure = true')
    run = make_lab(2, "rr", service_keys=(check,))
    rs1 = run.lab.server_ips[0]
    kill_server(run, 0)
    wait_until(lambda: row(run, rs1)[3] == "0")
    status = subprocess.run([sys.executable, "-m", "pylvs", "status", "--socket",
                             run.lab.control_socket], capture_output=True, text=True, timeout=10)
    line = next(x for x in status.stdout.splitlines() if f"-> {rs1}:80" in x)
    assert " tcp  DOWN " in line and "last: Connection refused" in line
    assert run.answers(6) == {"rs2": 6}
    restart_server(run, 0)
    wait_until(lambda: row(run, rs1)[3] == "1")
    assert set(run.answers(6)) == {"rs1", "rs2"}

"""offload = "xdp": the XDP fast path on a running director. Transfers through DR, NAT and TUN
arrive intact with nearly every frame forwarded by the program; IPVS's counters and timers see
those frames; the program is gone after a stop and after kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pylvs.lab.httpserver import blob
from pylvs.lab.topology import curl_argv

SIZE = 4 << 20


def pylvs(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=30)


def xdp_on(lab, dev: str = "eth0") -> bool:
    shown = lab.run_in(lab.director_ns, ["ip", "link", "show", dev], capture_output=True,
                       text=True, check=True).stdout
    return "prog/xdp" in shown


def upload(lab, body: bytes, rate: str = "") -> subprocess.CompletedProcess:
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "60", "--data-binary", "@-",
            "-H", "Content-Type: application/octet-stream", f"http://{lab.vip}/sha256"]
    if rate:
        argv[1:1] = ["--limit-rate", rate]
    return subprocess.run(["ip", "netns", "exec", lab.client_ns, *argv], input=body,
                          capture_output=True, timeout=90)


def in_packets(listing: str) -> int:
    """The service's InPkts in -Ln --stats."""
    return int(re.search(r"^TCP\s+\S+\s+\d+\s+(\d+)", listing, re.M).group(1))


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_transfers_go_through_the_fast_path_and_ipvs_counts_them(make_lab, mode):
    run = make_lab(2, "rr", mode=mode, offload="xdp")
    lab = run.lab
    assert xdp_on(lab) and (mode != "nat" or xdp_on(lab, "eth1"))
    got = lab.run_in(lab.client_ns, curl_argv(f"http://{lab.vip}/blob/{SIZE}", max_time=60),
                     capture_output=True, check=True).stdout
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob(SIZE)).digest()
    body = os.urandom(SIZE)
    sent = upload(lab, body)
    assert sent.returncode == 0 and sent.stdout.strip().decode() == hashlib.sha256(
        body).hexdigest()
    counters = json.loads(pylvs("status", "--json", "--socket", lab.control_socket).stdout)[
        "counters"]
    total = in_packets(run.director.adm("-Ln", "--stats"))
    assert total > SIZE // 1500  # the upload's segments at least, whoever forwarded them
    assert counters["forwarded"] < total // 20, (counters, total)  # Python saw the few
    closing = {"dr": "FIN_WAIT", "tun": "FIN_WAIT", "nat": "TIME_WAIT"}[mode]
    assert run.director.adm("-Lnc").count(closing) == 2
    run.director.stop()
    assert not xdp_on(lab) and not xdp_on(lab, lab.director_inside_if)


def test_timers_follow_the_frames_the_program_forwarded(make_lab):
    """ESTABLISHED set to 3 s: an upload of 8 s whose frames only the program sees must not be
    expired by the director half-way (it would then drop its frames)."""
    run = make_lab(1, "rr", offload="xdp")
    run.director.adm("--set", "3", "0", "0")
    body = os.urandom(1 << 20)
    sent = upload(run.lab, body, rate="128k")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip().decode() == hashlib.sha256(body).hexdigest()
    counters = json.loads(pylvs("status", "--json", "--socket", run.lab.control_socket).stdout)[
        "counters"]
    assert counters.get("no_connection", 0) == 0


def test_kill_9_leaves_no_program_attached(make_lab):
    run = make_lab(1, "rr", offload="xdp")
    lab = run.lab
    assert xdp_on(lab)
    director_pid = int(lab.run_in(lab.director_ns, ["pgrep", "-f", run.director.config_path],
                                  capture_output=True, text=True).stdout.split()[0])
    os.kill(director_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (xdp_on(lab) or "XDP on eth0" not in run.director.output()) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not xdp_on(lab)
    assert "XDP on eth0" in run.director.output()  # the guard's word


def test_two_workers_share_the_fast_path_and_a_dead_workers_entries_go(make_lab):
    run = make_lab(2, "rr", offload="xdp", workers=2)
    lab = run.lab
    for _ in range(4):  # new client ports: both workers get some
        got = lab.run_in(lab.client_ns, curl_argv(f"http://{lab.vip}/blob/{SIZE}", max_time=60),
                         capture_output=True, check=True).stdout
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob(SIZE)).digest()
    counters = json.loads(pylvs("status", "--json", "--socket", lab.control_socket).stdout)[
        "counters"]
    total = in_packets(run.director.adm("-Ln", "--stats"))
    assert total > 400 and counters["forwarded"] < total // 10, (counters, total)  # ACKs
    worker = int(re.search(r"worker 1 up \(pid (\d+)\)", run.director.output()).group(1))
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while "XDP entries removed" not in run.director.output():
        assert time.monotonic() < deadline, run.director.output()
        time.sleep(0.2)
    while len(re.findall(r"worker 1 up", run.director.output())) < 2:
        assert time.monotonic() < deadline, run.director.output()
        time.sleep(0.2)
    answers = run.answers(4)  # each worker schedules on its own: who answers may vary
    assert sum(answers.values()) == 4 and set(answers) <= {"rs1", "rs2"}

"""Directors behind ECMP (pylvs.lab.ecmp): real BIRD on the router and on each director, real
pylvs directors announcing the VIP over BGP, real curl through the router's multipath route.

Each test builds its own lab (names unique to the run) and removes it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from pylvs.lab import ecmp
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.ecmp import EcmpLab
from pylvs.shell import control
from pylvs.shell.messages import Status, Sysctl

pytestmark = pytest.mark.skipif(not shutil.which("bird"),
                                reason="needs BIRD 2 (apt-get install bird2)")


class Running:
    """An ECMP lab with its directors started and routed."""

    def __init__(self, directors: int, bfd: bool, extra: dict[int, tuple[str, ...]],
                 drain: dict[int, float], metrics: str = "") -> None:
        self.lab = EcmpLab(directors, servers=3, bfd=bfd)
        self.tmp = tempfile.TemporaryDirectory(prefix="pylvs-ecmp-")
        self.directors: list[DirectorProcess] = []
        try:
            self.lab.setup()
            self.lab.start_http_servers()
            self.lab.start_router()
            for i in range(directors):
                self.directors.append(self.start(i, extra.get(i, ()), drain.get(i, 0.5),
                                                 metrics if i == 0 else ""))
        except BaseException:
            self.close()
            raise

    def start(self, i: int, extra: tuple[str, ...] = (), drain: float = 0.5,
              metrics: str = "") -> DirectorProcess:
        directory = os.path.join(self.tmp.name, f"d{i + 1}")
        os.makedirs(directory, exist_ok=True)
        text = self.lab.director_config(i, drain, extra=extra, metrics=metrics)
        return DirectorProcess(self.lab, text,  # type: ignore[arg-type]
                               ns=self.lab.director_ns[i],
                               control_socket=self.lab.control_sockets[i], directory=directory)

    def conns(self) -> list[int]:
        return [ecmp._conns(d) for d in self.directors]

    def close(self) -> None:
        for director in self.directors:
            director.stop()
        self.lab.close()
        self.tmp.cleanup()


@pytest.fixture
def ecmp_lab():
    made: list[Running] = []

    def make(directors: int = 3, bfd: bool = True, extra: dict | None = None,
             drain: dict | None = None, metrics: str = "") -> Running:
        made.append(Running(directors, bfd, extra or {}, drain or {}, metrics))
        return made[-1]

    yield make
    for run in made:
        run.close()


def test_the_router_learns_the_vip_from_each_director_and_spreads_flows_over_all(ecmp_lab):
    run = ecmp_lab(3, metrics="127.0.0.1:9311")
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    routes = lab.birdc("show", "route", "all")
    assert [f"via {ip}" in routes for ip in lab.director_ips] == [True] * 3
    assert routes.count("BGP.as_path: 65001") == 3
    before = run.conns()
    for _ in range(60):
        lab.run_in(lab.client_ns, lab.curl_argv(), capture_output=True, check=True)
    gained = [a - b for a, b in zip(run.conns(), before, strict=True)]
    assert sum(gained) == 60 and min(gained) > 0, gained
    status = control.ask(lab.control_sockets[0], Status()).stdout
    assert "BGP: announcing 10.0.100.1/32" in status and "Established" in status
    scraped = lab.run_in(lab.director_ns[0], ["curl", "-s", "http://127.0.0.1:9311/metrics"],
                         capture_output=True, text=True, check=True).stdout
    assert 'pylvs_bgp_announced{address="10.0.100.1"} 1.0' in scraped
    assert 'pylvs_bgp_session_up{neighbor="10.0.0.1",remote_as="65000"} 1.0' in scraped


def test_kill_9_of_a_director_moves_its_downloads_to_the_others_to_the_same_real_server(
        ecmp_lab):
    run = ecmp_lab(3)
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
               check=True)
    with tempfile.TemporaryDirectory() as tmp:
        downloads = [ecmp._download(lab, 42000 + k, tmp) for k in range(12)]
        time.sleep(1.5)
        running: list[DirectorProcess | None] = list(run.directors)
        held = ecmp._holders(lab, running)
        for d in downloads:
            d.before = held.get(d.port, ("", ""))
        names = [d.before[0] for d in downloads]
        victim = max(range(3), key=lambda i: names.count(f"d{i + 1}"))
        killed_pid = run.directors[victim].proc.pid
        run.directors[victim].proc.kill()
        run.directors[victim].proc.wait()
        running[victim] = None
        lab.wait_for_hops([ip for i, ip in enumerate(lab.director_ips) if i != victim])
        # followed at once: a download ends about 2.5 s after the kill, and then its entry on
        # the director that took it over is no longer ESTABLISHED
        moved = [d for d in downloads if d.before[0] == f"d{victim + 1}"]
        ecmp._follow(lab, running, moved, timeout=10)
        bird_dir = f"/run/pylvs-{killed_pid}-bird"
        deadline = time.monotonic() + 5
        while os.path.exists(bird_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(bird_dir)  # the guard ended its BIRD and removed its files
        assert subprocess.run(["pgrep", "-f", f"{bird_dir}/"]).returncode == 1
        results = [d.result() for d in downloads]
    assert all(d.before[0] for d in downloads), [d.before for d in downloads]
    assert results == [(True, ecmp.DOWNLOAD)] * len(downloads)
    assert moved
    for d in moved:  # on another director now, to the real server it had
        assert d.after[0] not in ("", f"d{victim + 1}") and d.after[1] == d.before[1], d


def test_a_director_whose_real_servers_are_all_down_withdraws_its_route(ecmp_lab):
    dead_check = ('check = { type = "tcp", port = 9, interval = 0.3, timeout = 0.3, '
                  'retry = 0 }',)
    run = ecmp_lab(2, extra={1: dead_check})
    lab = run.lab
    lab.wait_for_hops([lab.director_ips[0]])
    status = control.ask(lab.control_sockets[1], Status()).stdout
    assert "BGP: announcing nothing" in status and "quorum DOWN" in status
    data = control.ask(lab.control_sockets[1], Status()).data
    assert data["bgp"]["announced"] == [] and data["bgp"]["sessions"][0]["established"]
    assert "BGP: announcing 10.0.100.1/32" in control.ask(lab.control_sockets[0],
                                                          Status()).stdout


def test_a_stop_withdraws_first_then_drains(ecmp_lab):
    run = ecmp_lab(2, drain={1: 3.0})
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    stopping = run.directors[1]
    stopping.proc.send_signal(signal.SIGTERM)
    lab.wait_for_hops([lab.director_ips[0]])
    still_running = stopping.proc.poll() is None
    assert stopping.stop() == 0
    assert still_running
    log = stopping.final_output
    assert log.index("bgp: withdrew 10.0.100.1/32") < log.index("bgp: draining for 3 s")


def test_a_hung_director_is_withdrawn_by_bfd_while_its_session_stays_open(ecmp_lab):
    run = ecmp_lab(2, bfd=True)
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    pylvs_pid = run.directors[1].proc.pid
    bird_pid = int(subprocess.run(["pgrep", "-f", f"/run/pylvs-{pylvs_pid}-bird/bird.conf"],
                                  capture_output=True, text=True, check=True).stdout.split()[0])
    for pid in (pylvs_pid, bird_pid):
        os.kill(pid, signal.SIGSTOP)
    try:
        lab.wait_for_hops([lab.director_ips[0]])
        bfd = lab.birdc("show", "bfd", "sessions")
    finally:
        for pid in (bird_pid, pylvs_pid):
            os.kill(pid, signal.SIGCONT)
    assert f"{lab.director_ips[1]} " in bfd and "Down" in bfd, bfd
    lab.wait_for_hops(lab.director_ips)


@pytest.mark.parametrize("sloppy", [0, 1])
def test_sloppy_tcp_decides_whether_a_mid_flow_packet_starts_a_connection(ecmp_lab, sloppy):
    """IPVS's sloppy_tcp: off (the default) a non-SYN packet of no connection is dropped; on,
    it starts one, ESTABLISHED, to the real server mh picks."""
    run = ecmp_lab(1)
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    sock = lab.control_sockets[0]
    assert control.ask(sock, Sysctl("sloppy_tcp", sloppy)).rc == 0
    before = control.ask(sock, Status()).data["counters"]
    send_ack = ("from scapy.all import IP, TCP, send; "
                f"send(IP(src='{ecmp.CLIENT_IP}', dst='{lab.vip}') / TCP(sport=45678, "
                "dport=80, flags='A', seq=1000, ack=2000) / b'mid-flow', verbose=False)")
    lab.run_in(lab.client_ns, [sys.executable, "-c", send_ack], check=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = control.ask(sock, Status()).data["counters"]
        key = "forwarded" if sloppy else "no_connection"
        if after.get(key, 0) > before.get(key, 0):
            break
        time.sleep(0.05)
    rows = [line.split() for line in run.directors[0].adm("-Lnc").splitlines()[2:]]
    mine = [row for row in rows if row[3] == f"{ecmp.CLIENT_IP}:45678"]
    if sloppy:
        assert after["forwarded"] == before.get("forwarded", 0) + 1
        assert [row[2] for row in mine] == ["ESTABLISHED"]
        assert mine[0][5].split(":")[0] in lab.server_ips
    else:
        assert after["no_connection"] == before.get("no_connection", 0) + 1
        assert mine == []


def test_pylvs_lab_ecmp_shows_the_failover_keeping_every_transfer():
    """The lab as a person runs it: `pylvs lab ecmp`, with 2 directors to keep it short."""
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "ecmp", "--directors", "2"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "the router learnt 10.0.100.1/32 from every director" in out
    assert out.count("via 10.0.0.1") >= 2 and "intact" in out and "BROKEN" not in out
    assert "ECMP failover works: 8 of 8 transfers arrived intact" in out
    assert "director 2 started again" in out


def test_pylvs_lab_ecmp_refuses_what_it_does_not_take():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "ecmp", "--keep"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "ecmp takes --directors" in result.stderr
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "ecmp", "--directors", "9"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "directors must be 1..8" in result.stderr

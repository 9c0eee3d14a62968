"""Directors behind ECMP over IPv6 (issue 23; pylvs.lab.ecmp with families (6,) and (4, 6)):
real BIRD on the router and on each director, BGP sessions over IPv6, the IPv6 VIP announced
as a /128 and installed by the router as one ECMP route (a resilient nexthop group where the
kernel has one), real curl -6 through it; the kill test; a VIP withdrawn when its real servers
are all down; a dual-stack director announcing both families over a session of each.

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
from pylvs.lab.ecmp import VIP, VIP6, EcmpLab
from pylvs.shell import control
from pylvs.shell.messages import Status

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(not shutil.which("bird"), reason="needs BIRD 2 (apt-get install bird2)"),
]
DEAD_CHECK = 'check = { type = "tcp", port = 9, interval = 0.3, timeout = 0.3, retry = 0 }'


class Running:
    """An ECMP lab of ``families`` with its directors started."""

    def __init__(self, directors: int, families: tuple[int, ...], bfd: bool = True,
                 edit: dict[int, tuple[str, str]] | None = None, drain: float = 0.5,
                 metrics: str = "") -> None:
        self.lab = EcmpLab(directors, servers=3, bfd=bfd, families=families)
        self.tmp = tempfile.TemporaryDirectory(prefix="pylvs-ecmp6-")
        self.directors: list[DirectorProcess] = []
        try:
            self.lab.setup()
            self.lab.start_http_servers()
            self.lab.start_router()
            for i in range(directors):
                text = self.lab.director_config(i, drain, metrics=metrics if i == 0 else "")
                if edit and i in edit:
                    text = text.replace(*edit[i])
                self.directors.append(self.start(i, text))
        except BaseException:
            self.close()
            raise

    def start(self, i: int, text: str) -> DirectorProcess:
        directory = os.path.join(self.tmp.name, f"d{i + 1}")
        os.makedirs(directory, exist_ok=True)
        return DirectorProcess(self.lab, text, ns=self.lab.director_ns[i],  # type: ignore[arg-type]
                               control_socket=self.lab.control_sockets[i], directory=directory)

    def conns(self) -> list[int]:
        return [ecmp._conns(d) for d in self.directors]

    def close(self) -> None:
        for director in self.directors:
            director.stop()
        self.lab.close()
        self.tmp.cleanup()


@pytest.fixture
def ecmp6():
    made: list[Running] = []

    def make(directors: int = 3, families: tuple[int, ...] = (6,), **kwargs) -> Running:
        made.append(Running(directors, families, **kwargs))
        return made[-1]

    yield make
    for run in made:
        run.close()


def _curl(lab: EcmpLab, family: int | None = None) -> str:
    return lab.run_in(lab.client_ns, lab.curl_argv(family=family), capture_output=True,
                      text=True, check=True).stdout


def test_the_router_learns_the_128_from_each_director_over_ipv6_and_spreads_flows(ecmp6):
    run = ecmp6(3, metrics="127.0.0.1:9311")
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    routes = lab.birdc("show", "route", "all")
    assert f"{VIP6}/128" in routes and "Table master6:" in routes and "master4" not in routes
    assert [f"via {ip} on eth0" in routes for ip in lab.director_ips] == [True] * 3
    assert routes.count("BGP.as_path: 65001") == 3
    # the next hop is each director's own address (its session's source), never the VIP that
    # the director holds, deprecated, on the same interface
    held = lab.run_in(lab.director_ns[0], ["ip", "-6", "addr", "show", "dev", "eth0"],
                      capture_output=True, text=True).stdout
    assert f"{VIP6}/128" in held and "deprecated" in held
    assert f"via {VIP6}" not in routes and f"BGP.next_hop: {lab.director_ips[0]}" in routes
    sessions = lab.birdc("show", "protocols")
    assert [f"d{i}v6" in sessions for i in (1, 2, 3)] == [True] * 3
    bfd = lab.birdc("show", "bfd", "sessions")
    assert all(f"{ip} " in bfd for ip in lab.director_ips) and bfd.count(" Up ") == 3, bfd
    if lab.resilient:
        assert "nhid" in lab.route_text() and "type resilient" in lab.route_text()
    before = run.conns()
    names = {_curl(lab).strip() for _ in range(60)}
    gained = [a - b for a, b in zip(run.conns(), before, strict=True)]
    assert sum(gained) == 60 and min(gained) > 0, gained
    assert names == {"rs1", "rs2", "rs3"}
    reply = control.ask(lab.control_sockets[0], Status())
    assert reply.data["bgp"]["announced"] == [VIP6]
    assert reply.data["bgp"]["sessions"][0]["established"]
    assert f"BGP: announcing {VIP6}/128" in reply.stdout
    assert "neighbor 2001:db8:10::1 AS 65000: Established" in reply.stdout
    scraped = lab.run_in(lab.director_ns[0], ["curl", "-s", "http://127.0.0.1:9311/metrics"],
                         capture_output=True, text=True, check=True).stdout
    assert f'pylvs_bgp_announced{{address="{VIP6}"}} 1.0' in scraped
    assert 'pylvs_bgp_session_up{neighbor="2001:db8:10::1",remote_as="65000"} 1.0' in scraped


def test_kill_9_of_a_director_moves_its_ipv6_downloads_to_the_others_to_the_same_server(ecmp6):
    run = ecmp6(3)
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
        start = time.monotonic()
        run.directors[victim].proc.kill()
        run.directors[victim].proc.wait()
        running[victim] = None
        took = lab.wait_for_hops([ip for i, ip in enumerate(lab.director_ips)
                                  if i != victim]) - start
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
    assert took < 2.0, took  # the session closed: no hold timer waited for
    assert f"{VIP6}/128" in lab.birdc("show", "route")  # still learnt, from the others
    assert all(d.before[0] for d in downloads), [d.before for d in downloads]
    assert results == [(True, ecmp.DOWNLOAD)] * len(downloads)
    assert moved
    for d in moved:  # on another director now, to the real server it had
        assert d.after[0] not in ("", f"d{victim + 1}") and d.after[1] == d.before[1], d


def test_an_ipv6_vip_whose_real_servers_are_all_down_is_withdrawn(ecmp6):
    run = ecmp6(2, edit={1: ('forward = "dr"', f'forward = "dr"\n{DEAD_CHECK}')})
    lab = run.lab
    lab.wait_for_hops([lab.director_ips[0]])
    reply = control.ask(lab.control_sockets[1], Status())
    assert "BGP: announcing nothing" in reply.stdout and "quorum DOWN" in reply.stdout
    assert reply.data["bgp"]["announced"] == [] and reply.data["bgp"]["sessions"][0][
        "established"]
    assert f"{VIP6}/128" in control.ask(lab.control_sockets[0], Status()).stdout
    assert _curl(lab).strip() in ("rs1", "rs2", "rs3")


def test_a_stop_withdraws_the_128_first_then_drains(ecmp6):
    run = ecmp6(2, drain=3.0)
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    stopping = run.directors[1]
    stopping.proc.send_signal(signal.SIGTERM)
    lab.wait_for_hops([lab.director_ips[0]])
    still_running = stopping.proc.poll() is None
    assert stopping.stop() == 0
    assert still_running
    log = stopping.final_output
    assert log.index(f"bgp: withdrew {VIP6}/128") < log.index("bgp: draining for 3 s")


def test_a_hung_director_is_withdrawn_by_bfd_over_ipv6(ecmp6):
    run = ecmp6(2, bfd=True)
    lab = run.lab
    lab.wait_for_hops(lab.director_ips)
    pylvs_pid = run.directors[1].proc.pid
    bird_pid = int(subprocess.run(["pgrep", "-f", f"/run/pylvs-{pylvs_pid}-bird/bird.conf"],
                                  capture_output=True, text=True, check=True).stdout.split()[0])
    for pid in (pylvs_pid, bird_pid):
        os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        took = lab.wait_for_hops([lab.director_ips[0]]) - start
        bfd = lab.birdc("show", "bfd", "sessions")
        sessions = lab.birdc("show", "protocols")
    finally:
        for pid in (bird_pid, pylvs_pid):
            os.kill(pid, signal.SIGCONT)
    assert f"{lab.director_ips[1]} " in bfd and "Down" in bfd, bfd
    assert took < 2.5, took  # BFD's 0.3 s, not the 3 s hold timer
    assert "d2v6" in sessions
    lab.wait_for_hops(lab.director_ips)


def test_a_dual_stack_director_announces_each_family_over_its_own_session(ecmp6):
    """Two directors, each with a session of each family: the router learns the /32 over the
    IPv4 sessions and the /128 over the IPv6 ones; an IPv6 service whose real servers are down
    withdraws only the /128 of that director; a kill -9 withdraws both."""
    v6_service = f'address = "[{VIP6}]:80"'
    run = ecmp6(2, families=(4, 6), edit={1: (v6_service, f"{v6_service}\n{DEAD_CHECK}")})
    lab = run.lab
    four, six = lab.directors_of(4), lab.directors_of(6)
    lab.wait_for_hops(four, family=4)
    lab.wait_for_hops([six[0]], family=6)  # director 2's IPv6 service is down
    routes = lab.birdc("show", "route", "all")
    assert f"{VIP}/32" in routes and f"{VIP6}/128" in routes
    assert "Table master4:" in routes and "Table master6:" in routes
    assert all(f"via {ip} on eth0" in routes for ip in [*four, six[0]])
    assert f"via {six[1]} on eth0" not in routes
    sessions = lab.birdc("show", "protocols")
    assert all(name in sessions for name in ("d1 ", "d2 ", "d1v6", "d2v6"))
    second = control.ask(lab.control_sockets[1], Status())
    assert second.data["bgp"]["announced"] == [VIP]
    assert [s["established"] for s in second.data["bgp"]["sessions"]] == [True, True]
    first = control.ask(lab.control_sockets[0], Status())
    assert first.data["bgp"]["announced"] == [VIP, VIP6]
    assert f"BGP: announcing {VIP}/32, {VIP6}/128" in first.stdout
    assert _curl(lab, 4).strip() in ("rs1", "rs2", "rs3")
    assert _curl(lab, 6).strip() in ("rs1", "rs2", "rs3")
    run.directors[0].proc.kill()
    run.directors[0].proc.wait()
    lab.wait_for_hops([four[1]], family=4)
    lab.wait_for_hops([], family=6)  # the only director announcing the /128 is gone
    assert f"{VIP6}/128" not in lab.birdc("show", "route")
    assert _curl(lab, 4).strip() in ("rs1", "rs2", "rs3")


def test_pylvs_lab_ecmp_ipv6_shows_the_failover_keeping_every_transfer():
    """The lab as a person runs it: `pylvs lab ecmp --ipv6`, with 2 directors."""
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "ecmp", "--ipv6",
                             "--directors", "2"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"the router learnt {VIP6}/128 from every director" in out
    assert "via 2001:db8:10::11 on eth0" in out and "via 2001:db8:10::12 on eth0" in out
    assert f"curl http://[{VIP6}]:80/" in out
    assert "intact" in out and "BROKEN" not in out
    assert "ECMP failover works: 8 of 8 transfers arrived intact" in out
    assert "director 2 started again" in out

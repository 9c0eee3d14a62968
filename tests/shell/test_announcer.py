"""pylvs.shell.announcer against real BIRD 2: the director's BIRD (started by the Announcer in
its namespace) and a router's BIRD (started here) over a veth; what the router learns."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from pylvs.ha.bgp import Bgp, Neighbor
from pylvs.shell.announcer import AnnounceError, Announcer
from tests.helpers.veth import DIR_IP, PEER_IP, Topo, in_ns

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
]

VIP = "10.0.100.7"
ROUTER = """router id {peer};
protocol device {{ scan time 10; }}
protocol bgp director {{ local as 65000; neighbor {director} as 65001; hold time 3;
  keepalive time 1; connect retry time 1; ipv4 {{ import all; export none; }}; }}
"""


@pytest.fixture
def router(tmp_path):
    topo = Topo()
    topo.up()
    conf = tmp_path / "router.conf"
    conf.write_text(ROUTER.format(peer=PEER_IP, director=DIR_IP))
    sock = str(tmp_path / "router.ctl")
    proc = subprocess.Popen(["ip", "netns", "exec", topo.p, "bird", "-f", "-c", str(conf), "-s",
                             sock])
    try:
        yield topo, sock
    finally:
        proc.terminate()
        proc.wait(5)
        topo.down()


def _learnt(sock: str) -> str:
    return subprocess.run(["birdc", "-s", sock, "show", "route"], capture_output=True,
                          text=True).stdout


def _until(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def test_the_router_learns_what_is_announced_and_nothing_after_close(router, tmp_path):
    topo, sock = router
    spec = Bgp(65001, (Neighbor(PEER_IP, 65000),), hold_time=3)
    run_dir = str(tmp_path / "bird")
    announcer = in_ns(topo.d, Announcer, spec, "vd", run_dir)
    try:
        in_ns(topo.d, announcer.update, [VIP])
        _until(lambda: f"{VIP}/32" in _learnt(sock), "the router to learn the VIP")
        assert f"via {DIR_IP}" in _learnt(sock)  # next hop self
        _until(lambda: any(s.established for s in announcer.sessions()), "Established")
        in_ns(topo.d, announcer.update, [])
        _until(lambda: f"{VIP}/32" not in _learnt(sock), "the router to forget the VIP")
        in_ns(topo.d, announcer.update, [VIP])
        _until(lambda: f"{VIP}/32" in _learnt(sock), "the VIP announced again")
        pid = announcer.pid
    finally:
        announcer.close()
    _until(lambda: f"{VIP}/32" not in _learnt(sock), "the session to close")
    assert not os.path.exists(run_dir)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_bird_that_cannot_start_is_a_clear_error(tmp_path):
    spec = Bgp(65001, (Neighbor(PEER_IP, 65000),), router_id="10.0.0.11",
               bird=str(tmp_path / "no-bird"))
    with pytest.raises(AnnounceError, match="cannot start .*no-bird"):
        Announcer(spec, "lo", str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_running_bird_is_told_through_its_socket_and_its_include(router, tmp_path):
    """[bgp] bird_socket + bird_include: the operator's own BIRD, whose static protocol includes
    the file pylvs writes; pylvs starts no BIRD and only reconfigures that one."""
    from pylvs.ha import bird

    topo, sock = router
    include, own_sock = tmp_path / "pylvs-vips.conf", str(tmp_path / "own.ctl")
    include.write_text("")
    spec = Bgp(65001, (Neighbor(PEER_IP, 65000),), hold_time=3, bird_socket=own_sock,
               bird_include=str(include))
    conf = tmp_path / "own.conf"
    conf.write_text(bird.config(spec, DIR_IP, str(include)))
    own = subprocess.Popen(["ip", "netns", "exec", topo.d, "bird", "-f", "-c", str(conf), "-s",
                            own_sock])
    try:
        _until(lambda: os.path.exists(own_sock), "the operator's BIRD")
        announcer = Announcer(spec, "vd", str(tmp_path / "unused"))
        assert announcer.pid is None and not (tmp_path / "unused").exists()
        announcer.update([VIP])
        assert include.read_text() == f"route {VIP}/32 blackhole;\n"
        _until(lambda: f"{VIP}/32" in _learnt(sock), "the router to learn the VIP")
        announcer.close()
        assert include.read_text() == "" and own.poll() is None
        _until(lambda: f"{VIP}/32" not in _learnt(sock), "the router to forget the VIP")
    finally:
        own.terminate()
        own.wait(5)

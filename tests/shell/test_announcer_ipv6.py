"""pylvs.shell.announcer with IPv6 (issue 23), against real BIRD 2: the director's BIRD (started
by the Announcer in its namespace) with a session of each family to a router's BIRD over a
veth; the router learns the /32 over IPv4 and the /128 over IPv6, with the director's own
address as next hop even though the IPv6 VIP is held (deprecated) on the same interface, as
pylvs holds it; and a running BIRD given the IPv6 routes in bird_include6."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from pylvs.ha import bird
from pylvs.ha.bgp import Bgp, Neighbor
from pylvs.shell.announcer import AnnounceError, Announcer
from tests.helpers.veth import DIR_IP, PEER_IP, Topo, in_ns, ip

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 2 (apt-get install bird2)"),
]

VIP, VIP6 = "10.0.100.7", "2001:db8:100::7"
DIR_IP6, PEER_IP6 = "2001:db8:51::1", "2001:db8:51::2"
ROUTER = """router id {peer};
protocol device {{ scan time 10; }}
protocol bgp director {{ local as 65000; neighbor {director} as 65001; hold time 3;
  keepalive time 1; connect retry time 1; ipv4 {{ import all; export none; }}; }}
protocol bgp director6 {{ local as 65000; neighbor {director6} as 65001; hold time 3;
  keepalive time 1; connect retry time 1; ipv6 {{ import all; export none; }}; }}
"""


@pytest.fixture
def router(tmp_path):
    """The veth pair with IPv6 on (no DAD), the director's side also holding VIP6 as pylvs
    does (/128, nodad, deprecated), and the router's BIRD."""
    topo = Topo()
    topo.up()
    for ns, dev, address in ((topo.d, "vd", DIR_IP6), (topo.p, "vp", PEER_IP6)):
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=0", f"net.ipv6.conf.{dev}.disable_ipv6=0",
                        "net.ipv6.conf.all.accept_dad=0", f"net.ipv6.conf.{dev}.accept_dad=0"],
                       check=True, capture_output=True)
        ip("-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad")
    ip("-n", topo.d, "addr", "add", f"{VIP6}/128", "dev", "vd", "nodad", "preferred_lft", "0")
    conf = tmp_path / "router.conf"
    conf.write_text(ROUTER.format(peer=PEER_IP, director=DIR_IP, director6=DIR_IP6))
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
    return subprocess.run(["birdc", "-s", sock, "show", "route", "all"], capture_output=True,
                          text=True).stdout


def _until(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def test_a_dual_stack_director_announces_each_family_over_its_own_session(router, tmp_path):
    topo, sock = router
    spec = Bgp(65001, (Neighbor(PEER_IP, 65000), Neighbor(PEER_IP6, 65000)), hold_time=3)
    run_dir = tmp_path / "bird"
    announcer = in_ns(topo.d, Announcer, spec, "vd", str(run_dir), [VIP])
    try:
        assert sorted(p.name for p in announcer.routes_paths.values()) == ["vips.conf",
                                                                            "vips6.conf"]
        in_ns(topo.d, announcer.update, [VIP, VIP6])
        assert (run_dir / "vips6.conf").read_text() == f"route {VIP6}/128 blackhole;\n"
        assert (run_dir / "vips.conf").read_text() == f"route {VIP}/32 blackhole;\n"
        _until(lambda: f"{VIP6}/128" in _learnt(sock) and f"{VIP}/32" in _learnt(sock),
               "the router to learn both VIPs")
        learnt = _learnt(sock)
        assert f"via {DIR_IP6} on vp" in learnt and f"via {DIR_IP} on vp" in learnt
        assert f"BGP.next_hop: {DIR_IP6} fe80::" in learnt  # global + link-local, RFC 2545
        assert f"via {VIP6}" not in learnt  # the deprecated VIP is never the session's source
        _until(lambda: [s.established for s in announcer.sessions()] == [True, True],
               "both sessions Established")
        in_ns(topo.d, announcer.update, [VIP])  # the IPv6 VIP's servers went: only it goes
        _until(lambda: f"{VIP6}/128" not in _learnt(sock), "the router to forget the /128")
        assert f"{VIP}/32" in _learnt(sock)
    finally:
        announcer.close()
    _until(lambda: f"{VIP}/32" not in _learnt(sock), "the sessions to close")
    assert not run_dir.exists()


def test_a_vip_no_session_carries_is_said_not_dropped(tmp_path):
    """An IPv4-only [bgp] given an IPv6 VIP (the config refuses this first): the announcer
    says so, and tells BIRD nothing."""
    include = tmp_path / "v4.conf"
    spec = Bgp(65001, (Neighbor(PEER_IP, 65000),), router_id="10.0.0.11",
               bird_socket=str(tmp_path / "none.ctl"), bird_include=str(include))
    announcer = Announcer(spec, "vd", str(tmp_path / "unused"))
    with pytest.raises(AnnounceError, match="nothing carries 2001:db8::9: no session"):
        announcer.update([VIP, "2001:db8::9"])
    assert include.read_text() == "" and announcer.announced is None


def test_a_running_bird_is_given_the_ipv6_routes_in_bird_include6(router, tmp_path):
    topo, sock = router
    include6, own_sock = tmp_path / "pylvs-vips6.conf", str(tmp_path / "own.ctl")
    spec = Bgp(65001, (Neighbor(PEER_IP6, 65000),), router_id="10.0.0.11", hold_time=3,
               bird_socket=own_sock, bird_include6=str(include6))
    include6.write_text("")
    conf = tmp_path / "own.conf"
    conf.write_text(bird.config(spec, "10.0.0.11", "", str(include6)))
    own = subprocess.Popen(["ip", "netns", "exec", topo.d, "bird", "-f", "-c", str(conf), "-s",
                            own_sock])
    try:
        _until(lambda: os.path.exists(own_sock), "the operator's BIRD")
        announcer = Announcer(spec, "vd", str(tmp_path / "unused"))
        assert announcer.pid is None and list(announcer.routes_paths) == [6]
        announcer.update([VIP6])
        assert include6.read_text() == f"route {VIP6}/128 blackhole;\n"
        _until(lambda: f"{VIP6}/128" in _learnt(sock), "the router to learn the /128")
        assert f"via {DIR_IP6} on vp" in _learnt(sock)
        announcer.close()
        assert include6.read_text() == "" and own.poll() is None
        _until(lambda: f"{VIP6}/128" not in _learnt(sock), "the router to forget the /128")
    finally:
        own.terminate()
        own.wait(5)

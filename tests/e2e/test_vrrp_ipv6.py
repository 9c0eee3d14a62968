"""VRRPv3 over IPv6 against real keepalived (Debian's, `keepalived --vrrp`) in namespaces of the
run: the two elect by priority in both orders, fail over both ways on kill -9, hand over at once
on a stop (priority 0); their adverts and unsolicited Neighbor Advertisements have the same
shape on the wire; unicast peers over IPv6; a dual-stack pair (an IPv4 and an IPv6 instance, the
same VRID) against keepalived's pair; a keepalived.conf of IPv6 blocks under `pylvs run`; two
pylvs directors keeping an IPv6 download alive through a kill -9, and `pylvs lab dr --ipv6 --ha`.
Topology, all on one bridge (every host in both families):

    [client ::5]   [d1 pylvs ::2]   [d2 keepalived or pylvs ::3]     VIP 2001:db8:50::100
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vrrp import VRRPv3

from pylvs.shell import control
from pylvs.shell.messages import Status
from tests.helpers.segment import VIP, ip, until
from tests.helpers.segment6 import (
    LINK_VIP,
    VIP6,
    Segment6,
    address6,
    segment6_fixture,
    service6,
)
from tests.helpers.veth import in_ns

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("keepalived") is None,
                       reason="needs keepalived (scripts/install.sh --test)"),
]

DOWN_INTERVAL = 3 + (256 - 100) / 256  # Master_Down_Interval at priority 100, advert 1 s (v3)
BOTH = (LINK_VIP, VIP6)
"""The instance's VIPs, a link-local one first (RFC 5798 §5.2.9)."""

segment = pytest.fixture(segment6_fixture, name="segment")


def only(segment: Segment6, name: str, vip: str = VIP6) -> bool:
    other = "d2" if name == "d1" else "d1"
    return segment.holds(name, vip) and not segment.holds(other, vip)


def keepalived(segment: Segment6, priority: int, extra: str = "", vips=BOTH) -> None:
    segment.keepalived6("d2", [("VI_6", 61, priority, vips, extra)])


def test_pylvs_wins_by_priority_fails_over_to_keepalived_on_kill_9_and_preempts_back(segment):
    keepalived(segment, 100)
    until(lambda: segment.holds("d2") and segment.holds("d2", LINK_VIP))
    segment.pylvs6("d1", 150, vips=BOTH)
    until(lambda: only(segment, "d1") and only(segment, "d1", LINK_VIP))
    assert "MASTER, priority 150, VIPs held" in segment.status("d1")
    assert "higher priority 150" in segment.log("d2")  # keepalived read pylvs's advert
    segment.kill("d1")
    took = until(lambda: segment.holds("d2"))
    print(f"keepalived took the IPv6 VIP {took:.2f} s after pylvs was killed")
    assert took <= DOWN_INTERVAL + 1.0
    assert not segment.holds("d1") and not segment.holds("d1", LINK_VIP)
    segment.pylvs6("d1", 150, vips=BOTH)
    until(lambda: only(segment, "d1"))


def test_keepalived_wins_by_priority_and_pylvs_takes_over_when_it_dies(segment):
    segment.pylvs6("d1", 100, vips=BOTH)
    until(lambda: segment.holds("d1"))
    keepalived(segment, 150)
    until(lambda: only(segment, "d2"))
    assert "BACKUP, priority 100, VIPs not held" in segment.status("d1")
    segment.kill("d2", everything=True)  # keepalived's VRRP child too: nothing says goodbye
    took = until(lambda: segment.holds("d1"))
    print(f"pylvs took the IPv6 VIP {took:.2f} s after keepalived was killed")
    assert took <= DOWN_INTERVAL + 1.0
    keepalived(segment, 150)
    until(lambda: only(segment, "d2"))
    assert "vrrp: VI_1: MASTER -> BACKUP" in segment.log("d1")


def test_a_stopped_pylvs_master_hands_over_at_once_with_priority_zero(segment):
    """RFC 5798 §6.4.3: a master leaving sends priority 0; keepalived takes over after its
    Skew_Time instead of a whole Master_Down_Interval."""
    keepalived(segment, 100)
    segment.pylvs6("d1", 150, vips=BOTH)
    until(lambda: only(segment, "d1"))
    segment.procs["d1"].send_signal(signal.SIGTERM)
    took = until(lambda: segment.holds("d2"))
    print(f"keepalived took the IPv6 VIP {took:.2f} s after pylvs stopped")
    assert took < DOWN_INTERVAL
    assert not segment.holds("d1")


class Capture:
    """Every frame ``host``'s eth0 receives from now until ``frames()`` (a thread reads)."""

    def __init__(self, segment: Segment6, host: str) -> None:
        self.sock = in_ns(segment.hosts[host], _packet_socket)
        self.seen: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                self.seen.append(self.sock.recv(65535))
            except TimeoutError:
                pass

    def frames(self) -> list[bytes]:
        self.done.set()
        self.thread.join(5)
        self.sock.close()
        return self.seen


def _packet_socket() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    return sock


def adverts_from(frames: list[bytes], source: str) -> list[Ether]:
    seen = [Ether(f) for f in frames]
    return [p for p in seen if p.haslayer(VRRPv3) and p[IPv6].src == source]


def nas_for(frames: list[bytes], vip: str) -> list[Ether]:
    seen = [Ether(f) for f in frames]
    return [p for p in seen if p.haslayer(ICMPv6ND_NA) and p[ICMPv6ND_NA].tgt == vip]


def test_adverts_and_neighbor_advertisements_have_keepalived_s_shape_on_the_wire(segment):
    """The client sees keepalived's frames and then pylvs's: the same IPv6 header (link-local
    source, ff02::12 on 33:33:00:00:00:12, hop limit 255, traffic class 0xC0; the flow label
    the kernel's auto_flowlabels choice on both), VRRPv3 with the
    VIPs in the configured order and a checksum scapy agrees with; and on taking over, 5
    unsolicited NAs for each VIP at once (garp_master_repeat) from the VIP to ff02::1, hop limit
    255, Override set, Solicited and Router clear, the MAC in a target link-layer option."""
    watching = Capture(segment, "client")
    keepalived(segment, 100)
    until(lambda: segment.holds("d2"))
    time.sleep(1.5)
    theirs = watching.frames()
    watching = Capture(segment, "client")
    segment.pylvs6("d1", 150, vips=BOTH)
    until(lambda: only(segment, "d1"))
    time.sleep(1.5)
    ours = watching.frames()
    shapes = []
    for frames, host in ((theirs, "d2"), (ours, "d1")):
        (advert, *_) = adverts_from(frames, segment.link_local(host))
        head, vrrp = advert[IPv6], advert[VRRPv3]
        shapes.append((advert.dst, head.dst, head.hlim, head.tc, head.nh, vrrp.version,
                       vrrp.type, vrrp.vrid, vrrp.adv, vrrp.ipcount, vrrp.addrlist))
        rebuilt = IPv6(bytes(head))
        del rebuilt[VRRPv3].chksum
        assert IPv6(bytes(rebuilt))[VRRPv3].chksum == vrrp.chksum  # scapy's in6_chksum
    assert shapes[0] == shapes[1] == ("33:33:00:00:00:12", "ff02::12", 255, 0xC0, 112, 3, 1, 61,
                                      100, 2, list(BOTH))  # the flow label is the kernel's
    nas = []
    for frames, host in ((theirs, "d2"), (ours, "d1")):
        mac = mac_of(segment, host)
        for vip in BOTH:
            burst = [p for p in nas_for(frames, vip) if p.src == mac]
            assert len(burst) == 5, (host, vip, len(burst))  # 5 more after 5 s
            na = burst[0]
            nas.append((na.dst, na[IPv6].src == vip, na[IPv6].dst, na[IPv6].hlim, na[IPv6].tc,
                        na[ICMPv6ND_NA].O, na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].R,
                        na[ICMPv6NDOptDstLLAddr].lladdr == mac))
            rebuilt = IPv6(bytes(na[IPv6]))
            del rebuilt[ICMPv6ND_NA].cksum
            assert IPv6(bytes(rebuilt))[ICMPv6ND_NA].cksum == na[ICMPv6ND_NA].cksum
    assert set(nas) == {("33:33:00:00:00:01", True, "ff02::1", 255, 0, 1, 0, 0, True)}, nas


def mac_of(segment: Segment6, host: str) -> str:
    return ip("-n", segment.hosts[host], "link", "show", "eth0").split("link/ether ")[1].split()[0]


def test_unsolicited_nas_move_the_client_s_neighbour_entry(segment):
    """The client's neighbour entry for the VIP, keepalived's MAC while it was master, follows
    pylvs's NAs (Override) when pylvs takes over."""
    keepalived(segment, 100)
    until(lambda: segment.holds("d2"))
    client = segment.hosts["client"]
    d1_mac, d2_mac = mac_of(segment, "d1"), mac_of(segment, "d2")
    ip("-n", client, "-6", "neigh", "replace", VIP6, "lladdr", d2_mac, "dev", "eth0", "nud",
       "stale")
    segment.pylvs6("d1", 150, vips=BOTH)
    until(lambda: only(segment, "d1"))
    until(lambda: d1_mac in ip("-n", client, "-6", "neigh", "show", VIP6), 5)


def test_unicast_peers_over_ipv6_with_keepalived(segment):
    """keepalived's unicast IPv6: its adverts go with the kernel's hop limit (64, no
    unicast_ttl), and a unicast instance does not check it (vrrp.c: 'but not if unicast');
    pylvs sends 255 and takes keepalived's 64."""
    keepalived(segment, 100, f"  unicast_src_ip {address6(3)}\n  unicast_peer {{\n"
                             f"    {address6(2)}\n  }}\n", vips=(VIP6,))
    until(lambda: segment.holds("d2"))
    segment.pylvs6("d1", 150, vrrp=f'unicast_src_ip = "{address6(2)}"\n'
                                    f'unicast_peers = ["{address6(3)}"]\n')
    until(lambda: only(segment, "d1"))
    assert "higher priority 150" in segment.log("d2")
    segment.kill("d1")
    until(lambda: segment.holds("d2"))
    segment.pylvs6("d1", 100, vrrp=f'unicast_src_ip = "{address6(2)}"\n'
                                    f'unicast_peers = ["{address6(3)}"]\n')
    until(lambda: "BACKUP" in segment.status("d1", starting=True))
    time.sleep(DOWN_INTERVAL + 1)  # keepalived's hop-64 adverts keep pylvs a BACKUP
    assert only(segment, "d2") and "BACKUP, priority 100" in segment.status("d1")


def test_a_dual_stack_pair_against_keepalived(segment):
    """keepalived's dual-stack director: an IPv4 and an IPv6 instance, the same VRID 51 (a
    VRID is a family's). pylvs wins the IPv4 one (150 > 100) and loses the IPv6 one
    (50 < 100); with keepalived stopped it holds both and forwards both, and gives the IPv6 one
    back when keepalived returns."""
    segment.real_server6("rs1", 11, (VIP, VIP6))
    instances = [("V4", 51, 100, (VIP,), ""), ("V6", 51, 100, BOTH, "")]
    segment.keepalived6("d2", instances)
    until(lambda: segment.holds("d2", VIP) and segment.holds("d2", VIP6))
    body = (service6(VIP) + service6(VIP6) +
            f'[[vrrp]]\nname = "V4"\nvirtual_router_id = 51\npriority = 150\n'
            f'virtual_ipaddress = ["{VIP}"]\n\n'
            f'[[vrrp]]\nname = "V6"\nvirtual_router_id = 51\npriority = 50\n'
            f'virtual_ipaddress = ["{LINK_VIP}", "{VIP6}"]\n')
    segment.pylvs6("d1", 0, body)
    until(lambda: only(segment, "d1", VIP))
    status = segment.status("d1")
    assert "MASTER, priority 150, VIPs held [V4" in status, status
    assert "BACKUP, priority 50, VIPs not held [V6" in status, status
    assert only(segment, "d2", VIP6)
    answer = subprocess.run(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                             "--noproxy", "*", "--max-time", "5", f"http://{VIP}/"],
                            capture_output=True, text=True, timeout=20)
    assert answer.stdout.strip() == "rs1", answer.stderr  # forwarded by d1, MASTER of V4
    stopping = segment.procs.pop("d2")  # a clean stop: priority 0, and its VIPs go (a
    stopping.terminate()                 # kill -9 would leave them answering NS, as the IPv4
    stopping.wait(10)                    # tests' split brain shows)
    until(lambda: segment.holds("d1", VIP6) and not segment.holds("d2", VIP6))
    assert "MASTER, priority 50, VIPs held [V6" in segment.status("d1")
    answer = subprocess.run(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS", "-6",
                             "-g", "--noproxy", "*", "--max-time", "5", f"http://[{VIP6}]/"],
                            capture_output=True, text=True, timeout=20)
    assert answer.stdout.strip() == "rs1", answer.stderr  # d1 forwards the IPv6 one too
    segment.keepalived6("d2", instances)
    until(lambda: only(segment, "d2", VIP6))
    assert only(segment, "d1", VIP)
    assert "vrrp: V6: MASTER -> BACKUP" in segment.log("d1")


KEEPALIVED_CONF = """! an IPv6 LVS director as keepalived.conf has it
vrrp_instance VI_6 {{
    state BACKUP
    interface eth0
    virtual_router_id 61
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {link_vip}/64 dev eth0
        {vip6}/64 dev eth0
    }}
}}
"""
LVS = """
virtual_server {vip6} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP

    real_server {rs} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


def test_a_keepalived_conf_of_ipv6_blocks_runs_under_pylvs_run_against_keepalived(segment,
                                                                                  monkeypatch):
    """Issue 23's 'done when': an IPv6 vrrp_instance and virtual_server, read by `pylvs run`
    as keepalived.conf, win against a keepalived peer holding the same instance lower, serve
    curl -6 through the VIP, and give the VIP back on kill -9."""
    segment.real_server6("rs1", 11)
    peer = os.path.join(segment.tmp, "d2.conf")
    with open(peer, "w") as fh:
        fh.write(KEEPALIVED_CONF.format(priority=100, link_vip=LINK_VIP, vip6=VIP6))
    segment.start("d2", ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                         "--log-detail", "-f", peer, "-p", f"{segment.tmp}/d2.pid",
                         "-r", f"{segment.tmp}/d2-vrrp.pid"])
    until(lambda: segment.holds("d2"))
    mine = os.path.join(segment.tmp, "d1.conf")
    with open(mine, "w") as fh:
        fh.write(KEEPALIVED_CONF.format(priority=150, link_vip=LINK_VIP, vip6=VIP6)
                 + LVS.format(vip6=VIP6, rs=address6(11)))
    monkeypatch.setenv("PYLVS_SOCKET", segment.socket("d1"))
    segment.start("d1", [sys.executable, "-m", "pylvs", "run", mine])
    until(lambda: only(segment, "d1") and only(segment, "d1", LINK_VIP), 20)
    status = control.ask(segment.socket("d1"), Status()).stdout
    assert "VRRP instance 61 on eth0: MASTER, priority 150" in status, status
    answer = subprocess.run(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS", "-6",
                             "-g", "--noproxy", "*", "--max-time", "10", f"http://[{VIP6}]/"],
                            capture_output=True, text=True, timeout=20)
    assert answer.stdout.strip() == "rs1", answer.stderr
    segment.kill("d1")
    took = until(lambda: segment.holds("d2"))
    assert took <= DOWN_INTERVAL + 1.0 and not segment.holds("d1")


def test_two_pylvs_directors_keep_an_ipv6_download_alive_through_kill_9(segment):
    """Two pylvs directors as a VRRPv3 IPv6 pair, DR, syncing their connections, a client
    downloading through the VIP; the master is killed with -9, the backup has the connection
    already (IPVS's IPv6 sync records) and the download arrives whole."""
    from pylvs.lab.httpserver import blob
    for name, number in (("rs1", 11), ("rs2", 12)):
        segment.real_server6(name, number)
    director, extra, scheduler = "sync_daemon = true\n", "", "rr"
    for name, priority in (("d1", 150), ("d2", 100)):
        segment.pylvs6(name, priority, service6(VIP6, (11, 12), scheduler) +
                       f"[vrrp]\nvirtual_router_id = 61\npriority = {priority}\n"
                       f'virtual_ipaddress = ["{VIP6}"]\n\n{extra}', director=director)
        until(lambda n=name: ("MASTER" if n == "d1" else "BACKUP") in segment.status(
            n, starting=True))
    size = 3_000_000
    ip("netns", "exec", segment.hosts["client"], "sysctl", "-qw",  # little in flight: see
       "net.ipv4.tcp_rmem=4096 131072 262144")                     # pylvs.lab.failover
    started = time.monotonic()
    curl = subprocess.Popen(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                             "-6", "-g", "--noproxy", "*", "--max-time", "60", "--limit-rate",
                             "400k", f"http://[{VIP6}]/blob/{size}"], stdout=subprocess.PIPE)
    time.sleep(2.5)
    segment.kill("d1")
    took = until(lambda: segment.holds("d2"))
    print(f"the backup took the IPv6 VIP {took:.2f} s after the kill")
    assert not segment.holds("d1")
    body, _ = curl.communicate(timeout=90)
    print(f"the download took {time.monotonic() - started:.1f} s")
    assert curl.returncode == 0 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob(size)).digest()



def test_pylvs_lab_dr_ipv6_ha_shows_a_failover_that_keeps_the_download():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--ipv6", "--ha"],
                            capture_output=True, text=True, timeout=240)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VRRP instance 51 on eth0: MASTER, priority 150, VIPs held [VI_1: 2001:db8:1::100]" \
        in result.stdout
    assert "download finished: 3,000,000 bytes, intact (sha256 matches)" in result.stdout
    assert "HA works" in result.stdout


"""`pylvs lab dr --ha --mistake NAME`, the notes' lesson 4 troubles, run as a user runs them:
each shows its fault in the trace and names the cause, then the fix, and leaves nothing behind.
And what those labs say of keepalived, checked against Debian's keepalived itself: killed with
-9 it leaves its VIP (both hosts hold it), started again it removes it first; vrrp_strict
installs the very table the vrrp-strict lab installs, and the VIP stops answering ping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from pylvs.lab import mistakes
from tests.e2e.test_mistakes import left_behind, prefix_of
from tests.helpers.segment import SUBNET, VIP, Segment, segment_fixture, until

LAB_VIP = "192.168.1.100"
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None,
                                   reason="--trace needs tcpdump (scripts/install.sh)")
needs_keepalived = pytest.mark.skipif(shutil.which("keepalived") is None,
                                      reason="needs keepalived (scripts/install.sh --test)")


def ha_lab(name: str, trace: str) -> str:
    """The lab's report; it ended well and left nothing behind."""
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--ha", "--mistake",
                             name, "--servers", "2", "--trace", trace],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"  mistake {name}: " in result.stdout
    assert left_behind(prefix_of(result.stdout)) == []
    return result.stdout


@needs_tcpdump
def test_no_cleanup_both_directors_answer_arp_for_the_vip(tmp_path):
    out = ha_lab("no-cleanup", str(tmp_path))
    print(out)
    broke = out.split("\nwhat broke (mistake no-cleanup):\n", 1)[1]
    assert f"{LAB_VIP}/32 is on eth0 of director and director2" in broke
    answering = re.search(rf"asked again, who has {re.escape(LAB_VIP)}\? 2 hosts answer: (.*)",
                          broke)
    assert answering and {"director (", "director2 ("} <= set(
        re.findall(r"director2? \(", answering.group(1)))
    # the trace: both answer the client's ARP, and the client's SYNs split between them
    trace = (tmp_path / "trace.txt").read_text()
    assert f"director → client: ARP {LAB_VIP} is at" in trace
    assert f"director2 → client: ARP {LAB_VIP} is at" in trace
    assert f"2 hosts answered ARP for {LAB_VIP}: " in broke
    assert re.search(r"SYNs? to the VIP sent to director2's MAC: [1-9] answered", broke)
    assert re.search(r"SYNs? to the VIP sent to director's MAC: 0 answered", broke)
    assert f"gratuitous ARPs for {LAB_VIP}: director2, 5 at" in broke
    assert (tmp_path / "client-eth0.pcap").stat().st_size > 24
    # the cause, named, then keepalived's fix and pylvs's guard
    assert "\ncause: nothing removed the killed director's VIP: " in out
    assert re.search(r"director 1 is MASTER again and director 2 dropped the VIP; who has "
                     rf"{re.escape(LAB_VIP)}\? 1 host answers: director \(", out)
    assert re.search(r"director 1's host holds no VIP and no steal rules \(its guard removed "
                     rf"them\); who has {re.escape(LAB_VIP)}\? 1 host answers: director2 \(",
                     out)


@needs_tcpdump
def test_vrrp_strict_the_vip_answers_arp_but_not_ping(tmp_path):
    out = ha_lab("vrrp-strict", str(tmp_path))
    print(out)
    assert f"before: ping {LAB_VIP} (3 ICMP echo requests): 3 answered; curl" in out
    broke = out.split("\nwhat broke (mistake vrrp-strict):\n", 1)[1]
    assert f"ping {LAB_VIP} (3 ICMP echo requests): 0 answered" in broke
    assert f"who has {LAB_VIP}? 1 host answers: director (" in broke
    assert re.search(rf"curl http://{re.escape(LAB_VIP)}/: rs\d", broke)
    # the trace: the echo requests reach director 1's wire and nothing answers them
    assert f"on director 1's wire: 3 ICMP echo requests to {LAB_VIP} (to director's MAC), " \
           f"0 echo replies" in broke
    trace = (tmp_path / "trace.txt").read_text()
    assert trace.count("client → director: ICMP echo request") == 3
    assert "echo reply " not in trace
    assert re.search(r"rs\d → client: SYN-ACK", trace)
    assert "\ncause: vrrp_strict: keepalived drops every IP packet to a VIP on the input hook" \
        in out
    assert out.rstrip().endswith(f"ping {LAB_VIP} (3 ICMP echo requests): 3 answered")


# -- what the labs say of keepalived, checked against keepalived ---------------------------------

segment = pytest.fixture(segment_fixture, name="segment")


def keepalived(segment: Segment, name: str, priority: int, strict: bool = False) -> None:
    """Debian's keepalived, VRRP only, in ``name``; fresh pid files (a killed one's stay)."""
    instance = "" if strict else \
        "  authentication {\n    auth_type PASS\n    auth_pass pylvs\n  }\n"
    run = len([f for f in os.listdir(segment.tmp) if f.startswith(f"{name}-run")
               and f.endswith(".conf")])
    path = os.path.join(segment.tmp, f"{name}-run{run}.conf")
    with open(path, "w") as fh:
        fh.write(f"global_defs {{\n  router_id {name}\n{'  vrrp_strict' * strict}\n}}\n"
                 f"vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n"
                 f"  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n{instance}"
                 f"  virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n")
    segment.start(name, ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                         "--log-detail", "-f", path, "-p", f"{path}.pid",
                         "-r", f"{path}.vrrp.pid"])


def in_ns(segment: Segment, name: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", segment.hosts[name], *argv], check=True,
                          capture_output=True, text=True, timeout=30).stdout


@needs_keepalived
def test_keepalived_killed_leaves_its_vip_and_removes_it_when_started_again(segment):
    segment.pylvs("d2", 100)
    keepalived(segment, "d1", 150)
    until(lambda: segment.holds_vip("d1") and not segment.holds_vip("d2"))
    segment.kill("d1", everything=True)  # keepalived and its VRRP child: the notes' 异常退出
    until(lambda: segment.holds_vip("d2"))
    time.sleep(1.0)
    assert segment.holds_vip("d1"), "keepalived killed with -9 removed its VIP after all"
    answers = in_ns(segment, "client", sys.executable, "-c", mistakes._WHO_HAS, "eth0",
                    f"{SUBNET}.5", VIP)
    assert len(json.loads(answers)) == 2  # both hosts answer ARP for the VIP
    keepalived(segment, "d1", 150)
    took = until(lambda: not segment.holds_vip("d1"), seconds=5.0)
    assert took < 2.5, "removed only on becoming BACKUP, not at start"
    log = segment.log("d1").split("Starting Keepalived")[-1]
    assert log.index("removing VIPs.") < log.index("Entering BACKUP STATE (init)")
    until(lambda: segment.holds_vip("d1") and not segment.holds_vip("d2"))


@needs_keepalived
def test_keepalived_vrrp_strict_installs_the_labs_table_and_ping_goes_unanswered(segment):
    keepalived(segment, "d1", 150, strict=True)
    until(lambda: segment.holds_vip("d1"))
    until(lambda: "keepalived" in in_ns(segment, "d1", "nft", "list", "tables"))
    assert in_ns(segment, "d1", "nft", "list", "table", "ip", "keepalived") == \
        mistakes.keepalived_strict_ruleset([VIP])
    echoed = in_ns(segment, "client", sys.executable, "-c", mistakes._ECHO, VIP, "3")
    assert echoed.strip() == "0"
    answers = in_ns(segment, "client", sys.executable, "-c", mistakes._WHO_HAS, "eth0",
                    f"{SUBNET}.5", VIP)
    assert len(json.loads(answers)) == 1  # the VIP still answers ARP
    assert "Strict mode does not support authentication" not in segment.log("d1")

"""`pylvs realserver --check` and `pylvs lab MODE --mistake NAME` in real labs.

`--check` runs in each real server of a lab (ip netns exec), as a user would: it passes on the
correct dr, nat and tun labs; it finds exactly the mistake each --mistake lab makes; and the
fixes it prints, run as printed, make that lab balance again. The --mistake labs themselves
run to their report, show what broke (and with --trace, in the trace) and leave nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest

from pylvs.lab import mistakes
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import Lab, lab_config
from tests.helpers.labs import running_lab

EXPECTED_WRONG = {
    "arp": {"arp_ignore on eth0", "arp_announce on eth0"},
    "netmask": {"the VIP on lo as /32"},
    "rp_filter": {"rp_filter on pylvs-tun0"},
    "route": {"default route via the director"},
}


def check(lab: Lab, ns: str, mode: str) -> subprocess.CompletedProcess[str]:
    return lab.run_in(ns, mistakes.check_argv(lab, mode), capture_output=True, text=True,
                      timeout=30)


def wrong_steps(report: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^  WRONG  (.+?): ", report, re.M)}


def apply_fixes(lab: Lab, ns: str, report: str) -> list[str]:
    fixes = [line.split("fix: ", 1)[1] for line in report.splitlines() if "  fix: " in line]
    for fix in fixes:
        lab.run_in(ns, fix.split(), check=True, capture_output=True)
    return fixes


def balanced(lab: Lab, requests: int = 4) -> Counter[str]:
    lab.start_http_servers()
    director = DirectorProcess(lab, lab_config(lab, "rr"))
    try:
        return Counter(lab.curl("/").strip() for _ in range(requests))
    finally:
        director.stop()


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_check_passes_on_the_correct_lab(mode):
    with Lab(servers=2, mode=mode) as lab:
        lab.setup()
        lab.configure_real_servers()
        for ns in lab.server_ns:
            done = check(lab, ns, mode)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "WRONG" not in done.stdout
            assert re.search(r"^(all \d steps right|the one step is right)$", done.stdout,
                             re.M)


@pytest.mark.parametrize("name", sorted(EXPECTED_WRONG))
def test_check_finds_each_mistake_and_its_fixes_make_the_lab_work(name):
    mode = mistakes.MISTAKES[name].mode
    with Lab(servers=2, mode=mode, mistake=name) as lab:
        lab.setup()
        lab.configure_real_servers()
        for ns in lab.server_ns:
            found = check(lab, ns, mode)
            assert found.returncode == 1, found.stdout + found.stderr
            assert wrong_steps(found.stdout) == EXPECTED_WRONG[name], found.stdout
            assert apply_fixes(lab, ns, found.stdout)
            fixed = check(lab, ns, mode)
            assert fixed.returncode == 0, fixed.stdout
        assert balanced(lab) == Counter({"rs1": 2, "rs2": 2})


def lab_run(*argv: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylvs", "lab", *argv, "--servers", "2",
                           "--requests", "2"], capture_output=True, text=True, timeout=timeout)


def prefix_of(output: str) -> str:
    return re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", output, re.M).group(1)


def left_behind(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")] + \
        [f"/run/{n}" for n in os.listdir("/run") if n.startswith(prefix)]


def report_of(result: subprocess.CompletedProcess[str], name: str) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"  mistake {name}: " in result.stdout
    assert "--check named the mistake in every real server" in result.stdout
    assert left_behind(prefix_of(result.stdout)) == []
    return result.stdout.split("\nwhat broke (", 1)[1]


def test_arp_mistake_every_real_server_answers_for_the_vip(tmp_path):
    result = lab_run("dr", "--mistake", "arp", "--trace", str(tmp_path))
    broke = report_of(result, "arp")
    answering = re.search(r"who has 192\.168\.1\.100\? (\d) hosts answer: (.*)", broke)
    assert answering and answering.group(1) == "3", broke
    assert all(host in answering.group(2) for host in ("rs1", "rs2", "director"))
    learned = re.search(r"192\.168\.1\.100 is at \S+ \((\w+)\)", broke).group(1)
    answers = re.search(r"^answers: (.*)$", result.stdout, re.M).group(1)
    if learned != "director":  # the client took a real server's answer: no balancing
        assert answers == f"{learned}=2"
        assert "the director's table counts 0 connections" in broke
        assert "never through the director" in broke
    trace = (tmp_path / "trace.txt").read_text()
    assert "rs1 answered for the VIP" in trace and "rs2 answered for the VIP" in trace
    assert "WRONG  arp_ignore on eth0" in broke


def test_netmask_mistake_loops_the_answers_back(tmp_path):
    result = lab_run("dr", "--mistake", "netmask", "--trace", str(tmp_path))
    broke = report_of(result, "netmask")
    assert "answers: no answer=2" in result.stdout
    assert "ip route get 192.168.1.5 says `local 192.168.1.5 dev lo" in broke
    assert re.search(r"TcpExtEmbryonicRsts = [1-9]", broke)
    assert "no SYN-ACK appears on any wire" in broke
    assert "the SYN went client → director → rs" in broke
    assert "`local 192.168.1.0/24 dev" in " ".join(broke.split())


def test_rp_filter_mistake_drops_the_unwrapped_packets():
    broke = report_of(lab_run("tun", "--mistake", "rp_filter"), "rp_filter")
    assert "none of the 2 requests got an answer" in broke
    assert re.search(r"TcpExtIPReversePathFilter = [1-9]", broke)
    assert "WRONG  rp_filter on pylvs-tun0" in broke


def test_route_mistake_leaves_no_way_back():
    broke = report_of(lab_run("nat", "--mistake", "route"), "route")
    assert "none of the 2 requests got an answer" in broke
    assert "Network is unreachable" in broke
    assert "fix: ip route replace default via 10.0.0.1" in broke


def test_a_broken_lab_interrupted_removes_everything():
    proc, seen = running_lab("dr", "--mistake", "netmask", "--servers", "2", "--requests",
                             "100", until=1)
    prefix = prefix_of(seen)
    assert left_behind(prefix)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(60) == 130
    finally:
        proc.kill()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    assert "interrupted; the lab was removed" in err
    assert left_behind(prefix) == []

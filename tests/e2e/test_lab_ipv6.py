"""The IPv6 and dual-stack labs end to end (issue 22): `pylvs lab dr|nat|tun|mixed --ipv6` and
`pylvs lab dualstack` as a user runs them, their --trace read back independently (tcpdump,
scapy), and IPv6 labs with a real `pylvs run`, real HTTP servers on '::' and real `curl -6`.

Each lab names its namespaces with a prefix of its own and removes them (the tests check it).
Needs root (tests/conftest.py skips the module otherwise, saying why)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.utils import rdpcap

from pylvs.lab.demo import HeldConnections, sockets_with, tcp_sockets
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import curl_argv
from pylvs.shell import control
from pylvs.shell.messages import Status
from tests.helpers.labs import LabRun, upload

OFFLOADS = ["none", "xdp"]
"""The data path both ways: every frame in Python, or established flows in XDP."""
VIP6, CLIENT6 = "2001:db8:1::100", "2001:db8:1::5"


def run_lab(*argv: str, timeout: int = 180) -> str:
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", *argv], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", result.stdout, re.M)
    assert prefix, result.stdout
    assert left_behind(prefix.group(1)) == []
    return result.stdout


def left_behind(prefix: str) -> list[str]:
    """This run's namespaces and /run files that still exist."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]
    return names + [f"/run/{n}" for n in os.listdir("/run") if n.startswith(prefix)]


# -- the labs as a user runs them ----------------------------------------------------------------

@pytest.mark.parametrize(("mode", "verdict"), [
    ("dr", "DR works over IPv6"), ("nat", "NAT works over IPv6 (NAT66)"),
    ("tun", "TUN works over IPv6"), ("mixed", "One virtual service, three ways, over IPv6")])
def test_each_ipv6_lab_demonstrates_and_cleans_up(mode, verdict):
    out = run_lab(mode, "--ipv6", "--servers", "3", "--requests", "6")
    assert f"lab ({mode} IPv6): client {CLIENT6}, director 2001:db8:1::2 (eth0), VIP {VIP6}" \
        in out
    assert f"curl -6 -g 'http://[{VIP6}]:80/' -> rs" in out
    assert "answers: rs1=2, rs2=2, rs3=2" in out
    assert "TCP sockets for the VIP in its own stack: 0" in out
    assert f"TCP  [{VIP6}]:80 rr" in out
    assert re.search(rf"ESTABLISHED \[{re.escape(CLIENT6)}\]:\d+ \[{re.escape(VIP6)}\]:80 ", out)
    assert verdict in out


def test_the_ipv6_dr_real_servers_steps_are_the_128_on_lo_only():
    out = run_lab("dr", "--ipv6", "--servers", "1", "--requests", "1")
    steps = out.split("and every other dr real server:\n", 1)[1].split("\n\n", 1)[0]
    assert steps.splitlines()[0] == f"    ip -6 addr add {VIP6}/128 dev lo nodad"
    assert "arp_ignore =" not in steps and "no arp_ignore or arp_announce for IPv6" in steps


def test_the_dual_stack_lab_serves_both_vips_and_tunnels_across_families():
    out = run_lab("dualstack", "--servers", "2", "--requests", "4")
    for line in ("192.168.1.100:80 (IP-in-IP): rs1=2, rs2=2",
                 f"[{VIP6}]:80 (ip6ip6): rs1=2, rs2=2",
                 "192.168.1.100:8080 (4in6): rs1=2, rs2=2",
                 f"[{VIP6}]:8080 (6in4): rs1=2, rs2=2",
                 "TCP sockets for the VIPs in its own stack: 0",
                 "Dual stack works"):
        assert line in out, line
    for server in (r"\[2001:db8:172:16::11\]:8080", r"172\.16\.0\.11:8080"):
        assert re.search(rf"^  -> {server} +Tunnel ", out, re.M), server
    for service in ("TCP  192.168.1.100:80 rr", "TCP  192.168.1.100:8080 rr",
                    f"TCP  [{VIP6}]:80 rr", f"TCP  [{VIP6}]:8080 rr"):
        assert service in out


# -- the traces ----------------------------------------------------------------------------------

def run_trace(directory: str, *argv: str) -> tuple[str, dict]:
    out = run_lab(*argv, "--servers", "2", "--requests", "2", "--trace", directory)
    with open(os.path.join(directory, "trace.json")) as fh:
        return out, json.load(fh)


def test_ipv6_dr_trace_shows_ndp_where_ipv4_shows_arp(tmp_path):
    out, manifest = run_trace(str(tmp_path), "dr", "--ipv6")
    assert manifest["family"] == 6 and (tmp_path / "trace.txt").read_text() in out
    hops = manifest["hops"]
    kinds = {hop["kind"] for hop in hops}
    assert kinds == {"ndp", "tcp"}, [hop["packet"] for hop in hops]
    director_mac = manifest["hosts"]["director"]["mac"][0]
    answer = next(hop for hop in hops if hop["packet"] == f"NDP: {VIP6} is at {director_mac}")
    assert answer["says"][1].startswith("only the director answers for the VIP: rs1, rs2 hold "
                                        "it on lo")
    assert not [hop for hop in hops if hop["kind"] == "ndp" and hop["packet"].startswith(
        f"NDP: {VIP6} is at") and hop is not answer]  # no real server answered for the VIP
    syn = next(hop for hop in hops if hop["packet"] == "SYN")
    assert ["eth.dst", "eth.src", "ip.hlim"] in [w["changed"] for w in syn["wires"]]
    assert syn["says"][0].endswith("and the hop limit; the IP addresses and ports are as the "
                                   "client sent them: DR")
    # independently of the trace: the real server got the SYN with the hop limit one less
    server = manifest["connection"]["real_server_host"]
    port = int(manifest["connection"]["client"].rsplit(":", 1)[1])
    sent = [f for f in rdpcap(str(tmp_path / "client-eth0.pcap"))
            if TCP in f and f[TCP].sport == port and f[TCP].flags == "S"]
    got = [f for f in rdpcap(str(tmp_path / f"{server}-eth0.pcap"))
           if TCP in f and f[TCP].sport == port and f[TCP].flags == "S"]
    assert sent and got and got[0][IPv6].hlim == sent[0][IPv6].hlim - 1
    assert got[0][IPv6].dst == VIP6
    # and the only Neighbor Advertisement for the VIP on the client's wire is the director's
    advertised = {f.src for f in rdpcap(str(tmp_path / "client-eth0.pcap"))
                  if ICMPv6ND_NA in f and f[ICMPv6ND_NA].tgt == VIP6}
    assert advertised == {director_mac}


def test_dual_stack_trace_follows_an_ipv6_connection_tunnelled_over_ipv4(tmp_path):
    _, manifest = run_trace(str(tmp_path), "dualstack")
    connection = manifest["connection"]
    assert connection["vip"] == f"[{VIP6}]:8080"
    assert re.fullmatch(r"172\.16\.0\.1\d:8080", connection["real_server"])
    syn = next(hop for hop in manifest["hops"] if hop["packet"] == "SYN")
    assert "(IP protocol 41: IPv6 in IPv4, 6in4)" in syn["says"][0]
    kinds = {hop["kind"] for hop in manifest["hops"]}
    assert {"arp", "ndp", "tcp"} <= kinds  # ARP on the tunnel's hops, NDP on the rest
    server = connection["real_server_host"]
    wrapped = [f for f in rdpcap(str(tmp_path / f"{server}-eth0.pcap"))
               if IP in f and f[IP].proto == 41 and IPv6 in f and TCP in f
               and f[TCP].flags == "S" and f[IPv6].dst == VIP6]
    assert wrapped and f"{wrapped[0][IP].dst}:8080" == connection["real_server"]


# -- IPv6 labs with a director, for the data path ------------------------------------------------

@pytest.fixture
def make_lab6():
    """conftest's LabRun in IPv6, each lab checked for leftovers once closed."""
    made: list[LabRun] = []

    def make(mode: str, servers: int = 3, offload: str = "none",
             service_keys: tuple[str, ...] = ()) -> LabRun:
        made.append(LabRun(mode, servers, "rr", None, 80, 0, 1, service_keys, "", offload,
                           family=6))
        return made[-1]

    yield make
    for run in made:
        prefix = run.lab.prefix
        run.close()
        assert left_behind(prefix) == []


@pytest.mark.parametrize("offload", OFFLOADS)
@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_rr_gives_each_of_three_ipv6_servers_ten_of_thirty(make_lab6, mode, offload):
    assert make_lab6(mode, 3, offload).answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}


@pytest.mark.parametrize("offload", OFFLOADS)
@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_five_megabyte_ipv6_download_arrives_intact(make_lab6, mode, offload):
    run = make_lab6(mode, 1, offload)
    size = 5 * 1024 * 1024
    result = run.lab.run_in(run.lab.client_ns, curl_argv(run.lab.url(f"/blob/{size}"),
                                                         max_time=60),
                            capture_output=True, check=True)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(blob(size)).hexdigest()


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_ipv6_real_servers_see_the_client_and_the_director_holds_no_vip_socket(make_lab6, mode):
    run = make_lab6(mode, 2)
    lab = run.lab
    held = HeldConnections(lab, 2)
    try:
        for ns in lab.server_ns:
            from_client = sockets_with(tcp_sockets(lab, ns), {CLIENT6}, 4)
            assert [s for s in from_client if s.startswith("ESTAB")], tcp_sockets(lab, ns)
        rows = [line.split() for line in run.director.adm("-Lnc").splitlines()[2:]]
        assert sockets_with(tcp_sockets(lab, lab.director_ns), {VIP6}, 3) == []
    finally:
        held.close()
    assert {row[2] for row in rows} == {"ESTABLISHED"}
    assert all(row[3].startswith(f"[{CLIENT6}]:") and row[4] == f"[{VIP6}]:80" for row in rows)
    assert {row[5].rsplit(":", 1)[0].strip("[]") for row in rows} == set(lab.server_ips)


def test_realserver_check_passes_in_every_ipv6_real_server(make_lab6):
    run = make_lab6("mixed", 3)
    lab = run.lab
    for ns, mode in zip(lab.server_ns, lab.server_modes, strict=True):
        extra = {"dr": ["--interface", "eth0"], "nat": ["--director", lab.director_inside_ip],
                 "tun": []}[mode]
        done = lab.run_in(ns, [sys.executable, "-m", "pylvs", "realserver", "--check", "--mode",
                               mode, "--vip", lab.vip, *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "steps right" in done.stdout or "step is right" in done.stdout


@pytest.mark.parametrize("offload", OFFLOADS)
def test_an_upload_bigger_than_the_ip6ip6_mtu_gets_packet_too_big_and_arrives(make_lab6,
                                                                              offload):
    """The client's full-size segments do not fit the tunnel: the director answers Packet Too
    Big with 1500 less the 40-byte outer header (ensure_mtu_is_adequate), the client's kernel
    keeps that path MTU for the VIP and sends smaller segments, and the body arrives whole."""
    run = make_lab6("tun", 1, offload)
    lab = run.lab
    body = blob(2 * 1024 * 1024 + 11)
    assert upload(lab, body) == hashlib.sha256(body).hexdigest()
    cached = lab.run_in(lab.client_ns, ["ip", "-6", "route", "get", lab.vip],
                        capture_output=True, text=True, check=True).stdout
    assert "mtu 1460" in cached, cached
    counters = control.ask(run.director.control_socket, Status()).data["counters"]
    assert counters.get("frag_needed", 0) >= 1, counters


def test_a_failing_check_removes_an_ipv6_real_server_and_it_comes_back(make_lab6):
    """keepalived's HTTP_GET against IPv6 real servers ([addr] as its Host): the server whose
    HTTP server dies leaves the table, the clients go to the other, and it returns."""
    check = ('check = { type = "http", interval = 0.5, timeout = 0.5, retry = 1, '
             'delay_before_retry = 0.2 }')
    run = make_lab6("dr", 2, service_keys=(check,))
    lab, director = run.lab, run.director
    first = f"[{lab.server_ips[0]}]:80"

    def listed() -> bool:
        return any(line.split()[1] == first for line in director.adm("-Ln").splitlines()
                   if line.strip().startswith("->"))

    assert listed()
    lab.processes[0].kill()
    lab.processes[0].wait()
    _wait(lambda: not listed())
    assert {lab.curl("/").strip() for _ in range(4)} == {lab.server_names[1]}
    status = control.ask(director.control_socket, Status()).stdout
    assert f"-> {first}" in status and "DOWN" in status, status
    lab.processes.append(lab.popen_in(
        lab.server_ns[0], [sys.executable, "-m", "pylvs.lab.httpserver", "--name",
                           lab.server_names[0], "--port", "80", "--bind", "::"],
        stdout=subprocess.PIPE, text=True))
    _wait(listed)


def _wait(predicate, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"still not so after {seconds} s"
        time.sleep(0.1)

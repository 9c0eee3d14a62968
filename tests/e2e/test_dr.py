"""DR end to end: namespaces, a real `pylvs run`, real HTTP servers, real curl.

Each test builds its own lab (client, director, real servers on one bridge) with names unique to
the run and removes it afterwards (conftest.py). Needs root; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from pylvs.lab.demo import DirectorProcess, HeldConnections, tcp_sockets
from pylvs.lab.topology import curl_argv, lab_config

OFFLOADS = ["none", "xdp"]
"""The data path both ways: every frame in Python, or established flows in XDP."""


@pytest.mark.parametrize("offload", OFFLOADS)
def test_rr_gives_each_of_three_servers_ten_of_thirty(make_lab, offload):
    dr = make_lab(3, "rr", offload=offload)
    assert dr.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}


def test_wrr_3_2_1_over_sixty_requests(make_lab):
    dr = make_lab(3, "wrr", weights=[3, 2, 1])
    assert dr.answers(60) == {"rs1": 30, "rs2": 20, "rs3": 10}


@pytest.mark.parametrize("offload", OFFLOADS)
def test_five_megabyte_download_arrives_intact(make_lab, offload):
    dr = make_lab(2, "rr", offload=offload)
    size = 5 * 1024 * 1024
    from pylvs.lab.httpserver import blob
    expected = hashlib.sha256(blob(size)).hexdigest()
    for _ in range(2):  # one from each server
        result = dr.lab.run_in(dr.lab.client_ns,
                               curl_argv(f"http://{dr.lab.vip}/blob/{size}", max_time=60),
                               capture_output=True, check=True)
        assert len(result.stdout) == size
        assert hashlib.sha256(result.stdout).hexdigest() == expected


@pytest.mark.parametrize("offload", OFFLOADS)
def test_lnc_shows_client_connections_with_ipvs_states(make_lab, offload):
    dr = make_lab(2, "rr", offload=offload)
    for _ in range(4):
        dr.lab.curl("/")
    held = HeldConnections(dr.lab, 1)
    held_port = held.ports[0]
    lines = dr.director.adm("-Lnc").splitlines()
    ln = dr.director.adm("-Ln").splitlines()
    held.close()
    assert lines[:2] == ["IPVS connection entries",
                         "pro expire state       source             virtual            "
                         "destination"]
    rows = [line.split() for line in lines[2:]]
    assert all(row[0] == "TCP" and row[4] == f"{dr.lab.vip}:80" for row in rows)
    states = {row[3]: row[2] for row in rows}
    # the held connection completed its handshake: client SYN then ACK → ESTABLISHED (15:00)
    assert states[f"{dr.lab.client_ip}:{held_port}"] == "ESTABLISHED"
    # DR sees only the client's side: its FIN moves ES to FIN_WAIT, where it stays
    finished = [state for src, state in states.items() if not src.endswith(f":{held_port}")]
    assert finished == ["FIN_WAIT"] * 4
    dests = [line.split() for line in ln if line.startswith("  -> ") and "Route" in line]
    assert sum(int(d[4]) for d in dests) == 1 and sum(int(d[5]) for d in dests) == 4


@pytest.mark.parametrize("offload", OFFLOADS)
def test_director_stack_holds_no_vip_socket_real_servers_see_the_client(make_lab, offload):
    dr = make_lab(2, "rr", offload=offload)
    held = HeldConnections(dr.lab, 2)
    try:
        assert not [s for s in tcp_sockets(dr.lab, dr.lab.director_ns) if f"{dr.lab.vip}:" in s]
        for ns in dr.lab.server_ns:
            sockets = [s.split() for s in tcp_sockets(dr.lab, ns)]
            # the seed's netstat check: ESTAB from the client's own address to the VIP
            assert [s for s in sockets if s[0] == "ESTAB" and s[3] == f"{dr.lab.vip}:80"
                    and s[4].startswith(f"{dr.lab.client_ip}:")]
    finally:
        held.close()


def test_stop_removes_vip_and_nftables_table(make_lab):
    dr = make_lab(1, "rr")
    lab = dr.lab

    def addresses() -> str:
        return lab.run_in(lab.director_ns, ["ip", "-o", "addr", "show", "dev", lab.director_if],
                          capture_output=True, text=True, check=True).stdout

    def tables() -> str:
        return lab.run_in(lab.director_ns, ["nft", "list", "tables"], capture_output=True,
                          text=True, check=True).stdout

    assert f"{lab.vip}/32" in addresses() and "pylvs_" in tables()
    assert dr.director.stop() == 0
    assert f"{lab.vip}/" not in addresses()
    assert "pylvs_" not in tables()
    assert not os.path.exists(lab.control_socket)


def test_adm_over_cli_prints_ipvsadm_layout(make_lab):
    dr = make_lab(2, "wrr", weights=[2, 1])
    deadline = time.monotonic() + 5
    result = None
    while time.monotonic() < deadline:
        result = subprocess.run([sys.executable, "-m", "pylvs", "adm", "--socket",
                                 dr.lab.control_socket, "-Ln"], capture_output=True, text=True)
        if result.returncode == 0:
            break
    assert result is not None and result.returncode == 0, result.stderr
    rs1, rs2 = dr.lab.server_ips[:2]
    # ipvsadm sorts real servers by address unless --nosort
    assert result.stdout == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        f"TCP  {dr.lab.vip}:80 wrr\n"
        f"  -> {rs1 + ':80':<28} Route   2      0          0         \n"
        f"  -> {rs2 + ':80':<28} Route   1      0          0         \n")


def test_persistent_service_keeps_a_client_on_one_server_and_lists_the_template(make_lab):
    dr = make_lab(3, "rr", persistence=300)
    answers = dr.answers(20)
    assert len(answers) == 1 and sum(answers.values()) == 20
    rows = [line.split() for line in dr.director.adm("-Lnc").splitlines()[2:]]
    templates = [row for row in rows if row[3] == f"{dr.lab.client_ip}:0"]
    assert len(templates) == 1
    assert templates[0][0] == "TCP" and templates[0][2] == "ASSURED"
    assert templates[0][4] == f"{dr.lab.vip}:80"
    server = dr.lab.server_ips[dr.lab.server_names.index(next(iter(answers)))]
    assert templates[0][5] == f"{server}:80"
    assert f"TCP  {dr.lab.vip}:80 rr persistent 300" in dr.director.adm("-Ln").splitlines()


def test_readme_plugin_scheduler_balances_the_lab(make_lab):
    dr = make_lab(3, "examples.fewest_total:FewestTotal")
    assert dr.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}
    assert f"TCP  {dr.lab.vip}:80 fewest" in dr.director.adm("-Ln").splitlines()


def test_a_director_killed_with_sigkill_leaves_no_vip_and_no_tables(make_lab):
    """pylvs.shell.guard: the seed's "both sides hold the VIP" failure cannot come from a dead
    pylvs."""
    dr = make_lab(2, "rr")
    lab = dr.lab

    def held() -> tuple[str, str]:
        addresses = lab.run_in(lab.director_ns, ["ip", "-4", "addr", "show", "dev",
                                                 lab.director_if], capture_output=True,
                               text=True).stdout
        tables = lab.run_in(lab.director_ns, ["nft", "list", "tables"], capture_output=True,
                            text=True).stdout
        return addresses, tables

    addresses, tables = held()
    assert f"{lab.vip}/32" in addresses and "pylvs_" in tables
    dr.director.proc.kill()
    dr.director.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (f"{lab.vip}/32" in held()[0] or
                                           "pylvs_" in held()[1]):
        time.sleep(0.1)
    addresses, tables = held()
    assert f"{lab.vip}/32" not in addresses and "pylvs_" not in tables
    assert not os.path.exists(lab.control_socket)
    assert "guard: the director ended without cleaning up" in dr.director.output()


def test_sync_daemon_commands_as_ipvsadm_has_them(make_lab):
    dr = make_lab(1, "rr")
    adm = [sys.executable, "-m", "pylvs", "adm", "--socket", dr.lab.control_socket]

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*adm, *argv], capture_output=True, text=True, timeout=30)

    assert run("-L", "--daemon").stdout == ""
    assert run("--start-daemon", "master", "--mcast-interface", "eth0", "--syncid", "3"
               ).returncode == 0
    assert run("--start-daemon", "backup", "--mcast-interface", "eth0").returncode == 0
    assert run("-L", "--daemon").stdout == (
        "master sync daemon (mcast=eth0, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, "
        "ttl=1)\nbackup sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, "
        "port=8848, ttl=1)\n")
    again = run("--start-daemon", "master")
    assert (again.returncode, again.stderr) == (255, "Daemon has already run\n")
    assert run("--stop-daemon", "master").returncode == 0
    gone = run("--stop-daemon", "master")
    assert (gone.returncode, gone.stderr) == (255, "No daemon is running\n")
    assert run("-L", "--daemon").stdout.startswith("backup sync daemon (mcast=eth0, syncid=0")


def test_real_servers_the_director_cannot_reach_are_accepted_and_it_goes_on(make_lab):
    """IPVS accepts any destination, routing per packet. A real server with no route (the lab's
    director has no default route), or one routed through another interface: `-a` succeeds,
    later commands too, forwarding to the others goes on, the director says why in its log;
    and a config naming such a server starts."""
    dr = make_lab(2, "rr")
    vip, (rs1, rs2) = dr.lab.vip, dr.lab.server_ips
    ns = dr.lab.director_ns
    for argv in (["link", "add", "pylvsv0", "type", "veth", "peer", "name", "pylvsv1"],
                 ["addr", "add", "198.51.100.1/24", "dev", "pylvsv0"],
                 ["link", "set", "pylvsv1", "up"], ["link", "set", "pylvsv0", "up"]):
        dr.lab.run_in(ns, ["ip", *argv], check=True)
    dr.director.adm("-a", "-t", f"{vip}:80", "-r", "192.0.2.99:80", "-w", "0")
    dr.director.adm("-a", "-t", f"{vip}:80", "-r", "198.51.100.99:80", "-w", "0")
    dr.director.adm("-e", "-t", f"{vip}:80", "-r", f"{rs1}:80", "-w", "2")
    dr.director.adm("-d", "-t", f"{vip}:80", "-r", f"{rs2}:80")
    listing = dr.director.adm("-Ln")
    assert "192.0.2.99:80" in listing and "198.51.100.99:80" in listing
    assert dr.answers(4) == Counter({"rs1": 4})
    log = dr.director.output()
    assert "real server 192.0.2.99: no route to 192.0.2.99" in log
    assert "real server 198.51.100.99 is reached through pylvsv0: forwarding there too" in log
    assert dr.director.proc.poll() is None

    dr.director.stop()
    config = lab_config(dr.lab, "rr") + ('\n  [[virtual_server.real_server]]\n'
                                         '  address = "192.0.2.99:80"\n  weight = 0\n')
    dr.director = DirectorProcess(dr.lab, config)
    assert "192.0.2.99:80" in dr.director.adm("-Ln")
    assert dr.answers(2) == Counter({"rs1": 1, "rs2": 1})


def test_a_real_server_behind_another_interface_is_forwarded_to_through_it(make_lab):
    """As IPVS, the director forwards through whatever interface the route names: a DR real
    server on a third link (eth2, not `interface` or `inside_interface`), added while running,
    answers its share; it answers the client over a link of its own to the client's segment."""
    dr = make_lab(1, "rr")
    lab = dr.lab
    far_ns, far_ip = f"{lab.prefix}-far", "10.9.0.11"
    lab._add_namespace(far_ns)
    lab.run_in(lab.bridge_ns, ["ip", "link", "add", "br9", "type", "bridge"], check=True)
    lab.run_in(lab.bridge_ns, ["ip", "link", "set", "br9", "up"], check=True)
    lab._add_link(lab.director_ns, "br9", "dir-far", "eth2", "10.9.0.1")
    lab._add_link(far_ns, "br9", "far", "eth0", far_ip)
    lab._add_link(far_ns, "br0", "far-out", "eth1", "192.168.1.61")
    lab.run_in(far_ns, [sys.executable, "-m", "pylvs", "realserver", "--mode", "dr", "--vip",
                        lab.vip], check=True, capture_output=True)
    server = lab.popen_in(far_ns, [sys.executable, "-m", "pylvs.lab.httpserver", "--name", "far",
                                   "--port", "80"], stdout=subprocess.PIPE, text=True)
    lab.processes.append(server)
    assert server.stdout.readline().startswith("serving")
    dr.director.adm("-a", "-t", f"{lab.vip}:80", "-r", f"{far_ip}:80")
    assert dr.answers(6) == Counter({"rs1": 3, "far": 3})
    assert "real server 10.9.0.11 is reached through eth2" in dr.director.output()


def _mac(lab, ns: str, dev: str = "eth0") -> str:
    out = lab.run_in(ns, ["cat", f"/sys/class/net/{dev}/address"], capture_output=True,
                     text=True, check=True).stdout
    return out.strip()


def test_tcpdump_on_the_director_sees_what_it_forwards(make_lab, tmp_path):
    """As on an IPVS director, a capture on the director's interface shows the frames it sends
    on (no PACKET_QDISC_BYPASS): DR's, from the director's MAC to the real server's, to the
    VIP."""
    dr = make_lab(1, "rr")
    lab, pcap = dr.lab, str(tmp_path / "director.pcap")
    director_mac, server_mac = _mac(lab, lab.director_ns), _mac(lab, lab.server_ns[0])
    capture = lab.popen_in(lab.director_ns, [
        "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n", "-w", pcap,
        f"ether src {director_mac} and dst host {lab.vip} and tcp dst port 80"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert capture.stderr is not None
        assert "listening on eth0" in capture.stderr.readline()
        assert dr.answers(2) == Counter({"rs1": 2})
        time.sleep(0.5)
    finally:
        capture.terminate()
        capture.wait(10)
    frames = rdpcap(pcap)
    assert len(frames) >= 6  # two connections: SYN, ACK, request, ACKs, FIN
    assert {(f[Ether].src, f[Ether].dst, f[IP].dst) for f in frames} == {
        (director_mac, server_mac, lab.vip)}

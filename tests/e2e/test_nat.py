"""NAT end to end: an outside and an inside segment, a real `pylvs run`, real HTTP servers, curl.

The real servers' default route points at the director's inside address, as IPVS's NAT needs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from pylvs.lab.demo import HeldConnections, tcp_sockets
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import curl_argv

OFFLOADS = ["none", "xdp"]
"""The data path both ways: every frame in Python, or established flows in XDP."""


@pytest.mark.parametrize("offload", OFFLOADS)
def test_rr_gives_each_of_three_servers_ten_of_thirty(make_lab, offload):
    nat = make_lab(3, "rr", mode="nat", offload=offload)
    assert nat.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}


@pytest.mark.parametrize("offload", OFFLOADS)
def test_five_megabyte_download_arrives_intact(make_lab, offload):
    nat = make_lab(2, "rr", mode="nat", offload=offload)
    size = 5 * 1024 * 1024
    expected = hashlib.sha256(blob(size)).hexdigest()
    for _ in range(2):
        result = nat.lab.run_in(nat.lab.client_ns,
                                curl_argv(f"http://{nat.lab.vip}/blob/{size}", max_time=60),
                                capture_output=True, check=True)
        assert hashlib.sha256(result.stdout).hexdigest() == expected


@pytest.mark.parametrize("offload", OFFLOADS)
def test_port_mapping_80_to_8080_and_the_real_server_sees_the_client(make_lab, offload):
    nat = make_lab(2, "wrr", weights=[1, 1], mode="nat", server_port=8080, offload=offload)
    assert nat.answers(4) == {"rs1": 2, "rs2": 2}
    held = HeldConnections(nat.lab, 2)
    try:
        rows = [line.split() for line in nat.director.adm("-Lnc").splitlines()[2:]]
        for ns, rip in zip(nat.lab.server_ns, nat.lab.server_ips, strict=True):
            sockets = [s.split() for s in tcp_sockets(nat.lab, ns)]
            assert [s for s in sockets if s[0] == "ESTAB" and s[3] == f"{rip}:8080"
                    and s[4].startswith(f"{nat.lab.client_ip}:")]
    finally:
        held.close()
    states = {row[3]: row[2] for row in rows}
    assert {states[f"{nat.lab.client_ip}:{port}"] for port in held.ports} == {"ESTABLISHED"}
    # curl closes first: client FIN (ES→CLOSE_WAIT), then the server's (→TIME_WAIT), IPVS's NAT
    assert sorted(state for src, state in states.items()
                  if int(src.split(":")[1]) not in held.ports) == ["TIME_WAIT"] * 4
    assert all(row[5].endswith(":8080") and row[4] == f"{nat.lab.vip}:80" for row in rows)


@pytest.mark.parametrize("offload", OFFLOADS)
def test_stats_count_replies_as_outpkts(make_lab, offload):
    nat = make_lab(1, "rr", mode="nat", offload=offload)
    nat.answers(3)
    lines = nat.director.adm("-Ln", "--stats").splitlines()
    service = lines[3].split()
    conns, inpkts, outpkts = (int(v) for v in service[2:5])
    assert conns == 3 and inpkts > 0 and outpkts > 0


def test_no_usable_real_server_is_refused_at_once(make_lab):
    nat = make_lab(2, "rr", weights=[0, 0], mode="nat")
    result = nat.lab.run_in(nat.lab.client_ns, curl_argv(f"http://{nat.lab.vip}/", max_time=20),
                            capture_output=True, text=True)
    assert result.returncode == 7, result.stderr  # curl: "Couldn't connect to server"
    # the kernel turns ICMP port unreachable into ECONNREFUSED for a connecting socket
    probe = nat.lab.run_in(nat.lab.client_ns, [sys.executable, "-c", (
        "import socket\n"
        f"socket.create_connection(('{nat.lab.vip}', 80), timeout=20)\n")],
        capture_output=True, text=True)
    assert "ConnectionRefusedError" in probe.stderr, probe.stderr
    assert nat.director.adm("-Lnc").splitlines()[2:] == []


def test_director_stops_cleanly_and_leaves_no_tables(make_lab):
    nat = make_lab(1, "rr", mode="nat")
    lab = nat.lab
    tables = lab.run_in(lab.director_ns, ["nft", "list", "tables"], capture_output=True,
                        text=True, check=True).stdout
    assert tables.count("pylvs_") == 2  # the outside table and the inside (replies) one
    assert nat.director.stop() == 0
    tables = subprocess.run(["ip", "netns", "exec", lab.director_ns, "nft", "list", "tables"],
                            capture_output=True, text=True, check=True).stdout
    assert "pylvs_" not in tables


SNIFF_ICMP = """
import sys
from scapy.all import ICMP, IP, IPerror, TCPerror, sniff
got = sniff(iface="eth0", lfilter=lambda p: ICMP in p and IPerror in p, count=1, timeout=15,
            started_callback=lambda: print("ready", flush=True))
for p in got:
    print(p[IP].src, p[IP].dst, p[IPerror].src, p[IPerror].dst, p[TCPerror].sport,
          p[TCPerror].dport, flush=True)
"""


def _sniffer(lab, ns):
    proc = lab.popen_in(ns, [sys.executable, "-c", SNIFF_ICMP], stdout=subprocess.PIPE,
                        text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _send_icmp(lab, ns, outer_src, outer_dst, quoted_src, quoted_dst, sport, dport):
    code = (f"from scapy.all import ICMP, IP, TCP, send\n"
            f"send(IP(src='{outer_src}', dst='{outer_dst}') / ICMP(type=3, code=3) / "
            f"IP(src='{quoted_src}', dst='{quoted_dst}') / TCP(sport={sport}, dport={dport}), "
            f"verbose=False)\n")
    lab.run_in(ns, [sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("offload", OFFLOADS)
def test_icmp_errors_cross_the_director_in_both_directions(make_lab, offload):
    nat = make_lab(1, "rr", mode="nat", offload=offload)
    lab, rip = nat.lab, nat.lab.server_ips[0]
    held = HeldConnections(lab, 1)
    try:
        cport = held.ports[0]
        # the real server's error about its reply reaches the client as about VIP:80
        sniffer = _sniffer(lab, lab.client_ns)
        _send_icmp(lab, lab.server_ns[0], rip, lab.client_ip, lab.client_ip, rip, cport, 80)
        seen, _ = sniffer.communicate(timeout=30)
        assert seen.split() == [lab.vip, lab.client_ip, lab.client_ip, lab.vip, str(cport), "80"]
        # the client's error about VIP:80 reaches the real server as about RIP:80
        sniffer = _sniffer(lab, lab.server_ns[0])
        _send_icmp(lab, lab.client_ns, lab.client_ip, lab.vip, lab.vip, lab.client_ip, 80, cport)
        seen, _ = sniffer.communicate(timeout=30)
        assert seen.split() == [lab.client_ip, rip, rip, lab.client_ip, "80", str(cport)]
    finally:
        held.close()

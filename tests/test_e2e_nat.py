"""NAT end to end: an outside and an inside segment, a real `pylvs run`, real HTTP servers, curl.

The real servers' default route points at the director's inside address, as IPVS's NAT needs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from pylvs.demo import HeldConnections, tcp_sockets
from pylvs.httpserver import blob
from pylvs.lab import curl_argv


def test_rr_gives_each_of_three_servers_ten_of_thirty(make_lab):
    nat = make_lab(3, "rr", mode="nat")
    assert nat.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}


def test_five_megabyte_download_arrives_intact(make_lab):
    nat = make_lab(2, "rr", mode="nat")
    size = 5 * 1024 * 1024
    expected = hashlib.sha256(blob(size)).hexdigest()
    for _ in range(2):
        result = nat.lab.run_in(nat.lab.client_ns,
                                curl_argv(f"http://{nat.lab.vip}/blob/{size}", max_time=60),
                                capture_output=True, check=True)
        assert hashlib.sha256(result.stdout).hexdigest() == expected


def test_port_mapping_80_to_8080_and_the_real_server_sees_the_client(make_lab):
    nat = make_lab(2, "wrr", weights=[1, 1], mode="nat", server_port=8080)
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


def test_stats_count_replies_as_outpkts(make_lab):
    nat = make_lab(1, "rr", mode="nat")
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

"""TUN end to end: real servers behind a router, IP-in-IP from a real `pylvs run`, the userspace
decapsulator of `pylvs realserver --mode tun` (this kernel has no ipip), real curl; and one
service mixing DR, NAT and TUN real servers."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from pylvs.lab.demo import HeldConnections, tcp_sockets
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import curl_argv
from tests.helpers.labs import upload

OFFLOADS = ["none", "xdp"]
"""The data path both ways: every frame in Python, or established flows in XDP."""


@pytest.mark.parametrize("offload", OFFLOADS)
def test_rr_gives_each_of_three_servers_ten_of_thirty(make_lab, offload):
    tun = make_lab(3, "rr", mode="tun", offload=offload)
    assert tun.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}


@pytest.mark.parametrize("offload", OFFLOADS)
def test_five_megabyte_download_arrives_intact(make_lab, offload):
    tun = make_lab(1, "rr", mode="tun", offload=offload)
    size = 5 * 1024 * 1024
    result = tun.lab.run_in(tun.lab.client_ns,
                            curl_argv(f"http://{tun.lab.vip}/blob/{size}", max_time=60),
                            capture_output=True, check=True)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(blob(size)).hexdigest()


@pytest.mark.parametrize("offload", OFFLOADS)
def test_upload_bigger_than_the_tunnel_mtu_finds_the_path_mtu(make_lab, offload):
    tun = make_lab(1, "rr", mode="tun", offload=offload)
    lab = tun.lab
    body = blob(2 * 1024 * 1024 + 11)
    assert upload(lab, body) == hashlib.sha256(body).hexdigest()
    # the client learned the director's "fragmentation needed": 1500 less the 20-byte header
    cached = lab.run_in(lab.client_ns, ["ip", "route", "get", lab.vip], capture_output=True,
                        text=True, check=True).stdout
    assert "mtu 1480" in cached, cached


@pytest.mark.parametrize("offload", OFFLOADS)
def test_real_servers_see_the_client_and_answer_it_directly(make_lab, offload):
    tun = make_lab(2, "rr", mode="tun", offload=offload)
    held = HeldConnections(tun.lab, 2)
    try:
        for ns in tun.lab.server_ns:
            sockets = [s.split() for s in tcp_sockets(tun.lab, ns)]
            assert [s for s in sockets if s[0] == "ESTAB" and s[3] == f"{tun.lab.vip}:80"
                    and s[4].startswith(f"{tun.lab.client_ip}:")]
        rows = [line.split() for line in tun.director.adm("-Lnc").splitlines()[2:]]
    finally:
        held.close()
    assert {row[2] for row in rows} == {"ESTABLISHED"}
    forwards = [line.split()[2] for line in tun.director.adm("-Ln").splitlines()[3:]
                if line.startswith("  -> ")]
    assert forwards == ["Tunnel", "Tunnel"]


def test_one_service_mixing_dr_nat_and_tun(make_lab):
    mixed = make_lab(3, "rr", mode="mixed")
    assert mixed.answers(30) == {"rs1": 10, "rs2": 10, "rs3": 10}
    lines = mixed.director.adm("-Ln").splitlines()
    forwards = {line.split()[1].rsplit(":", 1)[0]: line.split()[2] for line in lines
                if line.startswith("  -> ") and "RemoteAddress" not in line}
    assert forwards == dict(zip(mixed.lab.server_ips, ["Route", "Masq", "Tunnel"], strict=True))


@pytest.mark.parametrize("offload", OFFLOADS)
@pytest.mark.parametrize(("tun_type", "family"), [("gue", 4), ("gre", 4), ("gue", 6),
                                                  ("gre", 6)])
def test_gue_and_gre_carry_a_five_megabyte_download_intact(make_lab, tun_type, family,
                                                           offload):
    """ipvsadm --tun-type gue|gre (the config's tun_type): the real servers unwrap it in
    userspace, rr spreads the requests, 5 MB arrive whole, and -Ln --tun-info says the type."""
    tun = make_lab(2, "rr", mode="tun", offload=offload, family=family, tun_type=tun_type)
    lab = tun.lab
    assert tun.answers(4) == {"rs1": 2, "rs2": 2}
    size = 5 * 1024 * 1024
    result = lab.run_in(lab.client_ns, curl_argv(lab.url(f"/blob/{size}"), max_time=60),
                        capture_output=True, check=True)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(blob(size)).hexdigest()
    info = [line.split()[3] for line in tun.director.adm("-Ln", "--tun-info").splitlines()
            if line.strip().startswith("->") and " Tunnel " in line]
    assert info == [f"{tun_type}:6080:-c" if tun_type == "gue" else "gre:-c"] * 2


def test_the_gre_lab_runs_as_a_user_runs_it_and_names_its_tunnel():
    done = subprocess.run([sys.executable, "-m", "pylvs", "lab", "tun", "--tun-type", "gre",
                           "--servers", "2", "--requests", "4"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "$ pylvs adm -Ln --tun-info" in done.stdout
    assert done.stdout.count("Tunnel  gre:-c") == 2
    assert "wrapped each packet in GRE" in done.stdout

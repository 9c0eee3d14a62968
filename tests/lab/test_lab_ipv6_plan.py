"""The IPv6 and dual-stack labs' plans, without a namespace: their addresses, the config a user
would write for them, what curl is given, the command line's refusals, the --explain and --keep
texts (issue 22)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tomllib

import pytest

from pylvs.lab import explain, kept
from pylvs.lab.topology import CROSS_PORT, Lab, Target, curl_argv, endpoint, lab_config


def test_the_ipv6_lab_mirrors_the_ipv4_addressing_in_documentation_prefixes():
    dr, nat, tun = (Lab(servers=2, mode=mode, family=6) for mode in ("dr", "nat", "tun"))
    assert (dr.client_ip, dr.director_ip, dr.vip) == ("2001:db8:1::5", "2001:db8:1::2",
                                                     "2001:db8:1::100")
    assert dr.server_ips == ["2001:db8:1::11", "2001:db8:1::12"]
    assert nat.server_ips == ["2001:db8:10::11", "2001:db8:10::12"]
    assert nat.director_inside_ip == "2001:db8:10::1" and nat.director_inside_if == "eth1"
    assert tun.server_ips == ["2001:db8:172:16::11", "2001:db8:172:16::12"]
    assert tun.plans[6].router_outside == "2001:db8:1::1"
    assert tun.plans[6].router_inside == "2001:db8:172:16::1"
    documentation = ipaddress.ip_network("2001:db8::/32")
    for lab in (dr, nat, tun):
        assert all(ipaddress.ip_address(a) in documentation
                   for a in (lab.client_ip, lab.director_ip, lab.vip, *lab.server_ips))
        assert lab.families == (6,) and lab.ipv6 and lab.label == f"{lab.mode} IPv6"


def test_the_ipv4_lab_is_as_it_was():
    lab = Lab(servers=3, mode="mixed")
    assert lab.families == (4,) and not lab.ipv6 and lab.label == "mixed"
    assert lab.server_ips == ["192.168.1.11", "10.0.0.12", "172.16.0.13"]
    assert lab.url() == "http://192.168.1.100/"
    assert curl_argv(lab.url()) == ["curl", "-sS", "--noproxy", "*", "--max-time", "10",
                                    "http://192.168.1.100/"]


def test_mixed_ipv6_gives_each_method_its_segment():
    lab = Lab(servers=3, mode="mixed", family=6)
    assert lab.server_modes == ["dr", "nat", "tun"]
    assert lab.server_ips == ["2001:db8:1::11", "2001:db8:10::12", "2001:db8:172:16::13"]


def test_curl_is_given_a_bracketed_ipv6_literal_with_globbing_off():
    lab = Lab(servers=1, mode="dr", family=6)
    assert lab.url("/blob/5") == "http://[2001:db8:1::100]:80/blob/5"
    assert curl_argv(lab.url()) == ["curl", "-sS", "-6", "-g", "--noproxy", "*", "--max-time",
                                    "10", "http://[2001:db8:1::100]:80/"]
    assert endpoint("2001:db8:1::100", 80) == "[2001:db8:1::100]:80"
    assert endpoint("192.168.1.100", 80) == "192.168.1.100:80"


def test_the_config_is_the_ipv4_labs_with_bracketed_ipv6_endpoints():
    lab = Lab(servers=3, mode="mixed", family=6)
    config = tomllib.loads(lab_config(lab, "wrr", weights=[3, 2, 1]))
    assert config["director"] == {"interface": "eth0", "inside_interface": "eth1",
                                  "control_socket": lab.control_socket, "offload": "auto"}
    (service,) = config["virtual_server"]
    assert service["address"] == "[2001:db8:1::100]:80" and service["forward"] == "dr"
    assert [(r["address"], r["weight"], r.get("forward")) for r in service["real_server"]] == [
        ("[2001:db8:1::11]:80", 3, None), ("[2001:db8:10::12]:80", 2, "nat"),
        ("[2001:db8:172:16::13]:80", 1, "tun")]


def test_the_dual_stack_config_has_both_vips_and_tun_across_families():
    lab = Lab(servers=2, mode="dualstack")
    assert lab.families == (4, 6) and lab.server_modes == ["tun", "tun"]
    assert lab.vips == ["192.168.1.100", "2001:db8:1::100"]
    assert lab.server_addresses(0) == ["172.16.0.11", "2001:db8:172:16::11"]
    services = tomllib.loads(lab_config(lab, "rr"))["virtual_server"]
    assert [(s["address"], s["forward"], [r["address"] for r in s["real_server"]])
            for s in services] == [
        ("192.168.1.100:80", "tun", ["172.16.0.11:80", "172.16.0.12:80"]),
        ("[2001:db8:1::100]:80", "tun", ["[2001:db8:172:16::11]:80", "[2001:db8:172:16::12]:80"]),
        ("192.168.1.100:8080", "tun", ["[2001:db8:172:16::11]:8080",
                                       "[2001:db8:172:16::12]:8080"]),
        ("[2001:db8:1::100]:8080", "tun", ["172.16.0.11:8080", "172.16.0.12:8080"])]
    # IPVS takes a real server of the other family only by TUN, and TUN cannot map ports
    for service in services:
        port = service["address"].rsplit(":", 1)[1]
        assert all(r["address"].endswith(f":{port}") for r in service["real_server"])
    assert [t.encapsulation for t in lab.targets()] == ["IP-in-IP", "ip6ip6", "4in6", "6in4"]
    assert lab.traced_target() == Target("2001:db8:1::100", CROSS_PORT, 4,
                                         ("172.16.0.11", "172.16.0.12"))


def test_a_lab_config_key_lands_in_every_dual_stack_service():
    lab = Lab(servers=1, mode="dualstack")
    config = tomllib.loads(lab_config(lab, "rr", persistence=30, server_port=80))
    assert [s["persistence_timeout"] for s in config["virtual_server"]] == [30] * 4


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"mode": "nat", "family": 6, "ha": True}, "is a DR lab"),
    ({"mode": "dr", "family": 6, "mistake": "arp"}, "without --ipv6"),
    ({"mode": "dualstack", "mistake": "rp_filter"}, "without --ipv6"),
    ({"mode": "dr", "family": 5}, "family must be 4 or 6"),
])
def test_what_an_ipv6_lab_refuses(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Lab(servers=1, **kwargs)


@pytest.mark.parametrize(("argv", "words"), [
    (["dualstack", "--ipv6"], "--ipv6 goes with dr, nat, tun, mixed and ecmp (dualstack has "
     "both families already)"),
    (["dr", "--ipv6", "--mistake", "arp"], "the --mistake labs are IPv4's"),
])
def test_the_command_line_refuses_before_building_anything(argv, words):
    """Refused with status 2 before the root check: nothing is named or made."""
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", *argv], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and result.stdout == ""


def test_explain_says_why_an_ipv6_real_server_needs_no_arp_ignore():
    joined = " ".join(line[4:] for line in explain.real_servers(["dr"], [6]).splitlines())
    assert "IPv6 needs no arp_ignore or arp_announce" in joined
    assert "ndisc_recv_ns" in joined and "/128" in joined and "nodad" in joined
    assert "arp_ignore=1: answer" not in joined  # IPv4's paragraph is not there
    both = " ".join(line[4:] for line in explain.real_servers(["tun"], [4, 6]).splitlines())
    assert "IP-in-IP, protocol 4" in both and "ip6ip6, next header 41" in both
    assert "4in6" in both and "6in4" in both and "only with TUN" in both


def test_a_kept_ipv6_lab_says_how_to_curl_it():
    text = kept.instructions(Lab(servers=1, mode="tun", family=6))
    assert "# router 2001:db8:1::1, 2001:db8:172:16::1" in text
    assert "# rs1 2001:db8:172:16::11" in text
    assert "curl -s -6 -g 'http://[2001:db8:1::100]:80/'" in text
    dual = kept.instructions(Lab(servers=1, mode="dualstack"))
    assert "requests, as the client:" in dual and dual.count("curl -s") == 4
    assert "# rs1 172.16.0.11, 2001:db8:172:16::11" in dual

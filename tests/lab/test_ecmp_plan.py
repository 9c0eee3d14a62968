"""pylvs.lab.ecmp's plan, with no namespace: the IPv6 lab's addresses (the IPv4 lab's numbers in
documentation prefixes), the router's BIRD (a session per director and family, a kernel
protocol per family), each director's config (its [bgp] and the services it announces), and
the command line taking `pylvs lab ecmp --ipv6`."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from pylvs.adm.config import parse
from pylvs.lab import ecmp, nexthops
from pylvs.lab.ecmp import EcmpLab, router_config


def test_the_ipv6_lab_writes_the_ipv4_labs_numbers_in_documentation_prefixes():
    lab = EcmpLab(directors=2, servers=3, families=(6,))
    assert (lab.vip, lab.client_ip, lab.router_ip) == (
        "2001:db8:10:100::1", "2001:db8:10:1::2", "2001:db8:10::1")
    assert lab.director_ips == ["2001:db8:10::11", "2001:db8:10::12"]
    assert lab.server_ips == ["2001:db8:10::101", "2001:db8:10::102", "2001:db8:10::103"]
    assert lab.url("/blob/9") == "http://[2001:db8:10:100::1]:80/blob/9"
    assert lab.curl_argv(local_port=42000)[:3] == ["curl", "-sS", "-6"]
    assert lab.curl_argv(local_port=42000)[-2:] == ["--local-port", "42000"]
    four = EcmpLab(directors=2)
    assert (four.vip, four.director_ips, four.url()) == (
        ecmp.VIP, ["10.0.0.11", "10.0.0.12"], "http://10.0.100.1/")


def test_a_lab_takes_one_family_or_both():
    with pytest.raises(ValueError, match=r"families must be \(4,\), \(6,\) or \(4, 6\)"):
        EcmpLab(families=(6, 4))
    dual = EcmpLab(directors=1, servers=1, families=(4, 6))
    assert dual.vip == ecmp.VIP and dual.directors_of(6) == ["2001:db8:10::11"]


def test_the_routers_bird_has_an_ipv6_session_to_each_director():
    text = router_config({6: ["2001:db8:10::11", "2001:db8:10::12"]}, bfd=True, resilient=True)
    assert "router id 10.0.0.1;" in text  # 32 bits, though the router has no IPv4 address
    assert (f"protocol kernel kernel6 {{ kernel table {nexthops.SOURCE_TABLE}; merge paths on; "
            "ipv6 { import none; export all; }; }") in text
    assert "ipv4" not in text and "bfd on;" in text
    assert "template bgp director6 {" in text and "ipv6 { import all; export none; }" in text
    assert ("protocol bgp d2v6 from director6 { neighbor 2001:db8:10::12 as 65001; }"
            in text)


def test_a_dual_stack_router_has_both_kernel_protocols_and_two_sessions_per_director():
    text = router_config({4: ["10.0.0.11"], 6: ["2001:db8:10::11"]}, bfd=False,
                         resilient=False)
    assert "protocol kernel { merge paths on; ipv4 { import none; export all; }; }" in text
    assert "protocol kernel kernel6 { merge paths on; ipv6 { import none; export all; }; }" in text
    assert "protocol bgp d1 from director { neighbor 10.0.0.11 as 65001; }" in text
    assert "protocol bgp d1v6 from director6 { neighbor 2001:db8:10::11 as 65001; }" in text
    assert "bfd" not in text


def test_the_ipv4_routers_config_is_what_it_was():
    assert router_config(["10.0.0.11"], bfd=False, resilient=False) == (
        "router id 10.0.0.1;\nprotocol device { scan time 10; }\n"
        "protocol kernel { merge paths on; ipv4 { import none; export all; }; }\n"
        "template bgp director { local as 65000; hold time 3; keepalive time 1; connect retry "
        "time 1; error wait time 1, 10; ipv4 { import all; export none; }; }\n"
        "protocol bgp d1 from director { neighbor 10.0.0.11 as 65001; }\n")


def test_an_ipv6_director_names_its_router_id_and_announces_the_ipv6_vip():
    lab = EcmpLab(directors=2, servers=2, families=(6,))
    text = lab.director_config(1)
    raw = tomllib.loads(text)
    assert raw["bgp"]["router_id"] == "10.0.0.12"
    assert raw["bgp"]["neighbor"] == [{"address": "2001:db8:10::1", "remote_as": 65000}]
    assert raw["virtual_server"][0]["address"] == "[2001:db8:10:100::1]:80"
    assert [s["address"] for s in raw["virtual_server"][0]["real_server"]] == [
        "[2001:db8:10::101]:80", "[2001:db8:10::102]:80"]
    assert raw["sysctl"]["sloppy_tcp"] == 1 and raw["virtual_server"][0]["scheduler"] == "mh"


def test_a_dual_stack_director_has_a_service_and_a_neighbour_of_each_family():
    raw = tomllib.loads(EcmpLab(directors=1, servers=1, families=(4, 6)).director_config(0))
    assert "router_id" not in raw["bgp"]  # the interface's IPv4 address is its router id
    assert [n["address"] for n in raw["bgp"]["neighbor"]] == ["10.0.0.1", "2001:db8:10::1"]
    assert [s["address"] for s in raw["virtual_server"]] == ["10.0.100.1:80",
                                                             "[2001:db8:10:100::1]:80"]


@pytest.mark.parametrize("families", [(6,), (4, 6)])
def test_the_director_configs_parse(families):
    """Needs [bgp] over IPv6 in pylvs.adm.config (issue 23)."""
    text = EcmpLab(directors=1, servers=2, families=families).director_config(0)
    try:
        config = parse(text)
    except Exception as exc:  # noqa: BLE001 - the config's own refusal, named
        pytest.fail(f"the lab's director config is refused: {exc}")
    assert config.bgp is not None and config.bgp.families == families


def test_the_nexthop_mirror_writes_each_vips_host_route():
    assert nexthops.host_route("10.0.100.1") == "10.0.100.1/32"
    assert nexthops.host_route("2001:db8:10:100::1") == "2001:db8:10:100::1/128"


def test_the_command_line_takes_ecmp_ipv6():
    """`--ipv6` is no longer refused with ecmp: what is refused now is what ecmp never took."""
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "ecmp", "--ipv6", "--keep"],
                            capture_output=True, text=True, timeout=30)
    assert "--ipv6 goes with" not in result.stderr
    if result.returncode == 1:
        assert "needs root" in result.stderr
    else:
        assert result.returncode == 2
        assert "ecmp takes --directors, --servers, --no-bfd and --ipv6 only" in result.stderr

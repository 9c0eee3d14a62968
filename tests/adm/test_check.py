"""`pylvs check`'s and `pylvs run`'s pre-flight decisions (pylvs.adm.check) over facts given
here: what is ok, a warning or a refused config, under which key; what `pylvs run` would do;
and a keepalived.conf's interface chosen from the routes to its real servers."""

from __future__ import annotations

import pytest

from pylvs.adm import check, keepalived
from pylvs.adm.check import FAIL, OK, WARN, Facts, Link, Route
from pylvs.adm.config import build, parse

DIRECTOR = '[director]\ninterface = "eth0"\n'
SERVICE = ('[[virtual_server]]\naddress = "10.9.0.100:80"\nscheduler = "rr"\n'
           '  [[virtual_server.real_server]]\n  address = "10.9.0.11:80"\n'
           '  [[virtual_server.real_server]]\n  address = "10.9.1.12:80"\n')
ETH0 = Link("eth0", kind="veth", addresses=("10.9.0.1/24", "fe80::1/64"))
LO = Link("lo", mtu=65536, addresses=("127.0.0.1/8", "::1/128"))


def facts(*links: Link, **more: object) -> Facts:
    routes = {"10.9.0.11": Route("eth0", None, "10.9.0.1"),
              "10.9.1.12": Route("eth0", None, "10.9.0.1")}
    return Facts(links={lk.name: lk for lk in (links or (ETH0, LO))},
                 routes=more.pop("routes", routes), **more)  # type: ignore[arg-type]


def verdicts(text: str, found: Facts) -> dict[str, tuple[str, str]]:
    """Each finding's key → (verdict, text); the last one of a key."""
    return {f.key: (f.verdict, f.text) for f in check.check(parse(text), found)}


def test_a_config_this_host_has_everything_for_is_all_ok():
    found = check.check(parse(DIRECTOR + SERVICE), facts())
    assert [f.verdict for f in found] == [OK, OK, OK]
    assert found[0].line() == ("ok    director.interface: eth0: veth, up, mtu 1500, "
                               "10.9.0.1/24, fe80::1/64")
    assert check.failures(found) == []


def test_a_misspelt_interface_is_refused_under_its_key_with_the_near_name():
    said = verdicts(DIRECTOR.replace("eth0", "eht0") + SERVICE, facts())
    verdict, text = said["director.interface"]
    assert verdict == FAIL
    assert text == "no interface 'eht0' on this host (it has: eth0, lo); did you mean 'eth0'?"


@pytest.mark.parametrize("extra,key", [
    ('inside_interface = "eth9"\n', "director.inside_interface"),
    ('sync_daemon = true\nsync_interface = "eth9"\n', "director.sync_interface"),
])
def test_every_interface_the_config_names_is_checked(extra, key):
    said = verdicts(DIRECTOR + extra + SERVICE, facts())
    assert said[key][0] == FAIL and "no interface 'eth9'" in said[key][1]


def test_a_vrrp_instance_on_another_interface_and_its_tracked_interfaces():
    vrrp = ('[vrrp]\nvirtual_router_id = 51\ninterface = "eth1"\ntrack_interface = ["eth7"]\n')
    said = verdicts(DIRECTOR + SERVICE + vrrp, facts())
    assert said["vrrp.interface"][0] == FAIL
    assert said["vrrp.track_interface"][0] == WARN  # keepalived's instance stays in FAULT


def test_a_down_interface_is_a_warning():
    down = Link("eth0", up=False, addresses=ETH0.addresses)
    assert verdicts(DIRECTOR + SERVICE, facts(down, LO))["director.interface"][0] == WARN


def test_routes_to_the_real_servers_keyed_in_the_configs_order():
    routes = {"10.9.0.11": Route("eth0", None, "10.9.0.1"), "10.9.1.12": "Network is unreachable"}
    said = verdicts(DIRECTOR + SERVICE, facts(routes=routes))
    assert said["virtual_server[0].real_server[0]"] == (
        OK, "10.9.0.11 (dr) on-link through eth0, from 10.9.0.1")
    assert said["virtual_server[0].real_server[1]"][0] == WARN  # as IPVS: dropped and counted
    assert "no route to 10.9.1.12 (Network is unreachable)" in \
        said["virtual_server[0].real_server[1]"][1]


def test_a_dr_real_server_behind_a_router_is_a_warning_nat_is_not():
    routes = {"10.9.0.11": Route("eth0", "10.9.0.254"), "10.9.1.12": Route("eth1", "10.9.9.1")}
    eth1 = Link("eth1", addresses=("10.9.9.2/24",))
    said = verdicts(DIRECTOR + SERVICE, facts(ETH0, eth1, LO, routes=routes))
    assert said["virtual_server[0].real_server[0]"][0] == WARN
    assert "its frames would go to the router 10.9.0.254" in \
        said["virtual_server[0].real_server[0]"][1]
    nat = verdicts(DIRECTOR + SERVICE.replace('"rr"\n', '"rr"\nforward = "nat"\n'),
                   facts(ETH0, eth1, LO, routes=routes))
    assert nat["virtual_server[0].real_server[1]"] == (
        OK, "10.9.1.12 (nat) via 10.9.9.1 through eth1: pylvs also sends through eth1")


def test_addresses_metrics_and_a_vip_held_elsewhere():
    text = DIRECTOR + 'metrics = "10.9.0.7:9300"\n' + SERVICE
    said = verdicts(text, facts())
    assert said["director.metrics"][0] == FAIL
    assert verdicts(text.replace("10.9.0.7", "0.0.0.0"), facts())["director.metrics"][0] == OK
    eth1 = Link("eth1", addresses=("10.9.0.100/32",))
    held = verdicts(DIRECTOR + SERVICE, facts(ETH0, eth1, LO))
    assert held["virtual_server[0].address"] == (
        WARN, "the VIP 10.9.0.100 is already on eth1: this host answers for it there too")


def test_vrrp_needs_an_address_to_send_from():
    vrrp = '[vrrp]\nvirtual_router_id = 51\n'
    bare = Link("eth0", addresses=("fe80::1/64",))
    assert verdicts(DIRECTOR + SERVICE + vrrp, facts(bare, LO))["vrrp.interface"] == (
        FAIL, "eth0 has no IPv4 address of its own to send VRRP adverts from")
    unicast = vrrp + 'unicast_src_ip = "10.9.0.9"\nunicast_peers = ["10.9.0.2"]\n'
    assert verdicts(DIRECTOR + SERVICE + unicast, facts())["vrrp.unicast_src_ip"][0] == FAIL
    assert verdicts(DIRECTOR + SERVICE + unicast.replace("10.9.0.9", "10.9.0.1"),
                    facts())["vrrp.unicast_src_ip"][0] == OK


def test_the_control_socket_programs_and_privileges():
    said = verdicts(DIRECTOR + SERVICE, facts(control_socket="alive"))
    assert said["director.control_socket"][0] == WARN  # `pylvs check` beside a running one
    assert verdicts(DIRECTOR + SERVICE, facts(control_socket="no directory"))[
        "director.control_socket"][0] == FAIL
    bgp = ('[bgp]\nlocal_as = 65001\n[[bgp.neighbor]]\naddress = "10.9.0.254"\n'
           'remote_as = 65000\n')
    assert verdicts(DIRECTOR + SERVICE + bgp, facts())["bgp.bird"] == (FAIL, "bird: not found")
    assert verdicts(DIRECTOR + SERVICE + bgp, facts(programs={"bird": "/usr/sbin/bird"}))[
        "bgp.bird"][0] == OK
    said = verdicts(DIRECTOR + SERVICE, facts(missing_caps=("CAP_NET_ADMIN",)))
    assert said["privileges"][0] == WARN and "XDP" in said["privileges"][1]


def test_the_xdp_fast_path():
    text = DIRECTOR + 'offload = "xdp"\n' + SERVICE
    assert "director.offload" not in verdicts(text, facts())  # not tried: nothing said
    assert verdicts(text, facts(xdp=""))["director.offload"][0] == OK
    refused = verdicts(text, facts(xdp="no XDP offload: Operation not permitted"))
    assert refused["director.offload"][0] == WARN  # `pylvs run` falls back to Python
    taken = Link("eth0", addresses=ETH0.addresses, xdp_program=42)
    assert "(id 42)" in verdicts(text, facts(taken, LO, xdp=""))["director.offload"][1]
    auto = text.replace('"xdp"', '"auto"')
    assert verdicts(auto, facts(xdp="no XDP offload: EPERM"))["director.offload"][0] == OK
    assert "where it works (chosen at start" in check.plan(parse(auto), facts(xdp=""))[-2]


def test_the_plan_says_what_pylvs_run_would_do():
    text = DIRECTOR + 'metrics = "127.0.0.1:9300"\noffload = "none"\n' + SERVICE + (
        '[[virtual_server]]\naddress = "10.9.0.100:443"\nforward = "nat"\n'
        '  [[virtual_server.real_server]]\n  address = "10.9.0.11:8443"\n'
        '[vrrp]\nvirtual_router_id = 51\npriority = 150\n')
    lines = check.plan(parse(text), facts())
    assert lines[:4] == [
        "read frames on eth0 (clients), 1 process",
        "add to eth0 while VRRP says MASTER: 10.9.0.100/32",
        "steal on eth0 (nftables, netdev ingress): tcp to 10.9.0.100 port 80; "
        "tcp to 10.9.0.100 port 443",
        "steal on eth0 the NAT replies: tcp from 10.9.0.11 port 8443"]
    assert "  -> 10.9.1.12:80 dr weight 1: on-link through eth0, from 10.9.0.1" in lines
    assert "VRRP VI_1 on eth0: vrid 51, priority 150, starts BACKUP, VIPs 10.9.0.100" in lines
    assert lines[-2:] == ["offload none: every frame through Python",
                          "control socket /run/pylvs.sock; metrics on "
                          "http://127.0.0.1:9300/metrics"]


# -- a keepalived.conf's interface, from the routes -------------------------------------------

def test_the_interface_most_real_servers_route_through_is_chosen():
    name, how = check.choose_interface({"10.0.0.1": "eth1", "10.0.0.2": "eth1",
                                        "10.1.0.1": "eth0", "10.2.0.1": None})
    assert name == "eth1"
    assert how == ("eth1, the interface the routes to 2 of 4 real servers go through "
                   "(10.0.0.1, 10.0.0.2)")
    assert check.choose_interface({"127.0.0.1": "lo", "10.0.0.1": "eth0"})[0] == "eth0"


@pytest.mark.parametrize("routes,says", [
    ({"10.0.0.1": "eth0", "10.1.0.1": "eth1"},
     "go through eth0 (10.0.0.1) and eth1 (10.1.0.1) as often"),
    ({"10.0.0.1": None, "10.0.0.2": "lo"}, "(10.0.0.1, 10.0.0.2) have no route"),
    ({}, "(none) have no route"),
])
def test_a_tie_or_no_route_names_the_candidates(routes, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check.choose_interface(routes)


LVS_ONLY = """virtual_server 10.9.0.100 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.9.0.11 80 {
    }
    real_server 10.9.0.12 80 {
    }
    real_server 10.7.0.5 80 {
    }
}
"""


def test_a_keepalived_conf_without_vrrp_instance_takes_the_routed_interface():
    asked: list[str] = []

    def route(address: str) -> str | None:
        asked.append(address)
        return {"10.9.0.11": "eth3", "10.9.0.12": "eth3"}.get(address)

    conversion = keepalived.convert(LVS_ONLY, "lvs.conf", route=route)
    assert build(conversion.data).interface == "eth3"
    assert asked == ["10.9.0.11", "10.9.0.12", "10.7.0.5"]
    assert ("the director's interface is eth3, the interface the routes to 2 of 3 real servers "
            "go through (10.9.0.11, 10.9.0.12): --interface names another") in conversion.notes
    given = keepalived.convert(LVS_ONLY, "lvs.conf", interface="eth9", route=route)
    assert given.data["director"]["interface"] == "eth9" and len(asked) == 3  # none asked


def test_a_keepalived_conf_whose_routes_tie_is_refused_naming_the_option():
    with pytest.raises(keepalived.KeepalivedError) as refused:
        keepalived.convert(LVS_ONLY, "lvs.conf",
                           route={"10.9.0.11": "eth1", "10.9.0.12": "eth2"}.get)
    assert "as often: name it with --interface" in refused.value.reason
    assert refused.value.key == "interface"


def test_a_keepalived_confs_interface_is_named_by_where_it_came_from():
    conf = ("vrrp_instance VI_1 {\n interface eht0\n virtual_router_id 51\n"
            " virtual_ipaddress {\n  10.9.0.100\n }\n}\n" + LVS_ONLY)
    config = build(keepalived.convert(conf, "k.conf").data)
    config.source_format = "keepalived"
    assert check.interface_keys(config)[0] == ("vrrp[0].interface", "eht0")
    config.interface_option = "eht0"
    assert check.interface_keys(config)[0] == ("--interface", "eht0")

"""IPv6 in the TOML config (issue 22): services and real servers in ipvsadm's ``[addr]:port``,
IPVS's family rules (ip_vs_ctl.c: another family only by tunnel, and not while the sync daemon
runs; ipvsadm -M a prefix length for IPv6), dual-stack files, VRRP instances of either family
(issue 23: one family each, IPv6's VRRPv3, as keepalived), and the sync daemon beside IPv6
services (BGP's IPv6: test_config_bgp6). Every error names file, key, reason."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedulers
from pylvs.adm import commands
from pylvs.adm.config import ConfigError, load, parse
from pylvs.adm.ruleset import to_toml
from pylvs.core.director import Director
from pylvs.core.model import AF_INET, AF_INET6, RealServer, VirtualService


def service_text(address: str, extra: str = "", *servers: str) -> str:
    text = f'[[virtual_server]]\naddress = "{address}"\n{extra}\n'
    for server in servers:
        text += f"[[virtual_server.real_server]]\n{server}\n"
    return text


def config_text(*services: str, director: str = "") -> str:
    return '[director]\ninterface = "eth0"\n' + director + "\n" + "".join(services)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, "six.toml")
    assert str(info.value) == f"six.toml: {info.value.key}: {info.value.reason}"
    return info.value


DUAL = config_text(
    service_text("192.0.2.1:80", 'forward = "dr"', 'address = "192.0.2.11"'),
    service_text("[2001:DB8:0:0::0001]:80", 'forward = "dr"\npersistence_timeout = 300\n'
                 'persistence_netmask = 64', 'address = "[2001:db8::11]"',
                 'address = "[2001:db8::12]:8080"\nforward = "nat"\nweight = 2'),
    service_text("192.0.2.1:443", 'forward = "tun"', 'address = "[2001:db8:1::21]"',
                 'address = "198.51.100.21"'),
    service_text("[2001:db8::1]:443", 'forward = "tun"', 'address = "198.51.100.31"'))


def test_a_dual_stack_file_loads_with_canonical_addresses_in_ipvsadm_spelling():
    config = parse(DUAL, "dual.toml")
    got = [(s.endpoint, s.af, s.persistence_netmask, [(r.endpoint, r.af, r.forward, r.weight)
                                                     for r in reversed(s.real_servers)])
           for s in config.services]
    assert got == [
        ("192.0.2.1:80", AF_INET, "255.255.255.255", [("192.0.2.11:80", AF_INET, "dr", 1)]),
        ("[2001:db8::1]:80", AF_INET6, "64", [("[2001:db8::11]:80", AF_INET6, "dr", 1),
                                              ("[2001:db8::12]:8080", AF_INET6, "nat", 2)]),
        ("192.0.2.1:443", AF_INET, "255.255.255.255",
         [("[2001:db8:1::21]:443", AF_INET6, "tun", 1), ("198.51.100.21:443", AF_INET, "tun", 1)]),
        ("[2001:db8::1]:443", AF_INET6, "128", [("198.51.100.31:443", AF_INET, "tun", 1)])]
    v6 = config.services[1]
    assert v6.netmask == int(ipaddress.IPv6Network("::/64").netmask)
    assert v6.key == (6, int(ipaddress.IPv6Address("2001:db8::1")), 80, AF_INET6)


def test_an_ipv6_service_and_an_ipv4_one_never_collide_and_duplicates_are_found():
    # ::c000:201 is 192.0.2.1's 32 bits in an IPv6 address: another service
    text = config_text(service_text("192.0.2.1:80"), service_text("[::c000:201]:80"))
    assert len(parse(text).services) == 2
    dup = error(config_text(service_text("[2001:db8::1]:80"),
                            service_text("[2001:0db8::0:1]:80")))
    assert (dup.key, dup.reason) == ("virtual_server[1].address",
                                     "duplicate service tcp [2001:db8::1]:80")
    twice = error(config_text(service_text("[2001:db8::1]:80", "", 'address = "[2001:db8::a]"',
                                           'address = "[2001:DB8::A]:80"')))
    assert (twice.key, twice.reason) == ("virtual_server[0].real_server[1].address",
                                         "duplicate real server [2001:db8::a]:80")


@pytest.mark.parametrize("address,reason", [
    ("2001:db8::1:80", "'2001:db8::1:80': an IPv6 address goes in brackets, as ipvsadm writes "
     "it ([2001:db8::1:80]:PORT)"),
    ("[2001:db8::1", "'[2001:db8::1': the '[' of an IPv6 address is never closed"),
    ("[2001:db8::1]80", "'[2001:db8::1]80': '80' after the ']' is not :PORT"),
    ("[2001:db8::g]:80", "'[2001:db8::g]:80': '2001:db8::g' is not an IPv6 address"),
    ("[192.0.2.1]:80", "'[192.0.2.1]:80': '192.0.2.1' is not an IPv6 address"),
    ("[fe80::1%eth0]:80", "'[fe80::1%eth0]:80': an IPVS address has no zone (%eth0)"),
    ("[2001:db8::1]:0", "port 0 (every port of the address: IPVS's catch-all) is only for a "
                        "persistent service (ipvsadm: Zero port specified for non-persistent "
                        "service)"),
    ("[2001:db8::1]:65536", "port '65536' is not in 0..65535"),
    ("[2001:db8::1]", "'[2001:db8::1]' needs a port (ADDRESS:PORT)"),
    ("1:2:3", "'1:2:3' is not an IPv4 address[:port] or an IPv6 [address][:port]"),
])
def test_bad_ipv6_service_addresses(address, reason):
    bad = error(config_text(service_text(address)))
    assert (bad.key, bad.reason) == ("virtual_server[0].address", reason)


def test_ipv4_errors_read_as_before():
    bad = error(config_text(service_text("192.0.2.300:80")))
    assert bad.reason == "'192.0.2.300:80' is not an IPv4 address[:port]"
    mask = error(config_text(service_text("192.0.2.1:80", 'persistence_timeout = 60\n'
                                          'persistence_netmask = "255.0.255.0"')))
    assert mask.reason == "'255.0.255.0' is not an IPv4 netmask"


@pytest.mark.parametrize("value,reason", [
    ('"255.255.255.0"', "'255.255.255.0'"), ("0", "0"), ("129", "129"), ('"64x"', "'64x'"),
    ('""', "''"), ("true", "True"), ("64.0", "64.0")])
def test_an_ipv6_persistence_netmask_is_a_prefix_length_as_ipvsadm_m(value, reason):
    bad = error(config_text(service_text("[2001:db8::1]:80", "persistence_timeout = 60\n"
                                         f"persistence_netmask = {value}")))
    assert (bad.key, bad.reason) == (
        "virtual_server[0].persistence_netmask", "an IPv6 service's netmask is a prefix length "
        f"1..128, as ipvsadm -M takes it for IPv6 (64, say), not {reason}")


@pytest.mark.parametrize("value,kept", [("1", "1"), ("48", "48"), ('"064"', "64"),
                                        ('"128"', "128")])
def test_ipv6_prefix_lengths_are_kept_as_ipvsadm_prints_them(value, kept):
    (service,) = parse(config_text(service_text(
        "[2001:db8::1]:80", f"persistence_timeout = 60\npersistence_netmask = {value}"))).services
    assert service.persistence_netmask == kept
    assert service.default_netmask == (kept == "128")


def test_an_ipv6_netmask_needs_persistence_as_an_ipv4_one_does():
    bad = error(config_text(service_text("[2001:db8::1]:80", "persistence_netmask = 64")))
    assert (bad.key, bad.reason) == ("virtual_server[0].persistence_netmask", "only a "
                                     "persistent service has a netmask (set persistence_timeout)")


@pytest.mark.parametrize("service,forward,server,reason", [
    ("192.0.2.1:80", "dr", "[2001:db8::11]", "[2001:db8::11]:80 is IPv6 and the service "
     "192.0.2.1:80 IPv4: only tun forwards to another family (IPVS refuses dr there)"),
    ("[2001:db8::1]:80", "nat", "192.0.2.11:8080", "192.0.2.11:8080 is IPv4 and the service "
     "[2001:db8::1]:80 IPv6: only tun forwards to another family (IPVS refuses nat there)"),
])
def test_a_real_server_of_the_other_family_only_by_tun(service, forward, server, reason):
    bad = error(config_text(service_text(service, f'forward = "{forward}"',
                                         f'address = "{server}"')))
    assert (bad.key, bad.reason) == ("virtual_server[0].real_server[0].address", reason)
    own = error(config_text(service_text(service, 'forward = "tun"', 'address = "192.0.2.99"',
                                         f'address = "{server}"\nforward = "{forward}"')))
    assert own.key == "virtual_server[0].real_server[1].address"  # the server's own method


def test_no_real_server_of_the_other_family_while_the_sync_daemon_runs():
    text = config_text(service_text("192.0.2.1:80", 'forward = "tun"',
                                    'address = "[2001:db8::11]"'),
                       director="sync_daemon = true\n")
    bad = error(text)
    assert (bad.key, bad.reason) == (
        "virtual_server[0].real_server[0].address", "[2001:db8::11]:80 is IPv6 and the service "
        "192.0.2.1:80 IPv4: IPVS refuses a real server of another family while the sync daemon "
        "runs (director.sync_daemon), whose protocol cannot carry such connections")
    same = config_text(service_text("192.0.2.1:80", 'forward = "tun"',
                                    'address = "198.51.100.11"'),
                       director="sync_daemon = true\n")
    assert parse(same).sync_interface == "eth0"


def test_the_sync_daemon_takes_ipv6_services_beside_ipv4_ones():
    """IPVS's sync v1 carries IPv6 connections (struct ip_vs_sync_v6): a dual-stack director
    may sync (a real server of the other family stays refused while syncing)."""
    config = parse(config_text(service_text("192.0.2.1:80"), service_text("[2001:db8::1]:80"),
                               director="sync_daemon = true\n"))
    assert config.sync_interface == "eth0"


CHECKED = service_text(
    "[2001:db8::1]:80", 'forward = "dr"\ncheck = { type = "http", path = "/h" }\n'
    'sorry_server = "[2001:db8::99]"', 'address = "[2001:db8::11]"',
    'address = "[2001:db8::12]"\ncheck = { type = "tcp" }')


def test_health_checks_and_a_sorry_server_for_ipv6_real_servers():
    (health,) = parse(config_text(CHECKED)).health
    assert health.name == "TCP [2001:db8::1]:80"
    assert health.sorry_server == ("2001:db8::99", 80)
    assert [(s.key, s.spec.kind) for s in health.servers] == [
        (("2001:db8::11", 80), "http"), (("2001:db8::12", 80), "tcp")]


@pytest.mark.parametrize("sorry,reason", [
    ("192.0.2.99", "the sorry server 192.0.2.99:80 is IPv4 and the service [2001:db8::1]:80 "
     "IPv6: only tun forwards to another family (IPVS refuses dr there)"),
    ("[2001:db8::11]", "[2001:db8::11]:80 is also a real server"),
    ("[2001:db8::99]:81", "port 81 differs from the service port 80; only nat can map ports"),
])
def test_bad_ipv6_sorry_servers(sorry, reason):
    bad = error(config_text(CHECKED.replace('"[2001:db8::99]"', f'"{sorry}"')))
    assert (bad.key, bad.reason) == ("virtual_server[0].sorry_server", reason)


def test_a_tunnelled_service_takes_a_sorry_server_of_the_other_family():
    text = config_text(CHECKED.replace('forward = "dr"', 'forward = "tun"').replace(
        '"[2001:db8::99]"', '"192.0.2.99"'))
    assert parse(text).health[0].sorry_server == ("192.0.2.99", 80)


# -- VRRP over IPv6 (issue 23): an instance is of one family, IPv6's is VRRPv3 ----------------

ONE = ("a VRRP instance is of one family, as keepalived's (which drops an address of the other: "
       "'address family must match VRRP instance'); write a [[vrrp]] for each family")
V6 = config_text(service_text("[2001:db8::1]:80", 'forward = "dr"', 'address = "[2001:db8::11]"'))


def test_an_ipv6_instance_is_vrrpv3_with_canonical_vips_in_the_order_given():
    """keepalived: an IPv6 instance runs version 3 (vrrp_complete_instance); the adverts list
    the VIPs as configured, a link-local one first as RFC 5798 §5.2.9 wants."""
    config = parse(V6 + '\n[vrrp]\nvirtual_router_id = 1\nvirtual_ipaddress = ["FE80::51", '
                   '"2001:DB8::1/64", "fe80::51"]\nunicast_src_ip = "2001:DB8::2"\n'
                   'unicast_peers = ["fe80::3", "2001:db8::3"]\n')
    vrrp = config.vrrp
    assert (vrrp.family, vrrp.version, vrrp.virtual_ipaddress, vrrp.unicast_src_ip,
            vrrp.unicast_peers) == (AF_INET6, 3, ("fe80::51", "2001:db8::1"), "2001:db8::2",
                                    ("fe80::3", "2001:db8::3"))
    assert parse(V6 + '\n[vrrp]\nvirtual_router_id = 1\nversion = 3\nadvert_int = 0.5\n'
                 ).vrrp.advert_int == 0.5


def test_a_lone_instance_of_ipv6_services_moves_their_vips_in_vrrpv3():
    config = parse(V6 + service_text("[2001:db8::2]:80") + "\n[vrrp]\nvirtual_router_id = 1\n")
    assert (config.vrrp.family, config.vrrp.version, config.vrrp.virtual_ipaddress,
            config.vrrp.own_vips) == (AF_INET6, 3, ("2001:db8::1", "2001:db8::2"), False)
    assert parse(V6 + "\n[vrrp]\nvirtual_router_id = 1\nnative_ipv6 = true\n").vrrp.family == \
        AF_INET6
    assert parse(V6 + "\n[vrrp]\nvirtual_router_id = 1\nadvert_int = 0.25\n").vrrp.advert_int \
        == 0.25  # VRRPv3's centiseconds, the services being IPv6
    bad = error(V6 + "\n[vrrp]\nvirtual_router_id = 1\nversion = 2\n")
    assert (bad.key, bad.reason) == ("vrrp.version", "VRRPv2 is IPv4's: an IPv6 instance speaks "
                                     "VRRPv3, as keepalived runs every IPv6 instance (leave "
                                     "version out, or write 3)")


@pytest.mark.parametrize("table,key,reason", [
    ('virtual_ipaddress = ["192.0.2.1", "2001:db8::1/64"]', "vrrp.virtual_ipaddress[1]",
     f"'2001:db8::1' is IPv6, and this instance is IPv4 (its virtual_ipaddress[0] "
     f"192.0.2.1): {ONE}"),
    ('virtual_ipaddress = ["2001:db8::1"]\nunicast_src_ip = "192.0.2.2"',
     "vrrp.unicast_src_ip", f"'192.0.2.2' is IPv4, and this instance is IPv6 (its "
     f"virtual_ipaddress[0] 2001:db8::1): {ONE}"),
    ('unicast_peers = ["192.0.2.3", "fe80::3"]\nvirtual_ipaddress = ["192.0.2.1"]',
     "vrrp.unicast_peers[1]", f"'fe80::3' is IPv6, and this instance is IPv4 (its "
     f"unicast_peers[0] 192.0.2.3): {ONE}"),
    ('native_ipv6 = true\nvirtual_ipaddress = ["192.0.2.1"]', "vrrp.virtual_ipaddress[0]",
     f"'192.0.2.1' is IPv4, and this instance is IPv6 (its native_ipv6): {ONE}"),
    ('virtual_ipaddress = ["192.0.2.1"]\nnative_ipv6 = true', "vrrp.native_ipv6",
     f"this instance is IPv4 (its virtual_ipaddress[0] 192.0.2.1): {ONE}"),
    ('virtual_ipaddress = ["2001:db8::1"]\nversion = 2', "vrrp.version",
     "VRRPv2 is IPv4's: an IPv6 instance speaks VRRPv3, as keepalived runs every IPv6 instance "
     "(leave version out, or write 3)"),
    ('virtual_ipaddress = ["2001:db8::1"]\n'
     'authentication = { auth_type = "PASS", auth_pass = "x" }', "vrrp.authentication",
     "VRRPv3 has no authentication"),
    ('virtual_ipaddress = ["fe80::1%eth0"]', "vrrp.virtual_ipaddress[0]",
     "'fe80::1%eth0' is not an IPv6 address or address/len (without a zone)"),
    ('unicast_peers = ["fe80::1%eth0"]', "vrrp.unicast_peers[0]",
     "'fe80::1%eth0' is not an IPv6 address (without a zone: the instance's interface is it)"),
])
def test_an_instance_is_of_one_family(table, key, reason):
    bad = error(DUAL + f"\n[vrrp]\nvirtual_router_id = 1\n{table}\n")
    assert (bad.key, bad.reason) == (key, reason)


def test_a_lone_instance_over_services_of_both_families_is_refused():
    bad = error(DUAL + "\n[vrrp]\nvirtual_router_id = 1\n")
    assert (bad.key, bad.reason) == (
        "vrrp.virtual_ipaddress", "missing, so the instance would move every virtual_server's "
        f"address, and they are IPv4 and IPv6: {ONE} (and name its VIPs), or name this one's "
        "VIPs here (the others are then held by the director alone)")
    named = parse(DUAL + '\n[vrrp]\nvirtual_router_id = 1\nvirtual_ipaddress = ["192.0.2.1"]\n')
    assert named.vrrp.virtual_ipaddress == ("192.0.2.1",) and named.vrrp.own_vips
    v4 = config_text(service_text("192.0.2.1:80"))
    bad = error(v4 + '\n[vrrp]\nvirtual_router_id = 1\nunicast_peers = ["2001:db8::3"]\n')
    assert (bad.key, bad.reason) == (
        "vrrp.virtual_ipaddress", "missing, so the instance would move every virtual_server's "
        "address, and virtual_server[0] (192.0.2.1:80) is IPv4 while this instance is IPv6 "
        f"(its unicast_peers[0] 2001:db8::3): {ONE}")


def test_a_dual_stack_pair_shares_a_vrid_across_families():
    """RFC 5798 §5.2.3 and keepalived (vrrp.c: instances of another family never clash): a VRID
    is a family's, so IPv4's 51 and IPv6's 51 live side by side; twice in one family is not."""
    pair = ('\n[[vrrp]]\nname = "V4"\nvirtual_router_id = 51\nvirtual_ipaddress = ["192.0.2.1"]\n'
            '\n[[vrrp]]\nname = "V6"\nvirtual_router_id = 51\n'
            'virtual_ipaddress = ["fe80::51", "2001:db8::1"]\n')
    config = parse(DUAL + pair)
    assert [(v.name, v.family, v.version) for v in config.vrrp_instances] == [
        ("V4", AF_INET, 2), ("V6", AF_INET6, 3)]
    bad = error(DUAL + pair + '\n[[vrrp]]\nname = "V7"\nvirtual_router_id = 51\n'
                'virtual_ipaddress = ["2001:db8::7"]\n')
    assert (bad.key, bad.reason) == ("vrrp[2].virtual_router_id",
                                     "51 on eth0 is V6's already (in IPv6: a VRID is a family's)")



def test_metrics_may_listen_on_ipv6():
    config = parse(config_text(service_text("[2001:db8::1]:80"),
                               director='metrics = "[::1]:9300"\n'))
    assert config.metrics == "[::1]:9300"


# -- the TOML writer round trip (pylvs.adm.ruleset.to_toml) ------------------------------------

ipv4s = st.builds(ipaddress.IPv4Address, st.integers(1, 2**32 - 2)).map(str)
ipv6s = st.builds(ipaddress.IPv6Address, st.integers(1, 2**128 - 1)).map(str)


@st.composite
def services(draw: st.DrawFn) -> VirtualService:
    af = draw(st.sampled_from([AF_INET, AF_INET6]))
    address = draw(ipv4s if af == AF_INET else ipv6s)
    port = draw(st.integers(1, 65535))
    timeout = draw(st.sampled_from([0, 0, 60, 360]))
    mask = ""
    if timeout:
        mask = (draw(st.sampled_from(["", "255.255.255.0", "255.255.0.0"])) if af == AF_INET
                else draw(st.sampled_from(["", "1", "48", "64", "127"])))
    service = VirtualService(draw(st.sampled_from(["tcp", "udp"])), address, port,
                             schedulers.get(draw(st.sampled_from(["rr", "wlc", "sh"])))([]),
                             persistence_timeout=timeout, persistence_netmask=mask)
    service.scheduler.spec = service.scheduler.name
    seen = set()
    for _ in range(draw(st.integers(0, 4))):
        forward = draw(st.sampled_from(["dr", "nat", "tun"]))
        other = forward == "tun" and draw(st.booleans())
        family = (AF_INET6 if af == AF_INET else AF_INET) if other else af
        rip = draw(ipv4s if family == AF_INET else ipv6s)
        rport = draw(st.integers(1, 65535)) if forward == "nat" else port
        if (rip, rport) in seen:
            continue
        seen.add((rip, rport))
        service.add_real_server(RealServer(rip, rport, weight=draw(st.integers(0, 65535)),
                                           forward=forward))
    return service


def described(service: VirtualService) -> tuple:
    return (service.protocol, service.endpoint, service.af, service.scheduler.name,
            service.persistence_timeout, service.persistence_netmask, service.netmask,
            [(r.endpoint, r.af, r.forward, r.weight) for r in service.real_servers])


@settings(max_examples=150, deadline=None)
@given(st.lists(services(), max_size=4, unique_by=lambda s: s.key))
def test_random_dual_stack_rule_sets_round_trip_through_the_toml_writer(rule_set):
    again = parse(to_toml(rule_set), "written.toml").services
    assert [described(s) for s in again] == [described(s) for s in rule_set]


# -- examples/dualstack.toml -------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dualstack.toml"


def test_the_dual_stack_example_loads_and_its_ipvsadm_lines_build_the_same_table():
    config = load(EXAMPLE)
    assert [(s.endpoint, s.af, {r.af for r in s.real_servers}) for s in config.services] == [
        ("192.168.1.100:80", AF_INET, {AF_INET}), ("[2001:db8:1::100]:80", AF_INET6, {AF_INET6}),
        ("[2001:db8:1::100]:8080", AF_INET6, {AF_INET})]
    assert config.services[1].persistence_netmask == "64"
    lines = [line.split("ipvsadm ", 1)[1] for line in EXAMPLE.read_text().splitlines()
             if line.lstrip("# ").startswith("ipvsadm -")]
    by_hand = Director([])
    for line in lines:
        assert commands.adm(by_hand, line.split(), 0.0)[0] == 0, line
    assert (commands.adm(by_hand, ["-S", "-n"], 0.0)
            == commands.adm(Director(config.services), ["-S", "-n"], 0.0))

"""Firewall-mark services and [[mark]] rules in the TOML config (issue 24): ``fwmark = N``
(``family = "ipv6"``: ipvsadm -f N -6) with port-0 real servers, the rules as tables or as
the iptables (nft) lines IPVS users already have, and every error naming file, key and why."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm.config import ConfigError, parse
from pylvs.adm.ruleset import to_toml
from pylvs.core.marks import MarkRule, Marks
from pylvs.core.model import AF_INET, AF_INET6, RealServer, VirtualService

HEAD = '[director]\ninterface = "eth0"\n'
MARK = '[[mark]]\ndestination = "192.0.2.10"\nmark = 1\n'
SERVER = '[[virtual_server.real_server]]\naddress = "10.0.0.11"\n'


def fwmark(extra: str = "", *servers: str) -> str:
    text = f"[[virtual_server]]\nfwmark = 1\n{extra}\n"
    for server in servers or (SERVER,):
        text += server if server.startswith("[[") else \
            f"[[virtual_server.real_server]]\n{server}\n"
    return text


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, "fw.toml")
    assert str(info.value) == f"fw.toml: {info.value.key}: {info.value.reason}"
    return info.value


def test_a_fwmark_service_with_its_mark_rules():
    config = parse(HEAD + MARK + '''
[[mark]]
destination = "207.175.44.110/31"
protocol = "tcp"
ports = [80, 443, "8000-8100", "9000:9001"]
mark = 1

[[virtual_server]]
fwmark = 1
scheduler = "rr"
persistence_timeout = 300
forward = "dr"

  [[virtual_server.real_server]]
  address = "10.0.0.11"

  [[virtual_server.real_server]]
  address = "10.0.0.12:0"
''', "fw.toml")
    (service,) = config.services
    assert (service.fwmark, service.af, service.protocol, service.address, service.port) == (
        1, AF_INET, "", "", 0)
    assert service.endpoint == "FWM 1" and service.persistence_timeout == 300
    assert [(r.endpoint, r.forward) for r in service.real_servers] == [
        ("10.0.0.12:0", "dr"), ("10.0.0.11:0", "dr")]
    assert config.marks == [MarkRule("192.0.2.10", 1), MarkRule(
        "207.175.44.110/31", 1, 6, ((80, 80), (443, 443), (8000, 8100), (9000, 9001)))]
    assert Marks(config.marks).classify(AF_INET, 6, 0xCFAF2C6F, 8050) == 1


def test_an_ipv6_fwmark_service_is_family_ipv6_and_takes_a_prefix_length():
    config = parse(HEAD + '[[mark]]\ndestination = "2001:db8::10"\nmark = 1\n' + fwmark(
        'family = "ipv6"\npersistence_timeout = 60\npersistence_netmask = 64',
        'address = "[2001:db8:1::11]"'), "fw.toml")
    (service,) = config.services
    assert (service.af, service.endpoint, service.persistence_netmask) == (
        AF_INET6, "FWM 1 IPv6", "64")
    assert service.real_servers[0].endpoint == "[2001:db8:1::11]:0"


def test_an_ipv4_and_an_ipv6_service_of_one_mark_are_two_services():
    config = parse(HEAD + MARK + '[[mark]]\ndestination = "2001:db8::10"\nmark = 1\n' +
                   fwmark() + fwmark('family = "ipv6"', 'address = "[2001:db8:1::11]"'))
    assert [s.endpoint for s in config.services] == ["FWM 1", "FWM 1 IPv6"]


def test_what_the_ruleset_writes_for_ipvsadm_dash_f_loads_back():
    """`pylvs config from-ipvsadm`: -f N [-6] becomes fwmark = N (family = "ipv6"), its
    port-0 real servers written without a port."""
    four = VirtualService("", "", 0, schedulers.get("wlc")([]), fwmark=1,
                          persistence_timeout=300)
    four.add_real_server(RealServer("10.0.0.11", 0, weight=2))
    six = VirtualService("", "", 0, schedulers.get("rr")([]), fwmark=2, af=AF_INET6)
    six.add_real_server(RealServer("2001:db8::11", 0, forward="nat"))
    rules = (MARK + '[[mark]]\ndestination = "2001:db8::/127"\nmark = 2\n')
    config = parse(to_toml([four, six]) + rules)
    assert [(s.endpoint, s.scheduler.spec, s.persistence_timeout) for s in config.services] == [
        ("FWM 1", "wlc", 300), ("FWM 2 IPv6", "rr", 0)]
    assert [[(r.endpoint, r.weight, r.forward) for r in s.real_servers]
            for s in config.services] == [[("10.0.0.11:0", 2, "dr")],
                                           [("[2001:db8::11]:0", 1, "nat")]]


def test_mark_rules_as_iptables_and_nft_lines_in_the_order_iptables_would_hold_them():
    config = parse(HEAD + '''
[[mark]]
iptables = "iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK --set-mark 1"

[[mark]]
nft = "nft add rule ip mangle PREROUTING ip daddr 207.175.44.110 tcp dport 22 meta mark set 2"

[[mark]]
iptables = "-I PREROUTING 2 -t mangle -d 207.175.44.111 -p udp -j MARK --set-mark 0x2"
''' + fwmark() + fwmark().replace("fwmark = 1", "fwmark = 2"))
    assert config.marks == [MarkRule("207.175.44.110/31", 1),
                            MarkRule("207.175.44.111/32", 2, 17),
                            MarkRule("207.175.44.110/32", 2, 6, ((22, 22),))]
    marks = Marks(config.marks)
    assert [marks.classify(AF_INET, 6, 0xCFAF2C6E, port) for port in (22, 80)] == [2, 1]


def test_a_port_0_servers_check_connects_to_its_own_port():
    config = parse(HEAD + MARK + fwmark('check = { type = "http", port = 8080 }'))
    assert config.health[0].name == "FWM 1"
    assert config.health[0].servers[0].spec.port == 8080
    assert parse(HEAD + MARK + fwmark('check = { type = "misc", command = "/bin/true" }')).health
    bad = error(HEAD + MARK + fwmark('check = { type = "tcp" }'))
    assert (bad.key, bad.reason) == ("virtual_server[0].check.port", "missing: the real server "
                                     "10.0.0.11:0 has port 0 (the packet's port is kept), so a "
                                     "tcp check needs the port to connect to")


def test_nat_maps_a_fwmark_services_packets_to_one_port_and_dr_may_name_one_too():
    config = parse(HEAD + MARK + fwmark('forward = "nat"', 'address = "10.0.0.11:8080"',
                                        'address = "10.0.0.12:8080"\nforward = "dr"'))
    assert [r.endpoint for r in config.services[0].real_servers] == ["10.0.0.12:8080",
                                                                     "10.0.0.11:8080"]


def test_one_packet_and_a_sorry_server_of_a_fwmark_service():
    config = parse(HEAD + MARK + fwmark('one_packet = true\nsorry_server = "10.0.0.99"\n'
                                        'check = { type = "tcp", port = 80 }'))
    assert config.services[0].one_packet
    assert config.health[0].sorry_server == ("10.0.0.99", 0)


def test_allow_unmarked_takes_a_service_no_rule_gives_packets():
    """What a keepalived.conf's conversion writes (keepalived.conf has no mark rules)."""
    config = parse(HEAD + fwmark("allow_unmarked = true"))
    assert config.services[0].fwmark == 1 and config.marks == []


def test_a_lone_vrrp_instance_moves_the_addresses_of_the_mark_rules():
    config = parse(HEAD + '''
[[mark]]
destination = "192.0.2.10/31"
mark = 1

[[virtual_server]]
address = "192.0.2.20:80"
''' + fwmark() + "[vrrp]\nvirtual_router_id = 51\n")
    assert config.vrrp is not None
    assert config.vrrp.virtual_ipaddress == ("192.0.2.10", "192.0.2.11", "192.0.2.20")


@pytest.mark.parametrize("text, key, reason", [
    (HEAD + fwmark(), "virtual_server[0].fwmark",
     "no [[mark]] rule gives mark 1: no packet would reach it"),
    (HEAD + '[[mark]]\ndestination = "2001:db8::1"\nmark = 1\n' + fwmark(),
     "virtual_server[0].fwmark", "no [[mark]] rule gives mark 1: no packet would reach it "
     "(mark 1 is IPv6's here: a fwmark service's family = \"ipv6\" goes with its rules' "
     "addresses)"),
    (HEAD + MARK + fwmark('family = "ipv6"', 'address = "[2001:db8::11]"'),
     "virtual_server[0].fwmark", "no [[mark]] rule gives mark 1 to IPv6 packets: no packet "
     "would reach it (mark 1 is IPv4's here: a fwmark service's family = \"ipv4\" goes with "
     "its rules' addresses)"),
    (HEAD + MARK + '[[mark]]\ndestination = "192.0.2.11"\nmark = 2\n' + fwmark(), "mark[1]",
     "no fwmark service takes mark 2: pylvs would take the frames for 192.0.2.11 and mark "
     "them for nothing"),
    (HEAD + MARK + fwmark() + fwmark(), "virtual_server[1].fwmark", "duplicate service FWM 1"),
    (HEAD + MARK + fwmark('address = "192.0.2.10:80"'), "virtual_server[0].address",
     "a fwmark service has none of its own: it takes the TCP and UDP packets the [[mark]] "
     "rules give its mark (leave fwmark out for a service of an address)"),
    (HEAD + MARK + fwmark('protocol = "tcp"'), "virtual_server[0].protocol",
     "a fwmark service has none of its own: it takes the TCP and UDP packets the [[mark]] "
     "rules give its mark (leave fwmark out for a service of an address)"),
    (HEAD + MARK + fwmark().replace("fwmark = 1", "fwmark = 0"), "virtual_server[0].fwmark",
     "0 is out of range 1..4294967295"),
    (HEAD + MARK + fwmark('family = "inet6"'), "virtual_server[0].family",
     "'inet6' is not \"ipv4\" (the default) or \"ipv6\" (ipvsadm -f N -6)"),
    (HEAD + '[[virtual_server]]\naddress = "192.0.2.1:80"\nfamily = "ipv4"\n',
     "virtual_server[0].family", "only a fwmark service has it (a service's address says its "
     "family)"),
    (HEAD + MARK + fwmark("", 'address = "10.0.0.11:70000"'),
     "virtual_server[0].real_server[0].address", "port '70000' is not in 0..65535"),
    (HEAD + '[[virtual_server]]\naddress = "192.0.2.1:80"\n' + SERVER.replace(
        '11"', '11:0"'), "virtual_server[0].real_server[0].address",
     "port '0' is not in 1..65535"),
    (HEAD + MARK + fwmark("", 'address = "[2001:db8::11]"'),
     "virtual_server[0].real_server[0].address", "[2001:db8::11]:0 is IPv6 and the service "
     "FWM 1 IPv4: only tun forwards to another family (IPVS refuses dr there)"),
    ("mark = 1\n" + HEAD + fwmark(), "mark", "must be an array of tables [[mark]]"),
    (HEAD + '[[mark]]\ndestination = "192.0.2.10"\n' + fwmark(), "mark[0].mark",
     "missing (1..4294967295)"),
    (HEAD + '[[mark]]\nmark = 1\n' + fwmark(), "mark[0].destination", "missing"),
    (HEAD + '[[mark]]\ndestination = "[2001:db8::1]"\nmark = 1\n' + fwmark(),
     "mark[0].destination", "'[2001:db8::1]' is not an address or address/len (IPv6 without "
     "brackets)"),
    (HEAD + '[[mark]]\ndestination = "10.0.0.0/8"\nmark = 1\n' + fwmark(),
     "mark[0].destination", "10.0.0.0/8 holds more than 256 addresses (pylvs takes each as a "
     "VIP)"),
    (HEAD + MARK.replace("mark = 1", 'protocol = "sctp"\nmark = 1') + fwmark(),
     "mark[0].protocol", "'sctp' is not tcp or udp (leave it out for both)"),
    (HEAD + MARK.replace("mark = 1", "ports = []\nmark = 1") + fwmark(), "mark[0].ports",
     "must be a list of ports and \"lo-hi\" ranges, e.g. [80, 443, \"8000-8100\"] (leave it "
     "out for any port)"),
    (HEAD + MARK.replace("mark = 1", 'ports = ["http"]\nmark = 1') + fwmark(),
     "mark[0].ports[0]", "'http' is not a port or a \"lo-hi\" range"),
    (HEAD + MARK.replace("mark = 1", 'ports = ["90-80"]\nmark = 1') + fwmark(),
     "mark[0].ports[0]", "'90-80' is not within 0..65535, low first"),
    (HEAD + MARK.replace("mark = 1", 'mark = 1\niptables = "-A PREROUTING"') + fwmark(),
     "mark[0].destination", "goes without iptables (the iptables line says it all)"),
    (HEAD + '[[mark]]\niptables = "iptables -A PREROUTING -t mangle -s 10.0.0.0/8 -d '
     '192.0.2.10 -j MARK --set-mark 1"\n' + fwmark(), "mark[0].iptables",
     "'-s' is refused: a source match: pylvs's rules match the destination only"),
    (HEAD + '[[mark]]\niptables = "-I PREROUTING 2 -t mangle -d 192.0.2.10 -j MARK '
     '--set-mark 1"\n' + fwmark(), "mark[0].iptables", "inserted at 2, and there are 0 rules "
     "before it (iptables: Index of insertion too big)"),
    (HEAD + '[[mark]]\nnft = "add rule ip t c ip daddr 192.0.2.10 ct state new meta mark set '
     '1"\n' + fwmark(), "mark[0].nft", "'ct state new' is refused: pylvs reads ip/ip6 daddr, "
     "meta l4proto, tcp/udp/th dport and meta mark set"),
    (HEAD + MARK.replace("mark = 1", "mark = 1\nallow = 1") + fwmark(), "mark[0].allow",
     "unknown key (allowed: destination, iptables, mark, nft, ports, protocol)"),
])
def test_bad_marks_name_key_and_reason(text, key, reason):
    bad = error(text)
    assert (bad.key, bad.reason) == (key, reason)

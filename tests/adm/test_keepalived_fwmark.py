"""keepalived.conf's firewall-mark services (issue 24), as keepalived 2.2.7 makes them:
``virtual_server fwmark N`` (check_data.c alloc_vs) of the family check_parser.c settles
(ip_family_handler, pgr_handler, rs_end_handler, vs_end_handler), a DR or TUN server at port 0
(ipvswrapper.c ipvs_cmd), and ``virtual_server_group`` members ``fwmark N [inet|inet6]``
(alloc_vsg_entry), added after the group's addresses (ipvs_group_cmd). keepalived.conf has no
mark rules: each fwmark service is noted and written with ``allow_unmarked = true``.

tests/adm/data holds Debian's keepalived 2.2.7 samples keepalived.conf.fwmark and
keepalived.conf.virtual_server_group as shipped (checked against /usr/share/doc when there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pylvs.adm.config import ConfigError, build, parse
from pylvs.adm.keepalived import Conversion, KeepalivedError, convert
from pylvs.core.model import AF_INET, AF_INET6
from pylvs.ha.health import CheckSpec
from pylvs.shell import config_file

DATA = Path(__file__).parent / "data"
SAMPLES = Path("/usr/share/doc/keepalived/samples")
NAMES = ("keepalived.conf.fwmark", "keepalived.conf.virtual_server_group")
TESTURL = "/testurl3/test.jsp"


def sample(name: str) -> str:
    return (DATA / f"keepalived.conf.{name}").read_text()


def one(text: str, interface: str = "eth0") -> Conversion:
    return convert(text, "k.conf", interface=interface, config_id="testhost")


def note(conversion: Conversion, text: str) -> bool:
    return any(text in n for n in conversion.notes)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="Debian's keepalived samples are not here")
@pytest.mark.parametrize("name", NAMES)
def test_the_data_files_are_debians_samples(name):
    assert (DATA / name).read_bytes() == (SAMPLES / name).read_bytes()


def test_the_fwmark_sample():
    conversion = one(sample("fwmark"), interface="eth9")
    check = {"type": "tcp", "interval": 6, "timeout": 3, "retry": 1, "delay_before_retry": 1,
             "port": 80}
    assert conversion.data["virtual_server"] == [{
        "fwmark": 1, "allow_unmarked": True, "forward": "nat", "scheduler": "rr",
        "persistence_timeout": 900, "real_server": [
            {"address": f"192.168.201.{n}", "weight": 1, "check": check} for n in (100, 101)]}]
    config = build(conversion.data, "fwmark")
    (service,) = config.services
    assert (service.endpoint, service.protocol, service.scheduler.spec, service.forward,
            service.persistence_timeout) == ("FWM 1", "", "rr", "nat", 900)
    assert [r.endpoint for r in service.real_servers] == ["192.168.201.101:0",
                                                          "192.168.201.100:0"]
    (health,) = config.health
    assert (health.key, health.name) == (service.key, "FWM 1")
    assert [(s.server.endpoint, s.spec) for s in health.servers] == [
        (f"192.168.201.{n}:0", CheckSpec("tcp", 6, 3, 1, 1, port=80)) for n in (100, 101)]
    assert note(conversion, "line 12: virtual_server fwmark 1: `protocol TCP` is not carried "
                "over: keepalived ignores it too ('protocol specified for fwmark - protocol "
                "will be ignored')")
    assert note(conversion, "line 7: virtual_server fwmark 1: FWM 1 gets no packet until a "
                "[[mark]] rule gives mark 1: keepalived.conf has none")


def test_the_fwmark_samples_toml_loads_and_runs_once_a_rule_gives_the_mark():
    """The written TOML is a TOML file like any: allow_unmarked is what lets it load; with a
    [[mark]] rule in, the key can go."""
    toml = one(sample("fwmark"), interface="eth9").toml()
    assert parse(toml).services[0].endpoint == "FWM 1"
    rule = ('\n[[mark]]\niptables = "iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j '
            'MARK --set-mark 1"\n')
    marked = parse(toml.replace("allow_unmarked = true\n", "") + rule)
    assert [str(r.network) for r in marked.marks] == ["207.175.44.110/31"]
    with pytest.raises(ConfigError) as unmarked:
        parse(toml.replace("allow_unmarked = true\n", ""))
    assert unmarked.value.reason == "no [[mark]] rule gives mark 1: no packet would reach it"


def test_the_virtual_server_group_sample():
    conversion = one(sample("virtual_server_group"), interface="eth9")
    config = build(conversion.data, "virtual_server_group")
    addresses = ["10.0.0.1:8080", "10.0.0.2:80", "192.168.200.1:1358",
                 *(f"192.168.200.{n}:80" for n in range(3, 11))]
    assert [(s.endpoint, s.protocol) for s in config.services] == [
        *((a, "tcp") for a in addresses), ("FWM 1", ""), ("FWM 2", "")]
    spec = CheckSpec("http", 6, 3, 3, 3, path=TESTURL)
    for service in config.services:  # NAT: each member keeps the servers' own port
        assert (service.scheduler.spec, service.forward, service.persistence_timeout) == (
            "rr", "nat", 50)
        assert [r.endpoint for r in reversed(service.real_servers)] == [
            "192.168.200.1:1358", "192.168.200.2:1358"]
    assert all([s.spec for s in h.servers] == [spec, spec] for h in config.health)
    assert len(config.health) == 13
    assert note(conversion, "line 22: virtual_server group VSG_1: FWM 1 gets no packet until a "
                "[[mark]] rule gives mark 1")
    assert note(conversion, "FWM 2 gets no packet until a [[mark]] rule gives mark 2")
    assert not note(conversion, "refused")


# -- the family of a fwmark service, as check_parser.c settles it -----------------------------

def fwmark(body: str, head: str = "virtual_server fwmark 3") -> str:
    return f"{head} {{\n protocol TCP\n lb_kind DR\n{body}}}\n"


def service_of(text: str) -> dict[str, Any]:
    (service,) = one(text).data["virtual_server"]
    return service


@pytest.mark.parametrize("body, family", [
    (" real_server 10.0.0.11 80 {\n }\n", AF_INET),
    (" real_server 2001:db8::11 80 {\n }\n", AF_INET6),                 # rs_end_handler
    (" ip_family inet6\n real_server 2001:db8::11 80 {\n }\n", AF_INET6),
    (" persistence_timeout\n persistence_granularity 64\n", AF_INET6),  # pgr_handler: no dot
    (" persistence_timeout\n persistence_granularity 255.255.255.0\n", AF_INET),
    (" real_server 2001:db8::11 80 {\n  lb_kind TUN\n }\n", AF_INET6),  # vs_end_handler
    (" real_server 2001:db8::11 80 {\n  lb_kind TUN\n }\n"
     " real_server 10.0.0.11 80 {\n  lb_kind TUN\n }\n", AF_INET),      # mixed: IPv4
    (" sorry_server 2001:db8::99 80\n", AF_INET6),
    ("", AF_INET),
])
def test_the_family_is_the_first_line_that_says_one(body, family):
    service = service_of(fwmark(body))
    assert service.get("family", "ipv4") == {AF_INET: "ipv4", AF_INET6: "ipv6"}[family]
    config = build({"director": {"interface": "eth0"}, "virtual_server": [service]})
    assert config.services[0].af == family


def test_a_server_of_the_other_family_is_skipped_and_a_late_ip_family_ignored():
    conversion = one(fwmark(" real_server 10.0.0.11 80 {\n }\n ip_family inet6\n"
                            " real_server 2001:db8::11 80 {\n }\n"))
    (service,) = conversion.data["virtual_server"]
    assert "family" not in service and [s["address"] for s in service["real_server"]] == [
        "10.0.0.11"]
    assert note(conversion, "`ip_family inet6` is not carried over: the service is IPv4 already, "
                "by the lines before (keepalived: 'Virtual server specified family inet6 "
                "conflicts with server family')")
    assert note(conversion, "`real_server 2001:db8::11 80` is refused: 2001:db8::11 is IPv6")


def test_dr_and_tun_servers_are_port_0_and_checked_on_their_own_port():
    """ipvs_cmd gives IPVS port 0 for a fwmark service's DR or TUN server; keepalived's
    checker still connects to the real_server line's port."""
    conversion = one(fwmark(" real_server 10.0.0.11 80 {\n  TCP_CHECK {\n  }\n }\n"
                            " real_server 10.0.0.12 80 {\n  lb_kind NAT\n  TCP_CHECK {\n"
                            "   connect_port 8080\n  }\n }\n"))
    servers = conversion.data["virtual_server"][0]["real_server"]
    assert [(s["address"], s["check"]["port"]) for s in servers] == [
        ("10.0.0.11", 80), ("10.0.0.12:80", 8080)]
    assert not note(conversion, "is not carried over: DR forwards")
    config = build(conversion.data)
    assert [r.endpoint for r in config.services[0].real_servers] == ["10.0.0.12:80",
                                                                     "10.0.0.11:0"]


def test_a_tcp_check_of_a_portless_server_names_the_keepalived_line():
    """keepalived would connect to port 0, which never answers: pylvs refuses it."""
    text = fwmark(" real_server 10.0.0.11 {\n  TCP_CHECK {\n  }\n }\n")
    with pytest.raises(KeepalivedError) as error:
        config_file.convert(text, "k.conf", "eth0")
    assert error.value.key == ("line 4: virtual_server fwmark 3: real_server 10.0.0.11 "
                               "(virtual_server[0].real_server[0].check.port)")
    assert "has port 0 (the packet's port is kept)" in error.value.reason


def test_ops_is_kept_for_a_fwmark_service_and_a_bad_mark_is_refused():
    assert service_of(fwmark(" ops\n"))["one_packet"] is True
    for mark, says in (("0", "fwmark 0 is no mark"), ("x", "fwmark 'x' is not in 0..")):
        conversion = one(fwmark("", f"virtual_server fwmark {mark}") +
                         "virtual_server 10.0.0.1 80 {\n protocol TCP\n}\n")
        assert [s.get("address") for s in conversion.data["virtual_server"]] == [
            "10.0.0.1:80"]
        assert note(conversion, f"`virtual_server fwmark {mark}` is refused: {says}")


def test_all_fwmark_services_name_no_interface():
    with pytest.raises(KeepalivedError) as unknown:
        one(sample("fwmark"), interface="")
    assert "--interface" in unknown.value.reason


# -- groups -----------------------------------------------------------------------------------

def group(entries: str, body: str = " real_server 10.0.0.11 80 {\n }\n") -> str:
    return (f"virtual_server_group G {{\n{entries}}}\n"
            f"virtual_server group G {{\n protocol TCP\n lb_kind DR\n{body}}}\n")


def test_a_groups_marks_come_after_its_addresses_each_of_its_family():
    conversion = one(group(" fwmark 7 inet6\n 10.0.0.1 80\n fwmark 8 inet\n",
                           " real_server 10.0.0.11 80 {\n }\n"
                           " real_server 2001:db8::11 80 {\n  lb_kind TUN\n }\n"))
    services = conversion.data["virtual_server"]
    assert [(s.get("address"), s.get("fwmark"), s.get("family")) for s in services] == [
        ("10.0.0.1:80", None, None), (None, 7, "ipv6"), (None, 8, None)]
    assert [s["address"] for s in services[0]["real_server"]] == ["10.0.0.11:80",
                                                                  "[2001:db8::11]:80"]
    assert [s["address"] for s in services[1]["real_server"]] == ["[2001:db8::11]"]
    assert [s["address"] for s in services[2]["real_server"]] == ["10.0.0.11", "[2001:db8::11]"]
    assert note(conversion, "`real_server 10.0.0.11 80` is refused: 10.0.0.11 is IPv4 and the "
                "service FWM 7 IPv6")
    assert not note(conversion, "protocol will be ignored")  # the addresses' protocol
    config = build(conversion.data)
    assert [s.endpoint for s in config.services] == ["10.0.0.1:80", "FWM 7 IPv6", "FWM 8"]
    assert [[r.endpoint for r in reversed(s.real_servers)] for s in config.services[1:]] == [
        ["[2001:db8::11]:0"], ["10.0.0.11:0", "[2001:db8::11]:0"]]


def test_a_groups_mark_without_a_family_takes_the_servers():
    """ipvs_group_cmd: the member's family word, else the virtual server's (its first
    untunnelled real server's), else IPv4."""
    six = one(group(" fwmark 8\n", " real_server 2001:db8::11 80 {\n }\n"))
    assert six.data["virtual_server"][0]["family"] == "ipv6"
    tunnelled = one(group(" fwmark 8\n", " real_server 2001:db8::11 80 {\n  lb_kind TUN\n"
                                          " }\n"))
    assert "family" not in tunnelled.data["virtual_server"][0]


def test_a_group_of_marks_alone_ignores_the_protocol():
    conversion = one(group(" fwmark 7\n"))
    assert [s["fwmark"] for s in conversion.data["virtual_server"]] == [7]
    assert note(conversion, "`protocol TCP` is not carried over: keepalived ignores it too")


def test_a_group_of_both_families_and_a_familyless_mark_is_refused():
    conversion = one(group(" 10.0.0.1 80\n 2001:db8::1 80\n fwmark 7\n") +
                     "virtual_server 10.0.0.9 80 {\n protocol TCP\n}\n")
    assert [s["address"] for s in conversion.data["virtual_server"]] == ["10.0.0.9:80"]
    assert note(conversion, "`virtual_server_group G` is refused: it has IPv4 and IPv6 members "
                "and a fwmark without a family (keepalived removes it too: 'cannot have IPv4, "
                "IPv6 and fwmark without family')")
    named = one(group(" 10.0.0.1 80\n 2001:db8::1 80\n fwmark 7 inet\n"))
    assert [s.get("fwmark") for s in named.data["virtual_server"]] == [None, None, 7]


def test_a_groups_bad_marks_are_refused():
    conversion = one(group(" 10.0.0.1 80\n fwmark 0\n fwmark 9 ipx\n"))
    assert [s.get("address") for s in conversion.data["virtual_server"]] == ["10.0.0.1:80"]
    assert note(conversion, "`fwmark 0` is refused: fwmark 0 is no mark")
    assert note(conversion, "`fwmark 9 ipx` is refused: family ipx is not inet or inet6")

"""keepalived.conf with IPv6 (issue 22), as keepalived 2.2.7 reads it: IPv6 virtual_servers and
real servers, dual-stack files, persistence_granularity as a prefix length (check_parser.c
pgr_handler), another family only for a tunnelled server (rs_end_handler, vs_end_handler),
virtual_server_group ranges counted in hex (lib/utils.c inet_stor), and VRRP instances of either
family (issue 23), each dropping the other family's addresses as keepalived does."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylvs.adm import keepalived_syntax
from pylvs.adm.commands import adm
from pylvs.adm.config import build
from pylvs.adm.keepalived import KeepalivedError, convert
from pylvs.core.director import Director
from pylvs.core.model import AF_INET, AF_INET6

SAMPLES = Path("/usr/share/doc/keepalived/samples")

# A faithful minimal excerpt of keepalived's doc/samples/keepalived.conf.IPv6 (Debian ships it as
# /usr/share/doc/keepalived/samples/keepalived.conf.IPv6; tests/adm/test_keepalived.py reads that
# file whole when it is installed): every line that is not a comment or blank, in its order,
# with the commented-out alternatives left out.
IPV6_SAMPLE = """global_defs {
   router_id LVS_DEVEL
}
virtual_server_group IPv6_group {
    ae00::2-9 80
    ae00::1   80
}
virtual_server ae00::1 80 {
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    persistence_timeout 50
    protocol TCP
    real_server ae00::10 25 {
        weight 1
        SMTP_CHECK {
            connect_timeout 3
            retry 3
            helo_name "foo.bar.com"
        }
    }
}
"""


def test_the_excerpt_is_the_samples_own_lines():
    if not (SAMPLES / "keepalived.conf.IPv6").is_file():
        pytest.skip("Debian's keepalived samples are not here (apt-get install keepalived)")
    lines = [line.split("#")[0].rstrip() for line in
             (SAMPLES / "keepalived.conf.IPv6").read_text().splitlines()]
    assert [line for line in lines if line.strip()] == IPV6_SAMPLE.splitlines()


def test_the_ipv6_sample_converts_and_loads():
    conversion = convert(IPV6_SAMPLE, "keepalived.conf.IPv6", interface="eth0")
    assert conversion.data["virtual_server"] == [{
        "address": "[ae00::1]:80", "protocol": "tcp", "forward": "nat", "scheduler": "rr",
        "persistence_timeout": 50, "real_server": [{"address": "[ae00::10]:25", "weight": 1}]}]
    (service,) = build(conversion.data, "keepalived.conf.IPv6").services
    assert (service.endpoint, service.af, service.persistence_netmask) == (
        "[ae00::1]:80", AF_INET6, "128")
    assert [(r.endpoint, r.forward) for r in service.real_servers] == [("[ae00::10]:25", "nat")]
    assert conversion.notes == [
        "line 2: global_defs: `router_id LVS_DEVEL` is not carried over: pylvs names itself "
        "nowhere (keepalived puts it in mail and SNMP)",
        "line 16: virtual_server ae00::1 80: real_server ae00::10 25: `SMTP_CHECK` is not "
        "carried over: pylvs has no SMTP check; the real server is added without it",
        "line 4: `virtual_server_group IPv6_group` is not carried over: no virtual_server uses "
        "it"]


def test_the_samples_commented_group_alternative_counts_its_range_in_hex():
    """The sample's `# virtual_server group IPv6_group {`, taken: ae00::2-9 and ae00::1, one
    IPVS service each; and a range past 9 goes on in hex, as inet_stor reads it (base 16)."""
    text = IPV6_SAMPLE.replace("virtual_server ae00::1 80 {", "virtual_server group "
                               "IPv6_group {").replace("ae00::2-9", "ae00::8-b")
    config = build(convert(text, "k.conf", interface="eth0").data)
    assert [s.endpoint for s in config.services] == [
        "[ae00::8]:80", "[ae00::9]:80", "[ae00::a]:80", "[ae00::b]:80", "[ae00::1]:80"]
    assert all(s.real_servers[0].endpoint == "[ae00::10]:25" for s in config.services)


DUAL = """virtual_server 192.0.2.1 80 {
  protocol TCP
  lb_kind DR
  persistence_timeout 60
  persistence_granularity 255.255.255.0
  real_server 192.0.2.11 80 {
    TCP_CHECK {
    }
  }
}
virtual_server 2001:DB8:0::1 80 {
  protocol TCP
  ip_family inet6
  lb_kind DR
  persistence_timeout 60
  persistence_granularity 64
  sorry_server 2001:db8::99 80
  real_server 2001:db8::11 80 {
    HTTP_GET {
      url {
        path /health
      }
    }
  }
}
virtual_server 192.0.2.1 443 {
  protocol TCP
  lb_kind TUN
  real_server 2001:db8:1::21 443 {
  }
  real_server 198.51.100.21 443 {
  }
}
"""


def test_a_dual_stack_file_converts_and_loads():
    conversion = convert(DUAL, "k.conf", interface="eth0")
    assert conversion.notes == []
    config = build(conversion.data)
    assert [(s.endpoint, s.persistence_netmask, [r.endpoint for r in reversed(s.real_servers)])
            for s in config.services] == [
        ("192.0.2.1:80", "255.255.255.0", ["192.0.2.11:80"]),
        ("[2001:db8::1]:80", "64", ["[2001:db8::11]:80"]),
        ("192.0.2.1:443", "255.255.255.255", ["[2001:db8:1::21]:443", "198.51.100.21:443"])]
    v6 = config.health[1]
    assert (v6.name, v6.sorry_server, v6.servers[0].key, v6.servers[0].spec.path) == (
        "TCP [2001:db8::1]:80", ("2001:db8::99", 80), ("2001:db8::11", 80), "/health")


@pytest.mark.parametrize("value", ["255.255.255.0", "0", "129", "64/64"])
def test_an_ipv6_granularity_that_is_not_a_prefix_length_is_ignored_as_keepalived_does(value):
    conversion = convert(DUAL.replace("granularity 64", f"granularity {value}"), "k.conf",
                         interface="eth0")
    assert build(conversion.data).services[1].persistence_netmask == "128"
    assert conversion.notes == [
        f"line 16: virtual_server 2001:db8::1 80: `persistence_granularity {value}` is not "
        "carried over: an IPv6 service's persistence_granularity is a prefix length 1..128 "
        f"(keepalived: 'Invalid IPv6 persistence_granularity specified - {value}'), so the "
        "service keeps /128"]


def test_a_conflicting_ip_family_is_noted():
    conversion = convert(DUAL.replace("ip_family inet6", "ip_family inet"), "k.conf",
                         interface="eth0")
    assert conversion.notes == [
        "line 13: virtual_server 2001:db8::1 80: `ip_family inet` is not carried over: the "
        "address is IPv6 (keepalived: 'Virtual server specified family inet conflicts with "
        "server family')"]


@pytest.mark.parametrize("kind", ["DR", "NAT"])
def test_a_real_server_of_the_other_family_is_skipped_unless_tunnelled(kind):
    text = DUAL.replace("lb_kind TUN", f"lb_kind {kind}")
    conversion = convert(text, "k.conf", interface="eth0")
    assert [r["address"] for r in conversion.data["virtual_server"][2]["real_server"]] == [
        "198.51.100.21:443"]
    assert conversion.notes == [
        "line 29: `real_server 2001:db8:1::21 443` is refused: 2001:db8:1::21 is IPv6 and the "
        "service 192.0.2.1:443 IPv4, and only a tunnelled server may be of another family "
        "(keepalived skips it too: 'Address family of virtual server and real server "
        "2001:db8:1::21 don't match - skipping real server')"]
    own = text.replace("  real_server 2001:db8:1::21 443 {\n",
                       "  real_server 2001:db8:1::21 443 {\n    lb_kind TUN\n")
    servers = convert(own, "k.conf", interface="eth0").data["virtual_server"][2]["real_server"]
    assert servers[0] == {"address": "[2001:db8:1::21]:443", "weight": 1, "forward": "tun"}


def test_a_sorry_server_of_the_other_family_is_skipped():
    conversion = convert(DUAL.replace("sorry_server 2001:db8::99 80", "sorry_server "
                                      "192.0.2.99 80"), "k.conf", interface="eth0")
    assert "sorry_server" not in conversion.data["virtual_server"][1]
    assert conversion.notes == [
        "line 17: `sorry_server 192.0.2.99 80` is refused: 192.0.2.99 is IPv4 and the service "
        "[2001:db8::1]:80 IPv6, and only a tunnelled server may be of another family "
        "(keepalived skips it too: 'Address family of virtual server and sorry server "
        "192.0.2.99 don't match - skipping sorry server')"]


def test_no_tunnelled_server_of_the_other_family_while_the_sync_daemon_runs():
    tunnelled = "virtual_server 192.0.2.1 443" + DUAL.split("virtual_server 192.0.2.1 443")[1]
    conversion = convert("global_defs {\n  lvs_sync_daemon eth1\n}\n" + tunnelled, "k.conf",
                         interface="eth0")
    assert [r["address"] for r in conversion.data["virtual_server"][0]["real_server"]] == [
        "198.51.100.21:443"]
    assert conversion.notes == [
        "line 7: `real_server 2001:db8:1::21 443` is refused: 2001:db8:1::21 is of another "
        "family than the service 192.0.2.1:443, and IPVS refuses such a server while the sync "
        "daemon runs (lvs_sync_daemon)"]
    build(conversion.data)


@pytest.mark.parametrize("address,reason", [
    ("2001:db8::zz", "'2001:db8::zz' is not an IP address"),
    ("fe80::1%eth0", "'fe80::1%eth0': an IPVS address has no zone")])
def test_bad_ipv6_addresses_name_the_line(address, reason):
    with pytest.raises(KeepalivedError) as error:
        convert(DUAL.replace("2001:DB8:0::1 80", f"{address} 80"), "k.conf", interface="eth0")
    assert (error.value.key, error.value.reason) == (f"line 11: virtual_server {address} 80",
                                                     reason)


# -- VRRP: an instance of either family, as keepalived (issue 23) -------------------------------

VRRP = """global_defs {
  vrrp_version 2
}
vrrp_instance V6 {
  interface eth0
  virtual_router_id 60
  virtual_ipaddress {
    fe80::60
    2001:db8::1/64
    192.0.2.1
  }
  unicast_src_ip 192.0.2.5
  authentication {
    auth_type PASS
    auth_pass secret
  }
}
vrrp_instance N6 {
  native_ipv6
  interface eth0
  virtual_router_id 61
}
vrrp_instance L6 {
  native_ipv6
  version 2
  interface eth0
  virtual_router_id 62
  unicast_peer {
    192.0.2.7
    2001:db8::7
  }
  virtual_ipaddress {
    2001:db8::62
  }
}
vrrp_instance V4 {
  interface eth0
  virtual_router_id 40
  virtual_ipaddress {
    192.0.2.1/24
    2001:db8::1 dev eth0
    2001:db8::2-4
  }
  native_ipv6
  unicast_src_ip 2001:db8::5
  unicast_peer {
    192.0.2.6
    2001:db8::6
  }
}
"""
SAME = "('address family must match VRRP instance')"


def test_each_instance_takes_its_first_address_s_family_and_drops_the_other_as_keepalived():
    """keepalived (vrrp_parser.c, vrrp_data.c): the first address in the block, or a
    native_ipv6 before any, gives the family; the other family's VIPs, source and peers are
    dropped, a later native_ipv6 too; an IPv6 instance is VRRPv3 whatever vrrp_version says,
    without authentication; a VRRPv3 instance without a VIP stops keepalived."""
    conversion = convert(VRRP + DUAL, "k.conf")
    v6, l6, v4 = conversion.data["vrrp"]
    assert v6 == {"name": "V6", "interface": "eth0", "virtual_router_id": 60,
                  "virtual_ipaddress": ["fe80::60/128", "2001:db8::1/64"]}
    assert l6 == {"name": "L6", "interface": "eth0", "virtual_router_id": 62,
                  "native_ipv6": True, "unicast_peers": ["2001:db8::7"],
                  "virtual_ipaddress": ["2001:db8::62/128"]}
    assert v4 == {"name": "V4", "interface": "eth0", "virtual_router_id": 40, "version": 2,
                  "unicast_peers": ["192.0.2.6"], "virtual_ipaddress": ["192.0.2.1/24"]}
    assert conversion.notes == [
        "line 13: vrrp_instance V6: `authentication` is not carried over: keepalived ignores it "
        "too: an IPv6 instance is VRRPv3 ('VRRP version 3 does not support authentication. "
        "Ignoring.')",
        "line 12: vrrp_instance V6: `unicast_src_ip 192.0.2.5` is not carried over: keepalived "
        "ignores it too: the instance is IPv6 ('src address MUST be of the same family')",
        "line 10: vrrp_instance V6: `192.0.2.1` is not carried over: keepalived ignores it too: "
        f"the instance is IPv6, and an address of another family is dropped {SAME}",
        "line 18: `vrrp_instance N6` is refused: it is an IPv6 instance, so VRRPv3, and it has "
        "no IPv6 VIP: keepalived does not start with it ('No VIP specified; at least one is "
        "required')",
        "line 25: vrrp_instance L6: `version 2` is not carried over: an IPv6 instance speaks "
        "VRRPv3 (keepalived: 'vrrp_version 2 conflicts with configured or deduced version 3; "
        "ignoring')",
        "line 29: `192.0.2.7` is refused: keepalived skips it too: the instance is IPv6 "
        "('unicast peer address MUST be of the same family')",
        "line 44: vrrp_instance V4: `native_ipv6` is not carried over: keepalived ignores it "
        "too: 'Cannot specify native_ipv6 with IPv4 addresses'",
        "line 45: vrrp_instance V4: `unicast_src_ip 2001:db8::5` is not carried over: "
        "keepalived ignores it too: the instance is IPv4 ('src address MUST be of the same "
        "family')",
        "line 48: `2001:db8::6` is refused: keepalived skips it too: the instance is IPv4 "
        "('unicast peer address MUST be of the same family')",
        "line 41: vrrp_instance V4: `2001:db8::1 dev eth0` is not carried over: keepalived "
        f"ignores it too: the instance is IPv4, and an address of another family is dropped "
        f"{SAME}",
        "line 42: vrrp_instance V4: `2001:db8::2-4` is not carried over: keepalived ignores it "
        f"too: the instance is IPv4, and an address of another family is dropped {SAME}"]
    config = build(conversion.data)
    assert [(v.name, v.family, v.version, v.virtual_ipaddress) for v in
            config.vrrp_instances] == [("V6", AF_INET6, 3, ("fe80::60", "2001:db8::1")),
                                       ("L6", AF_INET6, 3, ("2001:db8::62",)),
                                       ("V4", AF_INET, 2, ("192.0.2.1",))]
    assert len(config.services) == 3


def test_the_first_address_in_the_file_gives_an_instance_its_family():
    """keepalived: whichever of unicast_src_ip, a unicast_peer or a VIP comes first; V4 with
    its IPv6 unicast_src_ip first is an IPv6 instance of the IPv6 VIPs (its native_ipv6 now
    agrees)."""
    first = VRRP.split("vrrp_instance V4")[1]
    moved = "vrrp_instance V4" + first.replace("  unicast_src_ip 2001:db8::5\n", "").replace(
        "  interface eth0\n", "  interface eth0\n  unicast_src_ip 2001:db8::5\n")
    (v4,) = convert(moved, "k.conf", interface="eth0").data["vrrp"]
    assert v4 == {"name": "V4", "interface": "eth0", "virtual_router_id": 40,
                  "native_ipv6": True, "unicast_src_ip": "2001:db8::5",
                  "unicast_peers": ["2001:db8::6"],
                  "virtual_ipaddress": ["2001:db8::1/128", "2001:db8::2/128", "2001:db8::3/128",
                                        "2001:db8::4/128"]}
    assert build(convert(moved, "k.conf", interface="eth0").data).vrrp.family == AF_INET6


def test_the_dual_stack_file_is_the_table_keepalived_would_give_ipvsadm():
    """ipvsadm -S -n of the converted file (in any order: the listing's is ipvsadm's business):
    what keepalived's ipvswrapper.c would install (netmask 64 for the IPv6 service's
    granularity, the TUN server of the other family)."""
    director = Director(build(convert(DUAL, "k.conf", interface="eth0").data).services)
    saved = adm(director, ["-S", "-n"], 0.0)[1].replace(" --tun-type ipip", "")
    assert sorted(saved.splitlines()) == sorted([
        "-A -t 192.0.2.1:80 -s wlc -p 60 -M 255.255.255.0",
        "-a -t 192.0.2.1:80 -r 192.0.2.11:80 -g -w 1",
        "-A -t [2001:db8::1]:80 -s wlc -p 60 -M 64",
        "-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -g -w 1",
        "-A -t 192.0.2.1:443 -s wlc",
        "-a -t 192.0.2.1:443 -r 198.51.100.21:443 -i -w 1",
        "-a -t 192.0.2.1:443 -r [2001:db8:1::21]:443 -i -w 1"])


def test_ipv6_words_pass_keepalived_syntax_whole():
    """lib/parser.c splits on blanks only: the colons of an address are part of the word, and
    a file that opens with an IPv6 virtual_server is told a keepalived.conf."""
    text = "virtual_server 2001:db8::1 80 { # the VIP\n real_server ::ffff:192.0.2.1 80 {\n}}\n"
    assert keepalived_syntax.detect_format(text) == "keepalived"
    (block,) = keepalived_syntax.parse_blocks(text)
    assert (block.args, block.children[0].args) == (["2001:db8::1", "80"],
                                                    ["::ffff:192.0.2.1", "80"])

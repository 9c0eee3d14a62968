"""[bgp] with IPv6 (issue 23): IPv6 neighbours, IPv6 services announced over them, a dual-stack
director with a neighbour of each family, bird_include6 beside a running BIRD; and what stays
refused: a VIP of a family no session carries, a link-local or mapped neighbour, an IPv6 router
id (a BGP identifier is 32 bits, RFC 6286). Every error names file, key and reason."""

from __future__ import annotations

import pytest

from pylvs.adm.config import ConfigError, parse
from pylvs.ha.bgp import Bgp, Neighbor

V4 = '[[virtual_server]]\naddress = "192.0.2.1:80"\n[[virtual_server.real_server]]\n' \
     'address = "192.0.2.11"\n'
V6 = '[[virtual_server]]\naddress = "[2001:db8::1]:80"\n[[virtual_server.real_server]]\n' \
     'address = "[2001:db8::11]"\n'


def config(*services: str, bgp: str = "", neighbors: tuple[str, ...] = ("2001:db8::fe",)) -> str:
    text = '[director]\ninterface = "eth0"\n\n' + "\n".join(services)
    text += f"\n[bgp]\nlocal_as = 65001\n{bgp}"
    for address in neighbors:
        text += f'\n[[bgp.neighbor]]\naddress = "{address}"\nremote_as = 65000\n'
    return text


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, "bgp6.toml")
    assert str(info.value) == f"bgp6.toml: {info.value.key}: {info.value.reason}"
    return info.value


def test_an_ipv6_service_is_announced_over_an_ipv6_neighbour():
    parsed = parse(config(V6, bgp='router_id = "10.0.0.11"\n'))
    assert parsed.bgp == Bgp(65001, (Neighbor("2001:db8::fe", 65000),), "10.0.0.11")
    assert parsed.bgp.families == (6,)


def test_a_dual_stack_director_has_a_neighbour_of_each_family():
    parsed = parse(config(V4, V6, neighbors=("192.0.2.254", "2001:DB8:0::FE")))
    assert [n.address for n in parsed.bgp.neighbors] == ["192.0.2.254", "2001:db8::fe"]
    assert parsed.bgp.families == (4, 6)


@pytest.mark.parametrize(("services", "neighbors", "words"), [
    ((V4, V6), ("192.0.2.254",), "virtual_server[1] ([2001:db8::1]:80) is IPv6, and no "
     "[[bgp.neighbor]] is: an IPv6 VIP is announced only over a session to an IPv6 neighbour "
     "(the router's IPv6 address)"),
    ((V4, V6), ("2001:db8::fe",), "virtual_server[0] (192.0.2.1:80) is IPv4, and no "
     "[[bgp.neighbor]] is: an IPv4 VIP is announced only over a session to an IPv4 neighbour "
     "(the router's IPv4 address)"),
])
def test_a_vip_of_a_family_no_session_carries_is_refused(services, neighbors, words):
    bad = error(config(*services, neighbors=neighbors))
    assert (bad.key, bad.reason) == ("bgp.neighbor", words)


@pytest.mark.parametrize(("address", "words"), [
    ("fe80::1", "fe80::1 is link-local: give the router's global IPv6 address"),
    ("::ffff:192.0.2.254", "::ffff:c000:2fe is IPv4-mapped: write the router's IPv4 address "
     "(192.0.2.254)"),
    ("ff02::2", "ff02::2 is not a router's unicast address"),
    ("2001:db8::fe%eth0", "2001:db8::fe%eth0 has a zone"),
    ("2001:db8::fe::1", "'2001:db8::fe::1' is not an IPv4 or IPv6 address"),
])
def test_a_neighbour_must_be_a_routers_global_address(address, words):
    bad = error(config(V6, neighbors=(address,)))
    assert bad.key == "bgp.neighbor[0].address" and bad.reason.startswith(words), bad.reason


def test_a_router_id_stays_32_bits_on_an_ipv6_only_director():
    bad = error(config(V6, bgp='router_id = "::1"\n'))
    assert (bad.key, bad.reason) == (
        "bgp.router_id", "'::1' is IPv6, and a BGP router id is a 32-bit number written as an "
        "IPv4 address")


def test_a_running_bird_takes_the_ipv6_routes_in_a_file_of_their_own():
    socket = 'bird_socket = "/run/bird/bird.ctl"\n'
    parsed = parse(config(V6, bgp=socket + 'bird_include6 = "/etc/bird/pylvs6.conf"\n'))
    assert (parsed.bgp.bird_include, parsed.bgp.bird_include6) == ("", "/etc/bird/pylvs6.conf")
    both = parse(config(V4, V6, neighbors=("192.0.2.254", "2001:db8::fe"), bgp=socket +
                        'bird_include = "/etc/bird/v4.conf"\nbird_include6 = "/etc/bird/v6.conf"'
                        "\n"))
    assert both.bgp.include(4) == "/etc/bird/v4.conf" and both.bgp.include(6) == \
        "/etc/bird/v6.conf"
    missing = error(config(V6, bgp=socket + 'bird_include = "/etc/bird/v4.conf"\n'))
    assert (missing.key, missing.reason) == (
        "bgp.bird_include6", "virtual_server[0] ([2001:db8::1]:80) is IPv6: with bird_socket, "
        "bird_include6 names the file of IPv6 routes the running BIRD's ipv6 static protocol "
        "includes")


@pytest.mark.parametrize(("keys", "key", "words"), [
    ('bird_socket = "/run/b.ctl"\n', "bgp.bird_include", "go together"),
    ('bird_include6 = "/etc/bird/v6.conf"\n', "bgp.bird_socket", "go together"),
    ('bird_socket = "/run/b.ctl"\nbird_include = "/etc/v.conf"\nbird_include6 = "/etc/v.conf"\n',
     "bgp.bird_include6", "must be another file than bird_include"),
    ('bird_include_6 = "/etc/v.conf"\n', "bgp.bird_include_6", "unknown key"),
])
def test_bird_include6_is_checked_like_bird_include(keys, key, words):
    bad = error(config(V6, bgp=keys))
    assert (bad.key, words in bad.reason) == (key, True), bad

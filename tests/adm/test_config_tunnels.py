"""GUE and GRE real servers in the TOML config (issue 24): tun_type, tun_port and tun_flags,
checked by ipvsadm's tunnel_types_v_options as `pylvs adm -a` checks them, each error naming
the key; the ruleset writes them back (to_toml, and the -a commands a reload sends), and a
health check's copy of the server keeps them."""

from __future__ import annotations

import pytest

from pylvs.adm import ruleset
from pylvs.adm.config import ConfigError, parse

HEAD = '[director]\ninterface = "eth0"\n\n[[virtual_server]]\naddress = "192.0.2.1:80"\n' \
       'forward = "tun"\n\n  [[virtual_server.real_server]]\n  address = "198.51.100.1"\n'


def config(lines: str, health: str = ""):
    return parse(HEAD + health + lines, "lb.toml")


def test_gue_and_gre_real_servers_load_with_their_tunnels():
    gue = config('  tun_type = "gue"\n  tun_port = 6080\n  tun_flags = "csum"\n')
    server = gue.services[0].real_servers[0]
    assert (server.tun_type, server.tun_port, server.tun_flags) == ("gue", 6080, "csum")
    assert server.forwarder.overhead == 32
    gre = config('  tun_type = "gre"\n').services[0].real_servers[0]
    assert (gre.tun_type, gre.tun_port, gre.tun_flags) == ("gre", 0, "nocsum")


@pytest.mark.parametrize(("lines", "key", "reason"), [
    ('  tun_type = "gue"\n', "tun_port", 'required for tun_type = "gue" (the UDP port the real '
                                         'server listens on)'),
    ('  tun_type = "gre"\n  tun_port = 1\n', "tun_port", 'not for tun_type = "gre"'),
    ('  tun_type = "gre"\n  tun_flags = "remcsum"\n', "tun_flags",
     "'remcsum': for tun_type = \"gre\" one of nocsum, csum"),
    ('  tun_flags = "csum"\n', "tun_flags", 'not for tun_type = "ipip"'),
    ('  tun_type = "vxlan"\n', "tun_type", "'vxlan' is not ipip, gue or gre"),
    ('  forward = "dr"\n  tun_type = "gre"\n', "tun_type",
     'goes with forward = "tun" only (ipvsadm: Tunnel options conflict with forward method), '
     'not dr'),
])
def test_a_tunnel_ipvsadm_would_refuse_is_a_config_error_naming_the_key(lines, key, reason):
    with pytest.raises(ConfigError) as refused:
        config(lines)
    assert refused.value.key == f"virtual_server[0].real_server[0].{key}"
    assert refused.value.reason == reason


def test_the_ruleset_writes_the_tunnel_back():
    services = config('  tun_type = "gue"\n  tun_port = 6080\n  tun_flags = "remcsum"\n').services
    assert ruleset.commands(services)[1][-5:] == ["--tun-type", "gue", "--tun-port", "6080",
                                                  "--tun-remcsum"]
    again = parse(ruleset.to_toml(services, "eth0"), "again.toml")
    server = again.services[0].real_servers[0]
    assert (server.tun_type, server.tun_port, server.tun_flags) == ("gue", 6080, "remcsum")


def test_a_checked_servers_copy_keeps_its_tunnel():
    checked = config('  tun_type = "gre"\n  tun_flags = "csum"\n',
                     health='check = { type = "tcp" }\n')
    copy = checked.health[0].servers[0].server
    assert (copy.tun_type, copy.tun_flags) == ("gre", "csum")

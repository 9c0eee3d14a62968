"""ipvsadm 1.31's tunnel options (--tun-type, --tun-port, --tun-nocsum/--tun-csum/--tun-remcsum):
its checks in their order and with its texts (main's "Tunnel options conflict with forward
method", tunnel_opt_check by the tunnel_types_v_options table), and how -Ln --tun-info
(fwd_tun_info) and -S (print_tunnel_rule) write a tunnelled real server."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm import commands, ipvsadm, layouts
from pylvs.adm.ipvsadm import UsageError
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int

ADD = "-a -t 192.0.2.1:80 -r 198.51.100.1"


@pytest.mark.parametrize(("tail", "message"), [
    ("-i --tun-type gue", "You need to supply the 'tun-port' option for the 'gue' tunnel type"),
    ("-g --tun-type gre", "Tunnel options conflict with forward method"),
    ("-m --tun-csum", "Tunnel options conflict with forward method"),
    ("-i --tun-type gue --tun-port 6080 --tun-csum --tun-nocsum",
     "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type"),
    ("-i --tun-type gre --tun-remcsum",
     "Illegal 'tun-remcsum' option with the 'gre' tunnel type"),
    ("-i --tun-type gre --tun-port 1", "Illegal 'tun-port' option with the 'gre' tunnel type"),
    ("-i --tun-port 5", "Illegal 'tun-port' option with the 'ipip' tunnel type"),
    ("-i --tun-csum", "Illegal 'tun-csum' option with the 'ipip' tunnel type"),
    ("-i --tun-type vxlan", "illegal tunnel type specified"),
    ("-i --tun-type gue --tun-port 0", "illegal tunnel port specified"),
    ("-i --tun-type gue --tun-port 65536", "illegal tunnel port specified"),
])
def test_tunnel_options_are_checked_as_ipvsadm_checks_them(tail, message):
    with pytest.raises(UsageError) as refused:
        ipvsadm.parse(f"{ADD} {tail}".split())
    assert str(refused.value) == message


def test_ipip_is_the_default_and_may_be_named():
    assert ipvsadm.parse(f"{ADD} -i --tun-type ipip".split()).tun_type == "ipip"
    assert ipvsadm.parse(f"{ADD} -i".split()).tun_type is None


def _dest(tun_type: str, port: int = 0, flags: str = "nocsum", forward: str = "tun"
          ) -> RealServer:
    return RealServer("198.51.100.1", 80, forward=forward, tun_type=tun_type, tun_port=port,
                      tun_flags=flags)


@pytest.mark.parametrize(("dest", "info", "rule"), [
    (_dest("ipip"), "ipip", " --tun-type ipip"),
    (_dest("gue", 6080, "nocsum"), "gue:6080:-c", " --tun-type gue --tun-port 6080 --tun-nocsum"),
    (_dest("gue", 5555, "csum"), "gue:5555:+c", " --tun-type gue --tun-port 5555 --tun-csum"),
    (_dest("gue", 1, "remcsum"), "gue:1:r+c", " --tun-type gue --tun-port 1 --tun-remcsum"),
    (_dest("gre", 0, "csum"), "gre:+c", " --tun-type gre --tun-csum"),
    (_dest("gre", 0, "nocsum"), "gre:-c", " --tun-type gre --tun-nocsum"),
])
def test_tun_info_and_the_saved_rule_write_each_type_as_ipvsadm(dest, info, rule):
    assert layouts.tunnel_info(dest) == info
    assert layouts.tunnel_rule(dest) == rule


def test_a_real_server_that_is_not_tunnelled_has_no_tunnel_info():
    assert layouts.tunnel_info(_dest("ipip", forward="dr")) == "n/a"
    service = VirtualService("tcp", "192.0.2.1", 80, schedulers.get("rr")())
    service.add_real_server(_dest("ipip", forward="dr"))
    assert "--tun-type" not in layouts.render_save([service], layouts.Names(numeric=True))


RULES = ["-A -t 192.0.2.1:80 -s rr",
         "-a -t 192.0.2.1:80 -r 198.51.100.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum",
         "-a -t 192.0.2.1:80 -r 198.51.100.2:80 -i -w 1 --tun-type gre --tun-nocsum",
         "-a -t 192.0.2.1:80 -r 198.51.100.3:80 -i -w 1 --tun-type ipip",
         "-a -t 192.0.2.1:80 -r 198.51.100.4:80 -g -w 1"]


def test_a_live_director_lists_saves_and_restores_each_tunnel_as_ipvsadm():
    director = Director([])
    for line in RULES:
        assert commands.adm(director, line.split(), 0.0) == (0, "", ""), line
    rc, listing, _ = commands.adm(director, ["-Ln", "--tun-info"], 0.0)
    assert rc == 0
    assert listing.splitlines()[2:] == [
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
        "TCP  192.0.2.1:80 rr",
        "  -> 198.51.100.1:80              Tunnel  gue:6080:+c   1      0          0         ",
        "  -> 198.51.100.2:80              Tunnel  gre:-c        1      0          0         ",
        "  -> 198.51.100.3:80              Tunnel  ipip          1      0          0         ",
        "  -> 198.51.100.4:80              Route   n/a           1      0          0         "]
    _, saved, _ = commands.adm(director, ["-S", "-n"], 0.0)
    assert saved.splitlines() == RULES
    again = Director([])
    for line in saved.splitlines():
        assert commands.adm(again, line.split(), 0.0)[0] == 0
    assert commands.adm(again, ["-S", "-n"], 0.0)[1] == saved
    server = again.services[(6, ip_to_int("192.0.2.1"), 80)].find_real_server("198.51.100.1", 80)
    assert (server.tun_type, server.tun_port, server.tun_flags) == ("gue", 6080, "csum")
    assert server.forwarder.overhead == 32  # 20 IPv4 + 8 UDP + 4 GUE


def test_editing_a_real_server_sets_its_tunnel_again_as_ipvsadm_sends_it_all():
    director = Director([])
    for line in RULES[:2]:
        commands.adm(director, line.split(), 0.0)
    assert commands.adm(director, "-e -t 192.0.2.1:80 -r 198.51.100.1:80 -i".split(),
                        0.0)[0] == 0
    server = next(iter(director.services.values())).real_servers[0]
    assert (server.tun_type, server.tun_port, server.tun_flags) == ("ipip", 0, "nocsum")
    assert server.forwarder.overhead == 20

"""ipvsadm 1.31's tunnel options (--tun-type, --tun-port, --tun-nocsum/--tun-csum/--tun-remcsum):
its checks in their order and with its texts (main's "Tunnel options conflict with forward
method", tunnel_opt_check by the tunnel_types_v_options table), and how -Ln --tun-info
(fwd_tun_info) and -S (print_tunnel_rule) write a tunnelled real server."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm import ipvsadm, layouts
from pylvs.adm.ipvsadm import UsageError
from pylvs.core.model import RealServer, VirtualService

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

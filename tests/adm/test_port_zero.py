"""Port-0 services (every port of an address), as IPVS has them: only persistent ones
(ipvsadm's "Zero port specified for non-persistent service"), found after the address's own
port (ip_vs_service_find's catch-all), their templates <proto, net, 0, vaddr, 0, daddr, 0>."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from forwarders import NextHop
from pylvs.adm import config
from pylvs.adm.commands import adm
from pylvs.core.director import Director
from pylvs.core.model import ip_to_int

CONFIG = """
[director]
interface = "eth0"
[[virtual_server]]
address = "192.0.2.1:0"
{persistence}
[[virtual_server.real_server]]
address = "10.0.0.1"
"""


def test_ipvsadm_takes_a_persistent_port_0_service_and_refuses_another():
    director = Director([])
    assert adm(director, ["-A", "-t", "192.0.2.1:0", "-p"], 0.0)[0] == 0
    assert adm(director, ["-a", "-t", "192.0.2.1:0", "-r", "10.0.0.1"], 0.0)[0] == 0
    assert adm(director, ["-A", "-t", "192.0.2.2:0"], 0.0) == (
        2, "", "Zero port specified for non-persistent service\n")
    assert adm(director, ["-Sn"], 0.0)[1] == ("-A -t 192.0.2.1:0 -s wlc -p 360\n"
                                              "-a -t 192.0.2.1:0 -r 10.0.0.1:0 -g -w 1\n")


def test_every_port_of_the_address_reaches_it_and_shares_one_template():
    director = Director([])
    adm(director, ["-A", "-t", "192.0.2.1:0", "-p", "-s", "rr"], 0.0)
    for rs in ("10.0.0.1", "10.0.0.2"):
        adm(director, ["-a", "-t", "192.0.2.1:0", "-r", rs], 0.0)
        director.set_hop(ip_to_int(rs), NextHop(bytes(6), bytes(6), "eth0"))
    director.add_interface("eth0", bytes(6))
    for port in (22, 80, 443):
        frame = Ether() / IP(src="203.0.113.5", dst="192.0.2.1") / TCP(sport=40000 + port,
                                                                         dport=port, flags="S")
        assert director.handle(bytearray(bytes(frame)), 0.0) is not None
    servers = {conn.server.address for conn in director.table}
    assert len(servers) == 1 and len(director.table) == 3
    (template,) = director.table.templates.values()
    assert template.row(0.0).split()[3:] == ["203.0.113.5:0", "192.0.2.1:0",
                                             f"{servers.pop()}:0"]


def test_the_config_takes_port_0_only_with_persistence():
    (service,) = config.parse(CONFIG.format(persistence="persistence_timeout = 60")).services
    assert (service.port, service.real_servers[0].port) == (0, 0)
    with pytest.raises(config.ConfigError, match=r"virtual_server\[0\]\.address: port 0"):
        config.parse(CONFIG.format(persistence=""))

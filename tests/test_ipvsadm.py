"""ipvsadm 1.31 layouts, byte for byte (reference §2), and its list-command option rules."""

from __future__ import annotations

import pytest

import schedulers
from pylvs import ipvsadm
from pylvs.conntrack import ConnectionTable
from pylvs.model import RealServer, VirtualService


def _service(proto="tcp", addr="192.168.1.100", port=80, sched="rr", servers=(), flags=()):
    service = VirtualService(proto, addr, port, schedulers.get(sched)(flags))
    for address, weight in servers:
        service.add_real_server(RealServer(address, port, weight=weight))
    return service


def test_ln_layout_matches_ipvsadm_exactly():
    services = [_service(proto="udp", port=53, servers=[("10.0.0.9", 1)]),
                _service(servers=[("10.0.0.2", 2), ("10.0.0.1", 1)])]
    services[1].find_real_server("10.0.0.2", 80).activeconns = 3
    text = ipvsadm.render_services(services, ipvsadm.parse(["-Ln"]))
    assert text == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  192.168.1.100:80 rr\n"
        "  -> 10.0.0.1:80                  Route   1      0          0         \n"
        "  -> 10.0.0.2:80                  Route   2      3          0         \n"
        "UDP  192.168.1.100:53 rr\n"
        "  -> 10.0.0.9:53                  Route   1      0          0         \n")


def test_single_service_list_has_no_version_line():
    services = [_service(servers=[("10.0.0.1", 1)])]
    command = ipvsadm.parse(["-L", "-n", "-t", "192.168.1.100:80"])
    text = ipvsadm.render_services([ipvsadm.find_service(services, command.service)], command)
    assert text.splitlines()[0] == "Prot LocalAddress:Port Scheduler Flags"


def test_persistent_suffix():
    service = _service(sched="wrr")
    service.persistence_timeout = 5
    assert ipvsadm._service_line(service) == "TCP  192.168.1.100:80 wrr persistent 5"


def test_stats_layout():
    service = _service(servers=[("10.0.0.1", 1)])
    service.stats.conns, service.stats.inpkts, service.stats.inbytes = 5, 30, 1800
    dest = service.real_servers[0]
    dest.stats.conns, dest.stats.inpkts, dest.stats.inbytes = 5, 30, 1800
    text = ipvsadm.render_services([service], ipvsadm.parse(["-Ln", "--stats"]))
    assert text == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "TCP  192.168.1.100:80                    5       30        0     1800        0\n"
        "  -> 10.0.0.1:80                         5       30        0     1800        0\n")


@pytest.mark.parametrize("value,exact,text", [
    (99_999_999, False, " 99999999"), (123_456_789, False, "  123456K"),
    (12_345_678_901, False, "   12345M"), (5, True, "        5"),
    (12_345_678_901, True, " 12345678901")])
def test_largenum(value, exact, text):
    assert ipvsadm.largenum(value, exact) == text


def test_connection_header():
    text = ipvsadm.render_connections([], 0)
    assert text == ("IPVS connection entries\n"
                    "pro expire state       source             virtual            destination\n")


def test_timeout_line():
    assert ipvsadm.render_timeout(ConnectionTable().timeouts) == \
        "Timeout (tcp tcpfin udp): 900 120 300\n"


@pytest.mark.parametrize("argv,name,flags", [
    (["-Ln"], "list", {"numeric"}), (["-lnc"], "list", {"numeric", "connection"}),
    (["-L", "-n", "-c"], "list", {"numeric", "connection"}), ([], "list", set()),
    (["--list", "--numeric", "--stats", "--exact"], "list", {"numeric", "stats", "exact"}),
    (["-h"], "help", set()), (["-v"], "version", set())])
def test_parse(argv, name, flags):
    command = ipvsadm.parse(argv)
    assert command.name == name and command.flags == flags


@pytest.mark.parametrize("argv,message", [
    (["-L", "-E"], "multiple commands specified"),
    (["-Lnc", "--timeout"], "conflicts with the 'connection' option in the 'list' command"),
    (["-Ln", "--stats", "-c"], "conflicts"),
    (["-Ln", "-q"], "invalid option -q"),
    (["-A", "-t", "1.2.3.4:80"], "not supported by this version"),
    (["-Ln", "-t", "1.2.3:80"], "illegal virtual server address"),
])
def test_usage_errors(argv, message):
    with pytest.raises(ipvsadm.UsageError) as info:
        ipvsadm.parse(argv)
    assert message in str(info.value)


def test_scheduler_flags_in_ipvs_order_after_the_scheduler():
    service = _service(sched="sh", flags=("sh-port", "sh-fallback"))
    out = ipvsadm.render_services([service], ipvsadm.parse(["-Ln"]))
    assert "TCP  192.168.1.100:80 sh (sh-fallback,sh-port)" in out.splitlines()

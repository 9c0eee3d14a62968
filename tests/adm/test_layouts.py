"""ipvsadm 1.31's layouts, byte for byte, written out from its printf formats (reference §2)."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm import ipvsadm, layouts
from pylvs.core.conntrack import ConnectionTable
from pylvs.core.model import RealServer, VirtualService

HEAD = "IP Virtual Server version 1.2.1 (size=4096)\n"


def _service(proto="tcp", addr="192.168.1.100", port=80, sched="rr", servers=(), flags=(),
             forward="dr"):
    service = VirtualService(proto, addr, port, schedulers.get(sched)(flags))
    for address, weight in servers:
        service.add_real_server(RealServer(address, port, weight=weight, forward=forward))
    return service


def render(services, *argv):
    command = ipvsadm.parse(["-L", *argv])
    return layouts.render_services(services, command, layouts.Names("numeric" in command.options))


def test_ln_layout_matches_ipvsadm_exactly():
    services = [_service(proto="udp", port=53, servers=[("10.0.0.9", 1)]),
                _service(servers=[("10.0.0.2", 2), ("10.0.0.1", 1)])]
    services[1].find_real_server("10.0.0.2", 80).activeconns = 3
    assert render(services, "-n") == (
        HEAD +
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  192.168.1.100:80 rr\n"
        "  -> 10.0.0.1:80                  Route   1      0          0         \n"
        "  -> 10.0.0.2:80                  Route   2      3          0         \n"
        "UDP  192.168.1.100:53 rr\n"
        "  -> 10.0.0.9:53                  Route   1      0          0         \n")


def test_nosort_keeps_ipvs_order_newest_first():
    services = [_service(servers=[("10.0.0.1", 1), ("10.0.0.2", 1)])]
    rows = [line.split()[1] for line in render(services, "-n", "--nosort").splitlines()[4:]]
    assert rows == ["10.0.0.2:80", "10.0.0.1:80"]


def test_single_service_list_has_no_version_line():
    services = [_service(servers=[("10.0.0.1", 1)])]
    command = ipvsadm.parse(["-L", "-n", "-t", "192.168.1.100:80"])
    assert layouts.render_services(services, command, layouts.Names(True)).splitlines()[0] == \
        "Prot LocalAddress:Port Scheduler Flags"


def test_service_line_suffixes_in_ipvsadm_order():
    service = _service(sched="sh", flags=("sh-port", "sh-fallback"))
    service.persistence_timeout, service.persistence_netmask = 5, "255.255.255.0"
    assert render([service], "-n").splitlines()[3] == \
        "TCP  192.168.1.100:80 sh (sh-fallback,sh-port) persistent 5 mask 255.255.255.0"


def test_stats_layout():
    service = _service(servers=[("10.0.0.1", 1)])
    service.stats.conns, service.stats.inpkts, service.stats.inbytes = 5, 30, 1800
    dest = service.real_servers[0]
    dest.stats.conns, dest.stats.inpkts, dest.stats.inbytes = 5, 30, 1800
    assert render([service], "-n", "--stats") == (
        HEAD +
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "TCP  192.168.1.100:80                    5       30        0     1800        0\n"
        "  -> 10.0.0.1:80                         5       30        0     1800        0\n")


def test_rate_layout_and_estimator():
    service = _service(servers=[("10.0.0.1", 1)])
    stats = service.stats
    for _ in range(80):  # steady 2 s intervals: the EWMA converges to the exact rate
        stats.conns += 10
        stats.inpkts += 100
        stats.inbytes += 150_000_000
        stats.estimate()
    assert stats.rates() == (5, 50, 0, 75_000_000, 0)
    assert render([service], "-n", "--rate", "--exact") == (
        HEAD +
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
        "  -> RemoteAddress:Port\n"
        "TCP  192.168.1.100:80                    5       50        0 75000000        0\n"
        "  -> 10.0.0.1:80                         0        0        0        0        0\n")
    stats.zero()
    assert stats.rates() == (0, 0, 0, 0, 0) and stats.counters() == (0, 0, 0, 0, 0)


def test_thresholds_and_persistent_conn_layouts():
    service = _service(servers=[("10.0.0.1", 2)])
    dest = service.real_servers[0]
    dest.upper_threshold, dest.lower_threshold, dest.persistconns = 100, 50, 7
    assert render([service], "-n", "--thresholds") == (
        HEAD +
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
        "  -> RemoteAddress:Port\n"
        "TCP  192.168.1.100:80 rr\n"
        "  -> 10.0.0.1:80                  100        50         0          0         \n")
    assert render([service], "-n", "--persistent-conn") == (
        HEAD +
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n"
        "  -> RemoteAddress:Port\n"
        "TCP  192.168.1.100:80 rr\n"
        "  -> 10.0.0.1:80                  2         7           0          0         \n")


def test_tun_info_layout():
    service = _service(servers=[("10.0.0.1", 1)], forward="tun")
    assert render([service], "-n", "--tun-info").splitlines()[2:] == [
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
        "TCP  192.168.1.100:80 rr",
        "  -> 10.0.0.1:80                  Tunnel  ipip          1      0          0         "]


@pytest.mark.parametrize("value,exact,text", [
    (99_999_999, False, " 99999999"), (123_456_789, False, "  123456K"),
    (12_345_678_901, False, "   12345M"), (5, True, "        5"),
    (12_345_678_901, True, " 12345678901")])
def test_largenum(value, exact, text):
    assert layouts.largenum(value, exact) == text


def test_connection_header():
    assert layouts.render_connections([], 0) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n")


def test_timeout_line():
    assert layouts.render_timeout(ConnectionTable().timeouts) == \
        "Timeout (tcp tcpfin udp): 900 120 300\n"


def test_save_layout():
    web = _service(sched="wlc", servers=[("10.0.0.2", 3)], forward="nat")
    web.persistence_timeout, web.persistence_netmask = 360, "255.255.255.0"
    web.port = 443
    web.real_servers[0].port = 443
    services = [_service(servers=[("10.0.0.1", 1)]), web,
                _service(sched="sh", flags=("sh-port",), servers=[("10.0.0.3", 2)],
                         forward="tun", port=8080)]
    assert layouts.render_save(services, layouts.Names(True)) == (
        "-A -t 192.168.1.100:80 -s rr\n"
        "-a -t 192.168.1.100:80 -r 10.0.0.1:80 -g -w 1\n"
        "-A -t 192.168.1.100:443 -s wlc -p 360 -M 255.255.255.0\n"
        "-a -t 192.168.1.100:443 -r 10.0.0.2:443 -m -w 3\n"
        "-A -t 192.168.1.100:8080 -s sh -b sh-port\n"
        "-a -t 192.168.1.100:8080 -r 10.0.0.3:8080 -i -w 2 --tun-type ipip\n")


def test_names_are_the_callers_and_fall_back_to_numbers():
    names = layouts.Names(False, {"192.0.2.77": "rs1.example"}, {"80/tcp": "http"})
    assert names.endpoint("192.0.2.77", 80, "tcp") == "rs1.example:http"
    assert names.endpoint("192.0.2.78", 80, "udp") == "192.0.2.78:80"
    assert layouts.Names(True, {"192.0.2.77": "rs1.example"}).endpoint(
        "192.0.2.77", 80, "tcp") == "192.0.2.77:80"

"""ipvsadm 1.31 layouts, byte for byte (reference §2), and its list-command option rules."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm import ipvsadm
from pylvs.core.model import RealServer, VirtualService


def _service(proto="tcp", addr="192.168.1.100", port=80, sched="rr", servers=(), flags=()):
    service = VirtualService(proto, addr, port, schedulers.get(sched)(flags))
    for address, weight in servers:
        service.add_real_server(RealServer(address, port, weight=weight))
    return service


def test_parse_service_and_server_options():
    command = ipvsadm.parse(["-A", "-t", "192.0.2.1:80", "-s", "sh", "-b", "sh-port,sh-fallback",
                             "-p", "-M", "255.255.255.0"])
    assert (command.name, command.service, command.scheduler) == (
        "add-service", ("tcp", "192.0.2.1", 80), "sh")
    assert (command.persistent, command.netmask, command.sched_flags) == (
        360, "255.255.255.0", ("sh-port", "sh-fallback"))
    command = ipvsadm.parse(["-e", "-u192.0.2.1:53", "-r", "10.0.0.1:5353", "-m", "-w", "0",
                             "-x", "10", "-y", "5"])
    assert (command.service, command.server, command.forward) == (
        ("udp", "192.0.2.1", 53), ("10.0.0.1", 5353), "nat")
    assert (command.weight, command.u_threshold, command.l_threshold) == (0, 10, 5)
    assert ipvsadm.parse(["--set", "0", "60", "30"]).timeouts == (0, 60, 30)
    assert ipvsadm.parse(["-Ln", "--sort"]).options == {"numeric"}


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
    (["-Ln", "-q"], "-q: unknown option"),
    (["--start-daemon", "primary"], "illegal start-daemon parameter specified"),
    (["--stop-daemon", "primary"], "illegal start_daemon specified"),  # sic, as ipvsadm
    (["--start-daemon", "master", "--syncid", "256"], "illegal syncid specified"),
    (["--start-daemon", "master", "--mcast-port", "0"], "illegal mcast-port specified"),
    (["--start-daemon", "master", "--mcast-ttl", "256"], "illegal mcast-ttl specified"),
    (["--start-daemon", "master", "--sync-maxlen", "65508"], "illegal sync-maxlen specified"),
    (["--start-daemon", "master", "--mcast-group", "10.0.0.1"],
     "invalid IPv4 mcast-group `10.0.0.1'"),
    (["--start-daemon", "master", "--mcast-group", "2001:db8::1"],
     "invalid IPv6 mcast-group `2001:db8::1'"),
    (["--start-daemon", "master", "--mcast-group", "ff02::1%eth0"],
     "invalid IPv6 mcast-group `ff02::1%eth0'"),
    (["--stop-daemon", "master", "--mcast-group", "224.0.0.81"],
     "Illegal 'mcast-group' option with the 'stop-daemon' command"),
    (["--start-daemon", "master", "-w", "1"],
     "Illegal 'weight' option with the 'start-daemon' command"),
    (["-Ln", "-t", "1.2.3:80"], "illegal virtual server address[:port] specified"),
    (["-A", "-t", "1.2.3.4:80", "-w", "3"],
     "Illegal 'weight' option with the 'add-service' command"),
    (["-a", "-t", "1.2.3.4:80"],
     "You need to supply the 'real-server' option for the 'add-server' command"),
    (["-a", "-t", "1.2.3.4:80", "-r", "10.0.0.1", "-w", "1", "-w", "2"],
     "multiple 'weight' options specified"),
    (["-a", "-t", "1.2.3.4:80", "-r", "10.0.0.1", "-w", "70000"], "illegal weight specified"),
    (["-a", "-t", "1.2.3.4:80", "-r", "10.0.0.x"],
     "illegal real server address[:port] specified"),
    (["-A", "-t", "1.2.3.4:80", "-p", "0"], "illegal timeout for persistent service"),
    (["-A", "-t", "1.2.3.4"], "Zero port specified for non-persistent service"),
    (["-L", "-c", "-t", "1.2.3.4:80"],
     "The option 'service-address' conflicts with the 'connection' option in the 'list' "
     "command"),
    (["-Lc", "--rate"], "options conflicts in the list command"),
    (["--set", "900", "120"], "--set option requires 3 timeout values"),
    (["-S", "-c"], "Illegal 'connection' option with the 'save' command"),
    (["-D", "-t", "1.2.3.4:80", "-s", "rr"],
     "Illegal 'scheduler' option with the 'delete-service' command"),
    (["-C", "extra"], "unexpected argument extra"),
    (["-L", "-f", "0"], "invalid fwmark value `0' specified"),
])
def test_usage_errors(argv, message):
    with pytest.raises(ipvsadm.UsageError) as info:
        ipvsadm.parse(argv)
    assert message in str(info.value)


def test_daemon_commands_carry_their_state_interface_and_syncid():
    command = ipvsadm.parse(["--start-daemon", "backup", "--mcast-interface", "eth1",
                             "--syncid", "7"])
    assert (command.name, command.daemon_state, command.mcast_interface, command.syncid) == (
        "start-daemon", "backup", "eth1", 7)
    assert ipvsadm.parse(["-L", "--daemon"]).options == {"daemon"}
    assert ipvsadm.parse(["--stop-daemon", "master"]).daemon_state == "master"


def test_daemon_transport_options_as_ipvsadm_checks_them():
    """ipvsadm 1.31's --mcast-group (a ':' makes it IPv6: ff00::/8, else 224.0.0.0/4),
    --mcast-port 1..65535, --mcast-ttl 1..255, --sync-maxlen 1..65535-20-8; the group in
    inet_ntop's text."""
    command = ipvsadm.parse(["--start-daemon", "master", "--mcast-group", "FF02:0::8848",
                             "--mcast-port", "9000", "--mcast-ttl", "2", "--sync-maxlen",
                             "65507"])
    assert (command.mcast_group, command.mcast_port, command.mcast_ttl, command.sync_maxlen) == (
        "ff02::8848", 9000, 2, 65507)
    assert ipvsadm.parse(["--start-daemon", "backup", "--mcast-group", "239.1.2.3"]
                         ).mcast_group == "239.1.2.3"
    assert ipvsadm.parse(["--start-daemon", "backup"]).mcast_group is None

"""ipvsadm commands against a director: ip_vs_ctl's semantics, libipvs's error texts, ipvsadm's
defaults and gotchas, -S/-R round trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from forwarders import NextHop
from pylvs.adm import commands
from pylvs.adm.ruleset import from_ipvsadm
from pylvs.core.director import Director
from pylvs.core.model import RealServer, ip_to_int
from pylvs.core.packet import Flow

VIP = "192.0.2.100"


def adm(director: Director, line: str) -> tuple[int, str, str]:
    return commands.adm(director, line.split(), 0.0)


def ok(director: Director, *lines: str) -> None:
    for line in lines:
        rc, _, err = adm(director, line)
        assert rc == 0, (line, err)


def dests(director: Director) -> list[str]:
    return [line for line in adm(director, "-Ln")[1].splitlines() if line.startswith("  -> ")
            and "RemoteAddress" not in line]


def test_add_edit_delete_with_ipvsadm_defaults():
    director = Director([])
    ok(director, f"-A -t {VIP}:80", f"-a -t {VIP}:80 -r 10.0.0.1:8080")
    assert adm(director, "-Ln")[1].splitlines()[3] == f"TCP  {VIP}:80 wlc"
    assert dests(director) == ["  -> 10.0.0.1:80                  Route   1      0          0  "
                               "       "]  # -g forces the service port
    ok(director, f"-a -t {VIP}:80 -r 10.0.0.2 -m -w 3 -x 10 -y 5")
    ok(director, f"-e -t {VIP}:80 -r 10.0.0.2 -w 2")  # the gotcha: back to DR, thresholds 0
    assert dests(director)[1].split()[1:4] == ["10.0.0.2:80", "Route", "2"]
    assert director.services[(6, ip_to_int(VIP), 80)].real_servers[0].upper_threshold == 0
    # a NAT server on another port is out of reach of an edit without -m (port forced to 80)
    ok(director, f"-a -t {VIP}:80 -r 10.0.0.3:8080 -m")
    assert adm(director, f"-e -t {VIP}:80 -r 10.0.0.3:8080 -w 2")[2] == "No such destination\n"
    ok(director, f"-d -t {VIP}:80 -r 10.0.0.3:8080")  # -d forces no port (ipvsadm.c: -a/-e only)
    assert [d.split()[1] for d in dests(director)] == ["10.0.0.1:80", "10.0.0.2:80"]
    ok(director, f"-E -t {VIP}:80 -s rr -p 60", f"-E -t {VIP}:80")
    assert adm(director, "-Ln")[1].splitlines()[3] == f"TCP  {VIP}:80 wlc"
    ok(director, f"-d -t {VIP}:80 -r 10.0.0.1", f"-D -t {VIP}:80")
    assert adm(director, "-Ln")[1].splitlines()[3:] == []


def test_director_errors_exit_255_with_libipvs_texts():
    director = Director([])
    ok(director, f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r 10.0.0.1")
    for line, text in [(f"-A -t {VIP}:80", "Service already exists"),
                       (f"-E -t {VIP}:81", "No such service"),
                       (f"-D -t {VIP}:81", "No such service"),
                       (f"-a -t {VIP}:81 -r 10.0.0.1", "Service not defined"),
                       (f"-a -t {VIP}:80 -r 10.0.0.1", "Destination already exists"),
                       (f"-e -t {VIP}:80 -r 10.0.0.9", "No such destination"),
                       (f"-d -t {VIP}:80 -r 10.0.0.9", "No such destination"),
                       (f"-A -t {VIP}:81 -s nosuch", "Scheduler or persistence engine not found"),
                       (f"-L -t {VIP}:81", "No such service"),
                       (f"-Z -t {VIP}:81", "No such service")]:
        assert adm(director, line) == (255, "", text + "\n"), line
    assert adm(director, f"-A -t {VIP}:82 -s rr -b sh-port") == (
        2, "", "incompatible scheduler flag\n")


def test_set_changes_timeouts_and_zero_clears_counters():
    director = Director([])
    ok(director, "--set 600 0 30")
    assert adm(director, "-L --timeout")[1] == "Timeout (tcp tcpfin udp): 600 120 30\n"
    ok(director, f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r 10.0.0.1")
    (service,) = director.services.values()
    service.stats.conns = service.real_servers[0].stats.inbytes = 9
    ok(director, "-Z")
    assert service.stats.conns == 0 and service.real_servers[0].stats.inbytes == 0


def _connect(director: Director, sport: int) -> None:
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="203.0.113.5", dst=VIP) / TCP(sport=sport, dport=80, flags="S"))
    assert director.handle(bytearray(frame), 0.0) is not None


def test_quiesced_server_keeps_connections_deleted_one_loses_them_others_untouched():
    director = Director([])
    ok(director, f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r 10.0.0.1",
       f"-a -t {VIP}:80 -r 10.0.0.2")
    for ip in ("10.0.0.1", "10.0.0.2"):
        director.set_hop(ip_to_int(ip), NextHop(bytes(6), bytes(6), "eth0"))
    for port in range(40000, 40004):
        _connect(director, port)
    ok(director, f"-e -t {VIP}:80 -r 10.0.0.2 -w 0")
    by_server = sorted(conn.server.address for conn in director.table)
    assert by_server == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]
    ok(director, f"-d -t {VIP}:80 -r 10.0.0.1")
    assert [conn.server.address for conn in director.table] == ["10.0.0.2", "10.0.0.2"]
    assert director.counters["nodest_expired"] == 2
    ok(director, f"-a -t {VIP}:80 -r 10.0.0.3")
    assert len(director.table) == 2


rule_sets = st.lists(st.tuples(
    st.sampled_from(["-t", "-u"]), st.integers(1, 3), st.sampled_from(["rr", "wrr", "sh", "mh"]),
    st.sampled_from(["", "-p", "-p 60", "-p 600 -M 255.255.255.0"]),
    st.lists(st.tuples(st.integers(1, 9), st.sampled_from(["-g", "-m", "-i"]),
                       st.integers(0, 9), st.integers(1, 65535)), max_size=4,
             unique_by=lambda t: t[0])), max_size=4, unique_by=lambda t: (t[0], t[1]))


@settings(max_examples=60, deadline=None)
@given(rule_sets)
def test_save_then_restore_reproduces_the_table(services):
    director = Director([])
    for flag, port, sched, persistent, servers in services:
        ok(director, f"-A {flag} {VIP}:{port} -s {sched} {persistent}".strip())
        for host, method, weight, rport in servers:
            ok(director, f"-a {flag} {VIP}:{port} -r 10.0.0.{host}:{rport} {method} -w {weight}")
    saved = adm(director, "-S -n")[1]
    restored = Director(from_ipvsadm(saved))
    for view in ("-Ln", "-S -n"):  # kernel (--nosort) order is not part of a saved rule set
        assert adm(restored, view) == adm(director, view), view


def test_a_refused_add_leaves_the_table_as_it_was():
    """mh has 4093 slots: a 4094th server is EINVAL in IPVS (ip_vs_mh_reassign). pylvs refuses
    the whole command, as every control-plane command is atomic: the list, the listing and the
    scheduler's table stay as they were."""
    director = Director([])
    ok(director, f"-A -t {VIP}:80 -s mh")
    service = director.services[(6, ip_to_int(VIP), 80)]
    service.real_servers = [RealServer(f"10.0.{i // 256}.{i % 256}", 80) for i in range(4093)]
    service.scheduler.update(service.real_servers)  # a full table at once (-a 4093 times is slow)
    listing = adm(director, "-Ln")[1]
    flows = [Flow(6, ip_to_int(f"203.0.113.{i}"), ip_to_int(VIP), 1024 + i, 80, 34, 0x02, 64, 40)
             for i in range(1, 50)]
    picks = [service.scheduler.pick(service.real_servers, f) for f in flows]
    assert adm(director, f"-a -t {VIP}:80 -r 10.99.0.1") == (  # ipvs_strerror(EINVAL)
        255, "", "Invalid operation.  Possibly wrong module version, address not unicast, ...\n")
    assert len(service.real_servers) == 4093
    assert adm(director, "-Ln")[1] == listing
    assert [service.scheduler.pick(service.real_servers, f) for f in flows] == picks


def test_one_packet_scheduling_is_listed_saved_and_udp_only():
    director = Director([])
    ok(director, f"-A -u {VIP}:53 -s rr -o", f"-a -u {VIP}:53 -r 10.0.0.1")
    assert adm(director, "-Ln")[1].splitlines()[3] == f"UDP  {VIP}:53 rr ops"
    assert adm(director, "-S -n")[1].splitlines()[0] == f"-A -u {VIP}:53 -s rr -o"
    assert adm(director, f"-A -t {VIP}:80 -o") == (
        2, "", "One-Packet Scheduling is only for UDP virtual services\n")
    ok(director, f"-E -u {VIP}:53 -s rr")  # -E without -o drops it, as ipvsadm's
    assert adm(director, "-Ln")[1].splitlines()[3] == f"UDP  {VIP}:53 rr"

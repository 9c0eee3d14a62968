"""pylvs adm for IPv6, as ipvsadm 1.31 (ipvsadm.c, libipvs) and ip_vs_ctl.c do it: the
``[addr]:port`` syntax and its quirks, -6, -M as a prefix length, a real server of the other
family only with tunnelling, and the listings' IPv6 cells, order and overflow."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedulers
from pylvs.adm import commands, ipvsadm, layouts, listing, ruleset
from pylvs.adm.ipvsadm import Command, DirectorError, UsageError
from pylvs.core import model
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService

VIP6 = "2001:db8::100"
INVALID = "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"
MIXED = "Different address family is allowed only for tunneling servers\n"
HEAD = ("IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def adm(director: Director, line: str) -> tuple[int, str, str]:
    return commands.adm(director, line.split(), 0.0)


def ok(director: Director, *lines: str) -> None:
    for line in lines:
        rc, _, err = adm(director, line)
        assert rc == 0, (line, err)


def refused(argv: list[str]) -> str:
    with pytest.raises(UsageError) as info:
        ipvsadm.parse(argv)
    return str(info.value)


# -- parse_service: the address syntax ---------------------------------------------------------

@pytest.mark.parametrize("text,service", [
    ("[2001:db8::100]:80", ("tcp", "2001:db8::100", 80)),
    ("[2001:DB8:0:0:0:0:0:0100]:443", ("tcp", "2001:db8::100", 443)),  # canonical text
    ("[::ffff:192.0.2.1]:80", ("tcp", "::ffff:192.0.2.1", 80)),
    # unbracketed, inet_pton(AF_INET6) reads it all: an address without a port
    ("2001:db8::100", ("tcp", "2001:db8::100", 0)),
    ("2001:db8::1:80", ("tcp", "2001:db8::1:80", 0)),
    # after a bracket that holds no IPv6, strrchr(':') looks inside it: the port is lost
    ("[192.0.2.1]:80", ("tcp", "192.0.2.1", 0)),
])
def test_service_addresses_as_parse_service_reads_them(text, service):
    assert ipvsadm.parse(["-L", "-t", text]).service == service


@pytest.mark.parametrize("text", [
    "[2001:db8::100]",        # ']' must be followed by ':'
    "[2001:db8::100]:",       # an empty port is no number
    "[2001:db8::100]80",
    "[2001:db8::100:80",      # no closing bracket
    "[fe80::1%eth0]:80",      # inet_pton takes no zone
    "[2001:db8::100]:65536",
    "[2001:db8::100]:http",   # no services database here: numbers only
    "2001:db8::1:http",       # not IPv6, and 2001:db8::1 is no IPv4 host
    "[2001:db8::zz]:80",
    "8080",                   # str_is_digit
])
def test_malformed_ipv6_is_ipvsadms_illegal_address(text):
    assert refused(["-A", "-t", text]) == "illegal virtual server address[:port] specified"
    assert refused(["-a", "-t", f"[{VIP6}]:80", "-r", text]) == (
        "illegal real server address[:port] specified")


def test_unbracketed_ipv6_has_no_port_so_needs_persistence():
    assert refused(["-A", "-t", "2001:db8::1:80"]) == (
        "Zero port specified for non-persistent service")
    director = Director([])
    assert adm(director, "-A -t 2001:db8::1:80 -p")[0] == 0
    assert "TCP  [2001:db8::1:80]:0 wlc persistent 360" in adm(director, "-Ln")[1]


def test_a_real_server_without_port_takes_the_services_and_dr_forces_it():
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80", f"-a -t [{VIP6}]:80 -r 2001:db8::10",
       f"-a -t [{VIP6}]:80 -r [2001:db8::11]:8080",  # -g: ipvsadm sets the service's port
       f"-a -t [{VIP6}]:80 -r [2001:db8::12]:8080 -m")
    service = director.services[VirtualService("tcp", VIP6, 80, schedulers.get("rr")()).key]
    assert sorted(rs.endpoint for rs in service.real_servers) == [
        "[2001:db8::10]:80", "[2001:db8::11]:80", "[2001:db8::12]:8080"]
    ok(director, f"-d -t [{VIP6}]:80 -r [2001:db8::12]:8080")
    assert adm(director, f"-d -t [{VIP6}]:80 -r [2001:db8::12]:8080") == (
        255, "", "No such destination\n")


def test_ipv6_and_ipv4_services_are_distinct_even_for_the_same_integer():
    """::1.2.3.4 (an IPv6 address) and 1.2.3.4 share their low 32 bits, as IPVS's keys
    (af, proto, addr, port) keep them apart."""
    director = Director([])
    ok(director, "-A -t 1.2.3.4:80", "-A -t [::1.2.3.4]:80")
    assert adm(director, "-A -t [::1.2.3.4]:80") == (255, "", "Service already exists\n")
    ok(director, "-D -t 1.2.3.4:80")
    assert adm(director, "-Ln")[1] == HEAD + "TCP  [::1.2.3.4]:80 wlc\n"


# -- -6: only after -f ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["-A", "-t", f"[{VIP6}]:80", "-6"], ["-A", "-6", "-t", f"[{VIP6}]:80"], ["-L", "-n", "-6"],
    ["-A", "--ipv6", "-f", "1"], ["-A", "-6", "-f", "1"]])
def test_dash_6_before_f_is_ipvsadms_error_with_its_own_newline(argv):
    """fail(2, "-6 used before -f\\n") and fail() adds a newline: a blank line, exit 2."""
    assert refused(argv) == "-6 used before -f\n"
    assert commands.adm(Director([]), argv, 0.0) == (2, "", "-6 used before -f\n\n")


def test_dash_6_after_f_makes_the_fwmark_service_ipv6():
    assert ipvsadm.parse(["-A", "-f", "1", "-6"]).af == model.AF_INET6
    assert ipvsadm.parse(["-A", "-f", "1"]).af == model.AF_INET
    # -6 is no option of the table: it may repeat
    assert ipvsadm.parse(["-A", "-f", "1", "-6", "-6"]).af == model.AF_INET6


# -- -M ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask,prefix", [
    ("64", "64"), ("1", "1"), ("128", "128"), ("064", "64"), (" +48", "48"),
    ("64abc", "64"),          # atoi stops at the first non-digit
    ("4294967360", "64"),     # (int) strtol keeps the low 32 bits: 2^32 + 64
])
def test_ipv6_netmask_is_a_prefix_as_atoi_reads_it(mask, prefix):
    command = ipvsadm.parse(["-A", "-t", f"[{VIP6}]:80", "-p", "-M", mask])
    assert command.netmask == prefix


@pytest.mark.parametrize("mask", ["0", "129", "-1", "abc", "/64", "255.255.255.0", ""])
def test_ipv6_netmask_out_of_1_to_128_is_refused(mask):
    assert refused(["-A", "-t", f"[{VIP6}]:80", "-p", "-M", mask]) == (
        "illegal ipv6 netmask specified")


def test_netmask_before_an_ipv6_service_is_read_as_ipv4_then_reset_to_128():
    """popt reads -M before -t knows the family: parse_netmask (inet_aton) then, and
    parse_service sets 128 for the IPv6 address after it."""
    assert ipvsadm.parse(["-A", "-M", "64", "-t", f"[{VIP6}]:80", "-p"]).netmask is None
    assert ipvsadm.parse(["-A", "-M", "0x40", "-t", f"[{VIP6}]:80", "-p"]).netmask is None
    assert refused(["-A", "-M", "mask", "-t", f"[{VIP6}]:80", "-p"]) == (
        "illegal virtual server persistent mask specified")
    director = Director([])
    ok(director, f"-A -M 255.255.255.0 -t [{VIP6}]:80 -p")
    assert adm(director, "-Sn")[1] == f"-A -t [{VIP6}]:80 -s wlc -p 360\n"


def test_ipv4_netmask_error_is_ipvsadms_text():
    assert refused(["-A", "-t", "192.0.2.1:80", "-p", "-M", "255.255.x.0"]) == (
        "illegal virtual server persistent mask specified")


def test_mask_is_listed_and_saved_only_when_not_128():
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80 -s rr -p 300 -M 64", f"-A -t [{VIP6}]:81 -s rr -p -M 128",
       f"-A -t [{VIP6}]:82 -s rr -M 64")  # a mask without -p is kept, and not shown
    assert adm(director, "-Ln")[1] == HEAD + (
        f"TCP  [{VIP6}]:80 rr persistent 300 mask 64\n"
        f"TCP  [{VIP6}]:81 rr persistent 360\n"
        f"TCP  [{VIP6}]:82 rr\n")
    assert adm(director, "-Sn")[1] == (
        f"-A -t [{VIP6}]:80 -s rr -p 300 -M 64\n"
        f"-A -t [{VIP6}]:81 -s rr -p 360\n"
        f"-A -t [{VIP6}]:82 -s rr\n")
    ok(director, f"-E -t [{VIP6}]:80 -s rr -p 300")  # -E without -M: back to 128
    assert adm(director, "-Sn")[1].splitlines()[0] == f"-A -t [{VIP6}]:80 -s rr -p 300"


def test_the_kernel_refuses_an_ipv6_prefix_out_of_range():
    """ip_vs_add_service / ip_vs_edit_service: EINVAL, which ipvsadm never lets through but a
    command made another way might."""
    director = Director([])
    command = Command("add-service", {"service-address", "persistent", "netmask"},
                      ("tcp", VIP6, 80), persistent=60, netmask="0")
    with pytest.raises(DirectorError, match="Invalid operation"):
        commands.run(director, command, 0.0)
    assert not director.services


# -- a real server of the other family -----------------------------------------------------------

@pytest.mark.parametrize("service,server", [
    (f"[{VIP6}]:80", "192.0.2.10"), ("192.0.2.1:80", "[2001:db8::10]:80")])
@pytest.mark.parametrize("method", ["", "-g", "-m"])
def test_other_family_only_with_tunnelling(service, server, method):
    """ipvsadm.c checks dest af against svc af for -a/-e before asking the kernel."""
    director = Director([])
    ok(director, f"-A -t {service}")
    assert adm(director, f"-a -t {service} -r {server} {method}") == (2, "", MIXED)
    ok(director, f"-a -t {service} -r {server} -i")
    assert adm(director, f"-e -t {service} -r {server} {method} -w 3") == (2, "", MIXED)
    ok(director, f"-e -t {service} -r {server} -i -w 3", f"-d -t {service} -r {server}")


def test_the_kernel_refuses_the_other_family_without_tunnelling_too():
    """ip_vs_genl_set_cmd: udest.af != svc->af and conn_flags != IP_VS_CONN_F_TUNNEL: EINVAL,
    checked before the destination is looked up (so before "No such destination")."""
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80", f"-a -t [{VIP6}]:80 -r 192.0.2.10 -i")
    for name, forward in (("add-server", "dr"), ("edit-server", "nat"), ("edit-server", "dr")):
        command = Command(name, {"service-address", "real-server"}, ("tcp", VIP6, 80),
                          server=("192.0.2.10", None), forward=forward)
        with pytest.raises(DirectorError) as info:
            commands.run(director, command, 0.0)
        assert f"{info.value}\n" == INVALID
    command = Command("edit-server", {"service-address", "real-server"}, ("tcp", VIP6, 80),
                      server=("192.0.2.99", None), forward="nat")
    with pytest.raises(DirectorError, match="Invalid operation"):
        commands.run(director, command, 0.0)
    [server] = next(iter(director.services.values())).real_servers
    assert server.forward == "tun"
    assert commands.mixed_family_dests(director) == 1


@pytest.mark.parametrize("address", ["fe80::1", "febf::1", "ff02::1", "::", "::ffff:192.0.2.1"])
def test_an_ipv6_real_server_must_be_unicast_and_not_link_local(address):
    """ip_vs_new_dest: !(ipv6_addr_type & IPV6_ADDR_UNICAST) or IPV6_ADDR_LINKLOCAL → EINVAL."""
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80")
    assert adm(director, f"-a -t [{VIP6}]:80 -r [{address}]:80") == (255, "", INVALID)
    assert adm(director, "-Sn")[1] == f"-A -t [{VIP6}]:80 -s wlc\n"


@pytest.mark.parametrize("address", ["::1", "fec0::1", "fd00::1", "::192.0.2.1", "2001:db8::1"])
def test_other_ipv6_real_servers_are_unicast(address):
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80", f"-a -t [{VIP6}]:80 -r [{address}]:80")


# -- listings ------------------------------------------------------------------------------------

def _mixed() -> Director:
    director = Director([])
    ok(director,
       f"-A -t [{VIP6}]:80 -s rr",
       f"-a -t [{VIP6}]:80 -r [2001:db8::10]:80 -w 3",
       f"-a -t [{VIP6}]:80 -r 198.51.100.7 -i",
       "-A -u 192.0.2.1:53 -s rr",
       "-a -u 192.0.2.1:53 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:53 -i",
       "-A -t [2001:db8::200]:8080 -s wlc",
       "-a -t [2001:db8::200]:8080 -r [2001:db8::20]:9090 -m -w 100")
    return director


def test_ln_ipv6_cells_overflow_their_columns():
    """print_service_entry: %-28s for the real server, never cut for IPv6 (dname[28] only for
    another family), so a long one pushes the columns right by a single space."""
    assert adm(_mixed(), "-Ln")[1] == HEAD + (
        "UDP  192.0.2.1:53 rr\n"
        "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:53 Tunnel  1      0          0         \n"
        f"TCP  [{VIP6}]:80 rr\n"
        "  -> 198.51.100.7:80              Tunnel  1      0          0         \n"
        "  -> [2001:db8::10]:80            Route   3      0          0         \n"
        "TCP  [2001:db8::200]:8080 wlc\n"
        "  -> [2001:db8::20]:9090          Masq    100    0          0         \n")


def test_other_layouts_with_ipv6():
    director = _mixed()
    stats = adm(director, "-Ln --stats")[1].splitlines()
    assert stats[3] == "UDP  192.0.2.1:53" + " " * 16 + "        0" * 5
    assert stats[4] == ("  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:53" + "        0" * 5)
    assert stats[5] == f"{f'TCP  [{VIP6}]:80':<33}" + "        0" * 5
    rate = adm(director, "-Ln --rate")[1].splitlines()
    assert rate[4] == ("  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:53        0        0        0"
                       + "        0" * 2)
    assert adm(director, "-Ln --thresholds")[1].splitlines()[4] == (
        "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:53 0          0          0          0"
        "         ")
    assert adm(director, "-Ln --persistent-conn")[1].splitlines()[7] == (
        "  -> [2001:db8::10]:80            3         0           0          0         ")
    assert adm(director, "-Ln --tun-info")[1].splitlines()[4] == (
        "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:53 Tunnel  ipip          1      0     "
        "     0         ")
    assert adm(director, f"-L -n -t [{VIP6}]:80")[1] == HEAD.split("\n", 1)[1] + (
        f"TCP  [{VIP6}]:80 rr\n"
        "  -> 198.51.100.7:80              Tunnel  1      0          0         \n"
        "  -> [2001:db8::10]:80            Route   3      0          0         \n")
    assert adm(director, "-L -n -t [2001:db8::1]:80") == (255, "", "No such service\n")


def test_save_writes_brackets_and_tunnel_options():
    assert adm(_mixed(), "-Sn")[1] == (
        "-A -u 192.0.2.1:53 -s rr\n"
        "-a -u 192.0.2.1:53 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:53 -i -w 1 "
        "--tun-type ipip\n"
        f"-A -t [{VIP6}]:80 -s rr\n"
        f"-a -t [{VIP6}]:80 -r 198.51.100.7:80 -i -w 1 --tun-type ipip\n"
        f"-a -t [{VIP6}]:80 -r [2001:db8::10]:80 -g -w 3\n"
        "-A -t [2001:db8::200]:8080 -s wlc\n"
        "-a -t [2001:db8::200]:8080 -r [2001:db8::20]:9090 -m -w 100\n")


def test_services_sort_ipv4_before_ipv6_then_protocol():
    """ipvs_cmp_services: fwmark, af (AF_INET 2 < AF_INET6 10), protocol, address, port: an
    IPv4 UDP service before an IPv6 TCP one."""
    director = Director([])
    ok(director, f"-A -u [{VIP6}]:53", f"-A -t [{VIP6}]:80", "-A -u 192.0.2.1:53",
       "-A -t 192.0.2.1:80", f"-A -t [{VIP6}]:22")
    assert [line.split()[1] for line in adm(director, "-Sn")[1].splitlines()] == [
        "-t", "-u", "-t", "-t", "-u"]
    assert [line.split()[2] for line in adm(director, "-Sn")[1].splitlines()] == [
        "192.0.2.1:80", "192.0.2.1:53", f"[{VIP6}]:22", f"[{VIP6}]:80", f"[{VIP6}]:53"]
    assert adm(director, "-Ln --nosort")[1].splitlines()[3].startswith(f"UDP  [{VIP6}]:53")


def test_sorting_keeps_libipvs_int_wraparound():
    """ipvs_cmp_services/ipvs_cmp_dests subtract two u32 words into an int: a difference of
    2^31 or more is negative, so 192.168.1.1 sorts before 10.0.0.1 and, in IPv6, a word
    0xaaaabbbb before 0 (for a list whose order the comparison decides consistently)."""
    director = Director([])
    ok(director, "-A -t 10.0.0.1:80", "-A -t 192.168.1.1:80", "-A -t 10.0.0.2:80",
       "-A -t [2001:db8::1]:80", "-A -t [2001:db8:aaaa:bbbb::1]:80",
       "-a -t 10.0.0.1:80 -r 10.1.1.1", "-a -t 10.0.0.1:80 -r 172.16.0.1",
       "-a -t 10.0.0.1:80 -r 192.168.7.7")
    saved = adm(director, "-Sn")[1].splitlines()
    assert [line.split()[2] for line in saved if line.startswith("-A")] == [
        "192.168.1.1:80", "10.0.0.1:80", "10.0.0.2:80",
        "[2001:db8:aaaa:bbbb::1]:80", "[2001:db8::1]:80"]
    assert [line.split()[4] for line in saved if line.startswith("-a")] == [
        "172.16.0.1:80", "192.168.7.7:80", "10.1.1.1:80"]


def test_dests_of_both_families_sort_as_the_first_ones_family_reads_them():
    """ipvs_cmp_dests compares all four words when the first entry is IPv6, only the first
    word (the IPv4 address, or an IPv6 one's top 32 bits) when it is IPv4, each difference
    wrapping as an int: 0xc6336407 - 0x20010db8 is negative, 0x0a000001 - 0xc6336407 not."""
    service = VirtualService("tcp", VIP6, 80, schedulers.get("rr")())
    for address in ("2001:db8::10", "198.51.100.7", "10.0.0.1", "2001:db8::9"):
        service.add_real_server(RealServer(address, 80, forward="tun"))
    assert [d.address for d in layouts._dests(service, set())] == [
        "198.51.100.7", "10.0.0.1", "2001:db8::9", "2001:db8::10"]


def test_ipv4_names_are_cut_ipv6_names_overflow():
    """svc_name[33] and dname[28] for IPv4 only; every name is at most 59 characters
    (addrport_to_anyname's 60-byte buffer), brackets around an IPv6 host's name too."""
    long_name = "a-rather-long-host-name.example.org"
    service4 = VirtualService("tcp", "192.0.2.1", 80, schedulers.get("rr")())
    service4.add_real_server(RealServer("2001:db8::10", 80, forward="tun"))
    service6 = VirtualService("tcp", VIP6, 80, schedulers.get("rr")())
    service6.add_real_server(RealServer("192.0.2.10", 80, forward="tun"))
    names = layouts.Names(False, {"192.0.2.1": long_name, VIP6: long_name,
                                  "192.0.2.10": long_name, "2001:db8::10": long_name * 2},
                          {"80/tcp": "http"})
    text = layouts.render_services([service4, service6], ipvsadm.parse(["-L"]), names)
    assert text.splitlines()[3:] == [
        "TCP  a-rather-long-host-name.exam rr",  # 33, then the scheduler
        "  -> [" + (long_name * 2)[:58] + " Tunnel  1      0          0         ",  # 59
        f"TCP  [{long_name}]:http rr",
        "  -> a-rather-long-host-name.exam Tunnel  1      0          0         "]  # 28
    assert layouts.render_save([service6], names).splitlines() == [  # -S: only the 59
        f"-A -t [{long_name}]:http -s rr",
        f"-a -t [{long_name}]:http -r {long_name}:http -i -w 1 --tun-type ipip"]


def test_addresses_are_printed_as_inet_ntop_prints_them():
    director = Director([])
    ok(director, "-A -t [::ffff:192.0.2.1]:80", "-A -t [0:0:0:0:0:0:c000:201]:80",
       "-A -t [2001:0:0:1:0:0:0:1]:80", "-A -t [2001:db8:0:1:1:1:1:1]:80")
    assert adm(director, "-Sn")[1] == (
        "-A -t [::192.0.2.1]:80 -s wlc\n"
        "-A -t [::ffff:192.0.2.1]:80 -s wlc\n"
        "-A -t [2001:0:0:1::1]:80 -s wlc\n"
        "-A -t [2001:db8:0:1:1:1:1:1]:80 -s wlc\n")


def test_list_conflicts_as_ipvsadm_checks_them():
    assert refused(["-L", "--timeout", "--persistent-conn"]) == (
        "options conflicts in the list command")
    assert refused(["-L", "--daemon", "--stats"]) == "options conflicts in the list command"
    assert ipvsadm.parse(["-Lnc", "--persistent-conn"]).options == {
        "numeric", "connection", "persistent-conn"}


def test_lnc_persistent_conn_rows_stay_narrow_without_a_persistence_engine():
    """print_conn takes the wide row only for /proc lines of 11 fields (PEName PEData), which
    the kernel writes only for a connection with a persistence engine."""
    class Row:
        def row(self, now: float) -> str:
            return "TCP 14:59  ESTABLISHED [2001:db8::5]:40000 [2001:db8::100]:80 [2001:db8::10]:80"

    assert layouts.render_connections([Row()], 0.0, True) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination        "
        "pe name          pe_data\n"
        "TCP 14:59  ESTABLISHED [2001:db8::5]:40000 [2001:db8::100]:80 [2001:db8::10]:80\n")


# -- the workers' union and the rule sets ----------------------------------------------------

def test_union_keeps_a_v4_and_a_v6_server_of_one_integer_apart():
    director = Director([])
    ok(director, f"-A -t [{VIP6}]:80", f"-a -t [{VIP6}]:80 -r [::1]:80",
       f"-a -t [{VIP6}]:80 -r 0.0.0.1 -i")
    [service] = director.services.values()
    v6, v4 = sorted(service.real_servers, key=lambda rs: rs.af, reverse=True)
    v6.stats.conns, v4.stats.conns = 5, 7
    [view] = listing.union(director.services.values(), [listing.snapshot(director)] * 2)
    assert sorted((rs.address, rs.stats.conns) for rs in view.real_servers) == [
        ("0.0.0.1", 14), ("::1", 10)]


def test_diff_tells_families_apart_and_restores_ipv6():
    old = ruleset.from_ipvsadm(f"-A -t [{VIP6}]:80 -s rr\n-a -t [{VIP6}]:80 -r [::1]:80 -w 2\n")
    new = ruleset.from_ipvsadm(f"-A -t [{VIP6}]:80 -s rr -p 60 -M 48\n"
                               f"-a -t [{VIP6}]:80 -r 0.0.0.1:80 -i -w 2\n")
    assert ruleset.diff(old, new) == [
        ["-E", "-t", f"[{VIP6}]:80", "-s", "rr", "-p", "60", "-M", "48"],
        ["-d", "-t", f"[{VIP6}]:80", "-r", "[::1]:80"],
        ["-a", "-t", f"[{VIP6}]:80", "-r", "0.0.0.1:80", "-i", "-w", "2"]]
    director = Director(old)
    for argv in ruleset.diff(old, new):
        commands.run(director, ipvsadm.parse(argv), 0.0)
    assert adm(director, "-Sn")[1] == (f"-A -t [{VIP6}]:80 -s rr -p 60 -M 48\n"
                                       f"-a -t [{VIP6}]:80 -r 0.0.0.1:80 -i -w 2 --tun-type ipip\n")
    assert 'persistence_netmask = 48\n' in ruleset.to_toml(new)


def test_restore_errors_name_the_line_without_ipvsadms_extra_newline():
    with pytest.raises(ValueError) as info:
        ruleset.from_ipvsadm(f"-A -t [{VIP6}]:80 -6\n")
    assert str(info.value) == f"line 1: -A -t [{VIP6}]:80 -6: -6 used before -f"
    with pytest.raises(ValueError, match="line 2: .*Different address family"):
        ruleset.from_ipvsadm(f"-A -t [{VIP6}]:80\n-a -t [{VIP6}]:80 -r 10.0.0.1 -m\n")


# -- the C library's address texts, checked against this machine's -----------------------------

ipv6_values = st.one_of(
    st.integers(0, (1 << 128) - 1),
    st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xC000]), min_size=8, max_size=8).map(
        lambda words: int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")))


@settings(max_examples=500, deadline=None)
@given(ipv6_values)
def test_inet_ntop6_is_glibcs(value):
    assert model.inet_ntop6(value) == socket.inet_ntop(socket.AF_INET6,
                                                         value.to_bytes(16, "big"))


def _libc(call, *args) -> bool:
    try:
        call(*args)
    except (OSError, ValueError, UnicodeError):
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.one_of(ipv6_values.map(lambda v: str(ipaddress.IPv6Address(v).exploded)),
                 st.text("0123456789abcdefABCDEF:.% x", max_size=24)))
def test_inet_pton6_accepts_what_glibc_accepts(text):
    assert ipvsadm.inet_pton6(text) == _libc(socket.inet_pton, socket.AF_INET6, text)


@settings(max_examples=500, deadline=None)
@given(st.text("0123456789xXaAfF. \t", max_size=16))
def test_inet_aton_accepts_what_glibc_accepts(text):
    assert ipvsadm.inet_aton(text) == _libc(socket.inet_aton, text)


# -- -S then -R, both families ---------------------------------------------------------------

addresses = st.one_of(
    st.integers(1, 250).map(lambda n: ("4", f"10.0.0.{n}")),
    st.integers(1, (1 << 64) - 1).map(lambda n: ("6", str(ipaddress.IPv6Address(
        (0x20010DB8 << 96) + n)))))
rule_sets = st.lists(st.tuples(
    st.sampled_from(["-t", "-u"]), addresses, st.integers(1, 65535),
    st.sampled_from(["rr", "wrr", "sh", "mh", "wlc"]),
    st.sampled_from(["", "-p", "-p 60", "-p 600 -M {mask}"]),
    st.integers(1, 128), st.sampled_from(["255.255.255.0", "255.255.0.0", "255.0.0.0"]),
    st.lists(st.tuples(addresses, st.sampled_from(["-g", "-m", "-i"]), st.integers(0, 9),
                       st.integers(1, 65535)), max_size=4, unique_by=lambda t: t[0])),
    max_size=5, unique_by=lambda t: (t[0], t[1], t[2]))


def _endpoint(address: tuple[str, str], port: int) -> str:
    family, text = address
    return f"[{text}]:{port}" if family == "6" else f"{text}:{port}"


@settings(max_examples=80, deadline=None)
@given(rule_sets)
def test_save_then_restore_reproduces_ipv4_and_ipv6_tables(services):
    director = Director([])
    for flag, vip, port, sched, persistent, prefix, dotted, servers in services:
        mask = str(prefix) if vip[0] == "6" else dotted
        selector = f"{flag} {_endpoint(vip, port)}"
        ok(director, f"-A {selector} -s {sched} {persistent.format(mask=mask)}".strip())
        for rip, method, weight, rport in servers:
            if rip[0] != vip[0] and method != "-i":
                assert adm(director, f"-a {selector} -r {_endpoint(rip, rport)} {method}") == (
                    2, "", MIXED)
                method = "-i"
            ok(director, f"-a {selector} -r {_endpoint(rip, rport)} {method} -w {weight}")
    saved = adm(director, "-S -n")[1]
    restored = Director(ruleset.from_ipvsadm(saved))
    for view in ("-Ln", "-S -n", "-Ln --tun-info"):
        assert adm(restored, view) == adm(director, view), view
    assert {s.key: (s.persistence_netmask, s.af) for s in restored.services.values()} == {
        s.key: (s.persistence_netmask, s.af) for s in director.services.values()}
    rebuilt = Director([])
    for argv in ruleset.commands(director.services.values()):
        commands.run(rebuilt, ipvsadm.parse(argv), 0.0)
    assert adm(rebuilt, "-S -n") == adm(director, "-S -n")

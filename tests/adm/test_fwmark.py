"""Firewall-mark services in pylvs adm, as ipvsadm 1.31 and the kernel have them: -f read by
parse_fwmark, -6 after it, no "Zero port" rule and -o allowed (process_options), a real
server's port kept as given (0 when none) whatever the method; the service found by mark and
family (__ip_vs_svc_fwm_find) with libipvs's error texts; print_service_entry's ``FWM  %d``
(``FWM  %d IPv6``) and ``-f %d`` (``-f %d -6``), fwmark services sorted after the others
(ipvs_cmp_services); -S/-R, the rule set's commands, diff and TOML, and the workers' union.
Every expected listing is written out by hand from ipvsadm.c's printf formats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.adm import commands, config, ipvsadm, layouts, listing, ruleset
from pylvs.adm.ipvsadm import Command, DirectorError
from pylvs.core.director import Director
from pylvs.core.marks import MarkRule, Marks
from pylvs.core.model import AF_INET, AF_INET6, VirtualService, fwmark_key, ip_to_int
from tests.adm.test_ipvsadm_ipv6 import adm, ok, refused

VIP = "207.175.44.110"
HEAD = "IP Virtual Server version 1.2.1 (size=4096)\n"
TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
         "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
MIXED = "Different address family is allowed only for tunneling servers\n"
INVALID = "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"


# -- the command line -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,mark", [
    ("1", 1), ("+7", 7), (" 12", 12),  # strtol: leading blanks and a sign
    ("4294967295", 4294967295)])       # UINT_MAX
def test_marks_as_parse_fwmark_reads_them(text, mark):
    command = ipvsadm.parse(["-A", "-f", text])
    assert (command.fwmark, command.service, command.af) == (mark, ("", "", 0), AF_INET)


@pytest.mark.parametrize("text", [
    "0", "-0", "-1",          # l <= 0, and a negative one wraps above UINT_MAX
    "4294967296", "99999999999999999999",  # > UINT_MAX, ERANGE
    "12 ", "0x10", "1.5", "abc", ""])  # *end != '\0', end == buf
def test_bad_marks_are_refused_with_ipvsadms_text(text):
    assert refused(["-A", "-f", text]) == f"invalid fwmark value `{text}' specified"


def test_a_fwmark_service_has_no_zero_port_rule_and_may_have_ops():
    """process_options checks "Zero port" and "One-Packet Scheduling" only for !svc.fwmark."""
    assert ipvsadm.parse(["-A", "-f", "1"]).options == {"service-address"}
    assert ipvsadm.parse(["-E", "-f", "1", "-o"]).options == {"service-address", "ops"}
    assert refused(["-A", "-t", f"{VIP}:0"]) == "Zero port specified for non-persistent service"
    assert refused(["-A", "-t", f"{VIP}:80", "-o"]) == (
        "One-Packet Scheduling is only for UDP virtual services")


def test_f_is_a_service_address_as_t_is():
    assert refused(["-A", "-f", "1", "-t", f"{VIP}:80"]) == (
        "multiple 'service-address' options specified")
    assert refused(["-a", "-f", "1"]) == (
        "You need to supply the 'real-server' option for the 'add-server' command")
    assert refused(["-Lc", "-f", "1"]) == (
        "The option 'service-address' conflicts with the 'connection' option in the 'list' "
        "command")


@pytest.mark.parametrize("argv,mask", [
    (["-f", "1", "-p", "-M", "255.255.255.0"], "255.255.255.0"),
    (["-f", "1", "-6", "-p", "-M", "64"], "64"),        # -6 first: atoi's prefix
    (["-f", "1", "-p", "-M", "64", "-6"], None),        # -6 after -M sets the mask to 128
    (["-f", "1", "-6", "-p", "-M", "64", "-6"], None),  # and again
    (["-M", "48", "-f", "1", "-6", "-p"], None),
])
def test_netmask_and_dash_6_in_popts_order(argv, mask):
    assert ipvsadm.parse(["-A", *argv]).netmask == mask


@pytest.mark.parametrize("argv,message", [
    (["-f", "1", "-6", "-p", "-M", "0"], "illegal ipv6 netmask specified"),
    (["-f", "1", "-6", "-p", "-M", "255.255.255.0"], "illegal ipv6 netmask specified"),
    (["-f", "1", "-p", "-M", "nomask", "-6"],
     "illegal virtual server persistent mask specified")])
def test_netmask_errors(argv, message):
    assert refused(["-A", *argv]) == message


@pytest.mark.parametrize("line,method", [("-a -f 1 -6 -r 192.168.10.1", "-m"),
                                         ("-a -f 1 -r 2001:db8::a0a0", "-g"),
                                         ("-e -f 1 -6 -r 10.0.0.1", "")])
def test_a_real_server_of_the_other_family_only_with_tunnelling(line, method):
    assert commands.adm(Director([]), f"{line} {method}".split(), 0.0) == (2, "", MIXED)
    assert ipvsadm.parse(f"{line} -i".split()).forward == "tun"


# -- the kernel's side ---------------------------------------------------------------------------

def test_add_edit_delete_zero_and_list_by_mark_with_libipvs_errors():
    director = Director([])
    ok(director, "-A -f 1 -s rr", "-a -f 1 -r 192.168.10.1:0 -m")
    assert set(director.services) == {fwmark_key(1)}
    for line, text in [("-A -f 1", "Service already exists"),
                       ("-E -f 2", "No such service"),
                       ("-D -f 2", "No such service"),
                       ("-Z -f 2", "No such service"),
                       ("-L -f 2", "No such service"),
                       ("-L -f 1 -6", "No such service"),  # another family, another service
                       ("-a -f 2 -r 192.168.10.1", "Service not defined"),
                       ("-a -f 1 -r 192.168.10.1 -m", "Destination already exists"),
                       ("-e -f 1 -r 192.168.10.1:80", "No such destination"),
                       ("-d -f 1 -r 192.168.10.9", "No such destination"),
                       ("-A -f 3 -s nosuch", "Scheduler or persistence engine not found")]:
        assert adm(director, line) == (255, "", text + "\n"), line
    ok(director, "-E -f 1 -s wrr -p 60")
    assert adm(director, "-Ln")[1] == HEAD + TITLE + (
        "FWM  1 wrr persistent 60\n"
        "  -> 192.168.10.1:0               Masq    1      0          0         \n")
    (service,) = director.services.values()
    service.stats.conns = service.real_servers[0].stats.inbytes = 9
    ok(director, "-Z -f 1")
    assert service.stats.conns == 0 and service.real_servers[0].stats.inbytes == 0
    ok(director, "-E -f 1")  # -E without -s and -p: wlc, no persistence (ipvsadm's gotcha)
    assert adm(director, "-Ln -f 1")[1].splitlines()[2] == "FWM  1 wlc"
    ok(director, "-D -f 1")
    assert director.services == {}


def test_the_ipv4_and_ipv6_services_of_one_mark_are_two():
    director = Director([])
    ok(director, "-A -f 1", "-A -f 1 -6", "-A -f 2 -6")
    assert set(director.services) == {fwmark_key(1), fwmark_key(1, AF_INET6),
                                      fwmark_key(2, AF_INET6)}
    assert adm(director, "-A -f 1 --ipv6") == (255, "", "Service already exists\n")
    ok(director, "-D -f 1 -6")
    assert set(director.services) == {fwmark_key(1), fwmark_key(2, AF_INET6)}


def test_a_real_servers_port_is_kept_as_given_whatever_the_method():
    """ipvsadm forces dest port = svc port for -g and -i only if !svc.fwmark; with no port
    given the real server takes the service's, 0."""
    director = Director([])
    ok(director, "-A -f 1 -s rr", "-a -f 1 -r 192.168.10.1", "-a -f 1 -r 192.168.10.2:80 -g",
       "-a -f 1 -r 192.168.10.3:8080 -i -w 3", "-a -f 1 -r 192.168.10.4:0 -m")
    (service,) = director.services.values()
    assert sorted(rs.endpoint for rs in service.real_servers) == [
        "192.168.10.1:0", "192.168.10.2:80", "192.168.10.3:8080", "192.168.10.4:0"]
    ok(director, "-e -f 1 -r 192.168.10.2:80 -w 5")  # -g keeps the port here
    assert service.find_real_server("192.168.10.2", 80).weight == 5
    assert adm(director, "-e -f 1 -r 192.168.10.2 -w 5") == (255, "", "No such destination\n")
    ok(director, "-d -f 1 -r 192.168.10.1", "-d -f 1 -r 192.168.10.3:8080")
    assert sorted(rs.endpoint for rs in service.real_servers) == [
        "192.168.10.2:80", "192.168.10.4:0"]


def test_the_kernel_refuses_what_ipvsadm_would_not_send():
    """ip_vs_genl_set_cmd: a real server of another family only tunnelled (EINVAL);
    ip_vs_add_service: an IPv6 service's mask a prefix 1..128 (EINVAL). Commands made another
    way than by parse meet them."""
    director = Director([])
    ok(director, "-A -f 1 -6")
    command = Command("add-server", {"service-address", "real-server"}, ("", "", 0),
                      fwmark=1, fwmark_af=AF_INET6, server=("192.168.10.1", None), forward="nat")
    with pytest.raises(DirectorError, match="Invalid operation"):
        commands.run(director, command, 0.0)
    command = Command("add-service", {"service-address", "persistent", "netmask"},
                      ("", "", 0), fwmark=2, fwmark_af=AF_INET6, persistent=60, netmask="0")
    with pytest.raises(DirectorError, match="Invalid operation"):
        commands.run(director, command, 0.0)


# -- listings ------------------------------------------------------------------------------------

def example() -> Director:
    """One address-and-port service and three fwmark ones (one IPv6, mixed real servers)."""
    director = Director([])
    ok(director, f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r 192.168.10.1:80 -m",
       "-A -f 2 -s sh -b sh-port -p -M 255.255.255.0 -o",
       "-A -f 1 -6 -s wlc -p 600 -M 64", "-a -f 1 -6 -r 2001:db8::a0a0 -g",
       "-a -f 1 -6 -r 192.168.10.9 -i",
       "-A -f 1  -s rr", "-a -f 1 -r 192.168.10.2 -m -w 2", "-a -f 1 -r 192.168.10.1:0 -m")
    return director


LN = (HEAD + TITLE +
      "TCP  207.175.44.110:80 rr\n"
      "  -> 192.168.10.1:80              Masq    1      0          0         \n"
      "FWM  1 rr\n"
      "  -> 192.168.10.1:0               Masq    1      0          0         \n"
      "  -> 192.168.10.2:0               Masq    2      0          0         \n"
      "FWM  1 IPv6 wlc persistent 600 mask 64\n"
      "  -> 192.168.10.9:0               Tunnel  1      0          0         \n"
      "  -> [2001:db8::a0a0]:0           Route   1      0          0         \n"
      "FWM  2 sh (sh-port) persistent 360 mask 255.255.255.0 ops\n")
SAVED = ("-A -t 207.175.44.110:80 -s rr\n"
         "-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m -w 1\n"
         "-A -f 1 -s rr\n"
         "-a -f 1 -r 192.168.10.1:0 -m -w 1\n"
         "-a -f 1 -r 192.168.10.2:0 -m -w 2\n"
         "-A -f 1 -6 -s wlc -p 600 -M 64\n"
         "-a -f 1 -6 -r 192.168.10.9:0 -i -w 1 --tun-type ipip\n"
         "-a -f 1 -6 -r [2001:db8::a0a0]:0 -g -w 1\n"
         "-A -f 2 -s sh -p 360 -M 255.255.255.0 -o -b sh-port\n")


def test_ln_lists_fwmark_services_after_the_others_as_print_service_entry():
    """ipvs_cmp_services: fwmark first (0 for the others: they come first), then af; the
    dests by ipvs_cmp_dests (192.168.10.9 before 2001:db8:: as an IPv4 first word reads it)."""
    assert adm(example(), "-Ln") == (0, LN, "")
    nosort = adm(example(), "-Ln --nosort")[1].splitlines()
    assert [line for line in nosort if not line.startswith(" ")][3:] == [
        "FWM  2 sh (sh-port) persistent 360 mask 255.255.255.0 ops",
        "FWM  1 IPv6 wlc persistent 600 mask 64", "FWM  1 rr"]  # as they were added


def test_one_fwmark_service_is_listed_without_the_version_line():
    assert adm(example(), "-Ln -f 1 -6") == (0, TITLE + (
        "FWM  1 IPv6 wlc persistent 600 mask 64\n"
        "  -> 192.168.10.9:0               Tunnel  1      0          0         \n"
        "  -> [2001:db8::a0a0]:0           Route   1      0          0         \n"), "")
    assert adm(example(), "-L -n --fwmark-service 2") == (0, TITLE + (
        "FWM  2 sh (sh-port) persistent 360 mask 255.255.255.0 ops\n"), "")


def test_stats_rate_thresholds_persistent_conn_and_tun_info_layouts():
    director = Director([])
    ok(director, "-A -f 1 -6 -s rr", "-a -f 1 -6 -r 2001:db8::a0a0 -m -x 100 -y 50",
       "-a -f 1 -6 -r 192.168.10.1:8080 -i --tun-type gue --tun-port 6080 --tun-csum")
    (service,) = director.services.values()
    service.stats.conns, service.stats.inbytes = 5, 123_456_789
    assert adm(director, "-Ln -f 1 -6 --stats")[1] == (
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "FWM  1 IPv6                              5        0        0  123456K        0\n"
        "  -> 192.168.10.1:8080                   0        0        0        0        0\n"
        "  -> [2001:db8::a0a0]:0                  0        0        0        0        0\n")
    assert adm(director, "-Ln --rate")[1] == HEAD + (
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
        "  -> RemoteAddress:Port\n"
        "FWM  1 IPv6                              0        0        0        0        0\n"
        "  -> 192.168.10.1:8080                   0        0        0        0        0\n"
        "  -> [2001:db8::a0a0]:0                  0        0        0        0        0\n")
    assert adm(director, "-Ln --thresholds")[1] == HEAD + (
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
        "  -> RemoteAddress:Port\n"
        "FWM  1 IPv6 rr\n"
        "  -> 192.168.10.1:8080            0          0          0          0         \n"
        "  -> [2001:db8::a0a0]:0           100        50         0          0         \n")
    assert adm(director, "-Ln --persistent-conn")[1] == HEAD + (
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n"
        "  -> RemoteAddress:Port\n"
        "FWM  1 IPv6 rr\n"
        "  -> 192.168.10.1:8080            1         0           0          0         \n"
        "  -> [2001:db8::a0a0]:0           1         0           0          0         \n")
    assert adm(director, "-Ln --tun-info")[1] == HEAD + (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        "FWM  1 IPv6 rr\n"
        "  -> 192.168.10.1:8080            Tunnel  gue:6080:+c   1      0          0         \n"
        "  -> [2001:db8::a0a0]:0           Masq    n/a           1      0          0         \n")


def test_marks_sort_as_a_u32_difference_in_an_int_and_print_with_percent_d():
    """ipvs_cmp_services's ``s1->fwmark - s2->fwmark`` wraps: 0 - 3000000000 is positive, so a
    mark of 2^31 + 1 or more sorts before the services without one; ipvsadm 1.31 prints a mark
    with %d, so it comes out negative, and -S writes a -f that -R refuses back."""
    director = Director([])
    ok(director, "-A -f 1", f"-A -t {VIP}:80", "-A -f 4294967295", "-A -f 3000000000 -s rr")
    assert adm(director, "-Ln")[1] == HEAD + TITLE + (
        "FWM  -1294967296 rr\n"
        "FWM  -1 wlc\n"
        "TCP  207.175.44.110:80 wlc\n"
        "FWM  1 wlc\n")
    saved = adm(director, "-Sn")[1]
    assert saved.splitlines()[0] == "-A -f -1294967296 -s rr"
    with pytest.raises(ValueError, match="invalid fwmark value `-1294967296' specified"):
        ruleset.from_ipvsadm(saved)


def test_save_writes_f_and_dash_6_and_restore_reads_them_back():
    director = example()
    assert adm(director, "-S -n") == (0, SAVED, "")
    restored = Director(ruleset.from_ipvsadm(SAVED))
    for view in ("-Ln", "-S -n", "-Ln --tun-info"):
        assert adm(restored, view) == adm(director, view), view


def test_without_n_hosts_are_named_and_a_fwmark_real_servers_port_is_not():
    """port_to_service(port, proto): the kernel reports a fwmark service with protocol 0, so
    none of its real servers' ports gets a name; the service has no address to name."""
    director = example()
    addresses, ports = commands.endpoints(director)
    assert addresses == ["192.168.10.1", "192.168.10.2", "192.168.10.9", "2001:db8::a0a0",
                         "207.175.44.110"]
    assert ports == ["80/tcp"]
    names = ({"192.168.10.1": "rs1", "2001:db8::a0a0": "rs6"}, {"80/tcp": "http", "0/tcp": "x"})
    listed = commands.run(director, ipvsadm.parse(["-L"]), 0.0, names).splitlines()
    assert listed[3:5] == ["TCP  207.175.44.110:http rr",
                           "  -> rs1:http                     Masq    1      0          0  "
                           "       "]
    assert listed[6] == "  -> rs1:0                        Masq    1      0          0         "
    assert listed[10] == "  -> [rs6]:0                      Route   1      0          0         "
    saved = commands.run(director, ipvsadm.parse(["-S"]), 0.0, names).splitlines()
    assert saved[3] == "-a -f 1 -r rs1:0 -m -w 1"


# -- rule sets, TOML, workers --------------------------------------------------------------------

def test_commands_rebuild_and_diff_edits_fwmark_services():
    services = list(example().services.values())
    rebuilt = Director([])
    for argv in ruleset.commands(services):
        assert commands.run(rebuilt, ipvsadm.parse(argv), 0.0) == ""
    assert adm(rebuilt, "-Sn")[1] == SAVED
    assert ruleset.commands([services[2]])[:2] == [
        ["-A", "-f", "1", "-6", "-s", "wlc", "-p", "600", "-M", "64"],
        ["-a", "-f", "1", "-6", "-r", "[2001:db8::a0a0]:0", "-g", "-w", "1"]]
    changed = example()
    ok(changed, "-E -f 1 -s wrr", "-e -f 1 -r 192.168.10.2 -m -w 7", "-D -f 2",
       "-d -f 1 -6 -r 192.168.10.9", "-A -f 2 -6")
    assert ruleset.diff(example().services.values(), changed.services.values()) == [
        ["-D", "-f", "2"],
        ["-d", "-f", "1", "-6", "-r", "192.168.10.9:0"],
        ["-E", "-f", "1", "-s", "wrr"],
        ["-e", "-f", "1", "-r", "192.168.10.2:0", "-m", "-w", "7"],
        ["-A", "-f", "2", "-6", "-s", "wlc"]]
    director = example()
    for argv in ruleset.diff(director.services.values(), changed.services.values()):
        assert commands.run(director, ipvsadm.parse(argv), 0.0) == ""
    assert adm(director, "-Sn") == adm(changed, "-Sn")


def test_toml_has_fwmark_and_family_and_portless_real_servers():
    text = ruleset.to_toml(example().services.values())
    assert ('[[virtual_server]]\nfwmark = 1\nfamily = "ipv6"\n'
            "# ipvsadm rules do not say what marks packets (iptables, nft): add [[mark]]\n"
            "# tables giving mark 1, then drop allow_unmarked\n"
            'allow_unmarked = true\nscheduler = "wlc"\npersistence_timeout = 600\n'
            "persistence_netmask = 64\n\n"
            '  [[virtual_server.real_server]]\n  address = "[2001:db8::a0a0]"\n') in text
    assert '  address = "192.168.10.1"\n  weight = 1\n  forward = "nat"\n' in text
    assert '[[virtual_server]]\naddress = "207.175.44.110:80"\nprotocol = "tcp"\n' in text
    assert adm(Director(config.parse(text).services), "-Sn")[1] == SAVED


def test_the_workers_union_goes_by_mark_and_family():
    director = example()
    shots = []
    for conns in (2, 3):
        worker = example()
        for service in worker.services.values():
            service.stats.conns = conns * (service.fwmark or 10) + (service.af == AF_INET6)
        shots.append(listing.snapshot(worker))
    view = listing.union(director.services.values(), shots)
    assert {s.key: s.stats.conns for s in view} == {
        (6, ip_to_int(VIP), 80): 50, fwmark_key(1): 5, fwmark_key(1, AF_INET6): 7,
        fwmark_key(2): 10}


# -- traffic ---------------------------------------------------------------------------------

def test_marked_traffic_counts_and_lists_its_persistence_template():
    """A persistent fwmark service's template is <IP, client, 0, mark, 0, rs, 0>: -Lnc shows
    ``IP`` and the virtual ``0.0.0.1:0`` (print_conn's "%-3s %-6s %-11s %-18s %-18s %s"); a
    port-0 real server's connections go to the packet's port (cp->dport)."""
    director = Director([])
    ok(director, "-A -f 1 -s rr -p 300", "-a -f 1 -r 192.168.10.1 -g")
    director.set_marks(Marks((MarkRule(f"{VIP}/31", 1),)))
    mac = bytes.fromhex("020000000002")
    director.add_interface("eth0", mac)
    director.set_hop(ip_to_int("192.168.10.1"), NextHop(mac, bytes.fromhex("020000000101"),
                                                        "eth0"))
    for vip, port in ((VIP, 80), ("207.175.44.111", 443)):
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
            src="203.0.113.5", dst=vip) / TCP(sport=40000, dport=port, flags="S")
        assert director.handle(bytearray(bytes(frame)), 0.0) is not None
    assert adm(director, "-Ln --stats")[1] == HEAD + (
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "FWM  1                                   2        2        0       80        0\n"
        "  -> 192.168.10.1:0                      2        2        0       80        0\n")
    assert adm(director, "-Lnc")[1].splitlines()[1:] == [
        "pro expire state       source             virtual            destination",
        "TCP 01:00  SYN_RECV    203.0.113.5:40000  207.175.44.110:80  192.168.10.1:80",
        "TCP 01:00  SYN_RECV    203.0.113.5:40000  207.175.44.111:443 192.168.10.1:443",
        "IP  05:00  NONE        203.0.113.5:0      0.0.0.1:0          192.168.10.1:0"]


fwmark_rule_sets = st.lists(st.tuples(
    st.integers(1, 2**31 - 1), st.booleans(), st.sampled_from(["rr", "wrr", "sh", "mh"]),
    st.sampled_from(["", "-p", "-p 60", "-p 600 -M {mask}", "-o"]),
    st.lists(st.tuples(st.sampled_from(["192.168.10.1", "192.168.10.2", "2001:db8::a0a0",
                                        "2001:db8::b0"]),
                       st.sampled_from(["-g", "-m", "-i"]), st.integers(0, 9),
                       st.sampled_from([None, 0, 80, 8080])),
             max_size=4, unique_by=lambda t: t[0])),
    max_size=4, unique_by=lambda t: (t[0], t[1]))


@settings(max_examples=60, deadline=None)
@given(fwmark_rule_sets)
def test_save_then_restore_reproduces_fwmark_tables(services):
    director = Director([])
    ok(director, f"-A -t {VIP}:80")
    for mark, ipv6, sched, persistent, servers in services:
        selector = f"-f {mark}" + (" -6" if ipv6 else "")
        mask = "64" if ipv6 else "255.255.255.0"
        ok(director, f"-A {selector} -s {sched} {persistent.format(mask=mask)}".strip())
        for rip, method, weight, port in servers:
            if (":" in rip) != ipv6:
                method = "-i"
            host = f"[{rip}]" if ":" in rip and port is not None else rip
            end = host if port is None else f"{host}:{port}"
            ok(director, f"-a {selector} -r {end} {method} -w {weight}")
    saved = adm(director, "-S -n")[1]
    restored = Director(ruleset.from_ipvsadm(saved))
    for view in ("-Ln", "-S -n", "-Ln --tun-info"):
        assert adm(restored, view) == adm(director, view), view
    assert {s.key: (s.af, s.persistence_netmask) for s in restored.services.values()} == {
        s.key: (s.af, s.persistence_netmask) for s in director.services.values()}


def test_a_fwmark_service_is_its_model_object():
    """What add_service builds: VirtualService(fwmark=N, af=...) with no protocol, address or
    port, keyed by fwmark_key."""
    director = Director([])
    ok(director, "-A -f 9 -6 -s rr -p 60 -M 48")
    (service,) = director.services.values()
    assert isinstance(service, VirtualService) and isinstance(
        service.scheduler, schedulers.get("rr"))
    assert (service.fwmark, service.af, service.protocol, service.address, service.port,
            service.persistence_netmask, service.key) == (
        9, AF_INET6, "", "", 0, "48", fwmark_key(9, AF_INET6))
    assert layouts.service_name(service, layouts.Names(True)) == "FWM  9 IPv6"

"""Every example of ipvsadm(8) (ipvsadm 1.31's ipvsadm.8: EXAMPLE 1 to 4 and the IPv6 section)
run through pylvs adm against an empty director, then listed with -Ln (and -Ln --tun-info
where there are tunnels) and compared byte for byte with what ipvsadm prints for that table,
written out by hand from ipvsadm.c's formats (list_all's version line, print_title,
print_service_entry, fwd_tun_info); -S -n as print_service_entry's FMT_RULE and
print_tunnel_rule write it, and fed back to -R it gives the same table.

The examples' shell lines that are not ipvsadm's (``echo "1" > /proc/sys/net/ipv4/ip_forward``,
``modprobe ip_tables``, ``iptables -A PREROUTING -t mangle ... -j MARK --set-mark 1``,
``modprobe ip_vs_ftp``) are skipped, each one named below: they set up the kernel around
IPVS, not IPVS (pylvs takes marks from its config's [[mark]] rules instead of iptables). A
backslash at the end of a line joins it to the next, as the shell does (inside ``echo "..."``
too); ``echo "..." | ipvsadm -R`` feeds the quoted lines to -R as pylvs adm -R reads standard
input (pylvs.shell.adm_client.restore: each line parsed, then applied, stopping at an error)."""

from __future__ import annotations

import re
import shlex

import pytest

from pylvs.adm import commands, ipvsadm, ruleset
from pylvs.core.director import Director

# -- the man page's examples, as ipvsadm.8 has them ---------------------------------------------

EXAMPLE_1 = """\
ipvsadm -A -t 207.175.44.110:80 -s rr
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.1:80 -m
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.2:80 -m
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.3:80 -m
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.4:80 -m
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.5:80 -m
"""
EXAMPLE_1_RESTORE = """\
echo "
-A -t 207.175.44.110:80 -s rr
-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m
-a -t 207.175.44.110:80 -r 192.168.10.2:80 -m
-a -t 207.175.44.110:80 -r 192.168.10.3:80 -m
-a -t 207.175.44.110:80 -r 192.168.10.4:80 -m
-a -t 207.175.44.110:80 -r 192.168.10.5:80 -m
" | ipvsadm -R
"""
EXAMPLE_1_KERNEL = """\
echo "1" > /proc/sys/net/ipv4/ip_forward
"""
EXAMPLE_2 = """\
ipvsadm -A -f 1  -s rr
ipvsadm -a -f 1 -r 192.168.10.1:0 -m
ipvsadm -a -f 1 -r 192.168.10.2:0 -m
ipvsadm -a -f 1 -r 192.168.10.3:0 -m
ipvsadm -a -f 1 -r 192.168.10.4:0 -m
ipvsadm -a -f 1 -r 192.168.10.5:0 -m
"""
EXAMPLE_2_KERNEL = """\
echo "1" > /proc/sys/net/ipv4/ip_forward
modprobe ip_tables
iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK --set-mark 1
modprobe ip_vs_ftp
"""
EXAMPLE_3 = """\
ipvsadm -A -t 207.175.44.110:80 -s rr
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.1:80 -i --tun-type gue \\
--tun-port 6080 --tun-nocsum
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.2:80 -i --tun-type gue \\
--tun-port 6080 --tun-csum
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.3:80 -i --tun-type gue \\
--tun-port 6080 --tun-remcsum
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.4:80 -i --tun-type gue \\
--tun-port 6078
ipvsadm -a -t 207.175.44.110:80 -r 192.168.10.5:80 -i --tun-type gue \\
--tun-port 6079
"""
EXAMPLE_3_RESTORE = """\
echo "
-A -t 207.175.44.110:80 -s rr
-a -t 207.175.44.110:80 -r 192.168.10.1:80 -i --tun-type gue --tun-port 6080 \\
--tun-nocsum
-a -t 207.175.44.110:80 -r 192.168.10.2:80 -i --tun-type gue --tun-port 6080 \\
--tun-csum
-a -t 207.175.44.110:80 -r 192.168.10.3:80 -i --tun-type gue --tun-port 6080 \\
--tun-remcsum
-a -t 207.175.44.110:80 -r 192.168.10.4:80 -i --tun-type gue --tun-port 6078
-a -t 207.175.44.110:80 -r 192.168.10.5:80 -i --tun-type gue --tun-port 6079
" | ipvsadm -R
"""
EXAMPLE_4 = """\
ipvsadm -A -t 10.0.0.1:80 -s rr
ipvsadm -a -t 10.0.0.1:80 -r 192.168.11.1:80 -i --tun-type gre \\
--tun-csum
"""
EXAMPLE_IPV6 = """\
ipvsadm -A -t [2001:db8::80]:80 -s rr
ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m
"""

# -- what ipvsadm prints for them ----------------------------------------------------------------

HEAD = "IP Virtual Server version 1.2.1 (size=4096)\n"
TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
         "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
TUN_TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
             "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn "
             "InActConn\n")

LISTED_1 = HEAD + TITLE + (
    "TCP  207.175.44.110:80 rr\n"
    "  -> 192.168.10.1:80              Masq    1      0          0         \n"
    "  -> 192.168.10.2:80              Masq    1      0          0         \n"
    "  -> 192.168.10.3:80              Masq    1      0          0         \n"
    "  -> 192.168.10.4:80              Masq    1      0          0         \n"
    "  -> 192.168.10.5:80              Masq    1      0          0         \n")
SAVED_1 = ("-A -t 207.175.44.110:80 -s rr\n"
           "-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m -w 1\n"
           "-a -t 207.175.44.110:80 -r 192.168.10.2:80 -m -w 1\n"
           "-a -t 207.175.44.110:80 -r 192.168.10.3:80 -m -w 1\n"
           "-a -t 207.175.44.110:80 -r 192.168.10.4:80 -m -w 1\n"
           "-a -t 207.175.44.110:80 -r 192.168.10.5:80 -m -w 1\n")

LISTED_2 = HEAD + TITLE + (
    "FWM  1 rr\n"
    "  -> 192.168.10.1:0               Masq    1      0          0         \n"
    "  -> 192.168.10.2:0               Masq    1      0          0         \n"
    "  -> 192.168.10.3:0               Masq    1      0          0         \n"
    "  -> 192.168.10.4:0               Masq    1      0          0         \n"
    "  -> 192.168.10.5:0               Masq    1      0          0         \n")
SAVED_2 = ("-A -f 1 -s rr\n"
           "-a -f 1 -r 192.168.10.1:0 -m -w 1\n"
           "-a -f 1 -r 192.168.10.2:0 -m -w 1\n"
           "-a -f 1 -r 192.168.10.3:0 -m -w 1\n"
           "-a -f 1 -r 192.168.10.4:0 -m -w 1\n"
           "-a -f 1 -r 192.168.10.5:0 -m -w 1\n")

LISTED_3 = HEAD + TITLE + (
    "TCP  207.175.44.110:80 rr\n"
    "  -> 192.168.10.1:80              Tunnel  1      0          0         \n"
    "  -> 192.168.10.2:80              Tunnel  1      0          0         \n"
    "  -> 192.168.10.3:80              Tunnel  1      0          0         \n"
    "  -> 192.168.10.4:80              Tunnel  1      0          0         \n"
    "  -> 192.168.10.5:80              Tunnel  1      0          0         \n")
TUN_INFO_3 = HEAD + TUN_TITLE + (
    "TCP  207.175.44.110:80 rr\n"
    "  -> 192.168.10.1:80              Tunnel  gue:6080:-c   1      0          0         \n"
    "  -> 192.168.10.2:80              Tunnel  gue:6080:+c   1      0          0         \n"
    "  -> 192.168.10.3:80              Tunnel  gue:6080:r+c  1      0          0         \n"
    "  -> 192.168.10.4:80              Tunnel  gue:6078:-c   1      0          0         \n"
    "  -> 192.168.10.5:80              Tunnel  gue:6079:-c   1      0          0         \n")
SAVED_3 = (
    "-A -t 207.175.44.110:80 -s rr\n"
    "-a -t 207.175.44.110:80 -r 192.168.10.1:80 -i -w 1 --tun-type gue --tun-port 6080 "
    "--tun-nocsum\n"
    "-a -t 207.175.44.110:80 -r 192.168.10.2:80 -i -w 1 --tun-type gue --tun-port 6080 "
    "--tun-csum\n"
    "-a -t 207.175.44.110:80 -r 192.168.10.3:80 -i -w 1 --tun-type gue --tun-port 6080 "
    "--tun-remcsum\n"
    "-a -t 207.175.44.110:80 -r 192.168.10.4:80 -i -w 1 --tun-type gue --tun-port 6078 "
    "--tun-nocsum\n"
    "-a -t 207.175.44.110:80 -r 192.168.10.5:80 -i -w 1 --tun-type gue --tun-port 6079 "
    "--tun-nocsum\n")

LISTED_4 = HEAD + TITLE + (
    "TCP  10.0.0.1:80 rr\n"
    "  -> 192.168.11.1:80              Tunnel  1      0          0         \n")
TUN_INFO_4 = HEAD + TUN_TITLE + (
    "TCP  10.0.0.1:80 rr\n"
    "  -> 192.168.11.1:80              Tunnel  gre:+c        1      0          0         \n")
SAVED_4 = ("-A -t 10.0.0.1:80 -s rr\n"
           "-a -t 10.0.0.1:80 -r 192.168.11.1:80 -i -w 1 --tun-type gre --tun-csum\n")

LISTED_IPV6 = HEAD + TITLE + (
    "TCP  [2001:db8::80]:80 rr\n"
    "  -> [2001:db8::a0a0]:80          Masq    1      0          0         \n")
SAVED_IPV6 = ("-A -t [2001:db8::80]:80 -s rr\n"
              "-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1\n")

# -- a shell for the examples -------------------------------------------------------------------


def joined(text: str) -> str:
    """The shell's line continuation: a backslash before a newline removes both (in double
    quotes too)."""
    return text.replace("\\\n", "")


def ipvsadm_lines(text: str) -> tuple[list[list[str]], list[str]]:
    """The argv of each ``ipvsadm ...`` line (its words, without the ``ipvsadm``), and the
    lines that are some other program's."""
    argvs, others = [], []
    for line in joined(text).splitlines():
        words = shlex.split(line)
        if words[:1] == ["ipvsadm"]:
            argvs.append(words[1:])
        elif words:
            others.append(line)
    return argvs, others


def run_lines(director: Director, text: str) -> None:
    argvs, others = ipvsadm_lines(text)
    assert others == [] and argvs
    for argv in argvs:
        assert commands.adm(director, argv, 0.0) == (0, "", ""), argv


def restore(director: Director, stdin: str) -> int:
    """pylvs adm -R: each line as ipvsadm -R reads it (ruleset.command_lines), parsed, then
    applied; the first error stops it, with its exit status."""
    for _, _, argv in ruleset.command_lines(stdin.splitlines()):
        status, _, _ = commands.adm(director, argv, 0.0)
        if status:
            return status
    return 0


def run_echo_restore(director: Director, text: str) -> None:
    """``echo "LINES" | ipvsadm -R``: LINES, with the shell's continuations, to -R."""
    match = re.fullmatch(r'echo "(.*)" \| ipvsadm -R\n', joined(text), re.DOTALL)
    assert match is not None
    assert restore(director, match.group(1) + "\n") == 0


def listing(director: Director, *argv: str) -> str:
    status, out, err = commands.adm(director, list(argv), 0.0)
    assert (status, err) == (0, ""), argv
    return out


def saved_and_restored(director: Director) -> Director:
    """-S -n's output fed to -R on an empty director."""
    again = Director([])
    assert restore(again, listing(director, "-S", "-n")) == 0
    return again


# -- the examples --------------------------------------------------------------------------------

CASES = {
    "EXAMPLE 1 - Simple Virtual Service": (EXAMPLE_1, EXAMPLE_1_RESTORE, LISTED_1, None,
                                           SAVED_1),
    "EXAMPLE 2 - Firewall-Mark Virtual Service": (EXAMPLE_2, None, LISTED_2, None, SAVED_2),
    "EXAMPLE 3 - Virtual Service with GUE Tunneling": (EXAMPLE_3, EXAMPLE_3_RESTORE, LISTED_3,
                                                       TUN_INFO_3, SAVED_3),
    "EXAMPLE 4 - Virtual Service with GRE Tunneling": (EXAMPLE_4, None, LISTED_4, TUN_INFO_4,
                                                       SAVED_4),
    "IPv6": (EXAMPLE_IPV6, None, LISTED_IPV6, None, SAVED_IPV6),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_examples_commands_give_ipvsadms_listing(name):
    lines, _, listed, tun_info, _ = CASES[name]
    director = Director([])
    run_lines(director, lines)
    assert listing(director, "-Ln") == listed
    if tun_info is not None:
        assert listing(director, "-Ln", "--tun-info") == tun_info


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case[1]])
def test_the_examples_restore_form_gives_the_same_table(name):
    lines, echo, listed, tun_info, saved = CASES[name]
    director = Director([])
    run_echo_restore(director, echo)
    assert listing(director, "-Ln") == listed
    assert listing(director, "-S", "-n") == saved
    if tun_info is not None:
        assert listing(director, "-Ln", "--tun-info") == tun_info


@pytest.mark.parametrize("name", list(CASES))
def test_the_examples_save_and_restore_to_the_same_listing(name):
    lines, _, listed, tun_info, saved = CASES[name]
    director = Director([])
    run_lines(director, lines)
    assert listing(director, "-S", "-n") == saved
    again = saved_and_restored(director)
    for view in (["-Ln"], ["-Ln", "--tun-info"], ["-S", "-n"]):
        assert listing(again, *view) == listing(director, *view), view


def test_the_lines_that_are_not_ipvsadms_are_skipped_and_named():
    assert ipvsadm_lines(EXAMPLE_1_KERNEL) == (
        [], ['echo "1" > /proc/sys/net/ipv4/ip_forward'])
    assert ipvsadm_lines(EXAMPLE_2_KERNEL) == ([], [
        'echo "1" > /proc/sys/net/ipv4/ip_forward',
        "modprobe ip_tables",
        "iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK --set-mark 1",
        "modprobe ip_vs_ftp"])


def test_the_ipv6_sections_last_sentence_fwmark_ipv6_services_require_dash_6():
    """ "fwmark IPv6 services require the -6 option.": without it the service is IPv4, so an
    IPv6 real server needs tunnelling (ipvsadm's own check); with it, it is the IPv6 one."""
    director = Director([])
    assert commands.adm(director, ["-A", "-f", "1", "-s", "rr"], 0.0)[0] == 0
    assert commands.adm(director, ["-a", "-f", "1", "-r", "2001:db8::a0a0", "-m"], 0.0) == (
        2, "", ipvsadm.MIXED_FAMILY + "\n")
    run_lines(director, "ipvsadm -A -f 1 -6 -s rr\n"
                        "ipvsadm -a -f 1 -6 -r [2001:db8::a0a0]:0 -m\n")
    assert listing(director, "-Ln") == HEAD + TITLE + (
        "FWM  1 rr\n"
        "FWM  1 IPv6 rr\n"
        "  -> [2001:db8::a0a0]:0           Masq    1      0          0         \n")

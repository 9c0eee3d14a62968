"""iptables / ip6tables / nft MARK lines → mark rules (issue 24): the ipvsadm(8) man page's own
line as it is printed, the forms iptables writes the same rule in, and every token pylvs
cannot honour refused by name."""

from __future__ import annotations

import pytest

from pylvs.adm.iptables import MarkLine, RuleError, parse_iptables, parse_nft
from pylvs.core.marks import MarkRule

MAN_PAGE = "iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK --set-mark 1"
"""ipvsadm(8), EXAMPLE 2 - Firewall-Mark Virtual Service, two blanks and all."""
BASE = "-A PREROUTING -t mangle -d 10.0.0.1"


def test_the_man_pages_line_marks_both_addresses_every_port_and_protocol():
    assert parse_iptables(MAN_PAGE) == MarkLine(MarkRule("207.175.44.110/31", 1))
    rule = parse_iptables(MAN_PAGE).rule
    assert rule.matches(2, 6, 0xCFAF2C6F, 22) and rule.matches(2, 17, 0xCFAF2C6E, 53)
    assert not rule.matches(2, 6, 0xCFAF2C70, 80)  # .112: outside the /31


@pytest.mark.parametrize("line", [
    MAN_PAGE.removeprefix("iptables"),                       # without the command's word
    "/usr/sbin/iptables -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK --set-mark 1",
    "iptables -t mangle -A PREROUTING -j MARK -d 207.175.44.110/31 --set-mark 1",  # any order
    "iptables --append PREROUTING --table mangle --destination 207.175.44.110/31 "
    "--jump MARK --set-mark 0x1",
    "iptables --append=PREROUTING --table=mangle --dst=207.175.44.110/31 -j MARK "
    "--set-mark=1",                                          # getopt_long's --opt=value
    "iptables -A PREROUTING -t mangle -d 207.175.44.110/255.255.255.254 -j MARK "
    "--set-xmark 0x1/0xffffffff",                            # what iptables -S prints
    "iptables -w -A PREROUTING -t mangle -d 207.175.44.111/31 -j MARK --set-mark 01",
    "iptables -A PREROUTING -t mangle -d 207.175.44.110/31 -p all -j MARK --set-mark 1",
])
def test_the_same_rule_written_as_iptables_takes_it(line):
    assert parse_iptables(line) == MarkLine(MarkRule("207.175.44.110/31", 1))


def test_insert_places_the_rule_and_append_does_not():
    assert parse_iptables("-I PREROUTING -t mangle -d 10.0.0.1 -j MARK --set-mark 2"
                          ).insert == 1
    assert parse_iptables("-I PREROUTING 3 -t mangle -d 10.0.0.1 -j MARK --set-mark 2"
                          ).insert == 3
    assert parse_iptables(f"{BASE} -j MARK --set-mark 2").insert is None


@pytest.mark.parametrize("matches, proto, ports", [
    ("-p tcp --dport 80", 6, ((80, 80),)),
    ("-p udp -m udp --dport 53", 17, ((53, 53),)),
    ("-p tcp --dport 8000:8100", 6, ((8000, 8100),)),
    ("-p tcp --destination-port :1023", 6, ((0, 1023),)),      # iptables: from 0
    ("-p tcp --dport 1024:", 6, ((1024, 65535),)),             # iptables: to 65535
    ("-p 6 -m multiport --dports 80,443,8000:8100", 6, ((80, 80), (443, 443), (8000, 8100))),
    ("-p tcp -m multiport --destination-ports 80,443 -m comment --comment 'web, both'", 6,
     ((80, 80), (443, 443))),
])
def test_protocols_and_destination_ports(matches, proto, ports):
    line = parse_iptables(f"iptables {BASE} {matches} -j MARK --set-mark 7")
    assert line.rule == MarkRule("10.0.0.1/32", 7, proto, ports)


def test_ip6tables_and_hex_and_octal_marks_as_strtoul_reads_them():
    line = parse_iptables("ip6tables -A PREROUTING -t mangle -d 2001:db8::1/127 -p udp "
                          "--dport 53 -j MARK --set-mark 0x10")
    assert line.rule == MarkRule("2001:db8::/127", 16, 17, ((53, 53),))
    assert parse_iptables(f"{BASE} -j MARK --set-mark 010").rule.mark == 8


@pytest.mark.parametrize("line, says", [
    (f"{BASE} -s 192.0.2.0/24 -j MARK --set-mark 1", "'-s' is refused: a source match"),
    (f"{BASE} --source 192.0.2.9 -j MARK --set-mark 1", "'--source' is refused"),
    (f"{BASE} -i eth1 -j MARK --set-mark 1", "'-i' is refused: an interface match"),
    (f"{BASE} -p tcp --sport 1024 -j MARK --set-mark 1", "'--sport' is refused"),
    ("-A PREROUTING -t mangle ! -d 10.0.0.1 -j MARK --set-mark 1", "'!' is refused: a negation"),
    ("-A PREROUTING -t mangle -d ! 10.0.0.1 -j MARK --set-mark 1", "'!' after '-d' is refused"),
    (f"{BASE} -p tcp -m multiport --ports 80 -j MARK --set-mark 1", "'--ports' is refused"),
    (f"{BASE} -m state --state NEW -j MARK --set-mark 1", "-m 'state' is refused"),
    ("-A PREROUTING -t nat -d 10.0.0.1 -j MARK --set-mark 1", "table 'nat' is refused"),
    ("-A PREROUTING -d 10.0.0.1 -j MARK --set-mark 1", "no -t mangle"),
    ("-A INPUT -t mangle -d 10.0.0.1 -j MARK --set-mark 1", "chain 'INPUT' is refused"),
    ("-D PREROUTING -t mangle -d 10.0.0.1 -j MARK --set-mark 1", "'-D' is refused"),
    (f"{BASE} -j CONNMARK --set-mark 1", "target 'CONNMARK' is refused"),
    (f"{BASE} -j ACCEPT", "target 'ACCEPT' is refused"),
    (f"{BASE} -j MARK --set-mark 1/0xff", "the mask 0xff is refused"),
    (f"{BASE} -j MARK --set-xmark 0x1/0x0000ffff", "the mask 0x0000ffff is refused"),
    (f"{BASE} -j MARK --or-mark 1", "'--or-mark' is refused"),
    (f"{BASE} -j MARK", "no -j MARK --set-mark N"),
    (f"{BASE} -j MARK --set-mark 0", "mark 0 is not in 1.."),
    (f"{BASE} -j MARK --set-mark one", "--set-mark 'one' is not a number"),
    (f"{BASE} --set-mark 1 -j MARK", "'--set-mark' needs -j MARK before it"),
    ("-A PREROUTING -t mangle -j MARK --set-mark 1", "no -d: every destination"),
    ("-A PREROUTING -t mangle -d 10.0.0.0/16 -j MARK --set-mark 1", "more than 256"),
    ("-A PREROUTING -t mangle -d 10.0.0.1,10.0.0.2 -j MARK --set-mark 1", "one destination"),
    ("-A PREROUTING -t mangle -d www.example.com -j MARK --set-mark 1", "not an address"),
    ("ip6tables -A PREROUTING -t mangle -d 10.0.0.1 -j MARK --set-mark 1",
     "is IPv4, and ip6tables is IPv6's"),
    ("iptables -A PREROUTING -t mangle -d 2001:db8::1 -j MARK --set-mark 1",
     "is IPv6, and iptables is IPv4's"),
    (f"{BASE} --dport 80 -j MARK --set-mark 1", "'--dport' needs -p tcp or -p udp"),
    (f"{BASE} -p icmp -j MARK --set-mark 1", "-p 'icmp' is refused"),
    (f"{BASE} -p tcp --dport http -j MARK --set-mark 1", "'http' is not a port number"),
    (f"{BASE} -p tcp --dport 90:80 -j MARK --set-mark 1", "low to high"),
    (f"{BASE} -p tcp -m multiport --dports " + ",".join(map(str, range(1, 17))) +
     " -j MARK --set-mark 1", "at most 15 ports"),
    (f"{BASE} -p tcp --dports 80 -j MARK --set-mark 1", "needs -m multiport"),
    (f"{BASE} -d 10.0.0.2 -j MARK --set-mark 1", "'-d' given twice"),
    ("", "an empty line"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_token(line, says):
    with pytest.raises(RuleError) as refused:
        parse_iptables(line)
    assert says in str(refused.value)


# -- nft ---------------------------------------------------------------------------------------

def test_nfts_form_of_the_man_pages_rule():
    assert parse_nft("nft add rule ip mangle PREROUTING ip daddr 207.175.44.110/31 meta mark "
                     "set 1") == MarkLine(MarkRule("207.175.44.110/31", 1))
    assert parse_nft("add rule mangle PREROUTING ip daddr 207.175.44.110/31 mark set 0x1"
                     ).rule == MarkRule("207.175.44.110/31", 1)


def test_nft_ports_sets_protocols_and_insert():
    line = parse_nft("nft insert rule inet lvs pre ip6 daddr 2001:db8::1 tcp dport "
                     "{ 80, 443, 8000-8100 } counter meta mark set 2")
    assert line == MarkLine(MarkRule("2001:db8::1/128", 2, 6,
                                     ((80, 80), (443, 443), (8000, 8100))), insert=1)
    assert parse_nft("add rule ip t c ip daddr 10.0.0.1 meta l4proto udp meta mark set 3"
                     ).rule == MarkRule("10.0.0.1/32", 3, 17)


@pytest.mark.parametrize("line, says", [
    ("add rule ip t c ip saddr 10.0.0.9 ip daddr 10.0.0.1 meta mark set 1", "'ip saddr "),
    ("add rule ip t c ip daddr != 10.0.0.1 meta mark set 1", "'!=' is refused"),
    ("add rule ip t c ip daddr { 10.0.0.1, 10.0.0.2 } meta mark set 1", "one destination"),
    ("add rule ip t c ip daddr 10.0.0.1 meta mark set meta mark or 1", "is not a number"),
    ("add rule ip t c ip daddr 10.0.0.1 tcp dport 80 udp dport 53 meta mark set 1",
     "another protocol"),
    ("add rule ip t c ip daddr 10.0.0.1 accept", "'accept' is refused"),
    ("add rule ip t c ip daddr 10.0.0.1", "sets no mark"),
    ("add rule ip6 t c ip daddr 10.0.0.1 meta mark set 1", "not of the rule's family"),
    ("delete rule ip t c handle 4", "`add rule` or `insert rule`"),
    ("add rule bridge t c ip daddr 10.0.0.1 meta mark set 1", "family 'bridge' is refused"),
])
def test_nft_refuses_what_it_cannot_honour(line, says):
    with pytest.raises(RuleError) as refused:
        parse_nft(line)
    assert says in str(refused.value)

"""The two-director --mistake labs' pure parts (no root needed): the mistakes and the command
line's word on them, and the reading of their trace (pcap records, ARP, ICMP echo, TCP, VRRP),
checked against frames scapy builds and a pcap scapy writes."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vrrp import VRRP
from scapy.utils import wrpcap

from pylvs.lab import mistakes
from pylvs.lab.topology import Lab

VIP, CLIENT = "192.168.1.100", "192.168.1.5"
C, D1, D2, RS = ("02:00:00:00:00:05", "02:00:00:00:00:02", "02:00:00:00:00:03",
                 "02:00:00:00:00:11")
ALL = "ff:ff:ff:ff:ff:ff"
NAMES = {C: "client", D1: "director", D2: "director2", RS: "rs1"}


def who_has() -> bytes:
    return bytes(Ether(src=C, dst=ALL) / ARP(op=1, hwsrc=C, psrc=CLIENT, pdst=VIP))


def is_at(mac: str) -> bytes:
    return bytes(Ether(src=mac, dst=C) / ARP(op=2, hwsrc=mac, psrc=VIP, hwdst=C, pdst=CLIENT))


def gratuitous(mac: str) -> bytes:
    return bytes(Ether(src=mac, dst=ALL) / ARP(op=1, hwsrc=mac, psrc=VIP, pdst=VIP))


def syn(to: str, port: int) -> bytes:
    return bytes(Ether(src=C, dst=to) / IP(src=CLIENT, dst=VIP) / TCP(sport=port, dport=80,
                                                                        flags="S"))


def syn_ack(port: int) -> bytes:
    return bytes(Ether(src=RS, dst=C) / IP(src=VIP, dst=CLIENT) / TCP(sport=80, dport=port,
                                                                        flags="SA"))


def ping(to: str, reply: bool = False) -> bytes:
    if reply:
        return bytes(Ether(src=to, dst=C) / IP(src=VIP, dst=CLIENT) / ICMP(type=0))
    return bytes(Ether(src=C, dst=to) / IP(src=CLIENT, dst=VIP) / ICMP(type=8))


def advert(mac: str, priority: int) -> bytes:
    return bytes(Ether(src=mac, dst="01:00:5e:00:00:12") / IP(src="192.168.1.3",
                 dst="224.0.0.18", ttl=255, proto=112) / VRRP(vrid=51, priority=priority,
                                                               addrlist=[VIP]))


SPLIT = [(10.0, advert(D1, 150)), (13.2, gratuitous(D2)), (13.2, gratuitous(D2)),
         (13.5, advert(D2, 100)), (14.0, who_has()), (14.0, is_at(D2)), (14.0, is_at(D1)),
         (14.1, syn(D2, 40001)), (14.1, syn_ack(40001)), (14.2, syn(D1, 40002)),
         (15.2, syn(D1, 40002)), (16.0, ping(D1)), (16.0, ping(D1, reply=True)),
         (18.2, gratuitous(D2))]


def test_the_directors_mistakes_need_ha_and_the_real_servers_do_not():
    assert mistakes.for_mode("dr") == ["arp", "netmask"]
    assert mistakes.for_mode("dr", ha=True) == ["no-cleanup", "vrrp-strict"]
    assert mistakes.validate("dr", "vrrp-strict", ha=True).cause == "vrrp_strict"
    with pytest.raises(ValueError, match=r"no mistake 'no-cleanup' for a dr lab \(.*dr --ha: "
                                         r"no-cleanup, vrrp-strict\)"):
        mistakes.validate("dr", "no-cleanup")
    with pytest.raises(ValueError, match="no mistake 'arp' for a dr lab with --ha"):
        mistakes.validate("dr", "arp", ha=True)
    with pytest.raises(ValueError, match="no mistake 'no-cleanup' for a dr lab"):
        Lab(mode="dr", mistake="no-cleanup")  # the real servers' steps know none of these


def _pylvs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("argv", "said"), [
    (["dr", "--mistake", "no-cleanup"], "no mistake 'no-cleanup' for a dr lab ("),
    (["dr", "--ha", "--mistake", "arp"], "no mistake 'arp' for a dr lab with --ha"),
    (["nat", "--ha", "--mistake", "vrrp-strict"], "no mistake 'vrrp-strict' for a nat lab with"),
    (["dr", "--ha", "--ipv6", "--mistake", "vrrp-strict"], "the --mistake labs are IPv4's"),
])
def test_cli_refuses_a_directors_mistake_out_of_its_lab(argv, said):
    refused = _pylvs("lab", *argv)
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr


def test_pcap_frames_reads_what_tcpdump_and_scapy_write(tmp_path):
    path = tmp_path / "wire.pcap"
    packets = [Ether(frame) for _, frame in SPLIT[:3]]
    for packet, (when, _) in zip(packets, SPLIT, strict=False):
        packet.time = when
    wrpcap(str(path), packets)
    frames = mistakes.pcap_frames(path.read_bytes())
    assert [frame for _, frame in frames] == [frame for _, frame in SPLIT[:3]]
    assert [round(when, 3) for when, _ in frames] == [10.0, 13.2, 13.2]
    nano = bytearray(path.read_bytes())
    nano[:4] = b"\x4d\x3c\xb2\xa1"  # tcpdump --time-stamp-precision nano
    struct.pack_into("<I", nano, 24 + 4, 200_000_000)  # the first record's fraction, in ns
    assert mistakes.pcap_frames(bytes(nano))[0][0] == pytest.approx(10.2)
    with pytest.raises(ValueError, match="not a pcap"):
        mistakes.pcap_frames(b"nothing")


def test_decode_and_the_lines_of_the_trace():
    assert mistakes.decode(who_has())["tpa"] == VIP
    assert mistakes.decode(advert(D2, 100))["priority"] == 100
    assert mistakes.decode(syn(D1, 40002))["flags"] == 0x02
    assert mistakes.decode(b"\x00" * 10) is None
    lines = mistakes.trace_lines(SPLIT, VIP, NAMES)
    assert lines == [
        f"  3.200 s  director2 → all: gratuitous ARP: {VIP} is at {D2}",
        f"  3.200 s  director2 → all: gratuitous ARP: {VIP} is at {D2}",
        f"  4.000 s  client → all: ARP who has {VIP}? tell {CLIENT}",
        f"  4.000 s  director2 → client: ARP {VIP} is at {D2} (director2)",
        f"  4.000 s  director → client: ARP {VIP} is at {D1} (director)",
        f"  4.100 s  client → director2: SYN {CLIENT}:40001 → {VIP}:80",
        f"  4.100 s  rs1 → client: SYN-ACK {VIP}:80 → {CLIENT}:40001",
        f"  4.200 s  client → director: SYN {CLIENT}:40002 → {VIP}:80",
        f"  5.200 s  client → director: SYN {CLIENT}:40002 → {VIP}:80",
        f"  6.000 s  client → director: ICMP echo request {CLIENT} → {VIP}",
        f"  6.000 s  director → client: ICMP echo reply {VIP} → {CLIENT}",
        f"  8.200 s  director2 → all: gratuitous ARP: {VIP} is at {D2}"]


def test_the_facts_of_a_split():
    assert mistakes.arp_answers(SPLIT, VIP, NAMES) == ["director2", "director"]
    assert mistakes.syn_facts(SPLIT, VIP, NAMES) == [
        "1 SYN to the VIP sent to director2's MAC: 1 answered (SYN-ACK from rs1)",
        "1 SYN to the VIP sent to director's MAC: 0 answered"]
    assert mistakes.echo_facts(SPLIT, VIP, NAMES) == \
        f"1 ICMP echo request to {VIP} (to director's MAC), 1 echo reply"
    assert mistakes.gratuitous_line(SPLIT, VIP, NAMES) == \
        f"gratuitous ARPs for {VIP}: director2, 2 at 3.200 s and 1 at 8.200 s"
    assert mistakes.vrrp_line(SPLIT, NAMES) == (
        "VRRP adverts: director, priority 150: 1 from 0.000 s to 0.000 s; director2, "
        "priority 100: 1 from 3.500 s to 3.500 s")
    assert mistakes.vrrp_line([], NAMES) == "no VRRP advert"


def test_the_facts_of_an_unanswered_ping():
    strict = [(1.0, ping(D1)), (1.2, ping(D1)), (1.4, ping(D1))]
    assert mistakes.echo_facts(strict, VIP, NAMES) == \
        f"3 ICMP echo requests to {VIP} (to director's MAC), 0 echo replies"
    assert mistakes.arp_answers(strict, VIP, NAMES) == []


def test_our_echo_request_is_a_valid_icmp_echo():
    packet = ICMP(mistakes.echo_request(0x1234, 7))
    assert (packet.type, packet.id, packet.seq) == (8, 0x1234, 7)
    assert mistakes._checksum(mistakes.echo_request(0x1234, 7)) == 0  # sums to all ones


def test_the_strict_ruleset_is_keepalived_s():
    """As `nft list table ip keepalived` lists what Debian's keepalived 2.2.7 installs under
    vrrp_strict (tests/e2e/test_mistakes_ha.py compares it with keepalived's own)."""
    ruleset = mistakes.keepalived_strict_ruleset([VIP])
    assert f"elements = {{ {VIP} }}" in ruleset
    assert "type filter hook input priority filter - 1; policy accept;\n\t\tip daddr @vips drop" \
        in ruleset
    assert "type filter hook output priority filter - 1; policy accept;\n\t\tip saddr @vips " \
        "drop" in ruleset

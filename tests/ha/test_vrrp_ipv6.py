"""VRRPv3 over IPv6 (RFC 5798, keepalived's vrrp.c and vrrp_ndisc.c): adverts against scapy's
IPv6 / VRRPv3 field by field, the checksum over the IPv6 pseudo-header, keepalived's receive
rules (hop limit 255 unless unicast, the destination's kind), unsolicited Neighbor
Advertisements against scapy's ICMPv6ND_NA, and the state machine between IPv6 routers."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vrrp import VRRPv3

from pylvs.ha.vrrp import (
    VRRP_GROUP6,
    AddVips,
    Advert,
    Instance,
    InstanceConfig,
    RemoveVips,
    SendAdvert,
    SendGarps,
    State,
    StateChange,
    VrrpError,
    advert_frame,
    group,
    ip6_packet,
    link_local_first,
    na_frame,
    parse_packet6,
)
from tests.ha.test_vrrp import Lan

ips6 = st.ip_addresses(v=6).map(str)
link_locals = st.integers(0, 2**64 - 1).map(lambda n: str(ipaddress.IPv6Address(
    (0xFE80 << 112) | n)))
address_lists = st.lists(ips6, max_size=10).map(tuple)
vrids = st.integers(1, 255)
priorities = st.integers(0, 255)
macs = st.binary(min_size=6, max_size=6)
SRC, PEER = "fe80::1", "fe80::2"
VIPS = ("fe80::51", "2001:db8::100")


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def scapy_v3(src: str, vrid: int, priority: int, centiseconds: int, addresses: tuple[str, ...],
             dst: str = VRRP_GROUP6, res: int = 0, hlim: int = 255) -> IPv6:
    return IPv6(src=src, dst=dst, tc=0xC0, hlim=hlim) / VRRPv3(
        vrid=vrid, priority=priority, adv=centiseconds, res=res, addrlist=list(addresses))


# --- the wire format --------------------------------------------------------------------------


@given(vrid=vrids, priority=priorities, centiseconds=st.integers(1, 4095),
       addresses=address_lists, src=link_locals)
def test_v3_over_ipv6_encodes_byte_for_byte_scapys(vrid, priority, centiseconds, addresses, src):
    """RFC 5798 §5.2: 16-byte addresses, the checksum over the IPv6 pseudo-header (§5.2.8, RFC
    8200 §8.1) as scapy's in6_chksum computes it; the IPv6 header keepalived's socket gives it
    (traffic class 0xC0, next header 112, hop limit 255)."""
    ours = Advert(3, vrid, priority, centiseconds / 100, addresses).encode(src)
    theirs = bytes(scapy_v3(src, vrid, priority, centiseconds, addresses))
    assert ours == theirs[40:]
    assert ip6_packet(ours, src) == theirs
    seen = IPv6(ip6_packet(ours, src))
    assert (seen.version, seen.tc, seen.fl, seen.plen, seen.nh, seen.hlim, seen.src, seen.dst) == (
        6, 0xC0, 0, 8 + 16 * len(addresses), 112, 255, src, VRRP_GROUP6)
    vrrp = seen[VRRPv3]
    assert (vrrp.version, vrrp.type, vrrp.vrid, vrrp.priority, vrrp.ipcount, vrrp.res,
            vrrp.adv) == (3, 1, vrid, priority, len(addresses), 0, centiseconds)
    assert [str(ipaddress.IPv6Address(a)) for a in vrrp.addrlist] == [
        str(ipaddress.IPv6Address(a)) for a in addresses]


@given(vrid=st.integers(0, 255), priority=priorities, centiseconds=st.integers(0, 4095),
       addresses=address_lists, res=st.integers(0, 15), src=ips6, dst=ips6)
def test_v3_over_ipv6_decodes_what_scapy_builds(vrid, priority, centiseconds, addresses, res,
                                                  src, dst):
    """Any source and destination: the pseudo-header is theirs (a unicast peer's too); the
    reserved bits are ignored (RFC 5798 §5.2.5)."""
    packet = bytes(scapy_v3(src, vrid, priority, centiseconds, addresses, dst, res))
    expected = Advert(3, vrid, priority, centiseconds / 100, addresses)
    assert Advert.decode(packet[40:], src, 255, dst) == expected
    assert parse_packet6(packet) == (expected, str(ipaddress.IPv6Address(src)))


def test_the_checksum_covers_both_addresses_of_the_pseudo_header():
    """RFC 5798 §5.2.8: source and destination are summed; a packet that claims another one
    fails (the kernel, under keepalived's IPV6_CHECKSUM, would drop it too)."""
    wire = Advert(3, 1, 100, 1.0, VIPS).encode(SRC)
    assert Advert.decode(wire, SRC, 255).addresses == VIPS
    for src, dst in ((PEER, VRRP_GROUP6), (SRC, "ff02::1")):
        with pytest.raises(VrrpError, match="bad VRRPv3 checksum"):
            Advert.decode(wire, src, 255, dst)
    unicast = Advert(3, 1, 100, 1.0, VIPS).encode(SRC, "2001:db8::3")
    assert unicast != wire
    assert Advert.decode(unicast, SRC, 255, "2001:db8::3").addresses == VIPS


@pytest.mark.parametrize("offset", [2, 6, 7, 8, 23, 39])
def test_a_corrupt_checksum_is_refused(offset):
    wire = bytearray(Advert(3, 1, 100, 1.0, VIPS).encode(SRC))
    wire[offset] ^= 0x40
    with pytest.raises(VrrpError, match="checksum"):
        Advert.decode(bytes(wire), SRC, 255)


@pytest.mark.parametrize("hop_limit", [0, 1, 64, 254])
def test_a_hop_limit_other_than_255_is_refused_unless_the_instance_is_unicast(hop_limit):
    """RFC 5798 §7.1 and keepalived's vrrp_check_packet: 'MUST verify that the IPv4 TTL/IPv6
    HL is 255 (but not if unicast)': keepalived's own unicast IPv6 adverts leave with the
    kernel's hop limit, 64, unless unicast_ttl says otherwise."""
    wire = Advert(3, 1, 100, 1.0, VIPS).encode(SRC)
    for unicast in (None, False):
        with pytest.raises(VrrpError, match=f"hop limit {hop_limit}, expected 255"):
            Advert.decode(wire, SRC, hop_limit, unicast=unicast)
    packet = bytes(scapy_v3(SRC, 1, 100, 100, VIPS, hlim=hop_limit))
    with pytest.raises(VrrpError, match="hop limit"):
        parse_packet6(packet)
    peer = Advert(3, 1, 100, 1.0, VIPS).encode(SRC, "2001:db8::3")
    assert Advert.decode(peer, SRC, hop_limit, "2001:db8::3", unicast=True).priority == 100


def test_the_destination_must_be_of_the_instance_s_kind():
    """keepalived (vrrp_scheduler.c, from IPV6_PKTINFO): a multicast advert on a unicast
    instance, or a unicast one on a multicast instance, is discarded."""
    multicast = Advert(3, 1, 100, 1.0, VIPS).encode(SRC)
    with pytest.raises(VrrpError, match="a multicast advert .* on a unicast instance"):
        Advert.decode(multicast, SRC, 255, VRRP_GROUP6, unicast=True)
    unicast = Advert(3, 1, 100, 1.0, VIPS).encode(SRC, "2001:db8::3")
    with pytest.raises(VrrpError, match="a unicast advert .* on a multicast instance"):
        Advert.decode(unicast, SRC, 255, "2001:db8::3", unicast=False)


def test_malformed_ipv6_adverts_are_refused():
    wire = Advert(3, 1, 100, 1.0, VIPS).encode(SRC)
    v2 = bytes([0x21]) + wire[1:]
    cases = [(wire[:7], "truncated"), (wire[:-1], "truncated"), (wire + bytes(16), "count 2"),
             (wire + bytes(4), "count 2"), (v2, "version 2 over IPv6"),
             (bytes([0x32]) + wire[1:], "type 2")]
    for payload, reason in cases:
        with pytest.raises(VrrpError, match=reason):
            Advert.decode(payload, SRC, 255)
    packet = bytes(IPv6(src=SRC, dst=VRRP_GROUP6, nh=17, hlim=255, plen=len(wire))) + wire
    with pytest.raises(VrrpError, match="next header 17"):
        parse_packet6(packet)


def test_an_advert_is_of_one_family_and_ipv6_is_vrrpv3():
    """keepalived: an instance's addresses are of its family; an IPv6 instance is version 3."""
    with pytest.raises(ValueError, match="one family"):
        Advert(3, 1, 100, 1.0, ("192.0.2.1", "2001:db8::1"))
    with pytest.raises(ValueError, match="VRRPv3"):
        Advert(2, 1, 100, 1, ("2001:db8::1",))
    with pytest.raises(ValueError, match="of its family"):
        Advert(3, 1, 100, 1.0, ("2001:db8::1",)).encode("192.0.2.2")
    with pytest.raises(ValueError, match="of its family"):
        Advert(3, 1, 100, 1.0, VIPS).encode(SRC, "224.0.0.18")
    assert Advert(3, 1, 100, 1.0, ("2001:DB8:0::1",)).addresses == ("2001:db8::1",)
    assert (group("fe80::1"), group("192.0.2.1")) == ("ff02::12", "224.0.0.18")


def test_the_advert_frame_goes_to_the_ipv6_group_mac():
    """RFC 2464 §7: ff02::12 maps to 33:33:00:00:00:12."""
    packet = ip6_packet(Advert(3, 7, 100, 1.0, VIPS).encode(SRC), SRC)
    theirs = Ether(dst="33:33:00:00:00:12", src="02:00:00:00:00:01", type=0x86DD) / IPv6(packet)
    assert advert_frame(bytes.fromhex("020000000001"), packet) == bytes(theirs)


def test_link_local_first_is_rfc_5798_s_wish_that_keepalived_only_warns_about():
    assert link_local_first(VIPS) and link_local_first(())
    assert not link_local_first(("2001:db8::100", "fe80::51"))


# --- unsolicited Neighbor Advertisements ------------------------------------------------------


@given(mac=macs, vip=ips6, router=st.booleans())
def test_na_frame_is_keepalived_s_unsolicited_neighbor_advertisement(mac, vip, router):
    """vrrp_ndisc.c: Ethernet to 33:33:00:00:00:01 from the interface's MAC; IPv6 from the VIP
    to ff02::1, hop limit 255, traffic class and flow label 0; ICMPv6 NA with Override set,
    Solicited clear, Router as the interface forwards; target the VIP; a target link-layer
    address option (type 2, length 1) with the MAC; the checksum over the pseudo-header."""
    theirs = Ether(dst="33:33:00:00:00:01", src=mac_text(mac)) / IPv6(
        src=vip, dst="ff02::1", hlim=255) / ICMPv6ND_NA(R=int(router), S=0, O=1, tgt=vip) / \
        ICMPv6NDOptDstLLAddr(lladdr=mac_text(mac))
    ours = na_frame(mac, vip, router)
    assert ours == bytes(theirs)
    seen = Ether(ours)
    na = seen[ICMPv6ND_NA]
    assert (seen[IPv6].hlim, seen[IPv6].tc, seen[IPv6].fl, seen[IPv6].plen) == (255, 0, 0, 32)
    assert (na.type, na.code, na.R, na.S, na.O, na.res) == (136, 0, int(router), 0, 1, 0)
    assert (seen[ICMPv6NDOptDstLLAddr].type, seen[ICMPv6NDOptDstLLAddr].len) == (2, 1)


# --- the state machine between IPv6 routers ---------------------------------------------------


def make(ip: str, **options) -> Instance:
    return Instance(InstanceConfig(vrid=51, source_ip=ip, vips=VIPS, version=3, **options))


def test_an_ipv6_instance_config_is_one_family_and_vrrpv3():
    with pytest.raises(ValueError, match="VRRPv3"):
        InstanceConfig(51, SRC, VIPS, version=2)
    with pytest.raises(ValueError, match="family"):
        InstanceConfig(51, SRC, ("192.0.2.1",), version=3)
    with pytest.raises(ValueError, match="family"):
        InstanceConfig(51, "192.0.2.2", VIPS, version=3)
    assert InstanceConfig(51, SRC, ("FE80::51",), version=3).vips == ("fe80::51",)


@pytest.mark.parametrize("first", ["low", "high"])
def test_ipv6_routers_elect_by_priority_and_a_stop_hands_over_after_skew_time(first):
    """RFC 5798 §6.4 between IPv6 routers on a simulated link, every advert encoded over the
    IPv6 pseudo-header and decoded by the others."""
    low, high = make(SRC, priority=100), make(PEER, priority=200)
    lan = Lan(low, high)
    early, late = (low, high) if first == "low" else (high, low)
    lan.start(early, 0.0)
    lan.start(late, 10.0)
    lan.run(40.0)
    assert (high.state, low.state) == (State.MASTER, State.BACKUP)
    lan.stop(high, 40.5)
    assert [a for t, src, a in lan.log if src == PEER and t == 40.5][:2] == [
        SendAdvert(0), RemoveVips()]
    lan.run(41.5)
    assert low.state == State.MASTER
    assert lan.became_master(low)[-1] == 40.5 + (256 - 100) / 256


def test_equal_priorities_are_broken_by_the_higher_link_local_address():
    """RFC 5798 §6.4.3 and keepalived's inet_inaddrcmp: two masters of equal priority (a healed
    partition) keep the one whose address is the greater 128-bit number; fe80::2 beats fe80::1,
    and fe80::1:0 beats fe80::ffff (no text comparison)."""
    for lower, higher in ((SRC, PEER), ("fe80::ffff", "fe80::1:0")):
        for first in (lower, higher):
            a, b = make(lower), make(higher)
            lan = Lan(a, b)
            lan.up = False
            lan.start(a, 0.0 if first == lower else 0.5)
            lan.start(b, 0.5 if first == lower else 0.0)
            lan.run(10.0)
            assert (a.state, b.state) == (State.MASTER, State.MASTER)
            lan.up = True
            lan.run(20.0)
            assert (a.state, b.state) == (State.BACKUP, State.MASTER), (lower, higher, first)


def test_becoming_master_announces_the_vips_as_ipv4_does():
    """The same times and counts as gratuitous ARPs (garp_master_repeat 5 now and 5 more after
    garp_master_delay 5 s): keepalived's vrrp_send_link_update sends NAs for IPv6 VIPs."""
    router = make(SRC, priority=255)
    assert router.start(0.0) == [AddVips(), SendGarps(5), StateChange(State.INIT, State.MASTER),
                                 SendAdvert(255)]
    assert router.tick(1.0) == [SendAdvert(255)]
    assert router.tick(5.0)[0] == SendGarps(5)

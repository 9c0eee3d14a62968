"""VRRP adverts against scapy's own VRRP/VRRPv3 layers, and the state machine on a simulated LAN."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vrrp import VRRP, VRRPv3
from scapy.packet import Raw

from pylvs.ha.vrrp import (
    VRRP_GROUP,
    Action,
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
    garp_frame,
    ip_packet,
    parse_packet,
)

ips = st.ip_addresses(v=4).map(str)
address_lists = st.lists(ips, max_size=10).map(tuple)
vrids = st.integers(1, 255)
priorities = st.integers(0, 255)
passwords = st.binary(max_size=12)
MAC = bytes.fromhex("020000000001")
SRC = "192.0.2.10"


def padded(password: bytes) -> bytes:
    return password[:8].ljust(8, b"\x00") if password else b""


def scapy_v2(vrid: int, priority: int, interval: int, addresses: tuple[str, ...],
             password: bytes, authtype: int | None = None) -> VRRP:
    pw = padded(password) or bytes(8)
    return VRRP(vrid=vrid, priority=priority, adv=interval, addrlist=list(addresses),
                authtype=(1 if password else 0) if authtype is None else authtype,
                auth1=int.from_bytes(pw[:4], "big"), auth2=int.from_bytes(pw[4:], "big"))


def scapy_v3(src: str, vrid: int, priority: int, centiseconds: int,
             addresses: tuple[str, ...], res: int = 0) -> IP:
    return IP(src=src, dst=VRRP_GROUP, ttl=255, proto=112) / VRRPv3(
        vrid=vrid, priority=priority, adv=centiseconds, res=res, addrlist=list(addresses))


# --- the wire format --------------------------------------------------------------------------


@given(vrid=vrids, priority=priorities, interval=st.integers(1, 255), addresses=address_lists,
       password=passwords, src=ips)
def test_v2_encode_is_byte_for_byte_scapys(vrid, priority, interval, addresses, password, src):
    """RFC 3768 §5.1 and keepalived: 8 auth bytes always present and summed, PASS truncated to 8."""
    ours = Advert(2, vrid, priority, interval, addresses, password).encode(src)
    assert ours == bytes(scapy_v2(vrid, priority, interval, addresses, password))
    seen = VRRP(ours)
    assert (seen.version, seen.type, seen.vrid, seen.priority, seen.ipcount, seen.adv) == (
        2, 1, vrid, priority, len(addresses), interval)
    assert seen.addrlist == list(addresses)
    assert seen.authtype == (1 if password else 0)
    assert (seen.auth1.to_bytes(4, "big") + seen.auth2.to_bytes(4, "big")) == (
        padded(password) or bytes(8))


@given(vrid=st.integers(0, 255), priority=priorities, interval=st.integers(0, 255),
       addresses=address_lists, auth=st.binary(min_size=8, max_size=8),
       authtype=st.sampled_from([0, 1]), src=ips)
def test_v2_decodes_what_scapy_builds(vrid, priority, interval, addresses, auth, authtype, src):
    """RFC 3768 §5.3: the password is read only with auth type 1 (keepalived's PASS)."""
    wire = bytes(scapy_v2(vrid, priority, interval, addresses, auth, authtype))
    advert = Advert.decode(wire, src, 255)
    assert advert == Advert(2, vrid, priority, interval, addresses, auth if authtype else b"")
    if authtype:  # with type 0 the auth bytes are junk that re-encoding zeroes
        assert advert.encode(src) == wire


@given(vrid=vrids, priority=priorities, centiseconds=st.integers(1, 4095),
       addresses=address_lists, src=ips)
def test_v3_encode_is_byte_for_byte_scapys(vrid, priority, centiseconds, addresses, src):
    """RFC 5798 §5.2: centisecond interval, checksum over the IPv4 pseudo-header (keepalived)."""
    ours = Advert(3, vrid, priority, centiseconds / 100, addresses).encode(src)
    assert ours == bytes(scapy_v3(src, vrid, priority, centiseconds, addresses))[20:]
    seen = VRRPv3(ours, _underlayer=IP(src=src, dst=VRRP_GROUP))
    assert (seen.version, seen.type, seen.vrid, seen.priority, seen.ipcount, seen.adv) == (
        3, 1, vrid, priority, len(addresses), centiseconds)
    assert seen.addrlist == list(addresses)


@given(vrid=st.integers(0, 255), priority=priorities, centiseconds=st.integers(0, 4095),
       addresses=address_lists, res=st.integers(0, 15), src=ips)
def test_v3_decodes_what_scapy_builds(vrid, priority, centiseconds, addresses, res, src):
    """RFC 5798 §5.2.5: the 4 reserved bits are ignored on receipt."""
    packet = bytes(scapy_v3(src, vrid, priority, centiseconds, addresses, res))
    expected = Advert(3, vrid, priority, centiseconds / 100, addresses)
    assert Advert.decode(packet[20:], src, 255) == expected
    assert parse_packet(packet) == (expected, src)


@given(payload=st.binary(max_size=80), src=ips, ident=st.integers(0, 65535))
def test_ip_packet_is_scapys(payload, src, ident):
    """keepalived's IP header: TOS 0xC0, TTL 255, protocol 112, to 224.0.0.18, no DF."""
    theirs = IP(tos=0xC0, id=ident, flags=0, ttl=255, proto=112, src=src, dst=VRRP_GROUP)
    assert ip_packet(payload, src, ident=ident) == bytes(theirs / Raw(payload))


def test_advert_frame_goes_to_the_vrrp_multicast_mac():
    """RFC 3768 §5.2.2 / RFC 1112: 224.0.0.18 maps to 01:00:5e:00:00:12."""
    packet = ip_packet(Advert(2, 7, 100, 1, ("10.0.0.1",)).encode(SRC), SRC)
    theirs = Ether(dst="01:00:5e:00:00:12", src="02:00:00:00:00:01") / IP(packet)
    assert advert_frame(MAC, packet) == bytes(theirs)


@given(ip=ips)
def test_garp_frame_is_keepalived_gratuitous_arp(ip):
    """keepalived vrrp_arp.c: broadcast ARP request, sender = target = VIP, tha ff:ff:..."""
    theirs = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(
        op=1, hwsrc="02:00:00:00:00:01", psrc=ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=ip)
    assert garp_frame(MAC, ip) == bytes(theirs)


@pytest.mark.parametrize("ttl", [0, 1, 64, 254])
def test_ttl_other_than_255_is_refused(ttl):
    """RFC 3768 §7.1 / RFC 5798 §7.1: MUST verify that the IP TTL is 255."""
    for version, interval in ((2, 1), (3, 1.0)):
        wire = Advert(version, 1, 100, interval, ("10.0.0.1",)).encode(SRC)
        with pytest.raises(VrrpError, match="TTL"):
            Advert.decode(wire, SRC, ttl)


@pytest.mark.parametrize("version, interval", [(2, 1), (3, 1.0)])
@pytest.mark.parametrize("offset", [2, 6, 7, 8, 11])
def test_corrupt_checksum_is_refused(version, interval, offset):
    """RFC 3768 §7.1 / RFC 5798 §7.1: MUST verify the VRRP checksum."""
    wire = bytearray(Advert(version, 1, 100, interval, ("10.0.0.1",)).encode(SRC))
    wire[offset] ^= 0x40
    with pytest.raises(VrrpError, match="checksum"):
        Advert.decode(bytes(wire), SRC, 255)


def test_v3_checksum_covers_the_source_address():
    """RFC 5798 §5.2.8: the v3 checksum includes the pseudo-header; v2's (RFC 3768) does not."""
    v3 = Advert(3, 1, 100, 1.0, ("10.0.0.1",)).encode(SRC)
    with pytest.raises(VrrpError, match="checksum"):
        Advert.decode(v3, "192.0.2.11", 255)
    v2 = Advert(2, 1, 100, 1, ("10.0.0.1",)).encode(SRC)
    assert Advert.decode(v2, "192.0.2.11", 255).priority == 100


@pytest.mark.parametrize("version, interval", [(2, 1), (3, 1.0)])
def test_malformed_adverts_are_refused(version, interval):
    """RFC 3768 §7.1: length, version and type checks, each with its own reason."""
    wire = Advert(version, 1, 100, interval, ("10.0.0.1", "10.0.0.2")).encode(SRC)
    cases = [(wire[:5], "truncated"), (wire[:-1], "truncated"),
             (wire + bytes(4), "count 2 does not match"),
             (bytes([0x11]) + wire[1:], "version 1"), (bytes([0x42]) + wire[1:], "version 4"),
             (bytes([version << 4 | 2]) + wire[1:], "type 2")]
    for payload, reason in cases:
        with pytest.raises(VrrpError, match=reason):
            Advert.decode(payload, SRC, 255)


def test_v2_unknown_auth_type_is_refused():
    """keepalived vrrp_in_chk: only auth types 0 (none) and 1 (PASS) are VRRP-in-IP adverts."""
    wire = bytes(scapy_v2(1, 100, 1, ("10.0.0.1",), b"x", authtype=2))
    with pytest.raises(VrrpError, match="auth type 2"):
        Advert.decode(wire, SRC, 255)


def test_parse_packet_checks_the_ip_header():
    """Only protocol 112 datagrams with a good header checksum reach the VRRP decoder."""
    packet = bytearray(ip_packet(Advert(2, 1, 100, 1).encode(SRC), SRC))
    assert parse_packet(bytes(packet)) == (Advert(2, 1, 100, 1), SRC)
    udp = bytes(IP(src=SRC, dst=VRRP_GROUP, ttl=255, proto=17) / Raw(bytes(packet[20:])))
    with pytest.raises(VrrpError, match="protocol 17"):
        parse_packet(udp)
    packet[8] = 64  # TTL changed without fixing the header checksum
    with pytest.raises(VrrpError, match="IP header checksum"):
        parse_packet(bytes(packet))


def test_advert_fields_must_fit_the_wire():
    """RFC 3768 §5.3.7: v2 intervals are whole seconds; RFC 5798 has no authentication."""
    with pytest.raises(ValueError, match="whole seconds"):
        Advert(2, 1, 100, 1.5)
    with pytest.raises(ValueError, match="centiseconds"):
        Advert(3, 1, 100, 0.333)
    with pytest.raises(ValueError, match="no authentication"):
        Advert(3, 1, 100, 1.0, auth=b"secret")
    assert Advert(2, 1, 100, 1, auth=b"longpassword").auth == b"longpass"


# --- the state machine ------------------------------------------------------------------------

VIPS = ("10.0.0.100", "10.0.0.101")
LOW, HIGH = "192.0.2.1", "192.0.2.2"


def make(ip: str, **options) -> Instance:
    return Instance(InstanceConfig(vrid=51, source_ip=ip, vips=VIPS, **options))


def advert(priority: int, **options) -> Advert:
    fields = {"version": 2, "vrid": 51, "interval": 1, "addresses": VIPS} | options
    return Advert(priority=priority, **fields)


def master(ip: str = LOW, **options) -> Instance:
    router = make(ip, **options)
    router.start(0.0)
    router.tick(router.next_deadline)
    assert router.state == State.MASTER
    return router


class Lan:
    """Routers on one segment; each advert travels encoded and is decoded by every other one."""

    def __init__(self, *routers: Instance) -> None:
        self.routers = routers
        self.up = True
        self.log: list[tuple[float, str, Action]] = []

    def start(self, router: Instance, now: float) -> None:
        self.deliver(router, router.start(now), now)

    def stop(self, router: Instance, now: float) -> None:
        self.deliver(router, router.stop(now), now)

    def run(self, until: float) -> None:
        while (now := min(r.next_deadline for r in self.routers)) <= until:
            for router in self.routers:
                if router.next_deadline <= now:
                    self.deliver(router, router.tick(now), now)

    def deliver(self, sender: Instance, actions: list[Action], now: float) -> None:
        queue = [(sender, action) for action in actions]
        while queue:
            router, action = queue.pop(0)
            src = router.config.source_ip
            self.log.append((now, src, action))
            if not (self.up and isinstance(action, SendAdvert)):
                continue
            wire = router.advert(action.priority).encode(src)
            for other in self.routers:
                if other is not router:
                    replies = other.receive(Advert.decode(wire, src, 255), src, now)
                    queue += [(other, reply) for reply in replies]

    def of(self, router: Instance, kind: type, since: float = -math.inf) -> list[tuple]:
        return [(t, a) for t, src, a in self.log
                if src == router.config.source_ip and isinstance(a, kind) and t >= since]

    def became_master(self, router: Instance) -> list[float]:
        return [t for t, a in self.of(router, StateChange) if a.new == State.MASTER]


@pytest.mark.parametrize("version, priority, interval, expected", [
    (2, 100, 1, 3 + 156 / 256),
    (2, 200, 2, 6 + 56 / 256),
    (2, 1, 1, 3 + 255 / 256),
    (3, 100, 1.0, 3 + 156 / 256),
    (3, 100, 0.5, 1.5 + 156 * 0.5 / 256),
    (3, 200, 2.0, 6 + 56 * 2.0 / 256),
])
def test_master_down_interval(version, priority, interval, expected):
    """RFC 3768 §6.1: 3 × interval + (256 − p)/256; RFC 5798 §6.1: skew scales with interval."""
    router = make(LOW, version=version, priority=priority, interval=interval)
    assert router.master_down_interval == expected
    assert router.start(10.0) == [StateChange(State.INIT, State.BACKUP)]
    assert router.next_deadline == 10.0 + expected
    assert router.tick(10.0 + expected - 0.001) == []
    assert router.tick(10.0 + expected)[:2] == [AddVips(), SendGarps(5)]


def test_v3_backup_adopts_the_masters_interval():
    """RFC 5798 §6.4.2: Master_Adver_Interval := the advert's, Skew and Master_Down recomputed."""
    router = make(LOW, version=3, interval=1.0)
    router.start(0.0)
    router.receive(advert(200, version=3, interval=2.0), HIGH, 1.0)
    assert router.master_interval == 2.0
    assert router.next_deadline == 1.0 + 6 + 156 * 2 / 256
    router.receive(advert(0, version=3, interval=2.0), HIGH, 2.0)
    assert router.next_deadline == 2.0 + 156 * 2 / 256


def test_owner_starts_as_master_at_once():
    """RFC 3768 §6.4.1: priority 255 goes straight to Master, VIPs, GARPs and an advert."""
    router = make(LOW, priority=255)
    assert router.start(0.0) == [AddVips(), SendGarps(5), StateChange(State.INIT, State.MASTER),
                                 SendAdvert(255)]
    assert router.next_deadline == 1.0


def test_initial_master_below_255_still_waits_as_backup():
    """keepalived: `state MASTER` with priority < 255 waits a Master_Down_Interval first."""
    router = make(LOW, priority=200, initial_state=State.MASTER, preempt=False)
    assert router.start(0.0) == [StateChange(State.INIT, State.BACKUP)]
    assert router.next_deadline == 3 + 56 / 256
    assert router.preempt  # keepalived: "nopreempt will not work with initial state MASTER"


@pytest.mark.parametrize("first", ["low", "high"])
def test_election_by_priority_in_either_start_order(first):
    """RFC 3768 §6.4.2: the higher priority becomes master whichever router starts first."""
    low, high = make(LOW, priority=100), make(HIGH, priority=200)
    lan = Lan(low, high)
    early, late = (low, high) if first == "low" else (high, low)
    lan.start(early, 0.0)
    lan.start(late, 10.0)
    lan.run(40.0)
    assert (high.state, low.state) == (State.MASTER, State.BACKUP)
    assert lan.became_master(high) == [3 + 56 / 256 if first == "high" else 10 + 3 + 56 / 256]
    if first == "low":  # low was master until high's down timer expired: pre-empted, silently
        assert lan.became_master(low) == [3 + 156 / 256]
        assert [a for t, src, a in lan.log if src == LOW and t == 10 + 3 + 56 / 256] == [
            RemoveVips(), StateChange(State.MASTER, State.BACKUP)]
        assert SendAdvert(0) not in [a for _, _, a in lan.log]
    else:
        assert lan.became_master(low) == []


def test_both_start_together_higher_priority_wins():
    """RFC 3768 §6.1: the lower Skew_Time of the higher priority wins a simultaneous start."""
    low, high = make(LOW, priority=100), make(HIGH, priority=200)
    lan = Lan(low, high)
    lan.start(low, 0.0)
    lan.start(high, 0.0)
    lan.run(30.0)
    assert lan.became_master(high) == [3 + 56 / 256] and lan.became_master(low) == []


@pytest.mark.parametrize("sender, outcome", [(HIGH, State.BACKUP), ("192.0.2.0", State.MASTER)])
def test_equal_priority_tie_broken_by_the_higher_primary_ip(sender, outcome):
    """RFC 3768 §6.4.3: equal priority and a greater primary address → Backup."""
    router = master("192.0.2.1")
    actions = router.receive(advert(100), sender, 20.0)
    assert router.state == outcome
    if outcome == State.BACKUP:
        assert actions == [RemoveVips(), StateChange(State.MASTER, State.BACKUP)]
    else:
        assert actions == [SendAdvert(100), SendGarps(5)]


def test_equal_priority_backup_defers_to_any_master():
    """RFC 3768 §6.4.2: in Backup, an advert of priority >= ours resets the down timer."""
    router = make(HIGH)
    router.start(0.0)
    router.receive(advert(100), LOW, 2.0)
    assert router.next_deadline == 2.0 + 3 + 156 / 256


def test_nopreempt_backup_never_takes_over_from_a_lower_master():
    """RFC 3768 §6.4.2 Preempt_Mode False (keepalived nopreempt): lower adverts still count."""
    low, high = make(LOW, priority=100), make(HIGH, priority=200, preempt=False)
    lan = Lan(low, high)
    lan.start(low, 0.0)
    lan.start(high, 10.0)
    lan.run(60.0)
    assert (low.state, high.state) == (State.MASTER, State.BACKUP)
    assert lan.became_master(high) == []
    assert high.counters["lower_priority_ignored"] == 0


def test_preempting_backup_ignores_lower_adverts():
    """RFC 3768 §6.4.2: with preemption, a lower-priority advert is discarded, timer unchanged."""
    router = make(HIGH, priority=200)
    router.start(0.0)
    deadline = router.next_deadline
    assert router.receive(advert(100), LOW, 1.0) == []
    assert router.next_deadline == deadline
    assert router.counters["lower_priority_ignored"] == 1


def test_preempt_delay_postpones_the_takeover():
    """keepalived preempt_delay: lower adverts keep counting for that long after startup."""
    low, high = make(LOW, priority=100), make(HIGH, priority=200, preempt_delay=10)
    lan = Lan(low, high)
    lan.start(low, 0.0)
    lan.start(high, 20.0)  # low's adverts at 20.609375, 21.609375, ...
    lan.run(50.0)
    # the last advert heard before 30 s is 29.609375; the down timer runs from there
    assert lan.became_master(high) == [29.609375 + 3 + 56 / 256]
    assert low.state == State.BACKUP


def test_priority_zero_gives_a_fast_takeover_at_skew_time():
    """RFC 3768 §6.4.2: on a priority-0 advert set Master_Down_Timer to Skew_Time."""
    low, high = make(LOW, priority=100), make(HIGH, priority=200)
    lan = Lan(low, high)
    lan.start(low, 0.0)
    lan.start(high, 0.0)
    lan.run(10.0)
    lan.stop(high, 10.25)
    assert [a for _, src, a in lan.log[-3:]] == [
        SendAdvert(0), RemoveVips(), StateChange(State.MASTER, State.STOP)]
    assert low.next_deadline == 10.25 + 156 / 256
    lan.run(20.0)
    assert lan.became_master(low) == [10.25 + 156 / 256]


def test_master_answers_a_priority_zero_advert():
    """RFC 3768 §6.4.3: priority 0 received → send an advert, reset the Adver_Timer."""
    router = master(LOW)
    assert router.receive(advert(0), HIGH, 7.25) == [SendAdvert(100)]
    assert router.state == State.MASTER and router.next_deadline == 8.25


@pytest.mark.parametrize("low_priority", [100, 200])
def test_split_brain_heals_and_the_winner_refreshes_arp(low_priority):
    """Reference §8.4, keepalived "forcing new election": after a partition both are masters;
    when adverts flow again the loser steps down and the winner re-sends its advert and GARPs.
    """
    low, high = make(LOW, priority=low_priority), make(HIGH, priority=200)
    lan = Lan(low, high)
    lan.up = False
    lan.start(low, 0.0)
    lan.start(high, 0.5)
    lan.run(20.0)
    assert (low.state, high.state) == (State.MASTER, State.MASTER)
    lan.up = True
    assert low.next_deadline < high.next_deadline  # the loser's advert reaches the winner first
    heard = low.next_deadline
    lan.run(40.0)
    assert (low.state, high.state) == (State.BACKUP, State.MASTER)
    winner = [a for t, src, a in lan.log if t == heard and src == HIGH]
    assert winner == [SendAdvert(200), SendGarps(5)]
    loser = [a for t, src, a in lan.log if t == heard and src == LOW]
    assert loser[-2:] == [RemoveVips(), StateChange(State.MASTER, State.BACKUP)]
    assert [t for t, _ in lan.of(high, SendGarps, since=20.0)] == [heard, heard + 5]


@pytest.mark.parametrize("repeat, delay, expected", [
    (5, 5.0, [(3.609375, 5), (8.609375, 5)]),
    (3, 2.0, [(3.609375, 3), (5.609375, 3)]),
    (5, 0.0, [(3.609375, 5)]),
])
def test_gratuitous_arp_bursts_on_becoming_master(repeat, delay, expected):
    """keepalived garp_master_repeat (5) at once and again after garp_master_delay (5 s)."""
    router = make(LOW, garp_master_repeat=repeat, garp_master_delay=delay)
    lan = Lan(router)
    lan.start(router, 0.0)
    lan.run(30.0)
    assert [(t, a.count) for t, a in lan.of(router, SendGarps)] == expected
    assert [t for t, _ in lan.of(router, SendAdvert)][:3] == [3.609375, 4.609375, 5.609375]


def test_backup_stop_sends_nothing_and_stopped_router_is_inert():
    """keepalived shutdown: only a master sends priority 0; a stopped instance does nothing."""
    router = make(LOW)
    router.start(0.0)
    assert router.stop(1.0) == [StateChange(State.BACKUP, State.STOP)]
    assert router.next_deadline == math.inf
    assert router.tick(100.0) == [] and router.receive(advert(0), HIGH, 100.0) == []
    assert router.start(200.0) == [StateChange(State.INIT, State.BACKUP)]


@pytest.mark.parametrize("bad, counter", [
    (advert(200, vrid=52), "vrid_mismatch"),
    (advert(200, interval=2), "interval_mismatch"),
    (advert(200, version=3, interval=1.0), "version_mismatch"),
    (advert(200, addresses=VIPS[:1]), "address_mismatch"),
    (advert(200, auth=b"secret"), "auth_mismatch"),
])
def test_foreign_adverts_are_dropped_and_counted(bad, counter):
    """RFC 3768 §7.1: VRID, interval, addresses and authentication checked by the instance."""
    router = make(LOW)
    router.start(0.0)
    deadline = router.next_deadline
    assert router.receive(bad, HIGH, 1.0) == []
    assert router.next_deadline == deadline
    assert router.counters[counter] == 1 and router.counters["adverts_received"] == 0


def test_v2_password_must_match():
    """keepalived auth_type PASS: only the first 8 characters count; others are dropped."""
    router = make(LOW, auth=b"longpassword")
    router.start(0.0)
    for wrong in (b"", b"longpasX", b"wrong"):
        router.receive(advert(200, auth=wrong), HIGH, 1.0)
    assert router.counters["auth_mismatch"] == 3
    assert router.next_deadline == 3 + 156 / 256
    router.receive(advert(200, auth=b"longpass"), HIGH, 1.0)
    assert router.next_deadline == 1.0 + 3 + 156 / 256


def test_own_adverts_are_not_an_election():
    """A packet socket sees our own adverts too: the master must not answer itself."""
    router = master(LOW)
    assert router.receive(router.advert(100), LOW, 5.0) == []
    assert router.counters["own_advert"] == 1 and router.state == State.MASTER


def test_two_address_owners_one_yields():
    """keepalived: two priority-255 masters is a config error; the receiver drops to 254."""
    router = make(LOW, priority=255)
    router.start(0.0)
    assert router.receive(advert(255), "192.0.2.0", 1.0) == [
        RemoveVips(), StateChange(State.MASTER, State.BACKUP)]
    assert router.priority == 254 and router.counters["owner_conflict"] == 1


# --- FAULT and the effective priority (keepalived's vrrp_track.c / vrrp.c) -------------------

def test_a_master_going_to_fault_says_priority_zero_and_drops_its_vips():
    """keepalived's vrrp_state_leave_master with wantstate FAULT: an advert at priority 0, and
    another as vrrp_restore_interface(advF) runs, then the VIPs go."""
    router = master()
    actions = router.fault(5.0)
    assert actions == [SendAdvert(0), SendAdvert(0), RemoveVips(),
                       StateChange(State.MASTER, State.FAULT)]
    assert router.state == State.FAULT and router.next_deadline == math.inf
    assert router.tick(100.0) == []
    assert router.receive(advert(50), HIGH, 6.0) == []  # a FAULT instance ignores adverts
    assert router.fault(7.0) == []


def _high_master_low_backup() -> tuple[Instance, Instance, Lan]:
    """HIGH (150) started first and MASTER at 8 s, LOW (100) joined at 4 s as BACKUP."""
    high, low = make(HIGH, priority=150), make(LOW, priority=100)
    lan = Lan(high, low)
    lan.start(high, 0.0)
    lan.run(4.0)
    lan.start(low, 4.0)
    lan.run(8.0)
    return high, low, lan


def test_a_peer_takes_over_at_skew_time_when_the_master_faults():
    high, low, lan = _high_master_low_backup()
    assert high.state == State.MASTER and low.state == State.BACKUP
    lan.deliver(high, high.fault(8.2), 8.2)
    lan.run(8.2 + low.skew_time)
    assert low.state == State.MASTER and lan.became_master(low) == [8.2 + low.skew_time]


def test_leaving_fault_is_backup_with_a_fresh_down_timer():
    """keepalived's try_up_instance → vrrp_state_leave_fault: BACKUP, ms_down_timer anew."""
    router = master(priority=120)
    router.fault(1.0)
    assert router.recover(10.0) == [StateChange(State.FAULT, State.BACKUP)]
    assert router.next_deadline == 10.0 + router.master_down_interval
    assert router.recover(11.0) == []


def test_an_owner_leaving_fault_is_master_at_once():
    router = make(LOW, priority=255)
    assert router.start(0.0, fault=True) == [StateChange(State.INIT, State.FAULT)]
    assert router.recover(1.0)[:2] == [AddVips(), SendGarps(5)]
    assert router.state == State.MASTER


def test_a_backup_s_down_timer_moves_with_its_effective_priority():
    """vrrp_set_effective_priority: a backup's timer moves by the change in ms_down_timer."""
    router = make(LOW, priority=100)
    router.start(0.0)
    before = router.next_deadline
    router.set_priority(200, 1.0)
    assert router.priority == 200
    assert router.next_deadline == pytest.approx(before - 100 / 256)


def test_a_master_advertises_its_effective_priority():
    router = master(priority=100)
    router.set_priority(60, 5.0)
    assert [a for a in router.tick(router.next_deadline) if isinstance(a, SendAdvert)] == [
        SendAdvert(60)]


def test_an_owner_keeps_255_whatever_it_tracks():
    router = master(priority=255)
    assert router.set_priority(100, 1.0) == [] and router.priority == 255


def test_a_lower_effective_priority_lets_a_preempting_peer_take_over():
    high, low, lan = _high_master_low_backup()
    high.set_priority(90, 8.0)  # a weight -60 script failing
    lan.run(14.0)
    assert low.state == State.MASTER and high.state == State.BACKUP


def test_a_closed_gate_holds_a_backup_and_it_wants_master():
    """vrrp_sync_can_goto_master: not all members want MASTER → stay BACKUP, a new timer."""
    router = make(LOW)
    router.gate = lambda _r: False
    router.start(0.0)
    due = router.next_deadline
    assert router.tick(due) == []
    assert router.state == State.BACKUP and router.wants_master
    assert router.next_deadline == due + router.master_down_interval
    router.gate = lambda _r: True
    assert router.tick(router.next_deadline)[0] == AddVips()

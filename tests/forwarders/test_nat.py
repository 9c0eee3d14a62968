"""NAT (ipvsadm -m): inbound DNAT with port mapping, replies SNATed back; scapy is the oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from pylvs.core.conntrack import STATE_NAMES
from tests.helpers.directors import CLIENT_MAC, INSIDE_MAC, OUTSIDE_MAC, RS_MAC, VIP, nat_director
from tests.helpers.directors import NAT_RIP as RIP
from tests.helpers.frames import inbound, reply

clients = st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255),
                    st.integers(1, 254)).map(lambda t: ".".join(map(str, t)))
ports = st.integers(1, 65535)
payloads = st.binary(max_size=200)


def assert_checksums_fresh(frame: bytes) -> None:
    """Every checksum equals scapy's from-scratch recomputation."""
    pkt = Ether(frame)
    fresh = Ether(frame)
    del fresh[IP].chksum
    del fresh[IP].payload.chksum
    fresh = Ether(bytes(fresh))
    assert pkt[IP].chksum == fresh[IP].chksum
    assert pkt[IP].payload.chksum == fresh[IP].payload.chksum


@given(clients, ports, payloads, st.sampled_from(["tcp", "udp"]))
def test_inbound_then_reply_restores_addresses_and_ports(client, cport, payload, proto):
    director = nat_director(proto)
    out, interface = director.handle(bytearray(inbound(client, cport, payload, proto)), 0.0)
    sent = Ether(bytes(out))
    assert interface == "eth1" and (sent.src, sent.dst) == (INSIDE_MAC, RS_MAC)
    assert (sent[IP].src, sent[IP].dst, sent[IP].ttl) == (client, RIP, 63)
    assert (sent[IP].payload.sport, sent[IP].payload.dport) == (cport, 8080)
    assert bytes(sent[IP].payload.payload) == payload
    assert_checksums_fresh(bytes(out))
    back, interface = director.handle(bytearray(reply(client, cport, payload[::-1], proto)), 1.0)
    answer = Ether(bytes(back))
    assert interface == "eth0" and (answer.src, answer.dst) == (OUTSIDE_MAC, CLIENT_MAC)
    assert (answer[IP].src, answer[IP].dst, answer[IP].ttl) == (VIP, client, 63)
    assert (answer[IP].payload.sport, answer[IP].payload.dport) == (80, cport)
    assert bytes(answer[IP].payload.payload) == payload[::-1]
    assert_checksums_fresh(bytes(back))
    (conn,) = list(director.table)
    assert conn.server.stats.outpkts == 1 and conn.server.stats.inpkts == 1


def test_udp_without_checksum_keeps_none():
    director = nat_director("udp")
    frame = bytearray(inbound("203.0.113.5", 5353, b"q", "udp"))
    frame[14 + 20 + 6:14 + 20 + 8] = b"\x00\x00"
    out, _ = director.handle(frame, 0.0)
    assert Ether(bytes(out))[UDP].chksum == 0


def test_nat_uses_ipvs_input_and_output_tables():
    director = nat_director()
    client = "203.0.113.5"
    steps = [(inbound, "S", "SYN_RECV"), (reply, "SA", "SYN_RECV"), (inbound, "A", "ESTABLISHED"),
             (reply, "FA", "FIN_WAIT"), (inbound, "FA", "TIME_WAIT")]
    for build, flags, state in steps:
        assert director.handle(bytearray(build(client, 40000, b"", flags=flags)), 0.0)
        (conn,) = list(director.table)
        assert STATE_NAMES[conn.state] == state, (flags, state)


def test_reply_of_no_connection_is_dropped_and_counted():
    director = nat_director()
    assert director.handle(bytearray(reply("203.0.113.5", 40000, b"x")), 0.0) is None
    assert director.counters["reply_no_connection"] == 1


@settings(max_examples=300)
@given(st.binary(max_size=120), st.integers(0, 80))
def test_truncated_or_arbitrary_frames_never_raise(junk, cut):
    director = nat_director()
    director.handle(bytearray(inbound("203.0.113.5", 40000, b"abc")), 0.0)
    director.handle(bytearray(junk), 0.0)
    director.handle(bytearray(reply("203.0.113.5", 40000, b"xyz")[:cut]), 0.0)
    director.handle(bytearray(inbound("203.0.113.5", 40000, b"abc", flags="A")[:cut]), 0.0)


@settings(max_examples=150)
@given(clients, ports, payloads, st.sampled_from(["tcp", "udp"]),
       st.sampled_from(["A", "PA", "FA", "R", ""]), st.integers(2, 255))
def test_established_fast_path_equals_the_general_path(client, cport, payload, proto, flags,
                                                       ttl):
    """Both directions: same bytes out, same state, counters and statistics."""
    fast, general = nat_director(proto), nat_director(proto)
    for director in (fast, general):
        director.handle_general(bytearray(inbound(client, cport, b"", proto)), 0.0)
    frames = [Ether(inbound(client, cport, payload, proto, flags)),
              Ether(reply(client, cport, payload, proto, flags))]
    for pkt in frames:
        pkt[IP].ttl = ttl
        del pkt[IP].chksum
        frame = bytes(pkt)
        assert fast.handle(bytearray(frame), 1.0) == general.handle_general(bytearray(frame), 1.0)
    (a,), (b,) = list(fast.table), list(general.table)
    assert (a.state, a.expires, a.active) == (b.state, b.expires, b.active)
    assert fast.counters == general.counters
    assert a.server.stats.counters() == b.server.stats.counters()

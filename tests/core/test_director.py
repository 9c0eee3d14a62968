"""The sans-IO director: frames in, DR frames out, IPVS's scheduling and drop rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from forwarders import NextHop
from pylvs.adm.commands import adm
from pylvs.core.director import Director
from pylvs.core.model import ip_to_int
from tests.helpers.directors import CLIENT_MAC, DIRECTOR_MAC, RS, VIP, dr_director, rs_mac
from tests.helpers.frames import dr_frame


@given(st.integers(1, 65535), st.integers(2, 255), st.binary(max_size=300))
def test_dr_rewrites_only_macs_ttl_and_ip_checksum(sport, ttl, payload):
    director = dr_director()
    original = dr_frame(sport=sport, ttl=ttl, payload=payload)
    out, interface = director.handle(bytearray(original), now=0.0)
    assert interface == "eth0"
    sent = Ether(bytes(out))
    assert sent.src == DIRECTOR_MAC
    assert bytes.fromhex(sent.dst.replace(":", "")) in {rs_mac(i) for i in range(3)}
    assert sent[IP].ttl == ttl - 1 and sent[IP].dst == VIP
    assert sent[TCP].chksum == Ether(original)[TCP].chksum
    recomputed = IP(bytes(sent[IP]))
    del recomputed.chksum
    assert IP(bytes(recomputed)).chksum == sent[IP].chksum
    changed = {i for i, (a, b) in enumerate(zip(original, out, strict=True)) if a != b}
    assert changed <= set(range(0, 12)) | {14 + 8, 14 + 10, 14 + 11}


def test_rr_spreads_new_connections_in_ipvs_order():
    director = dr_director()
    picked = []
    for port in range(40000, 40006):
        out, _ = director.handle(bytearray(dr_frame(sport=port)), 0.0)
        picked.append(bytes(out[0:6]))
    # newest-first list: RS[2], RS[1], RS[0]; rr starts after the head
    order = [rs_mac(i) for i in (2, 1, 0)]
    assert picked[:3] == picked[3:]
    assert sorted(picked[:3]) == sorted(order)


def test_established_flow_sticks_to_its_server():
    director = dr_director()
    first, _ = director.handle(bytearray(dr_frame(flags="S")), 0.0)
    for flags in ("A", "PA", "FA"):
        out, _ = director.handle(bytearray(dr_frame(flags=flags, payload=b"x")), 1.0)
        assert out[0:6] == first[0:6]
    (conn,) = list(director.table)
    assert conn.state == 4  # FIN_WAIT, IPVS's INPUT-ONLY table


def test_non_syn_without_connection_is_dropped_and_counted():
    director = dr_director()
    assert director.handle(bytearray(dr_frame(flags="A")), 0.0) is None
    assert director.handle(bytearray(dr_frame(flags="SR")), 0.0) is None
    assert director.counters["no_connection"] == 2
    assert len(director.table) == 0


def test_sloppy_tcp_starts_a_connection_on_a_mid_flow_packet():
    """IPVS's sloppy_tcp: any packet without RST is scheduled (tcp_conn_schedule); an ACK
    from state NONE leads to ESTABLISHED in the INPUT-ONLY table, as on a director that
    an ECMP change hands the flow."""
    director = dr_director("mh")
    director.sysctls.sloppy_tcp = 1
    out, _ = director.handle(bytearray(dr_frame(flags="A", payload=b"x")), 0.0)
    (conn,) = list(director.table)
    assert conn.state == 1 and out[0:6] == rs_mac(RS.index(conn.server.address))
    assert director.handle(bytearray(dr_frame(sport=40001, flags="AR")), 0.0) is None
    assert director.counters["no_connection"] == 1


def test_directors_with_the_same_mh_table_send_a_mid_flow_packet_to_the_same_server():
    """Two directors with the same real servers and weights: the one that sees the SYN and the
    one that sees only later packets (sloppy_tcp) choose the same real server, for every flow."""
    first, second = dr_director("mh"), dr_director("mh")
    second.sysctls.sloppy_tcp = 1
    for sport in range(40000, 40200):
        syn, _ = first.handle(bytearray(dr_frame(src=f"203.0.113.{sport % 200}", sport=sport)), 0)
        ack, _ = second.handle(bytearray(dr_frame(src=f"203.0.113.{sport % 200}", sport=sport,
                                                  flags="PA", payload=b"y")), 1)
        assert syn[0:6] == ack[0:6]
    assert len({c.server.address for c in second.table}) == 3


def _icmp_error(out, original: bytes, icmp_type: int, code: int) -> None:
    frame, interface = out
    reply = Ether(bytes(frame))
    assert interface == "eth0"
    assert (reply.src, reply.dst) == (DIRECTOR_MAC, CLIENT_MAC)
    assert (reply[IP].src, reply[IP].dst) == (VIP, Ether(original)[IP].src)
    assert (reply[ICMP].type, reply[ICMP].code) == (icmp_type, code)
    fresh = Ether(bytes(frame))
    del fresh[IP].chksum, fresh[ICMP].chksum
    fresh = Ether(bytes(fresh))
    assert (fresh[IP].chksum, fresh[ICMP].chksum) == (reply[IP].chksum, reply[ICMP].chksum)
    assert bytes(reply[ICMP].payload) == original[14:]


def test_ttl_one_gets_icmp_time_exceeded_from_the_vip():
    director = dr_director()
    original = dr_frame(ttl=1, payload=b"late")
    _icmp_error(director.handle(bytearray(original), 0.0), original, 11, 0)
    assert director.counters["ttl_exceeded"] == 1


def test_no_usable_real_server_gets_icmp_port_unreachable():
    director = dr_director(weights=(0, 0, 0))
    original = dr_frame()
    _icmp_error(director.handle(bytearray(original), 0.0), original, 3, 3)
    assert director.counters["no_destination"] == 1
    assert len(director.table) == 0


def test_icmp_error_quotes_at_most_576_bytes():
    director = dr_director(weights=(0, 0, 0))
    frame, _ = director.handle(bytearray(dr_frame(payload=b"x" * 1400)), 0.0)
    assert len(frame) - 14 == 576


def test_other_ports_are_not_ours():
    director = dr_director()
    assert director.handle(bytearray(dr_frame(dport=22)), 0.0) is None
    assert director.counters["not_service"] == 1


def test_partial_checksum_is_completed():
    director = dr_director()
    good = Ether(dr_frame(payload=b"data"))
    broken = bytearray(bytes(good))
    l4 = 14 + 20
    broken[l4 + 16:l4 + 18] = b"\x12\x34"  # what a sender with offload leaves: not final
    out, _ = director.handle(broken, 0.0, csum_partial=True)
    assert Ether(bytes(out))[TCP].chksum == good[TCP].chksum


def test_udp_creates_connection_on_any_packet():
    director = dr_director(proto="udp")
    frame = bytes(Ether(dst=DIRECTOR_MAC) / IP(src="203.0.113.9", dst=VIP) /
                  UDP(sport=5353, dport=80) / b"q")
    assert director.handle(bytearray(frame), 0.0) is not None
    (conn,) = list(director.table)
    assert conn.row(0.0).startswith("UDP 05:00  UDP ")


def test_adm_lists_connections_and_services():
    director = dr_director()
    director.handle(bytearray(dr_frame()), 0.0)
    rc, out, err = adm(director, ["-Lnc"], 0.0)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "IPVS connection entries"
    assert lines[2].startswith("TCP 01:00  SYN_RECV    203.0.113.5:40000  192.0.2.100:80 ")
    rc, out, _ = adm(director, ["-Ln"], 0.0)
    assert rc == 0 and "TCP  192.0.2.100:80 rr" in out
    active = [line for line in out.splitlines() if line.startswith("  -> 198.")]
    assert sum(int(line.split()[4]) for line in active) == 1
    assert adm(director, ["-Ln", "-t", "192.0.2.1:80"], 0.0)[0] == 255
    assert adm(director, ["-Lx"], 0.0)[0] == 2


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data):
    director = dr_director()
    assert director.handle(bytearray(data), 0.0) is None or len(director.table) == 1


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=53), st.binary(min_size=1, max_size=4))
def test_mutated_frames_never_crash(offset, junk):
    director = dr_director()
    frame = bytearray(dr_frame(payload=b"abc"))
    frame[offset:offset + len(junk)] = junk
    director.handle(frame, 0.0)


@settings(max_examples=200)
@given(st.integers(2, 255), st.sampled_from(["A", "PA", "FA", "R", "S", ""]),
       st.binary(max_size=64), st.sampled_from(["tcp", "udp"]))
def test_established_fast_path_equals_the_general_path(ttl, flags, payload, proto):
    """Same output bytes, counters, state and statistics, frame after frame."""
    fast, general = dr_director(proto=proto), dr_director(proto=proto)
    l4 = (TCP(sport=40000, dport=80, flags="S") if proto == "tcp"
          else UDP(sport=40000, dport=80))
    first = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src="203.0.113.5", dst=VIP)
                  / l4 / b"hello")
    for director in (fast, general):
        director.handle_general(bytearray(first), 0.0)
    l4 = (TCP(sport=40000, dport=80, flags=flags) if proto == "tcp"
          else UDP(sport=40000, dport=80))
    frame = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC)
                  / IP(src="203.0.113.5", dst=VIP, ttl=ttl) / l4 / payload)
    for _ in range(2):
        assert fast.handle(bytearray(frame), 1.0) == general.handle_general(bytearray(frame), 1.0)
    (a,), (b,) = list(fast.table), list(general.table)
    assert (a.state, a.expires, a.active) == (b.state, b.expires, b.active)
    assert fast.counters == general.counters
    sa, sb = a.server.stats, b.server.stats
    assert (sa.inpkts, sa.inbytes) == (sb.inpkts, sb.inbytes)


def test_a_full_table_refuses_new_connections_and_keeps_established_ones():
    director = dr_director()
    director.table.max_connections = 2
    assert director.handle(bytearray(dr_frame(sport=40001)), 0.0) is not None
    assert director.handle(bytearray(dr_frame(sport=40002)), 0.0) is not None
    assert director.handle(bytearray(dr_frame(sport=40003)), 0.0) is None
    assert director.counters["table_full"] == 1 and len(director.table) == 2
    assert director.handle(bytearray(dr_frame(sport=40001, flags="A")), 1.0) is not None


def _datagram(sport: int = 5353) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src="203.0.113.5", dst=VIP)
                 / UDP(sport=sport, dport=80) / b"query")


def test_one_packet_scheduling_schedules_every_datagram_and_keeps_no_connection():
    """ipvsadm -o (IPVS's IP_VS_SVC_F_ONEPACKET): the same client's datagrams go round the
    servers one by one; nothing is kept, so -Lnc lists nothing; each counts as a connection."""
    director = dr_director(proto="udp")
    (service,) = director.services.values()
    plain = [bytes(director.handle(bytearray(_datagram()), 0.0)[0][0:6]) for _ in range(3)]
    assert len(set(plain)) == 1  # without -o: one connection, one server
    service.one_packet = True
    director = Director([service])
    director.add_interface("eth0", bytes.fromhex(DIRECTOR_MAC.replace(":", "")))
    for i, address in enumerate(RS):
        director.set_hop(ip_to_int(address), NextHop(bytes.fromhex("020000000002"), rs_mac(i),
                                                      "eth0"))
    before = service.stats.conns
    counts = [(rs.activeconns, rs.inactconns) for rs in service.real_servers]
    picked = [bytes(director.handle(bytearray(_datagram()), 0.0)[0][0:6]) for _ in range(6)]
    assert picked[:3] == picked[3:] and sorted(set(picked)) == sorted(rs_mac(i) for i in range(3))
    assert len(director.table) == 0
    assert adm(director, ["-Lnc"], 0.0)[1].splitlines()[2:] == []
    assert service.stats.conns - before == 6 and director.counters["one_packet"] == 6
    assert [(rs.activeconns, rs.inactconns) for rs in service.real_servers] == counts

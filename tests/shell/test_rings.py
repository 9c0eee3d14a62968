"""Packet sockets and their rings (pylvs.shell.rings), against a real kernel: two namespaces
joined by a veth pair (tests.helpers.veth)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

from pylvs.shell import rings
from tests.helpers.veth import (
    DIR_IP,
    NEEDS_NAMESPACES,
    PEER_IP,
    SO_RCVBUFFORCE,
    VIP,
    collect,
    everything,
    in_ns,
    is_udp_to,
    udp_socket,
)

pytestmark = NEEDS_NAMESPACES


def test_receive_udp_from_peer_with_partial_checksum(topo, psock):
    peer_mac = topo.mac(topo.p, "vp")
    sender = in_ns(topo.p, udp_socket)
    try:
        payload = b"pylvs-rx-" + os.urandom(8).hex().encode()
        sender.sendto(payload, (DIR_IP, 5555))
        got = collect(psock, is_udp_to(5555))
    finally:
        sender.close()
    assert got, "the AF_PACKET ring never showed the peer's UDP frame"
    frame, status = got[0]
    assert frame[0:6] == psock.mac
    assert frame[6:12] == peer_mac
    assert frame[12:14] == b"\x08\x00"
    assert socket.inet_ntoa(frame[26:30]) == PEER_IP
    assert socket.inet_ntoa(frame[30:34]) == DIR_IP
    assert struct.unpack_from("!H", frame, 38)[0] == 8 + len(payload)
    assert frame[42:42 + len(payload)] == payload
    # the peer's veth left the checksum to "hardware": the ring must say so (DESIGN.md)
    assert status & rings.TP_STATUS_CSUMNOTREADY
    assert status & rings.TP_STATUS_USER


def test_frames_the_full_ring_dropped_are_counted_once(topo):
    """4 MiB of ring (16 blocks) and 6,000 datagrams of 1,400 bytes not read: the kernel drops
    the rest and PACKET_STATISTICS says how many; reading resets the count."""
    ps = in_ns(topo.d, rings.PacketSocket, "vd")
    sender = in_ns(topo.p, udp_socket)
    try:
        for _ in range(6000):
            sender.sendto(b"x" * 1400, (DIR_IP, 5556))
        time.sleep(0.5)
        dropped = ps.drops()
        assert dropped > 0
        assert ps.drops() == 0
    finally:
        sender.close()
        ps.close()


def test_own_and_host_transmissions_are_not_received(topo, psock):
    peer_mac = topo.mac(topo.p, "vp")
    marker = b"pylvs-own-" + os.urandom(8).hex().encode()
    frame = _udp_frame(peer_mac, psock.mac, DIR_IP, PEER_IP, 4000, 9, marker)
    for _ in range(5):
        psock.send(frame)
    psock.flush()
    # the director's kernel transmits too (ICMP port unreachable for a closed port, ARP replies)
    sender = in_ns(topo.p, udp_socket)
    try:
        sender.sendto(b"closed-port", (DIR_IP, 5556))
        seen = everything(psock, 1.0)
    finally:
        sender.close()
    assert any(is_udp_to(5556)(f) for f in seen), "the peer's frame should have arrived"
    # (the peer's ICMP port-unreachable quotes our datagram: that one is incoming and fine)
    assert not any(f[23] == 17 and marker in f for f in seen), "our own frames came back"
    assert not any(f[6:12] == psock.mac for f in seen), "host-sent (OUTGOING) frames came back"


def test_frames_to_another_hosts_mac_are_not_received(topo, psock):
    """PACKET_OTHERHOST: what a bridge floods to every port while it learns. The kernel drops
    such frames before IPVS sees them, so must the director (else every director on the
    segment would forward one)."""
    peer_mac = topo.mac(topo.p, "vp")
    sender = in_ns(topo.p, _raw_sender, "vp")
    try:
        for dst_mac, port in ((b"\x02\x00\x5e\x00\x00\x09", 6001), (psock.mac, 6002)):
            sender.send(_udp_frame(dst_mac, peer_mac, PEER_IP, VIP, 4000, port, b"x"))
        seen = everything(psock, 1.0)
    finally:
        sender.close()
    ports = [struct.unpack_from("!H", f, 36)[0] for f in seen if is_udp_to(6001)(f)
             or is_udp_to(6002)(f)]
    assert ports == [6002]


def _udp_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, sport: int, dport: int,
               payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = (Ether(dst=dst_mac.hex(":"), src=src_mac.hex(":")) / IP(src=src, dst=dst)
           / UDP(sport=sport, dport=dport) / payload)
    return bytes(pkt)


def test_send_flush_reaches_peer(topo, psock):
    peer_mac = topo.mac(topo.p, "vp")
    rx = in_ns(topo.p, udp_socket, 7777)
    try:
        rx.settimeout(2.0)
        frames = [_udp_frame(peer_mac, psock.mac, DIR_IP, PEER_IP, 4000, 7777, b"tx-%d" % i)
                  for i in range(3)]
        for f in frames:
            psock.send(f)
        psock.flush()
        got = {rx.recvfrom(2048)[0] for _ in frames}
    finally:
        rx.close()
    assert got == {b"tx-0", b"tx-1", b"tx-2"}


def test_tx_ring_wraps_around(topo, psock):
    """More frames than tx ring slots, in batches: every one arrives, in order."""
    peer_mac = topo.mac(topo.p, "vp")
    rx = in_ns(topo.p, udp_socket, 7778)
    total = 2000
    received: list[bytes] = []

    def reader() -> None:
        rx.settimeout(1.0)
        try:
            while len(received) < total:
                received.append(rx.recv(2048))
        except OSError:
            pass

    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        for i in range(total):
            psock.send(_fast_udp(peer_mac, psock.mac, i))
            if i % 100 == 99:
                psock.flush()
        psock.flush()
        th.join(10)
    finally:
        rx.close()
    assert len(received) == total
    assert received == [b"%06d" % i for i in range(total)]


_TEMPLATE: dict[tuple[bytes, bytes], bytes] = {}


def _fast_udp(dst_mac: bytes, src_mac: bytes, i: int) -> bytes:
    # UDP checksum 0 (= none) keeps it simple; the IP header checksum comes from scapy
    base = _TEMPLATE.get((dst_mac, src_mac))
    if base is None:
        f = bytearray(_udp_frame(dst_mac, src_mac, DIR_IP, PEER_IP, 4001, 7778, b"000000"))
        f[40:42] = b"\0\0"
        base = _TEMPLATE[(dst_mac, src_mac)] = bytes(f)
    return base[:42] + b"%06d" % i


def test_busy_tx_slot_falls_back_to_direct_send(topo, psock):
    """A slot the kernel still owns is never overwritten: the frame goes out directly, in order."""
    peer_mac = topo.mac(topo.p, "vp")
    rx = in_ns(topo.p, udp_socket, 7779)
    try:
        rx.settimeout(2.0)
        slot = psock._tx_head * psock._tx_frame_size
        struct.pack_into("I", psock._tx_map, slot, rings.TP_STATUS_SENDING)  # pretend busy
        psock.send(_udp_frame(peer_mac, psock.mac, DIR_IP, PEER_IP, 4000, 7779, b"direct"))
        assert psock.tx_direct == 1
        struct.pack_into("I", psock._tx_map, slot, rings.TP_STATUS_AVAILABLE)
        psock.send(_udp_frame(peer_mac, psock.mac, DIR_IP, PEER_IP, 4000, 7779, b"ring"))
        psock.flush()
        assert [rx.recv(2048), rx.recv(2048)] == [b"direct", b"ring"]
        assert psock.tx_errors == 0
    finally:
        rx.close()


def test_receive_times_out_empty(psock):
    deadline = time.monotonic() + 5
    while psock.receive(0.05) and time.monotonic() < deadline:
        pass  # drain whatever the link-up produced
    assert psock.receive(0) == []
    assert psock.receive(0.05) == []
    assert psock.fileno() >= 0


def test_bpf_filter_lets_only_service_frames_through(topo, psock):
    from pylvs.shell import bpf
    psock.set_filter(bpf.pack(bpf.program([("udp", DIR_IP, 5555)])))
    while psock.receive(0.2):  # what queued before the filter
        pass
    sender = in_ns(topo.p, udp_socket)
    try:
        for port in (6666, 5555, 6667):
            sender.sendto(b"x", (DIR_IP, port))
        frames = collect(psock, lambda f: True, seconds=2.0)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            frames += [(bytes(v), s) for v, s in psock.receive(0.2)]
    finally:
        sender.close()
    assert frames, "the service frame never arrived"
    assert all(is_udp_to(5555)(frame) for frame, _ in frames), [f[:42].hex() for f, _ in frames]


def _raw_sender(dev: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((dev, 0))
    return s


def test_fanout_keeps_both_directions_of_a_connection_on_one_member(topo):
    """pylvs.shell.fanout in the kernel's PACKET_FANOUT: a client's frames to the VIP, the NAT real
    server's replies to it and ICMP errors about either all reach the same member; clients
    spread over both members; frames of no rule go to member 0."""
    from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
    from scapy.layers.l2 import Ether

    from pylvs.shell import bpf, fanout
    rip = "198.51.100.7"
    members = [in_ns(topo.d, rings.PacketSocket, "vd") for _ in range(2)]
    sender = in_ns(topo.p, _raw_sender, "vp")
    try:
        group = os.getpid() & 0xFFFF
        for member in members:
            member.join_fanout(group)
        services, replies = ([fanout.Rule("udp", VIP, 9, False)],
                             [fanout.Rule("udp", rip, 5353, False)])
        members[0].set_fanout_program(bpf.pack(fanout.program(services, replies)))
        eth = Ether(dst=topo.mac(topo.d, "vd").hex(":"), src=topo.mac(topo.p, "vp").hex(":"))
        clients = [(f"203.0.113.{i}", 40000 + i) for i in range(1, 25)]
        burst = []  # built first, then sent at once: the rings are read only after
        for n, (client, port) in enumerate(clients):
            tag = n.to_bytes(2, "big")
            inbound = IP(src=client, dst=VIP) / UDP(sport=port, dport=9)
            reply = IP(src=rip, dst=client) / UDP(sport=5353, dport=port)
            frames = [inbound / (b"in" + tag), reply / (b"re" + tag),
                      IP(src="192.0.2.1", dst=VIP) / ICMP(type=11) / IPerror(
                          src=VIP, dst=client) / UDPerror(sport=9, dport=port) / (b"ie" + tag),
                      IP(src=rip, dst=DIR_IP) / ICMP(type=3, code=3) / IPerror(
                          src=client, dst=rip) / UDPerror(sport=port, dport=5353) / (b"ir" + tag)]
            for frame in frames:
                burst.append(bytes(eth / frame))
        burst.append(bytes(eth / IP(src="192.0.2.9", dst=DIR_IP) / UDP(dport=7) / b"other"))
        for frame in burst:
            sender.send(frame)
        seen: dict[bytes, int] = {}
        deadline = time.monotonic() + 3.0
        while len(seen) < 4 * len(clients) + 1 and time.monotonic() < deadline:
            for index, member in enumerate(members):
                for view, _ in member.receive(0.05):
                    frame = bytes(view)
                    for mark in (b"in", b"re", b"ie", b"ir", b"other"):
                        at = frame.rfind(mark)
                        if at >= 0 and (mark == b"other" or len(frame) - at >= 4):
                            seen[frame[at:at + (5 if mark == b"other" else 4)]] = index
    finally:
        sender.close()
        for member in members:
            member.close()
    assert len(seen) == 4 * len(clients) + 1, sorted(seen)
    for n in range(len(clients)):
        tag = n.to_bytes(2, "big")
        assert len({seen[m + tag] for m in (b"in", b"re", b"ie", b"ir")}) == 1, n
    assert {seen[b"in" + n.to_bytes(2, "big")] for n in range(len(clients))} == {0, 1}
    assert seen[b"other"] == 0

"""IPv6 connections in IPVS's sync messages (issue 23), against Linux's ip_vs_sync.c: the 72-byte
``struct ip_vs_sync_v6`` byte for byte, IPv4 and IPv6 entries mixed in one message, the
backup's checks of an IPv6 entry (ip_vs_process_message, ip_vs_proc_sync_conn), and the
daemon's transport and sizes (start_sync_thread)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylvs.core.model import AF_INET, AF_INET6
from pylvs.ha import sync
from pylvs.ha.sync import SyncConn, SyncError

TCP, UDP = 6, 17
ES, FW = 1, 4
DROUTE, TUNNEL, NOOUTPUT, INACTIVE, TEMPLATE = 0x0003, 0x0002, 0x0080, 0x0100, 0x1000

# struct ip_vs_sync_v6 (net/netfilter/ipvs/ip_vs_sync.c), every field big-endian, no padding:
#   __u8 type @0 | __u8 protocol @1 | __be16 ver_size @2 | __be32 flags @4 | __be16 state @8 |
#   __be16 cport @10 | __be16 vport @12 | __be16 dport @14 | __be32 fwmark @16 |
#   __be32 timeout @20 | struct in6_addr caddr @24 | vaddr @40 | daddr @56 | sizeof 72
V6_OFFSETS = {"type": 0, "protocol": 1, "ver_size": 2, "flags": 4, "state": 8, "cport": 10,
              "vport": 12, "dport": 14, "fwmark": 16, "timeout": 20, "caddr": 24, "vaddr": 40,
              "daddr": 56}
V6_SIZE = 72
# struct ip_vs_sync_v4: the same up to timeout, then __be32 caddr @24 | vaddr @28 | daddr @32
V4_SIZE = 36
STYPE_F_INET6 = 1 << 0  # STYPE_INET6 is bit 0 of the type

CLIENT6, VIP6, RIP6 = "2001:db8:1::5", "2001:db8:1::100", "2001:db8:2::11"
KERNEL_DR6 = SyncConn(TCP, CLIENT6, 40001, VIP6, 80, RIP6, 80, state=ES,
                      flags=DROUTE | NOOUTPUT, timeout=900, fwmark=7)
KERNEL_DR4 = SyncConn(TCP, "203.0.113.5", 40000, "192.0.2.100", 80, "198.51.100.11", 80,
                      state=ES, flags=DROUTE | NOOUTPUT, timeout=900)


def _a6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def _header_v1(syncid: int, body: bytes, nr_conns: int) -> bytes:
    """struct ip_vs_sync_mesg: reserved u8 (0) | syncid u8 | size be16 | nr_conns u8 |
    version s8 (1) | spare u16 (0)."""
    return struct.pack("!BBHBbH", 0, syncid, 8 + len(body), nr_conns, 1, 0) + body


def _kernel_v6(conn: SyncConn, kind: int = STYPE_F_INET6, size: int = V6_SIZE,
               options: bytes = b"", version: int = 0) -> bytes:
    """What ip_vs_sync_conn writes for an AF_INET6 connection, field by field at the C
    struct's offsets (size counts the options after the 72 bytes)."""
    entry = bytearray(V6_SIZE)
    entry[V6_OFFSETS["type"]] = kind
    entry[V6_OFFSETS["protocol"]] = conn.protocol
    struct.pack_into("!H", entry, V6_OFFSETS["ver_size"], version << 12 | size)
    struct.pack_into("!I", entry, V6_OFFSETS["flags"], conn.flags)
    for name in ("state", "cport", "vport", "dport"):
        struct.pack_into("!H", entry, V6_OFFSETS[name], getattr(conn, name))
    for name in ("fwmark", "timeout"):
        struct.pack_into("!I", entry, V6_OFFSETS[name], getattr(conn, name))
    for name in ("caddr", "vaddr", "daddr"):
        entry[V6_OFFSETS[name]:V6_OFFSETS[name] + 16] = _a6(getattr(conn, name))
    return bytes(entry) + options


def _kernel_v4(conn: SyncConn) -> bytes:
    return struct.pack("!BBHIHHHHII4s4s4s", 0, conn.protocol, V4_SIZE, conn.flags, conn.state,
                       conn.cport, conn.vport, conn.dport, conn.fwmark, conn.timeout,
                       *(ipaddress.IPv4Address(getattr(conn, a)).packed
                         for a in ("caddr", "vaddr", "daddr")))


# -- the layout -----------------------------------------------------------------------------

def test_the_ipv6_entry_is_the_kernels_struct_byte_for_byte():
    """72 bytes, type STYPE_F_INET6, ver_size = version 0 | 72, the fields at the C struct's
    offsets, the addresses 16 bytes each."""
    assert sync.ENTRY_V6.size == V6_SIZE and sync.ENTRY_V4.size == V4_SIZE
    (message,) = sync.encode([KERNEL_DR6], syncid=9)
    entry = message[8:]
    assert entry == _kernel_v6(KERNEL_DR6)
    assert entry[0] == 0x01 and entry[1] == TCP
    assert entry[2:4] == b"\x00\x48"  # version 0 in the top 4 bits, size 72
    assert entry[4:8] == b"\x00\x00\x00\x83"  # DROUTE | NOOUTPUT
    assert entry[10:12] == struct.pack("!H", 40001)
    assert entry[16:20] == b"\x00\x00\x00\x07" and entry[20:24] == struct.pack("!I", 900)
    assert entry[24:40] == _a6(CLIENT6) and entry[40:56] == _a6(VIP6)
    assert entry[56:72] == _a6(RIP6)
    assert message[:8] == struct.pack("!BBHBbH", 0, 9, 80, 1, 1, 0)


def test_ipv4_and_ipv6_entries_share_one_message():
    """ip_vs_sync_conn appends each connection to the current buffer whatever its family: the
    header counts both, the size is 8 + 36 + 72 (both sizes are multiples of 4: no padding)."""
    (message,) = sync.encode([KERNEL_DR4, KERNEL_DR6, KERNEL_DR4], syncid=3)
    body = _kernel_v4(KERNEL_DR4) + _kernel_v6(KERNEL_DR6) + _kernel_v4(KERNEL_DR4)
    assert message == _header_v1(3, body, 3)
    assert len(message) == 8 + 36 + 72 + 36
    assert sync.decode(message, 3) == [KERNEL_DR4, KERNEL_DR6, KERNEL_DR4]


def test_a_hand_built_kernel_ipv6_message_decodes_in_inet_ntop_text():
    """A kernel master's message for one IPv6 connection; the addresses come back in the text
    the model keeps (inet_ntop's, as ipvsadm prints them)."""
    conn = SyncConn(UDP, "2001:db8::ffff:0:1", 53, "::ffff:192.0.2.1", 53,
                    "2001:db8:0:0:1::1", 53, 0, DROUTE, 300)
    decoded = sync.decode(_header_v1(0, _kernel_v6(conn), 1))
    assert [(c.caddr, c.vaddr, c.daddr) for c in decoded] == [
        ("2001:db8::ffff:0:1", "::ffff:192.0.2.1", "2001:db8::1:0:0:1")]
    assert decoded[0].af == AF_INET6 and KERNEL_DR4.af == AF_INET


def test_any_odd_type_is_ipv6_and_options_after_it_are_read():
    """ip_vs_proc_sync_conn tests only the STYPE_F_INET6 bit (type 3 is IPv6 too); options
    follow the 72 bytes (sequence data, an optional param) and the next entry starts at the
    size rounded up to 32 bits."""
    seq = bytes([1, 24]) + bytes(range(24))
    first = _kernel_v6(KERNEL_DR6, kind=3, size=V6_SIZE + 26, options=seq)
    second = _kernel_v6(KERNEL_DR6, size=V6_SIZE + 3, options=bytes([0x45, 1, 9]))
    message = _header_v1(0, first + b"\0\0" + second + b"\0" + _kernel_v4(KERNEL_DR4), 3)
    assert sync.decode(message) == [KERNEL_DR6, KERNEL_DR6, KERNEL_DR4]


# -- the backup's checks ---------------------------------------------------------------------

def _fix_size(message: bytes) -> bytes:
    return message[:2] + struct.pack("!H", len(message)) + message[4:]


MALFORMED_V6 = {
    # ip_vs_proc_sync_conn's -20: the entry's size does not cover struct ip_vs_sync_v6
    "IPv6 entry sized as an IPv4 one": _header_v1(0, _kernel_v6(KERNEL_DR6, size=36)[:36], 1),
    "IPv6 entry of 71 bytes": _header_v1(0, _kernel_v6(KERNEL_DR6, size=71)[:71] + b"\0", 1),
    # ip_vs_process_message: the size runs past the datagram
    "IPv6 entry cut off": _header_v1(0, _kernel_v6(KERNEL_DR6)[:60], 1),
    "IPv6 entry's size past the end": _header_v1(0, _kernel_v6(KERNEL_DR6, size=76), 1),
    # an unknown version in ver_size's top 4 bits
    "IPv6 entry version 1": _header_v1(0, _kernel_v6(KERNEL_DR6, version=1), 1),
    # -10: a type without the IPv6 bit other than 0
    "type 2": _header_v1(0, _kernel_v6(KERNEL_DR6, kind=2), 1),
    # -40: an option running past the entry; -50: sequence data not 24 bytes
    "IPv6 option past the entry": _header_v1(
        0, _kernel_v6(KERNEL_DR6, size=76, options=bytes([0x45, 9, 0, 0])), 1),
    "IPv6 sequence data of 12": _header_v1(
        0, _kernel_v6(KERNEL_DR6, size=86, options=bytes([1, 12]) + bytes(12)), 1),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_V6))
def test_a_bad_ipv6_entry_drops_the_whole_message(name):
    """Each of these makes ip_vs_process_message return: the IPv4 entry before it is lost
    too."""
    message = MALFORMED_V6[name]
    body = _kernel_v4(KERNEL_DR4) + message[8:]
    with pytest.raises(SyncError):
        sync.decode(_fix_size(_header_v1(0, body, 2)))


def test_an_unacceptable_ipv6_entry_is_skipped_alone():
    """ip_vs_proc_sync_conn's positive returns skip one entry: an unknown mandatory option (20),
    an unknown protocol (30), a TCP state out of range (40), PE data without an engine (50)."""
    entries = [
        _kernel_v6(KERNEL_DR6, size=76, options=bytes([7, 2, 0, 0])),
        _kernel_v6(SyncConn(132, CLIENT6, 1, VIP6, 80, RIP6, 80, ES, DROUTE, 0)),
        _kernel_v6(SyncConn(TCP, CLIENT6, 2, VIP6, 80, RIP6, 80, 11, DROUTE, 0)),
        _kernel_v6(KERNEL_DR6, size=81, options=bytes([2, 4]) + b"call" + bytes([3, 1]) + b"s"),
        _kernel_v6(KERNEL_DR6),
    ]
    message = _header_v1(0, b"".join(e + bytes(-len(e) % 4) for e in entries), len(entries))
    assert sync.decode(message) == [KERNEL_DR6]


def test_the_first_check_reads_only_an_ipv4_entrys_length():
    """ip_vs_process_message checks sizeof(s->v4) before reading the size: 36 bytes of an IPv6
    entry pass that check, then its own size (72) runs past the datagram."""
    with pytest.raises(SyncError, match="runs past"):
        sync.decode(_header_v1(0, _kernel_v6(KERNEL_DR6)[:40], 1))
    with pytest.raises(SyncError, match="cut off"):
        sync.decode(_header_v1(0, _kernel_v6(KERNEL_DR6)[:35], 1))


# -- round trips -----------------------------------------------------------------------------

_v4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
_v6 = st.builds(lambda n: sync._ip(n.to_bytes(16, "big")), st.integers(0, 2**128 - 1))
_ports = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 2**32 - 1)


def _conns(addresses):
    return st.one_of(
        st.builds(SyncConn, st.just(TCP), addresses, _ports, addresses, _ports, addresses,
                  _ports, st.integers(0, 10), _u32.map(lambda f: f & ~TEMPLATE), _u32, _u32),
        st.builds(SyncConn, st.just(UDP), addresses, _ports, addresses, _ports, addresses,
                  _ports, st.just(0), _u32.map(lambda f: f & ~TEMPLATE), _u32, _u32),
        st.builds(SyncConn, st.integers(0, 255), addresses, _ports, addresses, _ports,
                  addresses, _ports, st.integers(0, 0xFFFF), _u32.map(lambda f: f | TEMPLATE),
                  _u32, _u32))


_mixed = st.one_of(_conns(_v4), _conns(_v6))


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_mixed, max_size=600), st.integers(0, 255), st.integers(80, 9000))
def test_mixed_messages_round_trip_filled_as_the_kernel_fills_them(conns, syncid, budget):
    """Any mix of IPv4 and IPv6 connections comes back in order; each message within the budget
    (the daemon's sync_maxlen) and 255 entries, its header right, and every message but the
    last full: the next entry would not have fitted it (ip_vs_sync_conn's ``buff->head + len
    + pad > buff->end``) or it holds 255."""
    messages = sync.encode(conns, syncid, budget)
    decoded: list[SyncConn] = []
    for index, message in enumerate(messages):
        reserved, msg_syncid, size, nr_conns, version, spare = struct.unpack_from("!BBHBbH",
                                                                                  message)
        assert (reserved, msg_syncid, size, version, spare) == (0, syncid, len(message), 1, 0)
        assert len(message) <= budget and 1 <= nr_conns <= 255
        got = sync.decode(message, syncid)
        assert len(got) == nr_conns
        decoded += got
        if index < len(messages) - 1:
            following = conns[len(decoded)]
            following_size = V6_SIZE if following.af == AF_INET6 else V4_SIZE
            assert nr_conns == 255 or len(message) + following_size > budget
    assert decoded == conns


def test_the_default_budget_holds_twenty_ipv6_entries():
    """A master's sync_maxlen over IPv4 is 1500 - 28 = 1472: 8 + 20 × 72 = 1448 bytes; over
    IPv6 it is 1500 - 48 = 1452: the same 20."""
    six = [KERNEL_DR6] * 41
    assert [len(m) for m in sync.encode(six, 0)] == [1448, 1448, 80]
    assert [len(m) for m in sync.encode(six, 0, sync.default_maxlen(AF_INET6, False))] == [
        1448, 1448, 80]


# -- the transport and the sizes -------------------------------------------------------------

def test_the_transport_is_a_multicast_group_of_either_family():
    """ip_vs_genl_new_daemon takes IPVS_DAEMON_ATTR_MCAST_GROUP (ipv4_is_multicast) or
    MCAST_GROUP6 (IPV6_ADDR_MULTICAST), nothing else: no unicast peer (keepalived's
    lvs_sync_daemon ``group`` says so too: "is not multicast - ignoring")."""
    default = sync.Transport()
    assert (default.group, default.port, default.ttl, default.af) == ("224.0.0.81", 8848, 1,
                                                                        AF_INET)
    assert sync.Transport("ff02::8848").af == AF_INET6
    for group in ("224.0.0.81", "239.255.0.1", "ff02::8848", "ff05::1:3", "ff0e::1"):
        assert sync.is_multicast(group), group
    for group in ("192.0.2.1", "2001:db8::1", "fe80::1", "ff02::1%eth0", "x", ""):
        assert not sync.is_multicast(group), group
        with pytest.raises(ValueError, match="not a multicast group"):
            sync.Transport(group)


def test_sync_maxlen_as_start_sync_thread_sets_it():
    """Default: a master 1500, a backup its MTU clamped to 1500..65535, less the IPv4 (28) or
    IPv6 (48) and UDP headers; given: clamped to 1 (master) or 1024 (backup) .. 65535 - hlen."""
    assert sync.Transport().sync_maxlen(False, 9000) == 1472
    assert sync.Transport().sync_maxlen(True, 9000) == 8972
    assert sync.Transport().sync_maxlen(True, 1280) == 1472
    assert sync.Transport("ff02::8848").sync_maxlen(False, 9000) == 1452
    assert sync.Transport("ff02::8848").sync_maxlen(True, 70000) == 65535 - 48
    assert sync.Transport("ff02::8848", maxlen=100).sync_maxlen(False) == 100
    assert sync.Transport("ff02::8848", maxlen=100).sync_maxlen(True) == 1024
    assert sync.Transport("ff02::8848", maxlen=65507).sync_maxlen(False) == 65487

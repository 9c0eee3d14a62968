"""The sync protocol against Linux's ip_vs_sync.c: message layouts, a backup's checks, and when
the master sends (ip_vs_sync_conn_needed)."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylvs.ha import sync
from pylvs.ha.sync import SyncConn, SyncError

TCP, UDP = 6, 17
NONE, ES, SS, SR, FW, TW, CL, CW, LA, LI, SA = range(11)
DROUTE, NOOUTPUT, INACTIVE, TEMPLATE = 0x0003, 0x0080, 0x0100, 0x1000
SYNC_FLAG, IN_SEQ, ONE_PACKET = 0x0020, 0x0400, 0x2000


def _a(text: str) -> bytes:
    return socket.inet_aton(text)


def _header_v1(syncid: int, body: bytes, nr_conns: int) -> bytes:
    """reserved u8 (0) | syncid u8 | size u16 | nr_conns u8 | version s8 (1) | spare u16."""
    return struct.pack("!BBHBbH", 0, syncid, 8 + len(body), nr_conns, 1, 0) + body


def _entry_v4(protocol: int = TCP, flags: int = DROUTE | NOOUTPUT, state: int = ES,
              cport: int = 40000, vport: int = 80, dport: int = 80, fwmark: int = 0,
              timeout: int = 900, caddr: str = "203.0.113.5", vaddr: str = "192.0.2.100",
              daddr: str = "198.51.100.11", options: bytes = b"", kind: int = 0,
              version: int = 0) -> bytes:
    """type u8 | protocol u8 | ver_size u16 | flags u32 | state u16 | cport vport dport u16 |
    fwmark u32 | timeout u32 | caddr vaddr daddr u32, then options; size counts them."""
    size = 36 + len(options)
    return struct.pack("!BBHIHHHHII", kind, protocol, version << 12 | size, flags, state, cport,
                       vport, dport, fwmark, timeout) + _a(caddr) + _a(vaddr) + _a(daddr) + options


def _pad(entry: bytes) -> bytes:
    return entry + bytes(-len(entry) % 4)


def _entry_v6(options: bytes = b"") -> bytes:
    address = ipaddress.IPv6Address("2001:db8::5").packed
    return struct.pack("!BBHIHHHHII", 1, TCP, 72 + len(options), DROUTE, ES, 40001, 80, 80, 0,
                       900) + address * 3 + options


KERNEL_DR = SyncConn(TCP, "203.0.113.5", 40000, "192.0.2.100", 80, "198.51.100.11", 80,
                     state=ES, flags=DROUTE | NOOUTPUT, timeout=900)


def test_hand_built_kernel_message_decodes():
    """What a kernel master sends for one ESTABLISHED DR connection (ip_vs_sync_conn: flags
    without HASHED, timeout in seconds) decodes field by field; the backup adds SYNC."""
    message = _header_v1(9, _entry_v4(), 1)
    assert len(message) == 44
    assert sync.decode(message) == [KERNEL_DR]
    assert sync.decode(message, syncid=9) == [KERNEL_DR]
    assert sync.backup_flags(KERNEL_DR.flags) == DROUTE | NOOUTPUT | SYNC_FLAG


def test_encode_is_byte_for_byte_the_kernel_layout():
    """The encoder writes what ip_vs_sync_conn writes: header, then a 36-byte IPv4 entry."""
    assert sync.encode([KERNEL_DR], syncid=9) == [_header_v1(9, _entry_v4(), 1)]


def test_flag_and_state_values_are_the_kernels():
    """include/uapi/linux/ip_vs.h and include/net/ip_vs.h; the states match pylvs.core.conntrack."""
    from pylvs.core import conntrack

    assert (sync.IP_VS_CONN_F_MASQ, sync.IP_VS_CONN_F_LOCALNODE, sync.IP_VS_CONN_F_TUNNEL,
            sync.IP_VS_CONN_F_DROUTE, sync.IP_VS_CONN_F_FWD_MASK) == (0, 1, 2, 3, 7)
    assert (sync.IP_VS_CONN_F_SYNC, sync.IP_VS_CONN_F_NOOUTPUT, sync.IP_VS_CONN_F_INACTIVE,
            sync.IP_VS_CONN_F_SEQ_MASK, sync.IP_VS_CONN_F_TEMPLATE,
            sync.IP_VS_CONN_F_ONE_PACKET) == (0x20, 0x80, 0x100, 0x600, 0x1000, 0x2000)
    assert sync.IP_VS_CONN_F_BACKUP_MASK == 0x1F87
    assert [sync.IP_VS_TCP_S_ESTABLISHED, sync.IP_VS_TCP_S_FIN_WAIT, sync.IP_VS_TCP_S_TIME_WAIT,
            sync.IP_VS_TCP_S_CLOSE, sync.IP_VS_TCP_S_CLOSE_WAIT, sync.IP_VS_TCP_S_SYNACK] == [
        conntrack.ESTABLISHED, conntrack.FIN_WAIT, conntrack.TIME_WAIT, conntrack.CLOSE,
        conntrack.CLOSE_WAIT, conntrack.SYNACK]
    assert (sync.SYNC_GROUP, sync.SYNC_PORT, sync.SYNC_TTL) == ("224.0.0.81", 8848, 1)


# -- round trips ----------------------------------------------------------------------------

_addresses = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
_ports = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 2**32 - 1)


def _conns(protocol, state, flags):
    return st.builds(SyncConn, protocol, _addresses, _ports, _addresses, _ports, _addresses,
                     _ports, state, flags, _u32, _u32)


# what a kernel backup accepts: TCP in one of its 11 states, UDP in its one, or any template
_syncable = st.one_of(
    _conns(st.just(TCP), st.integers(0, 10), _u32.map(lambda f: f & ~TEMPLATE)),
    _conns(st.just(UDP), st.just(0), _u32.map(lambda f: f & ~TEMPLATE)),
    _conns(st.integers(0, 255), st.integers(0, 0xFFFF), _u32.map(lambda f: f | TEMPLATE)))


def _many(base: list[SyncConn], count: int) -> list[SyncConn]:
    """``count`` connections cycling through ``base``, each client port moved on."""
    return [dataclasses.replace(base[i % len(base)], cport=(base[i % len(base)].cport + i) % 65536)
            for i in range(count)]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_syncable, min_size=1, max_size=30), st.integers(0, 3000),
       st.integers(0, 255), st.integers(44, 12000))
def test_round_trip_split_within_budget(base, count, syncid, budget):
    """Any number of connections come back in order, in messages of at most 255 entries (nr_conns
    is a u8) within the budget, each as full as it may be, with a correct version 1 header."""
    conns = _many(base, count)
    messages = sync.encode(conns, syncid, budget)
    per_message = min(255, (budget - 8) // 36)
    assert len(messages) == -(-count // per_message)
    decoded = []
    for index, message in enumerate(messages):
        reserved, msg_syncid, size, nr_conns, version, spare = struct.unpack_from("!BBHBbH",
                                                                                  message)
        assert (reserved, msg_syncid, size, version, spare) == (0, syncid, len(message), 1, 0)
        assert len(message) <= budget and nr_conns <= 255
        assert nr_conns == (per_message if index < len(messages) - 1
                            else count - per_message * index)
        decoded += sync.decode(message, syncid)
    assert decoded == conns


def test_default_budget_packs_forty_entries():
    """1500 - 20 - 8 = 1472 bytes: an 8-byte header and 40 entries of 36 (1448 bytes)."""
    messages = sync.encode(_many([KERNEL_DR], 81), 0)
    assert [len(m) for m in messages] == [1448, 1448, 44]


def test_an_entry_bigger_than_the_budget_goes_alone():
    """ip_vs_sync_buff_create makes a buffer of max(len + header, sync_maxlen): with a budget
    below one entry each message carries one, bigger than the budget."""
    messages = sync.encode(_many([KERNEL_DR], 3), 0, mtu_budget=43)
    assert [len(m) for m in messages] == [44, 44, 44]
    assert [m[4] for m in messages] == [1, 1, 1]


def test_encode_refuses_what_the_wire_cannot_carry():
    """A port beyond u16, addresses of two families in one entry (an IPv4 connection with an
    IPv6 real server: IPVS never syncs one), syncid > u8."""
    with pytest.raises(ValueError):
        sync.encode([dataclasses.replace(KERNEL_DR, cport=65536)], 0)
    with pytest.raises(ValueError):
        sync.encode([dataclasses.replace(KERNEL_DR, daddr="2001:db8::1")], 0)
    with pytest.raises(ValueError):
        sync.encode([KERNEL_DR], 256)
    assert sync.encode([], 0) == []


# -- options, IPv6, entries a backup skips --------------------------------------------------

def test_options_are_skipped_by_size_and_entries_realigned():
    """ip_vs_process_message: an entry's size includes its options; the next entry starts at the
    size rounded up to 32 bits (the last one needs no padding). Sequence data (type 1, 24 bytes)
    and an unknown optional parameter (IPVS_OPT_F_PARAM 0x40 set) keep their entry."""
    seq = _entry_v4(cport=1, flags=DROUTE | IN_SEQ, options=bytes([1, 24]) + bytes(range(24)))
    optional = _entry_v4(cport=2, options=bytes([0x45, 3, 9, 9, 9]))
    last = _entry_v4(cport=3, options=bytes([0x4F, 1, 7]))
    assert (len(seq), len(optional), len(last)) == (62, 41, 39)
    message = _header_v1(0, _pad(seq) + _pad(optional) + last, 3)
    assert [c.cport for c in sync.decode(message)] == [1, 2, 3]
    assert sync.decode(message)[0].flags == DROUTE | IN_SEQ


def test_unacceptable_entries_are_skipped_not_fatal():
    """ip_vs_proc_sync_conn drops a single entry, not the message, for: an unknown mandatory
    option (a literal type 7 lacks the 0x40 bit), PE data without a persistence engine, an
    unknown protocol, a state out of range; a template keeps any. IPv6 entries (with their
    options too) are read among them (tests/ha/test_sync_ipv6.py)."""
    entries = [
        _entry_v6(),
        _entry_v6(options=bytes([1, 24]) + bytes(24)),
        _entry_v4(cport=1),
        _entry_v4(cport=2, options=bytes([7, 2, 0, 0])),
        _entry_v4(cport=3, options=bytes([2, 4]) + b"call" + bytes([3, 3]) + b"sip"),
        _entry_v4(cport=4, options=bytes([3, 3]) + b"sip"),
        _entry_v4(cport=5, protocol=132),
        _entry_v4(cport=6, state=11),
        _entry_v4(cport=7, protocol=UDP, state=1),
        _entry_v4(cport=8, protocol=UDP, state=0),
        _entry_v4(cport=9, protocol=132, state=99, flags=TEMPLATE),
    ]
    message = _header_v1(0, b"".join(map(_pad, entries)), len(entries))
    assert [c.cport for c in sync.decode(message)] == [40001, 40001, 1, 4, 8, 9]


def test_trailing_bytes_after_the_announced_entries_are_ignored():
    """The kernel reads nr_conns entries and stops; what follows inside size is not looked at."""
    message = _header_v1(0, _entry_v4() + b"\xff" * 10, 1)
    assert sync.decode(message) == [KERNEL_DR]


# -- version 0 ------------------------------------------------------------------------------

def _entry_v0(cport: int, flags: int, state: int = ES, protocol: int = TCP) -> bytes:
    """reserved u8 | protocol u8 | cport vport dport u16 | caddr vaddr daddr u32 | flags u16 |
    state u16, then 24 bytes of in/out sequence data if flags has IP_VS_CONN_F_SEQ_MASK."""
    entry = struct.pack("!BBHHH", 0, protocol, cport, 80, 8080) + _a("203.0.113.5") + \
        _a("192.0.2.100") + _a("198.51.100.11") + struct.pack("!HH", flags, state)
    return entry + (bytes(24) if flags & 0x0600 else b"")


def test_version_0_messages_decode():
    """ip_vs_process_message_v0: 4-byte header (nr_conns first), 24-byte entries, 48 with
    sequence data; no timeout (0: the backup uses the state's) and no fwmark."""
    body = _entry_v0(1, DROUTE | IN_SEQ) + _entry_v0(2, 0, state=FW)
    message = struct.pack("!BBH", 2, 5, 4 + len(body)) + body
    assert len(message) == 4 + 48 + 24
    assert sync.decode(message) == [
        SyncConn(TCP, "203.0.113.5", 1, "192.0.2.100", 80, "198.51.100.11", 8080, ES,
                 DROUTE | IN_SEQ, 0, 0),
        SyncConn(TCP, "203.0.113.5", 2, "192.0.2.100", 80, "198.51.100.11", 8080, FW, 0, 0, 0)]
    assert sync.decode(struct.pack("!BBH", 0, 5, 4)) == []


# -- malformed messages ---------------------------------------------------------------------

def _v1(*entries: bytes, nr_conns: int | None = None) -> bytes:
    return _header_v1(0, b"".join(entries), len(entries) if nr_conns is None else nr_conns)


MALFORMED = {
    "shorter than a header": b"\x00\x00\x00",
    "size field too big": struct.pack("!BBHBbH", 0, 0, 9, 0, 1, 0),
    "size field too small": struct.pack("!BBHBbH", 0, 0, 7, 0, 1, 0),
    "v1 header cut off": struct.pack("!BBHB", 0, 0, 5, 0),
    "unknown version": struct.pack("!BBHBbH", 0, 0, 8, 0, 2, 0),
    "negative version": struct.pack("!BBHBbH", 0, 0, 8, 0, -1, 0),
    "spare not zero": struct.pack("!BBHBbH", 0, 0, 8, 0, 1, 1),
    "more entries announced": _v1(_entry_v4(), nr_conns=2),
    "entry cut off": _v1(_entry_v4()[:30], nr_conns=1),
    "entry size past the end": _v1(_entry_v4(options=bytes([1, 24]) + bytes(24)))[:-4],
    "entry size below 36": _v1(_entry_v4()[:2] + struct.pack("!H", 20) + _entry_v4()[4:]),
    "entry version not 0": _v1(_entry_v4(version=1)),
    "entry type unknown": _v1(_entry_v4(kind=2)),
    "IPv6 entry too short": _v1(_entry_v4(kind=1)),
    "option header cut off": _v1(_entry_v4(options=b"\x01")),
    "option of length 0": _v1(_entry_v4(options=b"\x4f\x00\x4f\x01x")),
    "option past the entry": _v1(_entry_v4(options=b"\x02\x09abc")),
    "sequence data not 24": _v1(_entry_v4(options=bytes([1, 12]) + bytes(12))),
    "sequence data twice": _v1(_entry_v4(options=(bytes([1, 24]) + bytes(24)) * 2)),
    "PE name too long": _v1(_entry_v4(options=bytes([3, 17]) + b"x" * 17)),
    "v0 entry cut off": struct.pack("!BBH", 1, 0, 4 + 20) + _entry_v0(1, 0)[:20],
    "v0 sequence data cut off": struct.pack("!BBH", 1, 0, 4 + 30) + _entry_v0(1, IN_SEQ)[:30],
}


def _fix_size(message: bytes) -> bytes:
    """Keep the header's size equal to the datagram, so a later check is the one that fails."""
    return message[:2] + struct.pack("!H", len(message)) + message[4:]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_raise_sync_error(name):
    """ip_vs_process_message drops the whole datagram for each of these."""
    message = MALFORMED[name]
    if not name.startswith(("size field", "shorter")):
        message = _fix_size(message)
    with pytest.raises(SyncError) as caught:
        sync.decode(message)
    assert caught.value.reason


def test_size_is_checked_before_the_syncid():
    """The kernel checks the datagram's size first, then ignores another SyncID."""
    message = _header_v1(3, _entry_v4(), 1)
    assert sync.decode(message, syncid=4) == []
    with pytest.raises(SyncError):
        sync.decode(message + b"\x00", syncid=4)


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data):
    """Any datagram: a list of connections, or SyncError; nothing else escapes."""
    try:
        assert isinstance(sync.decode(data), list)
    except SyncError:
        pass


@settings(max_examples=500)
@given(st.integers(0, 255), st.binary(max_size=600))
def test_fuzz_behind_a_valid_v1_header(nr_conns, body):
    """Past the header checks, random entries and options: a list of SyncConn or SyncError."""
    try:
        conns = sync.decode(_header_v1(0, body, nr_conns))
    except SyncError:
        return
    assert all(isinstance(c, SyncConn) for c in conns) and len(conns) <= nr_conns


@settings(max_examples=300)
@given(st.lists(_syncable, min_size=1, max_size=5), st.data())
def test_fuzz_mutated_valid_messages(conns, data):
    """A real message with a byte changed and maybe cut short: a list or SyncError."""
    message = bytearray(sync.encode(conns, 0)[0])
    position = data.draw(st.integers(0, len(message) - 1))
    message[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    try:
        result = sync.decode(bytes(message[:cut]))
    except SyncError:
        return
    assert all(isinstance(c, SyncConn) for c in result)


# -- SyncID ---------------------------------------------------------------------------------

def test_another_syncids_message_is_told_apart_from_an_empty_one():
    """decode gives [] for both (the kernel ignores the first, IP_VS_DBG "Ignoring syncid");
    the backup counts them apart."""
    empty, theirs = sync.encode([], 7), sync.encode([KERNEL_DR], 9)
    assert empty == []  # no connections, no message: an empty one is hand-made
    empty_v1 = sync.HEADER_V1.pack(0, 7, sync.HEADER_V1.size, 0, 1, 0)
    assert sync.decode(empty_v1, 7) == sync.decode(theirs[0], 7) == []
    assert not sync.other_syncid(empty_v1, 7) and sync.other_syncid(theirs[0], 7)
    assert not sync.other_syncid(theirs[0], 0)  # SyncID 0 takes every message


def test_backup_syncid_filters_messages():
    """A backup with SyncID 0 takes every message; with another it ignores messages of other
    SyncIDs (returned as []), in version 1 and version 0 alike."""
    v1 = sync.encode([KERNEL_DR], syncid=7)[0]
    v0 = struct.pack("!BBH", 1, 7, 28) + _entry_v0(1, 0)
    for message in (v1, v0):
        assert len(sync.decode(message, syncid=0)) == 1
        assert len(sync.decode(message, syncid=7)) == 1
        assert sync.decode(message, syncid=8) == []


# -- when to sync ---------------------------------------------------------------------------

def _syncs(protocol: int, states: list[int], **kwargs) -> list[int]:
    """Feed per-packet states (after ip_vs_set_state) as ip_vs_in does, keeping cp->old_state as
    the kernel does (set on each sync); the in_pkts at which the master sent the connection."""
    old, sent = NONE, []
    for in_pkts, state in enumerate(states, start=1):
        if sync.should_sync(protocol, old, state, in_pkts, **kwargs):
            sent.append(in_pkts)
            old = state
    return sent


def test_should_sync_follows_a_dr_connection():
    """A DR connection: SYN → SYN_RECV, ACK → ESTABLISHED (not sent: ESTABLISHED waits for the
    count), sent at packets 3 and 53 (in_pkts % 50 == 3); FIN → FIN_WAIT at packet 60 is sent
    at once; in FIN_WAIT the count rule applies again (103: Linux ≥ 3.5); RST → CLOSE at 121 at
    once."""
    states = [SR, ES] + [ES] * 57 + [FW] * 61 + [CL] + [CL] * 5
    assert states[59] == FW and states[120] == CL
    assert _syncs(TCP, states) == [3, 53, 60, 103, 121]


def test_should_sync_nat_close_sequence():
    """NAT, client closes first: ESTABLISHED → CLOSE_WAIT → TIME_WAIT, each move sent at once;
    a return to the state last sent is not a move (old_state is the last synced state)."""
    states = [SR, ES, ES, CW, TW, TW, SR, TW]
    assert _syncs(TCP, states) == [3, 4, 5]


@pytest.mark.parametrize("state", [NONE, SS, SR, LA, LI, SA])
def test_tcp_outside_the_sync_states_is_never_sent(state):
    """ip_vs_sync_conn_needed sends TCP only in ES, FW, CL, CW, TW, whatever the count."""
    assert not any(sync.should_sync(TCP, old, state, pkts)
                   for old in range(11) for pkts in range(1, 120))


@pytest.mark.parametrize("state", [FW, CL, CW, TW])
def test_moving_into_a_closing_state_is_sent_at_once(state):
    """force = state != old_state, and not ESTABLISHED: sent whatever the packet count."""
    assert all(sync.should_sync(TCP, old, state, pkts)
               for old in range(11) if old != state for pkts in range(1, 120))


def test_udp_and_templates_go_by_the_count():
    """Non-TCP: in_pkts % period == threshold. Templates: every time (period > 0).
    One-packet connections: never. sync_threshold 2 10 moves the points."""
    assert _syncs(UDP, [0] * 160) == [3, 53, 103, 153]
    assert _syncs(UDP, [0] * 30, threshold=2, period=10) == [2, 12, 22]
    assert _syncs(TCP, [0] * 5, flags=TEMPLATE) == [1, 2, 3, 4, 5]
    assert _syncs(UDP, [0] * 100, flags=ONE_PACKET) == []


def test_period_zero_sends_once():
    """sync_period 0 (and sync_refresh_period 0): only at in_pkts == threshold; TCP moves into
    closing states are still sent."""
    assert _syncs(UDP, [0] * 200, period=0) == [3]
    assert _syncs(TCP, [ES] * 100 + [FW], period=0) == [3, 101]
    assert _syncs(TCP, [0] * 10, flags=TEMPLATE, period=0) == [3]

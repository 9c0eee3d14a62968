"""Software segmentation of TCP super-frames (what GSO would have done on the wire).

A local sender with TSO/GSO on hands the packet tap TCP frames of up to 64 KB; they cannot be
transmitted as they are. This splits one into frames that fit the MTU: each copy of the IP and
TCP headers gets its own total length, IP ID and sequence number; CWR stays on the first segment,
FIN and PSH move to the last. IP checksums are recomputed here; the TCP checksums are left for the
caller to complete, as for any frame whose checksum the sender left partial. IPv6 frames (TCP
right after the 40-byte header, as a local sender's are) get their payload length per segment;
IPv6 has no IP ID and no header checksum.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pylvs.core.packet import ETH_HLEN, ip_header_checksum

_FIN, _PSH, _CWR = 0x01, 0x08, 0x80


def needs_segmenting(frame: bytes | bytearray | memoryview, mtu: int) -> bool:
    return len(frame) > ETH_HLEN + mtu


def client_address(frame: bytes | bytearray | memoryview) -> int | None:
    """The source address of an IPv4 or IPv6 frame (the director's ``path_mtu`` key)."""
    l3 = ETH_HLEN
    if frame[l3 - 2:l3] == b"\x86\xdd" and len(frame) >= l3 + 24:
        return int.from_bytes(frame[l3 + 8:l3 + 24], "big")
    if len(frame) >= l3 + 20:
        return int.from_bytes(frame[l3 + 12:l3 + 16], "big")
    return None


def segment_tcp(frame: bytes | bytearray | memoryview, mtu: int) -> list[bytearray]:
    """Split an Ethernet/IPv4/TCP or IPv6/TCP frame longer than the MTU; [] if it is not such
    a frame."""
    l3 = ETH_HLEN
    if frame[l3 - 2:l3] == b"\x86\xdd":
        return _segment_tcp6(frame, mtu)
    if len(frame) < l3 + 40 or frame[l3 - 2:l3] != b"\x08\x00" or frame[l3 + 9] != 6:
        return []
    ihl = (frame[l3] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, l3 + 2)[0] or len(frame) - l3  # TSO may leave 0
    if ihl < 20 or l3 + ihl + 20 > len(frame):
        return []
    ip_id = struct.unpack_from("!H", frame, l3 + 4)[0]

    def mend(seg: bytearray, i: int, length: int) -> None:
        struct.pack_into("!HH", seg, l3 + 2, ihl + length, (ip_id + i) & 0xFFFF)
        struct.pack_into("!H", seg, l3 + 10, 0)
        struct.pack_into("!H", seg, l3 + 10, ip_header_checksum(seg, l3))

    return _cut(frame, l3 + ihl, min(len(frame), l3 + total), mtu - ihl, mend)


def _segment_tcp6(frame: bytes | bytearray | memoryview, mtu: int) -> list[bytearray]:
    l3, l4 = ETH_HLEN, ETH_HLEN + 40
    if len(frame) < l4 + 20 or frame[l3 + 6] != 6:
        return []
    payload = struct.unpack_from("!H", frame, l3 + 4)[0] or len(frame) - l4  # TSO may leave 0

    def mend(seg: bytearray, i: int, length: int) -> None:
        struct.pack_into("!H", seg, l3 + 4, length)

    return _cut(frame, l4, min(len(frame), l4 + payload), mtu - 40, mend)


def _cut(frame: bytes | bytearray | memoryview, l4: int, end: int, room: int,
         mend: Callable[[bytearray, int, int], None]) -> list[bytearray]:
    """The TCP segment at ``l4`` (its data up to ``end``) cut into segments of ``room`` bytes
    of TCP header and data; ``mend`` writes each one's IP length fields (segment index, TCP
    header and data length)."""
    thl = (frame[l4 + 12] >> 4) * 4
    data_start = l4 + thl
    mss = room - thl
    if thl < 20 or data_start > end or mss <= 0:
        return []
    seq = struct.unpack_from("!I", frame, l4 + 4)[0]
    flags = frame[l4 + 13]
    headers = bytes(frame[:data_start])
    out: list[bytearray] = []
    for i, start in enumerate(range(data_start, end, mss)):
        chunk = frame[start:min(start + mss, end)]
        seg = bytearray(headers)
        seg += chunk
        mend(seg, i, thl + len(chunk))
        struct.pack_into("!I", seg, l4 + 4, (seq + start - data_start) & 0xFFFFFFFF)
        seg_flags = flags if i == 0 else flags & ~_CWR
        seg[l4 + 13] = seg_flags if start + mss >= end else seg_flags & ~(_FIN | _PSH)
        out.append(seg)
    return out

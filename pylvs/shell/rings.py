"""Packet sockets and their rings: raw frames in and out of one interface.

``PacketSocket`` is an AF_PACKET/ETH_P_ALL tap on one interface with a TPACKET_V3 mmap rx ring,
plus a second AF_PACKET socket with a TPACKET_V2 mmap tx ring for batched transmit. The
interface is bound when the socket is made, so it keeps working from any thread. Frames are
handed out as ``memoryview`` slices of the rx ring: zero copy, valid only until the next
``receive()``. The status word of each frame is returned raw; bit ``TP_STATUS_CSUMNOTREADY``
means the L4 checksum is partial (a local sender's offload) and must be computed in full.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
import socket
import struct
import time

from pylvs.shell.interfaces import interface_index, interface_mac

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000
TPACKET_V2 = 1
TPACKET_V3 = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4

TP_STATUS_KERNEL = 0x0
TP_STATUS_USER = 0x1
TP_STATUS_CSUMNOTREADY = 0x8
TP_STATUS_CSUM_VALID = 0x80
# tx ring frame states
TP_STATUS_AVAILABLE = 0x0
TP_STATUS_SEND_REQUEST = 0x1
TP_STATUS_SENDING = 0x2
TP_STATUS_WRONG_FORMAT = 0x4

# struct tpacket_block_desc { u32 version; u32 offset_to_priv; struct tpacket_hdr_v1 {
#   u32 block_status; u32 num_pkts; u32 offset_to_first_pkt; ... } }
_BD_STATUS = 8
_BD_NUM_PKTS = 12
_BD_FIRST = 16
# struct tpacket3_hdr: u32 tp_next_offset @0, tp_sec @4, tp_nsec @8, tp_snaplen @12, tp_len @16,
# tp_status @20, u16 tp_mac @24, tp_net @26, hv1 (12 bytes), padding[8] -> 48 bytes;
# struct sockaddr_ll follows at TPACKET_ALIGN(48) = 48, sll_pkttype at +10.
_H3_SNAPLEN = 12
_H3_STATUS = 20
_H3_MAC = 24
_H3_PKTTYPE = 48 + 10
# struct tpacket2_hdr: u32 tp_status @0, tp_len @4, tp_snaplen @8, u16 tp_mac @12, tp_net @14,
# u32 tp_sec, tp_nsec, u16 vlan_tci, vlan_tpid, u8 pad[4] -> 32 bytes. For tx the frame data goes
# at tp_hdrlen - sizeof(sockaddr_ll) = TPACKET_ALIGN(32) + 20 - 20 = 32.
_H2_DATA = 32

_POLLIN = select.POLLIN | select.POLLERR


def _set_program(sock: socket.socket, level: int, option: int, packed: bytes) -> None:
    buf = ctypes.create_string_buffer(packed, len(packed))
    sock.setsockopt(level, option, struct.pack("HL", len(packed) // 8, ctypes.addressof(buf)))



class PacketSocket:
    """AF_PACKET SOCK_RAW ETH_P_ALL bound to one interface; TPACKET_V3 rx ring (mmap), batched tx.

    ``receive()`` hands out zero-copy views into the rx ring, valid until the next ``receive()``.
    ``send()`` copies a frame into the TPACKET_V2 tx ring; ``flush()`` kicks the kernel once for
    everything queued. A frame whose tx slot is still busy (the kernel has not released it) or
    that does not fit a slot is sent directly instead, after the queued ones, so nothing blocks.
    Not thread-safe: use one thread for ``receive`` and one (possibly the same) for send/flush.
    """

    def __init__(
        self,
        ifname: str,
        *,
        block_size: int = 1 << 18,
        block_count: int = 16,
        frame_size: int = 2048,
        timeout_ms: int = 1,
        tx_frame_size: int = 2048,
        tx_frame_count: int = 512,
    ) -> None:
        if block_size % mmap.PAGESIZE or block_size % frame_size:
            raise ValueError("block_size must be a multiple of the page size and of frame_size")
        self.ifname = ifname
        self.ifindex = interface_index(ifname)
        self.mac: bytes = interface_mac(ifname)
        self.tx_direct = 0  # frames sent outside the ring (slot busy or too large)
        self.tx_errors = 0  # frames the kernel refused (ENOBUFS, EMSGSIZE, ...)
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._rx_map: mmap.mmap | None = None
        self._tx_map: mmap.mmap | None = None
        try:
            self._open_rx(block_size, block_count, frame_size, timeout_ms)
            self._open_tx(tx_frame_size, tx_frame_count)
        except BaseException:
            self.close()
            raise

    # -- rx ------------------------------------------------------------------------------------

    def _open_rx(self, block_size: int, block_count: int, frame_size: int, tmo: int) -> None:
        # protocol 0 until bind(): an ETH_P_ALL socket would capture every interface meanwhile
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._rx = rx
        rx.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        try:  # Linux >= 4.20: outgoing frames never enter the ring (we also filter below)
            rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        frame_nr = block_size * block_count // frame_size
        req = struct.pack("7I", block_size, block_count, frame_size, frame_nr, tmo, 0, 0)
        rx.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self._rx_map = mmap.mmap(rx.fileno(), block_size * block_count, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        rx.bind((self.ifname, ETH_P_ALL))
        self._rx_mv = memoryview(self._rx_map)
        self._block_size = block_size
        self._block_count = block_count
        self._next_block = 0
        self._held: list[int] = []  # offsets of blocks handed to the caller by the last receive()
        self._poll = select.poll()
        self._poll.register(rx.fileno(), _POLLIN)

    def set_filter(self, packed: bytes) -> None:
        """Attach a classic BPF program (pylvs.shell.bpf.pack) to the receive side."""
        assert self._rx is not None
        _set_program(self._rx, socket.SOL_SOCKET, SO_ATTACH_FILTER, packed)

    def join_fanout(self, group: int) -> None:
        """Share the interface's frames with the other members of ``group`` (PACKET_FANOUT),
        each frame to the member a classic BPF program (``set_fanout_program``) picks. Members
        are numbered in the order they joined."""
        assert self._rx is not None
        flags = PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_IGNORE_OUTGOING
        self._rx.setsockopt(SOL_PACKET, PACKET_FANOUT, group | flags << 16)

    def set_fanout_program(self, packed: bytes) -> None:
        """The group's program (one for the whole group: the last member to set it wins)."""
        assert self._rx is not None
        _set_program(self._rx, SOL_PACKET, PACKET_FANOUT_DATA, packed)

    def fileno(self) -> int:
        """The rx socket's descriptor: readable when a block is ready (for the caller's poll)."""
        assert self._rx is not None
        return self._rx.fileno()

    def drops(self) -> int:
        """Frames the kernel dropped because the rx ring was full, since the last call
        (PACKET_STATISTICS: struct tpacket_stats_v3; reading resets it)."""
        assert self._rx is not None
        _, dropped, _ = struct.unpack("III", self._rx.getsockopt(SOL_PACKET, PACKET_STATISTICS,
                                                                  12))
        return dropped

    def _release(self) -> None:
        mm = self._rx_map
        for off in self._held:
            struct.pack_into("I", mm, off + _BD_STATUS, TP_STATUS_KERNEL)
        self._held.clear()

    def receive(self, timeout: float | None) -> list[tuple[memoryview, int]]:
        """Frames of every ready block, waiting up to ``timeout`` seconds (None: forever).

        Returns ``[(frame, tp_status), ...]``; frames start at the Ethernet header and are views
        into the ring that stay valid until the next call. Frames the host sent (PACKET_OUTGOING)
        are skipped, and so are frames to another host's MAC (PACKET_OTHERHOST: a bridge floods
        them while it learns), which the kernel drops before IPVS sees them; else two directors
        on one segment would both forward a frame flooded to them.
        ``tp_status & TP_STATUS_CSUMNOTREADY`` marks a partial L4 checksum.
        """
        self._release()
        mm = self._rx_map
        mv = self._rx_mv
        unpack = struct.unpack_from
        bs = self._block_size
        off = self._next_block * bs
        if not unpack("I", mm, off + _BD_STATUS)[0] & TP_STATUS_USER:
            if timeout is None:
                ms = -1
            else:
                ms = max(0, int(timeout * 1000 + 0.999))
            deadline = None if ms < 0 else time.monotonic() + ms / 1000
            while True:
                try:
                    self._poll.poll(ms)
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    pass
                if unpack("I", mm, off + _BD_STATUS)[0] & TP_STATUS_USER:
                    break
                if deadline is not None:
                    ms = int((deadline - time.monotonic()) * 1000)
                    if ms <= 0:
                        return []
        out: list[tuple[memoryview, int]] = []
        append = out.append
        held = self._held
        n = self._block_count
        idx = self._next_block
        for _ in range(n):
            off = idx * bs
            if not unpack("I", mm, off + _BD_STATUS)[0] & TP_STATUS_USER:
                break
            held.append(off)
            num, first = unpack("II", mm, off + _BD_NUM_PKTS)
            pkt = off + first
            for _ in range(num):
                nxt, snaplen, _tplen, status, mac = unpack("I8xIIIH", mm, pkt)
                if mm[pkt + _H3_PKTTYPE] < PACKET_OTHERHOST:
                    start = pkt + mac
                    append((mv[start:start + snaplen], status))
                pkt += nxt
            idx = (idx + 1) % n
        self._next_block = idx
        return out

    # -- tx ------------------------------------------------------------------------------------

    def _open_tx(self, frame_size: int, frame_count: int) -> None:
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing
        self._tx = tx
        tx.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # through the qdisc, not PACKET_QDISC_BYPASS: tcpdump on the interface then sees what
        # the director sends, as on an IPVS director (bypass measured at <= 2% here)
        block_size = max(mmap.PAGESIZE, frame_size)
        if block_size % frame_size:
            raise ValueError("tx_frame_size must divide the page size or be a multiple of it")
        total = frame_size * frame_count
        block_nr = -(-total // block_size)
        frame_count = block_nr * block_size // frame_size
        req = struct.pack("4I", block_size, block_nr, frame_size, frame_count)
        tx.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        self._tx_map = mmap.mmap(tx.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        tx.bind((self.ifname, 0))
        self._tx_frame_size = frame_size
        self._tx_count = frame_count
        self._tx_max = frame_size - _H2_DATA
        self._tx_head = 0
        self._tx_queued = 0

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue one Ethernet frame for transmit on this interface (sent at ``flush()``)."""
        mm = self._tx_map
        ln = len(frame)
        off = self._tx_head * self._tx_frame_size
        status = _U32.unpack_from(mm, off)[0]
        if status == TP_STATUS_WRONG_FORMAT:  # the kernel rejected the frame last time round
            self.tx_errors += 1
            _U32.pack_into(mm, off, TP_STATUS_AVAILABLE)
            status = TP_STATUS_AVAILABLE
        if status != TP_STATUS_AVAILABLE or ln > self._tx_max:
            # busy slot (kernel still owns it) or jumbo: keep order, then send this one directly
            self.flush()
            self._send_direct(frame)
            return
        start = off + _H2_DATA
        mm[start:start + ln] = frame
        # status, tp_len, tp_snaplen at once: the kernel reads the ring only when flush() asks
        _TX_HEAD.pack_into(mm, off, TP_STATUS_SEND_REQUEST, ln, ln)
        head = self._tx_head + 1
        self._tx_head = 0 if head == self._tx_count else head
        self._tx_queued += 1
        if self._tx_queued == self._tx_count:
            self.flush()

    def _send_direct(self, frame: bytes | bytearray | memoryview) -> None:
        assert self._rx is not None
        self.tx_direct += 1
        try:
            self._rx.send(frame)
        except OSError:
            self.tx_errors += 1

    def flush(self) -> None:
        """Transmit everything queued by ``send()`` with one system call (non-blocking)."""
        if not self._tx_queued:
            return
        self._tx_queued = 0
        assert self._tx is not None
        try:
            self._tx.send(b"", socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.ENETDOWN):
                raise
            self.tx_errors += 1

    def close(self) -> None:
        """Release the rings and sockets. Views from ``receive()`` must not be used after this."""
        for name in ("_rx_mv",):
            mv = self.__dict__.pop(name, None)
            if mv is not None:
                try:
                    mv.release()
                except BufferError:
                    pass
        for attr in ("_rx_map", "_tx_map"):
            mm = getattr(self, attr, None)
            if mm is not None:
                try:
                    mm.close()
                except BufferError:  # caller still holds views: the GC unmaps it later
                    pass
                setattr(self, attr, None)
        for attr in ("_rx", "_tx"):
            s = getattr(self, attr, None)
            if s is not None:
                s.close()
                setattr(self, attr, None)

    def __enter__(self) -> PacketSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



SO_ATTACH_FILTER = 26
_U32 = struct.Struct("I")
_TX_HEAD = struct.Struct("III")

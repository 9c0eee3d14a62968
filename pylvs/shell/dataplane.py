"""The data plane: frames in from the links' rings, through the director core, out on the
egress link's ring; and what keeps that path right: the socket filter and fanout program on the
links (pylvs.shell.bpf, pylvs.shell.fanout), each real server's next hop
(pylvs.shell.nexthops), and the XDP fast path's glue (pylvs.shell.offload).

One batch is: wait for frames (100 ms at most), hand each to ``Director.handle``, send what it
returns, flush the tx rings, then carry the core's offers and withdrawals to the fast path. A GSO
super-frame from a local sender is segmented first, as the NIC would have. The counts kept here
are the shell's own (frames the kernel dropped before Python saw them, super-frames segmented);
the core keeps its own.
"""

from __future__ import annotations

import logging
import select
import time
from collections import Counter

from pylvs.core import marks
from pylvs.core.director import Director
from pylvs.core.model import VirtualService
from pylvs.core.packet import ETH_HLEN
from pylvs.core.segment import client_address, segment_tcp
from pylvs.shell import bpf, fanout
from pylvs.shell.cleanup import clean
from pylvs.shell.links import Link
from pylvs.shell.nexthops import NextHops
from pylvs.shell.offload import Offload
from pylvs.shell.rings import TP_STATUS_CSUMNOTREADY

log = logging.getLogger("pylvs")

POLL_MS = 100


class DataPlane:
    """Frames through ``director`` on ``interfaces``. ``groups`` (interface → fanout group)
    makes this one of several workers sharing the interfaces (pylvs.shell.workers), its slots
    served in ``order``; ``offload``: the XDP fast path's maps, with offload = "xdp"."""

    def __init__(self, director: Director, interfaces: list[str], *,
                 groups: dict[str, int] | None = None, order: list[int] | None = None,
                 offload: Offload | None = None) -> None:
        self.director = director
        self.interfaces = list(dict.fromkeys(interfaces))
        self.groups, self.order, self.offload = groups, order, offload
        self.links: dict[str, Link] = {}
        self.egress: set[str] = set()
        """Links opened only to send through, for real servers routed there."""
        self.nexthops = NextHops(director, self.links, self._open_egress)
        self.counters: Counter[str] = Counter()
        self.poller: select.poll | None = None
        self.by_fd: dict[int, Link] = {}

    def open(self) -> None:
        for name in self.interfaces:
            link = self.links[name] = Link(name)
            self.director.add_interface(name, link.mac)
            if self.groups is not None:
                link.sock.join_fanout(self.groups[name])
        self.poller = select.poll()
        for link in self.receiving():
            self.poller.register(link.sock.fileno(), select.POLLIN)
            self.by_fd[link.sock.fileno()] = link

    def receiving(self) -> list[Link]:
        """The links frames arrive on (not those opened only to send through)."""
        return [link for name, link in self.links.items() if name not in self.egress]

    def follow(self, forwarded: list[VirtualService], resolve_timeout: float = 0.0) -> None:
        """Only the frames of the ``forwarded`` services (and their NAT servers' replies)
        reach Python, a fwmark service's as its mark rules name them (pylvs.core.marks);
        every real server gets a route and a next hop."""
        rules = self.director.marks
        self._filter(marks.taken(forwarded, rules), marks.replies(forwarded, rules))
        self._set_fanout()
        self.nexthops.follow(resolve_timeout)

    def set_order(self, order: list[int]) -> None:
        """A worker's: the fanout member now serving each worker slot."""
        self.order = order
        self._set_fanout()

    def _set_fanout(self) -> None:
        if self.groups is None:
            return
        rules = fanout.rules(self.director.services.values(), self.director.marks)
        packed = bpf.pack(fanout.program(*rules, order=self.order))
        for link in self.receiving():
            link.sock.set_fanout_program(packed)

    def _filter(self, stolen: list[marks.Endpoint], replies: list[marks.Endpoint]) -> None:
        try:
            packed = bpf.pack(bpf.program(stolen, replies))
        except ValueError as exc:
            log.warning("no socket filter (%s): every frame reaches the director", exc)
            return
        for link in self.receiving():
            link.sock.set_filter(packed)

    def _open_egress(self, name: str) -> str | None:
        """A link that only sends, on an interface the director does not work on (IPVS
        forwards wherever the route says); why not, when it cannot be opened. A NAT server's
        replies are not caught there: they must come back through ``inside_interface``."""
        try:
            link = Link(name)
        except OSError as exc:
            return str(exc.strerror or exc)
        link.sock.set_filter(bpf.pack(bpf.program([])))
        self.links[name] = link
        self.egress.add(name)
        return None

    def run_batch(self) -> None:
        """The frames that arrive within POLL_MS, through the core and out."""
        receiving = self.receiving()
        if len(receiving) > 1:
            assert self.poller is not None
            ready = [self.by_fd[fd] for fd, _ in self.poller.poll(POLL_MS)]
            for link in ready:
                self._receive(link, 0)
        else:
            self._receive(receiving[0], POLL_MS / 1000)
        for link in self.links.values():
            link.flush()

    def _receive(self, link: Link, timeout: float) -> None:
        handle, max_frame, name = self.director.handle, link.max_frame, link.name
        links, partial = self.links, TP_STATUS_CSUMNOTREADY
        now = time.monotonic()
        for view, status in link.sock.receive(timeout):
            if len(view) > max_frame:
                self._forward_oversized(link, view, now)
                continue
            out = handle(bytearray(view), now, bool(status & partial), name)
            if out is not None:
                egress = links[out[1]]
                egress.sock.send(out[0])
                egress.sent = True

    def _forward_oversized(self, link: Link, view: memoryview, now: float) -> None:
        """A GSO super-frame from a local sender: segment it as the NIC would have, at the path
        MTU a "fragmentation needed" gave the sender, if any."""
        mtu = link.max_frame - ETH_HLEN
        client = client_address(view)
        if client is not None:
            mtu = min(mtu, self.director.path_mtu.get(client, mtu))
        segments = segment_tcp(view, mtu)
        if not segments:
            self.counters["oversized_dropped"] += 1
            return
        self.counters["segmented"] += 1
        for segment in segments:
            out = self.director.handle(segment, now, True, link.name)
            if out is not None:
                self.links[out[1]].send(out[0])

    def count_ring_drops(self) -> None:
        """What the kernel dropped before Python saw it: the rx rings were full."""
        for link in self.receiving():
            self.counters["ring_dropped"] += link.sock.drops()

    def carry_offers(self) -> None:
        """What the core offered to the fast path and withdrew from it, into its maps."""
        if self.offload is not None:
            self.offload.apply(self.director)

    def read_offload(self, everything: bool = False) -> None:
        """What the fast path counted, into the core's timers and counters."""
        if self.offload is not None:
            self.offload.read(self.director, time.monotonic(), everything)

    def watch_offload(self) -> None:
        """Once a tick: the fast path's links checked for drops (pylvs.shell.offload.watch)."""
        if self.offload is not None:
            self.offload.watch(self.director)

    def close(self) -> None:
        for link in self.links.values():
            clean(link.close, f"closing {link.name}")
        self.links.clear()
        self.egress.clear()

"""The host's state a director holds: the nftables steal rules, the VIPs on its interface, the
guard that removes both if the process dies, and the memory facts its limits come from.

Order matters: the steal rules go in before a VIP is added, so the director's own kernel never
answers a service frame; ``close`` removes the VIPs first, then the rules. The guard
(pylvs.shell.guard) is made first, so that it outlives whatever is installed after it, and is
told after every change what there is to remove.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable

from pylvs.core.marks import Endpoint
from pylvs.shell import addresses, nftables
from pylvs.shell.cleanup import clean
from pylvs.shell.guard import Guard

log = logging.getLogger("pylvs")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BYTES_PER_CONNECTION = 400


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in kB; {} where there is none."""
    try:
        with open("/proc/meminfo") as fh:
            return {line.split(":")[0]: int(line.split()[1]) for line in fh}
    except (OSError, ValueError, IndexError):
        return {}


def default_max_connections() -> int:
    """A quarter of the memory available now, at 400 bytes a connection (measured RSS: DR ~290,
    NAT ~360, its reply index included)."""
    available = _meminfo().get("MemAvailable")
    if available is None:
        return 1_000_000
    return available * 1024 // 4 // BYTES_PER_CONNECTION


def available_pages() -> int:
    """What update_defense_level compares with amemthresh: free and buffer pages
    (si_meminfo's freeram + bufferram)."""
    info = _meminfo()
    return (info.get("MemFree", 0) + info.get("Buffers", 0)) * 1024 // PAGE_SIZE


class HostState:
    """The steal rules on ``interface`` (and ``inside``, where NAT replies arrive) and the VIPs
    held on ``interface``. ``extra`` says what else the guard must remove: files, XDP
    attachments and processes other parts made."""

    def __init__(self, interface: str, inside: str,
                 extra: Callable[[], tuple[list[str], list[str], list[int]]]) -> None:
        self.interface, self.inside, self.extra = interface, inside, extra
        table = f"pylvs_{os.getpid()}"
        self.steals = [nftables.StealRules(interface, table)]
        if inside != interface:
            self.steals.append(nftables.StealRules(inside, f"{table}_inside"))
        self.vips: list[str] = []
        self.guard: Guard | None = None

    def open(self) -> None:
        self.guard = Guard()

    def follow(self, stolen: list[Endpoint], replies: list[Endpoint], wanted: set[str],
               vips: Iterable[str] = ()) -> None:
        """Steal the frames of the ``stolen`` endpoints and the NAT servers' ``replies``
        (pylvs.core.marks: ``taken``, ``replies``), then hold the VIPs in ``wanted`` and no
        others. Replies to the director's own addresses are spared, but for ``vips``."""
        self.tell_guard()  # the tables before they exist: removing a missing one is no harm
        own = self._own(self.inside) - set(vips) if replies else set()
        if len(self.steals) == 1:
            self.steals[0].install(stolen, replies, own)
        else:
            self.steals[0].install(stolen, [])
            self.steals[1].install([], replies, own)
        for vip in sorted(wanted - set(self.vips)):
            if addresses.add_vip(self.interface, vip):
                self.vips.append(vip)
        for vip in [v for v in self.vips if v not in wanted]:
            addresses.remove_vip(self.interface, vip)
            self.vips.remove(vip)
        self.tell_guard()

    @staticmethod
    def _own(interface: str) -> set[str]:
        """The director's addresses on ``interface``, of both families (IPv6's link-local
        too: NAT replies to them are the director's own)."""
        return {*addresses.interface_addresses(interface),
                *addresses.interface_addresses(interface, socket.AF_INET6)}

    def tell_guard(self) -> None:
        if self.guard is not None:
            files, xdp, processes = self.extra()
            self.guard.hold([(self.interface, vip) for vip in self.vips],
                            [steal.table for steal in self.steals], files, xdp, processes)

    def close_in_child(self) -> None:
        if self.guard is not None:
            self.guard.close_in_child()

    def close(self) -> None:
        """The VIPs, then the rules; what fails is logged and the rest still goes."""
        steps = [*(lambda v=vip: addresses.remove_vip(self.interface, v) for vip in self.vips),
                 *(steal.remove for steal in self.steals)]
        for step in steps:
            clean(step)
        self.vips = []

    def release(self) -> None:
        """Last, once nothing is left for it to remove: the guard exits."""
        if self.guard is not None:
            clean(self.guard.close, "stopping the guard")
            self.guard = None

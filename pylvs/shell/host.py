"""The host's state a director holds: the nftables steal rules, the VIPs on its interface, the
guard that removes both if the process dies, and the memory facts its limits come from.

Order matters: the steal rules go in before a VIP is added, so the director's own kernel never
answers a service frame; ``close`` removes the VIPs first, then the rules. The guard
(pylvs.shell.guard) is made first, so that it outlives whatever is installed after it, and is
told after every change what there is to remove.

What an earlier run killed together with its guard left (pylvs.core.leftovers decides) is dealt
with once this run's own rules are in: the config's VIPs already on the interface become this
run's (kept while wanted, removed when not, as keepalived's start removes its VIPs), and the
tables and BIRD folders named after a process that is gone are removed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable

from pylvs.core import leftovers
from pylvs.core.marks import Endpoint
from pylvs.shell import addresses, nftables
from pylvs.shell.cleanup import clean
from pylvs.shell.guard import Guard

log = logging.getLogger("pylvs")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BYTES_PER_CONNECTION = 400
RUN = "/run"
"""Where a director's BIRD folder is (pylvs.shell.ha_runtime: /run/pylvs-<pid>-bird)."""
BIRD_FILES = ("bird.conf", "bird.ctl", "bird.log", "vips.conf", "vips6.conf")
"""What pylvs.shell.announcer makes in that folder."""


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
        self.swept = False
        """Whether an earlier run's leftovers were looked for (once, at the first follow)."""

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
        if not self.swept:
            self._sweep(wanted | set(vips), wanted)
        for vip in sorted(wanted - set(self.vips)):
            self._hold(vip)
        for vip in [v for v in self.vips if v not in wanted]:
            addresses.remove_vip(self.interface, vip)
            self.vips.remove(vip)
        self.tell_guard()

    def _hold(self, vip: str) -> None:
        """Add ``vip``; one already there is held all the same (removed when let go)."""
        if not addresses.add_vip(self.interface, vip):
            log.warning("VIP %s was on %s already: held as this director's", vip,
                        self.interface)
        self.vips.append(vip)

    def _sweep(self, configured: set[str], wanted: set[str]) -> None:
        """Once, this run's rules in: an earlier run's leftovers taken or removed."""
        self.swept = True
        self._take_leftover_vips(configured, wanted)
        clean(remove_dead_leftovers, "removing an earlier run's leftovers")

    def _take_leftover_vips(self, configured: set[str], wanted: set[str]) -> None:
        """The config's VIPs already on the interface become this run's: kept if wanted, else
        removed at once (the caller's next step), as keepalived's start does."""
        names = sorted(configured)
        keep, drop = leftovers.vips_at_start(
            names, addresses.present_vips(self.interface, names), wanted, self.vips)
        for vip in keep:
            log.warning("VIP %s was on %s already (left by an earlier run?): held as "
                        "this director's", vip, self.interface)
        for vip in drop:
            log.warning("VIP %s was on %s already (left by an earlier run?): removing it, as "
                        "keepalived's start does (this director does not hold it now)",
                        vip, self.interface)
        self.vips += keep + drop

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


def remove_dead_leftovers(own: int | None = None) -> None:
    """The nftables tables (of this namespace) and BIRD folders named after a pylvs process
    that is gone; a live process's stay, whoever it is."""
    own = os.getpid() if own is None else own
    tables = nftables.netdev_tables()
    live = {pid for pid in leftovers.owners(tables) if alive(pid)}
    for table in leftovers.stale(tables, live, own):
        log.warning("removing nftables table %s: its director (pid %d) is gone without "
                    "cleaning up", table, leftovers.owner(table))
        clean(lambda t=table: nftables.remove_table(t), f"removing table {table}")
    _remove_dead_bird_folders(own)


def _remove_dead_bird_folders(own: int) -> None:
    """/run/pylvs-<pid>-bird of a director that is gone; kept, and said, while its BIRD
    still answers (it outlived the director: it may still announce the VIPs)."""
    try:
        names = os.listdir(RUN)
    except OSError:
        return
    live = {pid for pid in leftovers.owners(names, leftovers.RUN_DIR) if alive(pid)}
    orphans = leftovers.stale(names, live, own, leftovers.RUN_DIR)
    answering = {name for name in orphans if _answers(os.path.join(RUN, name, "bird.ctl"))}
    for name in answering:
        path = os.path.join(RUN, name)
        log.warning("a BIRD started by pylvs (pid %d, gone) still runs on %s/bird.ctl and may "
                    "still announce its VIPs: stop it with `birdc -s %s/bird.ctl down`",
                    leftovers.owner(name, leftovers.RUN_DIR), path, path)
    for name in leftovers.stale(orphans, live, own, leftovers.RUN_DIR, answering):
        log.warning("removing %s: its director (pid %d) is gone without cleaning up",
                    os.path.join(RUN, name), leftovers.owner(name, leftovers.RUN_DIR))
        clean(lambda n=name: _remove_folder(os.path.join(RUN, n)), f"removing {RUN}/{name}")


def _remove_folder(path: str) -> None:
    """The files pylvs makes there, then the folder (which refuses if anything else is in)."""
    for name in BIRD_FILES:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    os.rmdir(path)


def _answers(path: str) -> bool:
    """Whether a process listens on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: it holds nothing any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True

"""What a director finds at start that an earlier run left on the host: a run killed together with
its guard (``systemctl kill -s KILL``, the OOM killer on the cgroup) leaves its VIPs, its
nftables tables and its per-process files, as keepalived killed with -9 leaves its VIPs.

keepalived's answer, emulated: at start it deletes the VIPs of its configuration from their
interfaces ("(VI_1) removing VIPs.", vrrp_restore_interface at init) before it enters BACKUP, so
a restarted instance starts clean. Here a VIP of the config already on the interface is taken
as held (as if this run had added it): kept while wanted, removed when not (a BACKUP, a stop,
the guard). What is named after a process (``pylvs_<pid>`` tables, ``pylvs-<pid>-bird``
folders) is removed once that process is gone; a live process's never (another director on
the host must not be harmed), nor anything not named so.

Decisions only, over facts the shell reads: the names present, the pids alive.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

TABLE = re.compile(r"pylvs_([1-9][0-9]*)(?:_inside)?")
"""A director's steal tables (pylvs.shell.host): ``pylvs_<pid>``, ``pylvs_<pid>_inside``."""
RUN_DIR = re.compile(r"pylvs-([1-9][0-9]*)-bird")
"""A director's BIRD folder under /run (pylvs.shell.ha_runtime): ``pylvs-<pid>-bird``."""


def owner(name: str, pattern: re.Pattern[str] = TABLE) -> int | None:
    """The pid ``name`` is named after, or None when it is not a name of ``pattern``."""
    found = pattern.fullmatch(name)
    return int(found[1]) if found else None


def owners(names: Iterable[str], pattern: re.Pattern[str] = TABLE) -> set[int]:
    """The pids the names name: the ones whose liveness the shell must read."""
    return {pid for name in names if (pid := owner(name, pattern)) is not None}


def stale(names: Iterable[str], live: Collection[int], own: int,
          pattern: re.Pattern[str] = TABLE, in_use: Collection[str] = ()) -> list[str]:
    """The names of ``pattern`` whose process is gone: neither ``own`` nor in ``live``, nor
    ``in_use`` still (a folder whose BIRD still answers: it outlived its director)."""
    return [name for name in names if name not in in_use
            and (pid := owner(name, pattern)) is not None and pid != own and pid not in live]


def vips_at_start(configured: Iterable[str], present: Iterable[str], wanted: Collection[str],
                  held: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """The config's VIPs an earlier run left on the interface (``present``, at the VIP's own
    prefix), not yet ``held``: (those to keep, as wanted now; those to remove, as keepalived's
    start removes them). Both become this run's: an address the config does not name, never."""
    there = set(present)
    found = [vip for vip in dict.fromkeys(configured) if vip in there and vip not in held]
    return [v for v in found if v in wanted], [v for v in found if v not in wanted]

"""The control plane's messages, typed: what a client asks a director over its control socket,
what a supervisor tells its workers over their socketpairs, and the replies to both.

Plain data. pylvs.shell.control carries them (JSON lines on the control socket, pickle between a
supervisor and the workers it forked); pylvs.shell.engine and pylvs.shell.workers answer them.
Shared by both so that neither imports the other for its vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pylvs.adm.commands import Lookup
from pylvs.adm.ipvsadm import Command
from pylvs.core.marks import MarkRule
from pylvs.ha.sync import SyncConn

TICK = 1.0
"""Seconds between the loop's housekeeping passes (connection expiry, neighbours)."""


class Stop(Exception):
    """Raised from a signal handler to leave the loop through the clean-up path."""


@dataclass(frozen=True)
class Reply:
    """What every request gets back: ipvsadm's exit status and texts, and ``data`` for the
    requests whose answer is not text (endpoints, a worker's counters)."""
    rc: int
    stdout: str = ""
    stderr: str = ""
    data: Any = None


# The control socket's requests: pylvs adm, pylvs reload, pylvs status.

@dataclass(frozen=True)
class AdmLine:
    """An ipvsadm command line, parsed once by the director that receives it. ``names``: the
    host and service names the client found for a listing without -n."""
    argv: list[str]
    names: Lookup | None = None


@dataclass(frozen=True)
class Reload:
    """Re-read the config file and apply its difference (also SIGHUP)."""


@dataclass(frozen=True)
class Status:
    """The health checks' and VRRP's state and the director's counters, as text; ``data``:
    {"connections", "max_connections", "counters"} (summed over workers)."""


@dataclass(frozen=True)
class Sysctl:
    """IPVS's /proc/sys/net/ipv4/vs/ knobs (pylvs.core.defense), as sysctl(8) shows them: all
    with no name; one; or written when ``value`` is given."""
    name: str = ""
    value: int | None = None


@dataclass(frozen=True)
class Endpoints:
    """What a listing without -n would name: ``data`` is {"addresses": [...], "ports": [...]},
    the ports as "port/protocol"."""


Request = AdmLine | Reload | Status | Endpoints | Sysctl


# A supervisor's messages to its workers (and an engine's own, once parsed).

@dataclass(frozen=True)
class Adm:
    """An ipvsadm command, already parsed."""
    command: Command
    names: Lookup | None = None


@dataclass(frozen=True)
class Snapshot:
    """A worker's counters per service and real server (pylvs.shell.workers.snapshot)."""


@dataclass(frozen=True)
class SetMaster:
    """VRRP's word: forward (True) or stand by as a backup (False); ``held``: only the
    services of these VIPs (several VRRP instances), None: all."""
    master: bool
    held: frozenset[str] | None = None


@dataclass(frozen=True)
class InstallSynced:
    """Connections heard from the sync daemon whose clients hash to this worker; the reply's
    ``data`` counts what became of them."""
    entries: list[SyncConn] = field(default_factory=list)


@dataclass(frozen=True)
class FanoutOrder:
    """The fanout member now serving each worker slot (pylvs.shell.fanout)."""
    order: list[int]


@dataclass(frozen=True)
class SetMarks:
    """The config's mark rules after a reload (pylvs.core.marks), for the worker's director."""
    rules: tuple[MarkRule, ...] = ()


Message = (Adm | Snapshot | SetMaster | InstallSynced | FanoutOrder | SetMarks | Sysctl
           | Status)


# A forked worker's first word to its supervisor.

@dataclass(frozen=True)
class Ready:
    index: int


@dataclass(frozen=True)
class Failed:
    error: str

"""Schedulers by ipvsadm's ``-s`` name: one module each, found by name as IPVS's request_module.

A scheduler is one instance per virtual service holding that service's state (IPVS's
``sched_data``): ``update`` is told of every real-server add, delete or edit, ``pick`` chooses a
real server for a new connection or returns None when none may take it (weight 0 = quiesced, or
OVERLOAD). Schedulers read the model only; choosing is not sending.

The public face for a plug-in author is this module: ``from schedulers import Scheduler,
RealServer, Flow`` gives the base class, the real server a scheduler sees (weight, overloaded,
activeconns, inactconns, stats, address, port) and the flow it chooses for (proto, saddr,
sport, daddr, dport as integers; ``af``, 2 or 10, tells IPv4 addresses from IPv6 ones).
Register with ``@register`` or name it ``module:Class``. A scheduler reads no clock: the
director sets ``now`` before each ``pick``.

- rr, wrr: round robin, weighted round robin;
- lc, wlc: least connection, weighted least connection (ipvsadm's default);
- sed, nq: shortest expected delay, never queue;
- fo, ovf: weighted failover, weighted overflow;
- sh, dh: source hashing, destination hashing (256 buckets);
- mh: Maglev hashing (consistent, even spread);
- lblc, lblcr: locality-based least connection, without and with replication (cache clusters);
- twos: power of two choices;
- ranking: the leftmost best server of a list, kept current in O(log n) (the lc family's);
- hashing: the kernel's hash_32 and hsiphash, bucket tables, the IPv4/IPv6 address fold (sh,
  dh, mh, lblc, lblcr).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import ClassVar

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow

__all__ = ["Flow", "RealServer", "Scheduler", "UnknownScheduler", "get", "names", "register"]

ENTRY_POINT_GROUP = "pylvs.schedulers"
_registry: dict[str, type[Scheduler]] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
BUILTIN = ("rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "sh", "dh", "mh", "lblc",
           "lblcr", "twos")


class Scheduler:
    """Base: a scheduler with no state of its own needs only ``pick``.

    ``FLAGS`` are the scheduler's ipvsadm ``-b`` flags in IPVS's order (flag-1, flag-2, ...).
    """

    name: ClassVar[str] = ""
    FLAGS: ClassVar[tuple[str, ...]] = ()
    now: float = 0.0
    """The time of the pick, in seconds: set by the caller (the director) before each ``pick``,
    so a scheduler that ages its state (lblc, lblcr) reads no clock of its own."""

    def __init__(self, flags: Sequence[str] = ()) -> None:
        unknown = [f for f in flags if f not in self.FLAGS]
        if unknown:
            known = ", ".join(self.FLAGS) or "none"
            raise ValueError(f"scheduler {self.name!r} has no flag {unknown[0]!r} (its flags: "
                             f"{known})")
        self.flags = tuple(f for f in self.FLAGS if f in flags)
        self.spec = self.name
        """How the config names it: the -s value, or module:Class for a plug-in."""

    def update(self, servers: Sequence[RealServer]) -> None:
        """A real server was added, removed or edited (IPVS's add/del/upd_dest)."""

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        raise NotImplementedError


class UnknownScheduler(KeyError):
    def __init__(self, name: str, why: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.why = why

    def __str__(self) -> str:
        if self.why:
            return f"scheduler {self.name!r} {self.why}"
        return f"unknown scheduler {self.name!r} (known: {', '.join(names())})"


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if not cls.name or cls.name in _registry:
        raise ValueError(f"scheduler name {cls.name!r} is empty or taken")
    _registry[cls.name] = cls
    return cls


def get(name: str) -> type[Scheduler]:
    """The scheduler class called ``name``: a built-in (``schedulers.<name>`` is imported on a
    miss, as IPVS's request_module), ``package.module:ClassName``, or an entry point of the group
    ``pylvs.schedulers``."""
    if ":" in name:
        return _load_plugin(name)
    if name not in _registry and _NAME.match(name):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    if name not in _registry:
        for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
            return _checked(entry.load(), name)
    try:
        return _registry[name]
    except KeyError:
        raise UnknownScheduler(name) from None


def _load_plugin(spec: str) -> type[Scheduler]:
    module_name, _, attr = spec.partition(":")
    if not (all(part.isidentifier() for part in module_name.split("."))
            and attr.isidentifier()):  # no relative import, nothing importlib cannot name
        raise UnknownScheduler(spec)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UnknownScheduler(spec) from None
        raise
    try:
        return _checked(getattr(module, attr), spec)
    except AttributeError:
        raise UnknownScheduler(spec) from None


def _checked(cls: object, spec: str) -> type[Scheduler]:
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise UnknownScheduler(spec, "is not a subclass of schedulers.Scheduler")
    return cls


def names() -> list[str]:
    for name in BUILTIN:
        get(name)
    return sorted(_registry)

"""Schedulers by ipvsadm's ``-s`` name: one module each, found by name as IPVS's request_module.

A scheduler is one instance per virtual service holding that service's state (IPVS's
``sched_data``): ``update`` is told of every real-server add, delete or edit, ``pick`` chooses a
real server for a new connection or returns None when none may take it (weight 0 = quiesced, or
OVERLOAD). Schedulers read the model only; choosing is not sending.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import ClassVar

from pylvs.model import RealServer
from pylvs.packet import Flow

_registry: dict[str, type[Scheduler]] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
BUILTIN = ("rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "sh", "dh", "mh", "lblc",
           "lblcr", "twos")


class Scheduler:
    """Base: a scheduler with no state of its own needs only ``pick``."""

    name: ClassVar[str] = ""

    def __init__(self, flags: Sequence[str] = ()) -> None:
        self.flags = tuple(flags)

    def update(self, servers: Sequence[RealServer]) -> None:
        """A real server was added, removed or edited (IPVS's add/del/upd_dest)."""

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        raise NotImplementedError


class UnknownScheduler(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown scheduler {self.name!r} (known: {', '.join(names())})"


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if not cls.name or cls.name in _registry:
        raise ValueError(f"scheduler name {cls.name!r} is empty or taken")
    _registry[cls.name] = cls
    return cls


def get(name: str) -> type[Scheduler]:
    """The scheduler class called ``name``, importing ``schedulers.<name>`` on a miss."""
    if name not in _registry and _NAME.match(name):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    try:
        return _registry[name]
    except KeyError:
        raise UnknownScheduler(name) from None


def names() -> list[str]:
    for name in BUILTIN:
        get(name)
    return sorted(_registry)

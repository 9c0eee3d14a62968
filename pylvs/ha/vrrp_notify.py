"""keepalived's notify scripts: which commands a state change starts, with which arguments.

``notify_master``, ``notify_backup``, ``notify_fault`` and ``notify_stop`` run as written; the
generic ``notify`` gets keepalived's four arguments appended: ``INSTANCE <name> <STATE>
<priority>`` for an instance, ``GROUP <name> <STATE> 0`` for a sync group (vrrp_notify.c's
notify_script_exec). Every command runs with /bin/sh; the shell does not wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHELL = "/bin/sh"


@dataclass(frozen=True)
class Notifies:
    master: str = ""
    backup: str = ""
    fault: str = ""
    stop: str = ""
    generic: str = ""
    """keepalived's ``notify``."""

    def for_state(self, state: str) -> str:
        return {"MASTER": self.master, "BACKUP": self.backup, "FAULT": self.fault,
                "STOP": self.stop}.get(state, "")


@dataclass(frozen=True)
class Notify:
    """One command to start: its argv."""

    argv: tuple[str, ...]


def commands(notifies: Notifies, kind: str, name: str, state: str, priority: int
             ) -> list[Notify]:
    """The commands a move of instance (``kind`` "INSTANCE") or group ("GROUP", priority 0)
    ``name`` into ``state`` starts, the state's own first, as keepalived starts them."""
    out = []
    own = notifies.for_state(state)
    if own:
        out.append(Notify((SHELL, "-c", own)))
    if notifies.generic:
        out.append(Notify((SHELL, "-c", f'{notifies.generic} "$@"', "notify", kind, name, state,
                           str(priority))))
    return out

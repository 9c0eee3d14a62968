"""keepalived's tracking: vrrp_script results (rise and fall), tracked interfaces and scripts,
and what they make of an instance: its effective priority, or FAULT.

Sans-IO: the shell runs the scripts and reads the links, and hands each outcome here. The rules
are keepalived's (vrrp_track.c, vrrp_scheduler.c):

- a script's result counts as keepalived's ``result``: it starts at rise - 1 (unknown: the first
  outcome decides), ``rise`` successes in a row make a failing script OK and ``fall`` failures
  in a row make an OK one fail;
- weight 0: while the script fails (or has not run yet) or the interface is down, the instance
  is in FAULT;
- weight > 0: added to the priority while the script is OK (the interface up);
- weight < 0: added while it fails (the interface down);
- the effective priority is the configured one plus those, clamped to 1..254; an address owner
  (priority 255) keeps 255 whatever it tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OWNER_PRIORITY = 255
MAX_WEIGHT = 253  # keepalived: +-254 is cut to +-253


@dataclass(frozen=True)
class ScriptSpec:
    """A ``[vrrp_script.NAME]``: keepalived's defaults (timeout 0: the interval)."""

    name: str
    script: str
    interval: float = 1.0
    timeout: float = 0.0
    weight: int = 0
    rise: int = 1
    fall: int = 1

    @property
    def time_limit(self) -> float:
        return self.timeout or self.interval


@dataclass(frozen=True)
class Track:
    """One tracked interface or script of an instance, with the weight it counts for."""

    kind: str  # "interface" or "script"
    name: str
    weight: int = 0


class ScriptResult:
    """keepalived's ``vscript->result`` counter: ``record`` answers True/False when the script
    becomes OK/failing, None when nothing changed."""

    def __init__(self, spec: ScriptSpec) -> None:
        self.rise, self.fall = spec.rise, spec.fall
        self.result = spec.rise - 1
        self.ok: bool | None = None
        """None until the first outcome (keepalived's SCRIPT_INIT_STATE_INIT)."""

    def record(self, success: bool) -> bool | None:
        initial = self.ok is None
        changed: bool | None = None
        if success:
            if self.result < self.rise - 1:
                self.result += 1
            elif self.result != self.rise + self.fall - 1:
                if self.result < self.rise:
                    changed = True
                self.result = self.rise + self.fall - 1
        else:
            if self.result > self.rise:
                self.result -= 1
            else:
                if self.result == self.rise or initial:
                    changed = False
                self.result = 0
        if changed is not None:
            self.ok = changed
        return changed


@dataclass
class Tracker:
    """What one instance tracks, and the state of each thing it tracks."""

    priority: int
    tracks: tuple[Track, ...] = ()
    up: dict[str, bool] = field(default_factory=dict)
    """Interface name → up (IFF_UP and IFF_RUNNING)."""
    scripts: dict[str, bool | None] = field(default_factory=dict)
    """Script name → OK, failing, or None before its first outcome."""

    def status(self, track: Track) -> bool | None:
        if track.kind == "interface":
            return self.up.get(track.name, False)
        return self.scripts.get(track.name)

    @property
    def failing(self) -> list[Track]:
        """The tracked things that are down or failing now (weights of any sign)."""
        return [t for t in self.tracks if self.status(t) is False]

    @property
    def faulty(self) -> bool:
        """A weight-0 thing is down, failing, or (a script) has not said yet."""
        return any(t.weight == 0 and self.status(t) is not True for t in self.tracks)

    @property
    def effective_priority(self) -> int:
        if self.priority == OWNER_PRIORITY:
            return OWNER_PRIORITY
        total = self.priority
        for track in self.tracks:
            state = self.status(track)
            if (track.weight > 0 and state is True) or (track.weight < 0 and state is False):
                total += track.weight
        return min(max(total, 1), OWNER_PRIORITY - 1)

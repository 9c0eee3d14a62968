"""Several VRRP instances together, as keepalived's VRRP process runs them: each instance's
tracking (pylvs.ha.vrrp_track) turned into priority changes and FAULT, sync groups, notifies.

Sans-IO: the shell hands in adverts, link states, script outcomes and the time, and carries out
the ``(instance, action)`` pairs that come back (pylvs.ha.vrrp's actions, and Notify commands).

Sync groups follow keepalived's vrrp_sync.c: a member that becomes MASTER takes the others with
it (vrrp_sync_master), but a member's down timer only makes it MASTER once every other member
wants to be MASTER too (vrrp_sync_can_goto_master); a master that goes BACKUP takes the others to
BACKUP (vrrp_sync_backup); a member in FAULT puts all of them in FAULT (vrrp_sync_fault) and
they leave it together, to BACKUP, once no member has a fault of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pylvs.ha import vrrp
from pylvs.ha.vrrp import Instance, InstanceConfig, State, StateChange
from pylvs.ha.vrrp_notify import Notifies, Notify, commands
from pylvs.ha.vrrp_track import ScriptResult, ScriptSpec, Track, Tracker

Event = tuple[str, "vrrp.Action | Notify"]


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    router: InstanceConfig
    interface: str
    tracks: tuple[Track, ...] = ()
    notifies: Notifies = field(default_factory=Notifies)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    members: tuple[str, ...]
    notifies: Notifies = field(default_factory=Notifies)


class InstanceSet:
    def __init__(self, instances: list[InstanceSpec], groups: list[GroupSpec] = (),
                 scripts: list[ScriptSpec] = ()) -> None:
        self.specs = {spec.name: spec for spec in instances}
        self.routers = {spec.name: Instance(spec.router) for spec in instances}
        self.trackers = {spec.name: Tracker(spec.router.priority, spec.tracks)
                         for spec in instances}
        self.results = {script.name: ScriptResult(script) for script in scripts}
        self.groups = {group.name: group for group in groups}
        self.group_of = {member: group.name for group in groups for member in group.members}
        self.group_state: dict[str, State] = {group.name: State.INIT for group in groups}
        self.transitions: dict[str, dict[str, int]] = {name: {} for name in self.specs}
        """Instance → state → how many times it entered it."""
        for name, router in self.routers.items():
            if name in self.group_of:
                router.gate = self._gate(name)

    @property
    def next_deadline(self) -> float:
        return min((router.next_deadline for router in self.routers.values()), default=1e309)

    def start(self, now: float, links: dict[str, bool]) -> list[Event]:
        """``links``: each tracked (and each instance's own) interface, up or not."""
        for tracker in self.trackers.values():
            tracker.up.update(links)
        events: list[Event] = []
        for name, router in self.routers.items():
            group = self.group_of.get(name)
            fault = self.trackers[name].faulty or (group is not None and self._group_faulty(group))
            tracker = self.trackers[name]
            if router.state != State.INIT:  # put in FAULT already by its sync group
                router.priority = tracker.effective_priority
                continue
            actions = router.start(now, fault, tracker.effective_priority)
            # keepalived does not notify a FAULT (init) that only waits for scripts' first say
            quiet = fault and not tracker.failing and not self._group_failing(group)
            events += self._follow(name, actions, now, notify=not quiet)
        return events

    def stop(self, now: float) -> list[Event]:
        events: list[Event] = []
        for name, router in self.routers.items():
            events += self._follow(name, router.stop(now), now)
        for group in self.groups:
            events += self._group_moves(group, State.STOP, now)
        return events

    def receive(self, name: str, advert: vrrp.Advert, source: str, now: float) -> list[Event]:
        return self._follow(name, self.routers[name].receive(advert, source, now), now)

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        for name, router in self.routers.items():
            if router.next_deadline <= now:
                events += self._follow(name, router.tick(now), now)
        return events

    def link(self, interface: str, up: bool, now: float) -> list[Event]:
        events: list[Event] = []
        for name, tracker in self.trackers.items():
            if tracker.up.get(interface) != up:
                tracker.up[interface] = up
                events += self._retrack(name, now)
        return events

    def script(self, script: str, success: bool, now: float) -> list[Event]:
        """One outcome of ``script``; the instances tracking it follow when it changes."""
        changed = self.results[script].record(success)
        if changed is None:
            return []
        events: list[Event] = []
        for name, tracker in self.trackers.items():
            if any(t.kind == "script" and t.name == script for t in tracker.tracks):
                tracker.scripts[script] = changed
                events += self._retrack(name, now)
        return events

    # -- the rules ------------------------------------------------------------------------------

    def _retrack(self, name: str, now: float) -> list[Event]:
        router, tracker = self.routers[name], self.trackers[name]
        events = self._follow(name, router.set_priority(tracker.effective_priority, now), now)
        group = self.group_of.get(name)
        if tracker.faulty:
            events += self._follow(name, router.fault(now), now)
        elif router.state == State.FAULT and not (group and self._group_faulty(group)):
            members = self.groups[group].members if group else (name,)
            for member in members:
                events += self._follow(member, self.routers[member].recover(now), now)
        return events

    def _follow(self, name: str, actions: list[vrrp.Action], now: float, notify: bool = True
                ) -> list[Event]:
        """The router's actions, then what its state changes start: notifies, sync groups."""
        events: list[Event] = [(name, action) for action in actions]
        for action in actions:
            if isinstance(action, StateChange):
                events += self._moved(name, action, now, notify)
        return events

    def _moved(self, name: str, change: StateChange, now: float, notify: bool) -> list[Event]:
        counts = self.transitions[name]
        counts[change.new] = counts.get(change.new, 0) + 1
        router = self.routers[name]
        events: list[Event] = []
        if notify:
            events += [(name, n) for n in commands(self.specs[name].notifies, "INSTANCE", name,
                                                   change.new, router.priority)]
        group = self.group_of.get(name)
        if group is None or change.new == State.STOP:
            return events
        moves = {State.MASTER: Instance.force_master, State.FAULT: Instance.fault,
                 State.BACKUP: Instance.force_backup}
        if change.new in moves:
            events += self._group_moves(group, change.new, now, moves[change.new])
        return events

    def _group_moves(self, group: str, state: State, now: float,
                     move: Callable[[Instance, float], list[vrrp.Action]] | None = None
                     ) -> list[Event]:
        if self.group_state[group] == state:
            return []
        self.group_state[group] = state
        events: list[Event] = []
        if move is not None:
            for member in self.groups[group].members:
                events += self._follow(member, move(self.routers[member], now), now)
        spec = self.groups[group]
        return events + [(group, n) for n in commands(spec.notifies, "GROUP", group, state, 0)]

    def _gate(self, name: str) -> Callable[[Instance], bool]:
        group = self.groups[self.group_of[name]]

        def may_become_master(_router: Instance) -> bool:
            return all(self.routers[m].state == State.MASTER or self.routers[m].wants_master
                       for m in group.members if m != name)
        return may_become_master

    def _group_faulty(self, group: str) -> bool:
        return any(self.trackers[m].faulty for m in self.groups[group].members)

    def _group_failing(self, group: str | None) -> bool:
        return group is not None and any(self.trackers[m].failing
                                         for m in self.groups[group].members)

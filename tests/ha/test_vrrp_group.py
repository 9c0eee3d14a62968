"""Several instances together: tracking into FAULT and priorities, notifies, and keepalived's
sync groups (vrrp_sync.c)."""

from __future__ import annotations

from pylvs.ha.vrrp import Advert, InstanceConfig, RemoveVips, SendAdvert, State, StateChange
from pylvs.ha.vrrp_group import GroupSpec, InstanceSet, InstanceSpec
from pylvs.ha.vrrp_notify import Notifies, Notify
from pylvs.ha.vrrp_track import ScriptSpec, Track

SRC, PEER = "192.0.2.1", "192.0.2.9"
NOTES = Notifies(master="m", backup="b", fault="f", generic="g")


def instance(name: str, vrid: int, priority: int = 100, tracks=(), notifies=NOTES
             ) -> InstanceSpec:
    config = InstanceConfig(vrid, SRC, (f"10.0.0.{vrid}",), priority)
    return InstanceSpec(name, config, "eth0", (Track("interface", "eth0"), *tracks), notifies)


def notified(events) -> list[tuple[str, ...]]:
    """Each Notify's argv after /bin/sh -c."""
    return [action.argv[2:] for _, action in events if isinstance(action, Notify)]


def states(instances: InstanceSet) -> dict[str, State]:
    return {name: router.state for name, router in instances.routers.items()}


def run(instances: InstanceSet, until: float) -> list:
    events = []
    while (now := instances.next_deadline) <= until:
        events += instances.tick(now)
    return events


def test_a_weight_zero_script_starts_in_fault_quietly_and_its_first_success_is_backup():
    """keepalived's FAULT (init) while a weight-0 script has not run: no notify for it; the
    first success leaves FAULT for BACKUP (notified), then MASTER after the down timer."""
    made = InstanceSet([instance("VI_1", 1, tracks=(Track("script", "chk"),))],
                     scripts=[ScriptSpec("chk", "true")])
    events = made.start(0.0, {"eth0": True})
    assert states(made) == {"VI_1": State.FAULT} and notified(events) == []
    events = made.script("chk", True, 0.5)
    assert states(made) == {"VI_1": State.BACKUP}
    assert notified(events) == [("b",), ('g "$@"', "notify", "INSTANCE", "VI_1", "BACKUP",
                                         "100")]
    events = run(made, 10.0)
    assert states(made) == {"VI_1": State.MASTER} and notified(events)[0] == ("m",)


def test_a_failing_script_takes_a_master_to_fault_and_back_through_backup():
    made = InstanceSet([instance("VI_1", 1, tracks=(Track("script", "chk"),))],
                     scripts=[ScriptSpec("chk", "true", fall=2)])
    made.start(0.0, {"eth0": True})
    made.script("chk", True, 0.0)
    run(made, 5.0)
    assert made.script("chk", False, 5.0) == []  # fall 2: one failure is not enough
    events = made.script("chk", False, 6.0)
    assert [a for _, a in events if not isinstance(a, Notify)] == [
        SendAdvert(0), SendAdvert(0), RemoveVips(), StateChange(State.MASTER, State.FAULT)]
    assert notified(events)[0] == ("f",)
    assert made.trackers["VI_1"].failing == [Track("script", "chk")]
    made.script("chk", True, 7.0)
    assert states(made) == {"VI_1": State.BACKUP}
    assert made.transitions["VI_1"] == {"FAULT": 2, "BACKUP": 2, "MASTER": 1}


def test_the_instance_s_own_interface_down_is_fault():
    """keepalived tracks an instance's interface (weight 0); a FAULT (init) for a failing
    tracked thing is notified, unlike one that only waits for a script."""
    made = InstanceSet([instance("VI_1", 1)])
    events = made.start(0.0, {"eth0": False})
    assert states(made) == {"VI_1": State.FAULT} and notified(events)[0] == ("f",)
    made.link("eth0", True, 1.0)
    assert states(made) == {"VI_1": State.BACKUP}


def test_weights_move_the_advertised_priority():
    tracks = (Track("script", "plus", 20), Track("interface", "eth1", -50))
    made = InstanceSet([instance("VI_1", 1, 100, tracks)], scripts=[ScriptSpec("plus", "true")])
    made.start(0.0, {"eth0": True, "eth1": True})
    run(made, 5.0)
    made.script("plus", True, 5.0)
    assert made.routers["VI_1"].priority == 120
    made.link("eth1", False, 5.5)
    assert made.routers["VI_1"].priority == 70 and made.routers["VI_1"].state == State.MASTER
    sent = [a for _, a in run(made, 7.0) if isinstance(a, SendAdvert)]
    assert sent and all(a.priority == 70 for a in sent)


def grouped(*members: InstanceSpec) -> InstanceSet:
    group = GroupSpec("G", tuple(m.name for m in members), Notifies(generic="gg"))
    return InstanceSet(list(members), [group],
                     [ScriptSpec("chk", "true")])


def test_a_sync_group_goes_master_only_when_every_member_wants_to():
    """vrrp_sync_can_goto_master: the first timer to run out waits; the last one takes all."""
    made = grouped(instance("A", 1, 200), instance("B", 2, 50))
    made.start(0.0, {"eth0": True})
    first = made.routers["A"].next_deadline
    made.tick(first)
    assert states(made) == {"A": State.BACKUP, "B": State.BACKUP}
    assert made.routers["A"].wants_master
    events = made.tick(made.routers["B"].next_deadline)
    assert states(made) == {"A": State.MASTER, "B": State.MASTER}
    assert ("gg \"$@\"", "notify", "GROUP", "G", "MASTER", "0") in notified(events)


def test_a_member_preempted_takes_the_group_to_backup():
    made = grouped(instance("A", 1, 100), instance("B", 2, 100))
    made.start(0.0, {"eth0": True})
    run(made, 10.0)
    assert set(states(made).values()) == {State.MASTER}
    made.receive("A", Advert(2, 1, 200, 1, ("10.0.0.1",)), PEER, 10.5)
    assert states(made) == {"A": State.BACKUP, "B": State.BACKUP}
    assert made.group_state["G"] == State.BACKUP


def test_one_member_in_fault_puts_the_group_in_fault_and_they_leave_it_together():
    chk = (Track("script", "chk"),)
    made = grouped(instance("A", 1, tracks=chk), instance("B", 2))
    made.start(0.0, {"eth0": True})
    assert states(made) == {"A": State.FAULT, "B": State.FAULT}  # A's script has not said
    made.script("chk", True, 0.1)
    run(made, 10.0)
    assert set(states(made).values()) == {State.MASTER}
    events = made.script("chk", False, 10.0)
    assert states(made) == {"A": State.FAULT, "B": State.FAULT}
    assert ("gg \"$@\"", "notify", "GROUP", "G", "FAULT", "0") in notified(events)
    assert sum(isinstance(a, RemoveVips) for _, a in events) == 2
    made.link("eth0", False, 11.0)  # B has nothing of its own; A's and B's link now down
    made.script("chk", True, 12.0)
    assert set(states(made).values()) == {State.FAULT}  # the link still keeps both down
    made.link("eth0", True, 13.0)
    assert states(made) == {"A": State.BACKUP, "B": State.BACKUP}


def test_instances_outside_a_group_are_independent():
    made = InstanceSet([instance("A", 1, tracks=(Track("interface", "eth1"),)), instance("B", 2)])
    made.start(0.0, {"eth0": True, "eth1": True})
    run(made, 10.0)
    made.link("eth1", False, 10.0)
    assert states(made) == {"A": State.FAULT, "B": State.MASTER}


def test_stop_notifies_stop():
    made = InstanceSet([instance("A", 1, notifies=Notifies(stop="s", generic="g"))])
    made.start(0.0, {"eth0": True})
    events = made.stop(1.0)
    assert notified(events) == [("s",), ('g "$@"', "notify", "INSTANCE", "A", "STOP", "100")]

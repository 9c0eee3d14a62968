"""keepalived's tracking rules: a vrrp_script's rise and fall, weights, FAULT, the clamp."""

from __future__ import annotations

import pytest

from pylvs.ha.vrrp_track import ScriptResult, ScriptSpec, Track, Tracker


def spec(**options) -> ScriptSpec:
    return ScriptSpec("chk", "true", **options)


def test_script_defaults_are_keepalived_s():
    """vrrp_parser.c: interval 1 s, weight 0, rise 1, fall 1; timeout 0 means the interval."""
    script = spec()
    assert (script.interval, script.weight, script.rise, script.fall) == (1.0, 0, 1, 1)
    assert script.time_limit == 1.0 and spec(interval=2, timeout=0.5).time_limit == 0.5


@pytest.mark.parametrize("first", [True, False])
def test_the_first_outcome_decides(first):
    """vrrp_init_script: result = rise - 1, "one success is enough"; one failure too."""
    result = ScriptResult(spec(rise=3, fall=2))
    assert result.ok is None
    assert result.record(first) is first and result.ok is first


def test_rise_successes_make_a_failing_script_ok():
    result = ScriptResult(spec(rise=3, fall=2))
    result.record(False)
    assert [result.record(True) for _ in range(3)] == [None, None, True]
    assert result.record(True) is None


def test_fall_failures_make_an_ok_script_fail_and_a_success_resets_the_count():
    result = ScriptResult(spec(rise=1, fall=3))
    result.record(True)
    assert [result.record(False) for _ in range(2)] == [None, None]
    assert result.record(True) is None  # back to rise + fall - 1
    assert [result.record(False) for _ in range(3)] == [None, None, False]
    assert result.record(False) is None


def tracker(*tracks: Track, priority: int = 100, **states) -> Tracker:
    made = Tracker(priority, tracks)
    for name, state in states.items():
        if name.startswith("if_"):
            made.up[name[3:]] = state
        else:
            made.scripts[name] = state
    return made


@pytest.mark.parametrize("weight, ok, expected", [
    (20, True, 120), (20, False, 100),     # weight > 0: added while OK
    (-30, True, 100), (-30, False, 70),    # weight < 0: added while failing
    (20, None, 100), (-30, None, 100),     # before its first outcome: nothing (SCRIPT_INIT)
])
def test_script_weights(weight, ok, expected):
    made = tracker(Track("script", "chk", weight), chk=ok)
    assert made.effective_priority == expected and not made.faulty


@pytest.mark.parametrize("weight, up, expected", [(10, True, 110), (10, False, 100),
                                                  (-10, True, 100), (-10, False, 90)])
def test_interface_weights(weight, up, expected):
    assert tracker(Track("interface", "eth1", weight), if_eth1=up).effective_priority == expected


def test_weights_add_up_and_are_clamped_to_1_254():
    """vrrp_set_effective_priority: below 1 → 1, 255 and above → 254."""
    up = (Track("script", "a", 100), Track("script", "b", 100))
    assert tracker(*up, priority=200, a=True, b=True).effective_priority == 254
    down = (Track("script", "a", -100), Track("interface", "eth1", -100))
    assert tracker(*down, priority=50, a=False, if_eth1=False).effective_priority == 1
    both = (Track("script", "a", 30), Track("script", "b", -50))
    assert tracker(*both, a=True, b=False).effective_priority == 80


def test_an_address_owner_keeps_255():
    assert tracker(Track("script", "a", -50), priority=255, a=False).effective_priority == 255


@pytest.mark.parametrize("states, faulty", [
    ({"chk": True, "if_eth1": True}, False),
    ({"chk": False, "if_eth1": True}, True),   # weight-0 script failing
    ({"chk": None, "if_eth1": True}, True),    # not run yet: FAULT (init), as keepalived
    ({"chk": True, "if_eth1": False}, True),   # weight-0 interface down
])
def test_weight_zero_failures_mean_fault(states, faulty):
    made = tracker(Track("script", "chk"), Track("interface", "eth1"), **states)
    assert made.faulty is faulty
    assert made.effective_priority == 100


def test_failing_lists_what_is_down_of_any_weight():
    made = tracker(Track("script", "a", -5), Track("script", "b", 5), Track("interface", "x"),
                   a=False, b=True, if_x=False)
    assert made.failing == [Track("script", "a", -5), Track("interface", "x")]

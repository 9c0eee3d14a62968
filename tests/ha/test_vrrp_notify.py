"""keepalived's notify conventions (vrrp_notify.c)."""

from __future__ import annotations

from pylvs.ha.vrrp_notify import Notifies, Notify, commands

ALL = Notifies("/m", "/b", "/f", "/s", "/etc/keepalived/notify.sh")


def test_the_state_s_own_script_runs_as_written_then_the_generic_one_with_four_arguments():
    """notify_script_exec: script {GROUP|INSTANCE} NAME {MASTER|BACKUP|FAULT|STOP} PRIO."""
    assert commands(ALL, "INSTANCE", "VI_1", "MASTER", 150) == [
        Notify(("/bin/sh", "-c", "/m")),
        Notify(("/bin/sh", "-c", '/etc/keepalived/notify.sh "$@"', "notify", "INSTANCE", "VI_1",
                "MASTER", "150"))]
    assert [c.argv[2] for c in commands(ALL, "INSTANCE", "VI_1", "FAULT", 1)][0] == "/f"
    assert commands(ALL, "INSTANCE", "VI_1", "STOP", 1)[0].argv == ("/bin/sh", "-c", "/s")
    assert commands(ALL, "INSTANCE", "VI_1", "BACKUP", 1)[0].argv == ("/bin/sh", "-c", "/b")


def test_a_group_s_generic_notify_says_priority_0():
    assert commands(Notifies(generic="/g"), "GROUP", "G1", "FAULT", 0)[0].argv[-4:] == (
        "GROUP", "G1", "FAULT", "0")


def test_nothing_configured_nothing_started():
    assert commands(Notifies(), "INSTANCE", "VI_1", "MASTER", 100) == []
    assert commands(Notifies(master="/m"), "INSTANCE", "VI_1", "BACKUP", 100) == []


def test_the_generic_arguments_reach_the_script(tmp_path):
    """The argv really gives the script its four arguments through /bin/sh."""
    import subprocess
    out = tmp_path / "args"
    (command,) = commands(Notifies(generic=f"printf '%s|' >{out}"), "INSTANCE", "VI 1",
                          "MASTER", 7)
    subprocess.run(command.argv, check=True, timeout=10)
    assert out.read_text() == "INSTANCE|VI 1|MASTER|7|"

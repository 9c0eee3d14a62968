"""The VRRP tracking shell with real parts: real links read, real scripts and notify commands
run through /bin/sh in the thread of their own."""

from __future__ import annotations

import time
from pathlib import Path

from pylvs.ha.vrrp_notify import Notify
from pylvs.ha.vrrp_track import ScriptSpec
from pylvs.shell.track_probes import Links, Scripts


def wait_for(predicate, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"still not so after {seconds} s")


def test_loopback_is_up_and_a_missing_interface_is_down():
    links = Links(["lo", "pylvs-none0"])
    try:
        assert links.state == {"lo": True, "pylvs-none0": False}
        assert links.changed() == {}
    finally:
        links.close()


def test_scripts_report_each_exit_and_a_hung_one_is_killed_as_a_failure(tmp_path):
    pid_file = tmp_path / "pid"
    scripts = Scripts([ScriptSpec("ok", "true", interval=0.1),
                       ScriptSpec("bad", "exit 3", interval=0.1),
                       ScriptSpec("hung", f"echo $$ > {pid_file}; exec sleep 30", interval=5,
                                  timeout=0.3)])
    scripts.start()
    seen: list[tuple[str, bool]] = []
    try:
        def all_three():
            seen.extend(scripts.outcomes())
            return {name for name, _ in seen} == {"ok", "bad", "hung"}
        wait_for(all_three)
    finally:
        scripts.stop()
    assert {name: ok for name, ok in seen} == {"ok": True, "bad": False, "hung": False}
    assert sum(name == "ok" for name, _ in seen) >= 2  # every interval
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()  # killed with its session, and reaped


def test_a_notify_command_runs_and_is_not_waited_for(tmp_path):
    out = tmp_path / "notified"
    scripts = Scripts([])
    scripts.start()
    try:
        release = tmp_path / "release"
        scripts.notify(Notify(("/bin/sh", "-c", f'until [ -e {release} ]; do sleep 0.02; '
                               f'done; echo "$@" > {out}', "notify", "INSTANCE", "VI_1",
                               "MASTER", "100")))
        release.touch()  # notify returned while the command still waits for this
        wait_for(lambda: out.exists() and out.read_text() == "INSTANCE VI_1 MASTER 100\n")
    finally:
        scripts.stop()

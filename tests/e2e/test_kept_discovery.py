"""Kept labs reached without --socket (issue 26): two real `pylvs lab dr --keep`, each a real
director in its own namespaces with its control socket in /run. The README's `pylvs adm -Ln`,
`pylvs status` and `pylvs top` find the one director running; with two, they list both.

Other pylvs directors may run on this host (other tests, other labs): the "only one" half looks
in a run directory of the test's own ($PYLVS_RUN_DIR) holding links to this test's sockets and
records alone; the "several" half runs in /run as printed, where others only add lines to the
list. Every lab this test made is removed with `pylvs lab down PREFIX`, whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from pylvs.shell import adm_client

KEEP = ["lab", "dr", "--keep", "--servers", "2", "--requests", "3"]


def _pylvs(*argv: str, run_dir: str | None = None, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (adm_client.ENV_SOCKET, adm_client.ENV_RUN_DIR)}
    if run_dir is not None:
        env[adm_client.ENV_RUN_DIR] = run_dir
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def keep() -> Iterator:
    """keep(): a kept DR lab, as (prefix, what --keep printed); each removed at the end."""
    made: list[str] = []

    def start() -> tuple[str, str]:
        try:
            done = _pylvs(*KEEP, timeout=240)
            out, err = done.stdout, done.stderr
        except subprocess.TimeoutExpired as late:
            out, err = str(late.stdout or ""), str(late.stderr or "")
        found = re.search(r"namespaces (pylvs-[0-9a-f]{6})-\*", out)
        if found:
            made.append(found[1])
        assert found and "pylvs lab down " + found[1] in out, f"{out}\n{err}"
        return found[1], out

    yield start
    for prefix in made:
        _pylvs("lab", "down", prefix, timeout=120)


def _link(run_dir: str, prefix: str) -> str:
    """The lab's control socket and record, linked into ``run_dir``; the link's path."""
    for name in (f"{prefix}.sock", f"{prefix}-lab.json"):
        os.symlink(os.path.join("/run", name), os.path.join(run_dir, name))
    return os.path.join(run_dir, f"{prefix}.sock")


def test_one_kept_lab_is_found_and_two_are_listed(keep):
    run_dir = tempfile.mkdtemp(prefix="pylvs-run-")
    try:
        first, printed = keep()
        socket1 = f"/run/{first}.sock"
        assert f"    pylvs adm --socket {socket1} -Ln" in printed
        link1 = _link(run_dir, first)
        named = _pylvs("adm", "--socket", socket1, "-Ln")
        found = _pylvs("adm", "-Ln", run_dir=run_dir)
        assert named.returncode == 0 and "192.168.1.100:80" in named.stdout, named.stderr
        assert (found.returncode, found.stdout, found.stderr) == (0, named.stdout, "")
        status = _pylvs("status", run_dir=run_dir)
        assert status.returncode == 0 and "connections" in status.stdout, status.stderr
        top = _pylvs("top", "--once", run_dir=run_dir)
        assert top.returncode == 0 and f"pylvs top  {link1}" in top.stdout, top.stderr
        assert "-> 192.168.1.11:80" in top.stdout and "-> 192.168.1.12:80" in top.stdout

        second, printed2 = keep()
        socket2 = f"/run/{second}.sock"
        # the first lab's director runs: the second cannot be reached without --socket
        assert "    pylvs adm -Ln\n" not in printed2
        assert f"    pylvs adm --socket {socket2} -Ln" in printed2
        link2 = _link(run_dir, second)
        several = _pylvs("adm", "-Ln", run_dir=run_dir)
        assert (several.returncode, several.stdout) == (255, "")
        assert sorted(several.stderr.splitlines()[1:]) == sorted([
            f"    pylvs adm --socket {link1} -Ln    # kept lab {first} (dr)",
            f"    pylvs adm --socket {link2} -Ln    # kept lab {second} (dr)"])

        if adm_client.listening("/run/pylvs.sock"):
            return  # a director on the default socket: the README's commands talk to it
        for argv in (["adm", "-Ln"], ["status"]):  # in /run, as printed in the README
            listed = _pylvs(*argv)
            assert (listed.returncode, listed.stdout) == (255, ""), listed.stderr
            for prefix, path in ((first, socket1), (second, socket2)):
                line = adm_client.suggestion(argv, argv[0], path)
                assert f"    {line}    # kept lab {prefix} (dr)\n" in listed.stderr
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

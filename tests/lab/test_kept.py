"""`--keep` and `pylvs lab down`: a kept lab's record, and its removal, with real processes.

The unit tests write their records into a directory of their own (``RUN_DIR``), start a real
child process and check that `down` stops it and only it; the last test keeps a real lab."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from pylvs.lab import kept


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(kept, "RUN_DIR", str(tmp_path))
    return tmp_path


def write_record(run_dir, prefix: str, processes: list[list[int | None]]) -> None:
    directory = run_dir / f"{prefix}-lab"
    directory.mkdir()
    (run_dir / f"{prefix}-lab.json").write_text(json.dumps({
        "prefix": prefix, "mode": "dr", "namespaces": [], "processes": processes,
        "directory": str(directory), "control_socket": str(run_dir / f"{prefix}.sock")}))


def test_start_time_names_a_process_and_none_for_no_process():
    assert kept.start_time(os.getpid()) == kept.start_time(os.getpid()) is not None
    assert kept.start_time(2 ** 22 + 1) is None  # above pid_max's limit: never a process


def test_down_stops_the_recorded_processes_and_removes_the_files(run_dir):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_record(run_dir, "pylvs-abc123", [[child.pid, kept.start_time(child.pid)]])
        assert kept.kept_labs() == ["pylvs-abc123"]
        done = kept.down("pylvs-abc123")
        assert child.wait(5) == -15  # SIGTERM
        assert done == [f"stopped process {child.pid}"]
        assert kept.kept_labs() == [] and list(run_dir.iterdir()) == []
    finally:
        child.kill()
        child.wait()


def test_down_leaves_a_process_that_only_shares_the_pid(run_dir):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = kept.start_time(child.pid)
        assert started is not None
        write_record(run_dir, "pylvs-def456", [[child.pid, started - 1]])  # another process
        assert kept.down("pylvs-def456") == []
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab builds network namespaces: run as root")
@pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "curl", "ss")),
                    reason="needs iproute2, nftables and curl (scripts/install.sh)")
def test_kept_lab_answers_after_the_report_and_lab_down_removes_it():
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--servers", "1",
                             "--requests", "1", "--keep", "--explain"], capture_output=True,
                            text=True, timeout=120)
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", result.stdout, re.M).group(1)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"pylvs lab down {prefix}" in result.stdout
        assert "  | What -Ln shows" in result.stdout and "arp_ignore=1: answer" in result.stdout
        answer = subprocess.run(["ip", "netns", "exec", f"{prefix}-client", "curl", "-sS",
                                 "--noproxy", "*", "--max-time", "5", "http://192.168.1.100/"],
                                capture_output=True, text=True)
        assert answer.stdout.strip() == "rs1", answer.stderr
    finally:
        down = subprocess.run([sys.executable, "-m", "pylvs", "lab", "down", prefix],
                              capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns
    assert not [n for n in os.listdir("/run") if n.startswith(prefix)]
    processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert prefix not in processes

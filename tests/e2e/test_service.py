"""`pylvs run` as examples/pylvs.service runs it, in a lab: READY=1 on a real $NOTIFY_SOCKET
once the director answers, RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 on SIGTERM;
standard error in each log format (journal chosen by JOURNAL_STREAM, as under systemd), every
line read back as journald or a collector would; and the unit's CapabilityBoundingSet is all a
director needs, its XDP fast path included."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pylvs.lab.topology import Lab, lab_config
from pylvs.shell import control

UNIT = Path(__file__).resolve().parents[2] / "examples" / "pylvs.service"
START_TIMEOUT = 30.0
TEXT_LINE = re.compile(r"(\S+) pylvs: (?:(debug|warning|error|critical): )?(.*)")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    made = Lab(servers=2, mode="dr")
    try:
        made.setup()
        made.configure_real_servers()
        made.start_http_servers(80)
        made.ready_for_xdp()
        yield made
    finally:
        made.close()


class Director:
    """`pylvs run` in the lab's director namespace, its standard error in a file, and a unix
    datagram socket bound where $NOTIFY_SOCKET says, standing in for systemd."""

    def __init__(self, lab: Lab, tmp_path: Path, config: str, *args: str,
                 journal: bool = False, prefix: tuple[str, ...] = ()) -> None:
        self.lab = lab
        tmp_path.mkdir()
        (tmp_path / "pylvs.toml").write_text(config)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify"))
        self.stderr_path = tmp_path / "stderr"
        stderr = self.stderr_path.open("w")
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
        env.pop("JOURNAL_STREAM", None)
        if journal:  # what systemd sets for a unit whose standard error is journald's
            found = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{found.st_dev}:{found.st_ino}"
        self.proc = lab.popen_in(lab.director_ns, [
            *prefix, sys.executable, "-m", "pylvs", "run", *args, str(tmp_path / "pylvs.toml")],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        stderr.close()
        lab.processes.append(self.proc)  # the lab's close ends it if the test does not

    def message(self) -> dict[str, str]:
        """The next sd_notify message (fails with the log if none comes)."""
        self.notify.settimeout(START_TIMEOUT)
        try:
            data = self.notify.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"no sd_notify message; the director said:\n{self.log()}")
        return dict(line.split("=", 1) for line in data.splitlines())

    def answers(self) -> bool:
        try:
            return control.request(self.lab.control_socket, ["-L", "-n"], timeout=2)[0] == 0
        except OSError:
            return False

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def director(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Director]]:
    made: list[Director] = []

    def start(*args: str, **kwargs: object) -> Director:
        made.append(Director(lab, tmp_path / str(len(made)), *args, **kwargs))
        return made[-1]

    yield start
    for run in made:
        run.close()


def systemd_life(run: Director) -> None:
    """What systemd would see: READY=1 only once the director answers; a SIGHUP's reload between
    RELOADING=1 and READY=1; STOPPING=1 on SIGTERM, then exit status 0."""
    ready = run.message()
    assert ready["READY"] == "1" and ready["STATUS"].startswith("director up on eth0")
    assert run.answers()
    assert run.lab.curl("/").strip() in {"rs1", "rs2"}
    run.proc.send_signal(signal.SIGHUP)
    reloading, reloaded = run.message(), run.message()
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert reloaded == {"READY": "1", "STATUS": "SIGHUP: no changes"}
    assert run.stop() == 0, run.log()
    assert run.message() == {"STOPPING": "1", "STATUS": "stopping on SIGTERM"}


def config(lab: Lab, workers: int = 1, offload: str = "none") -> str:
    return lab_config(lab, "rr", workers=workers, offload=offload)


def test_text_lines_are_stamped_and_systemd_hears_each_step(lab, director):
    run = director(config(lab), "--log-format", "text")
    systemd_life(run)
    lines = [TEXT_LINE.fullmatch(line) for line in run.log().splitlines()]
    assert lines and all(lines), run.log()
    for line in lines:
        assert datetime.fromisoformat(line.group(1)).tzinfo is not None
    said = [line.group(3) for line in lines]
    assert any(s.startswith("director up on eth0") for s in said)
    assert "SIGHUP: no changes" in said and "stopping on SIGTERM" in said


def test_under_journald_each_line_has_its_priority_and_no_timestamp(lab, director):
    run = director(config(lab), journal=True)  # --log-format auto, JOURNAL_STREAM ours
    systemd_life(run)
    lines = run.log().splitlines()
    assert lines and all(re.fullmatch(r"<[0-7]>.*", line) for line in lines), run.log()
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\d", line) for line in lines)  # journald's
    assert any(line.startswith("<6>director up on eth0") for line in lines)
    assert "<6>SIGHUP: no changes" in lines and "<6>stopping on SIGTERM" in lines


def test_json_lines_name_the_process_that_logged_them(lab, director):
    run = director(config(lab, workers=2), "--log-format", "json")
    systemd_life(run)
    records = [json.loads(line) for line in run.log().splitlines()]
    assert records, run.log()
    for record in records:
        assert {"ts", "level", "logger", "message", "pid"} <= set(record)
        assert datetime.fromisoformat(record["ts"]).tzinfo is not None
        assert record["logger"] == "pylvs" and record["level"] in {"info", "warning"}
    by_message = {record["message"]: record for record in records}
    up = next(r for m, r in by_message.items() if m.startswith("director up on eth0"))
    assert up["pid"] == run.proc.pid  # ip netns exec execs: the supervisor is that process
    workers = {int(m.group(1)): int(m.group(2)) for record in records
               if (m := re.fullmatch(r"worker (\d) up \(pid (\d+)\)", record["message"]))}
    assert set(workers) == {0, 1}
    for index, pid in workers.items():  # each worker logs its own stop, under its own pid
        stopped = next(r for m, r in by_message.items() if m.startswith(f"worker {index} "
                                                                        "stopped"))
        assert stopped["pid"] == pid != run.proc.pid


def bounding_set() -> str:
    """The unit's CapabilityBoundingSet as setpriv's --bounding-set."""
    line = next(line for line in UNIT.read_text().splitlines()
                if line.startswith("CapabilityBoundingSet="))
    caps = line.split("=", 1)[1].split()
    return ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])


def test_the_units_capabilities_are_enough_for_a_director_and_its_xdp_path(lab, director):
    run = director(config(lab, offload="xdp"), "--log-format", "text",
                   prefix=("setpriv", f"--bounding-set={bounding_set()}"))
    ready = run.message()
    assert ready["READY"] == "1", run.log()
    status = Path(f"/proc/{run.proc.pid}/status").read_text()
    effective = int(re.search(r"CapEff:\s+([0-9a-f]+)", status).group(1), 16)
    # NET_BIND_SERVICE, NET_ADMIN, NET_RAW, BPF: no more
    assert effective == (1 << 10) | (1 << 12) | (1 << 13) | (1 << 39)
    answers = {lab.curl("/").strip() for _ in range(4)}
    assert answers == {"rs1", "rs2"}
    assert run.stop() == 0
    log = run.log()
    assert "XDP fast path on eth0" in log and "warning" not in log and "error" not in log, log
    shown = lab.run_in(lab.director_ns, ["ip", "link", "show", "eth0"], capture_output=True,
                       text=True, check=True).stdout
    assert "prog/xdp" not in shown

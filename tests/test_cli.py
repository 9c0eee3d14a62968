"""The command line as a user meets it: exit codes and messages, no root needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime

import pytest

import schedulers
from pylvs import cli
from pylvs.adm.config import Config
from pylvs.core.model import RealServer, VirtualService
from pylvs.shell.control import ControlServer
from pylvs.shell.engine import Engine


def _pylvs(*argv: str, env_socket: str | None = None) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ)
    if env_socket:
        env["PYLVS_SOCKET"] = env_socket
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=60, env=env)


def test_bad_config_names_file_key_reason_and_exits_2(tmp_path):
    config = tmp_path / "lb.toml"
    config.write_text('[director]\ninterface = "pylvs-absent0"\n[[virtual_server]]\n'
                      'address = "192.0.2.1:80"\nscheduler = "fastest"\n')
    result = _pylvs("run", str(config))
    assert result.returncode == 2
    assert f"{config}: virtual_server[0].scheduler: unknown scheduler 'fastest'" in result.stderr


BAD_SCHEDULER = ('[director]\ninterface = "pylvs-absent0"\n[[virtual_server]]\n'
                 'address = "192.0.2.1:80"\nscheduler = "fastest"\n')


LOAD_REASON = ("import sys\nfrom pylvs.adm.config import ConfigError, load\ntry:\n"
               "    load(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc.reason)\n")


def test_a_bad_config_in_each_log_format(tmp_path):
    """The same refusal as text (a timestamp), journal (<3>, nothing else) and JSON (the file,
    key and reason as fields of their own)."""
    config = tmp_path / "lb.toml"
    config.write_text(BAD_SCHEDULER)
    loaded = subprocess.run(  # what the loader says, each format carries: in a process of its
        [sys.executable, "-c", LOAD_REASON, str(config)],  # own, as this one may hold plug-ins
        capture_output=True, text=True, timeout=60)        # other tests registered
    reason = loaded.stdout.rstrip("\n")
    assert reason.startswith("unknown scheduler 'fastest'")
    said = f"bad config: {config}: virtual_server[0].scheduler: {reason}"
    runs = {form: _pylvs("run", "--log-format", form, str(config))
            for form in ("text", "journal", "json")}
    assert {form: run.returncode for form, run in runs.items()} == dict.fromkeys(runs, 2)
    (text,) = runs["text"].stderr.splitlines()
    stamp, rest = text.split(" ", 1)
    assert datetime.fromisoformat(stamp).tzinfo is not None and rest == f"pylvs: error: {said}"
    assert runs["journal"].stderr.splitlines() == [f"<3>{said}"]
    (line,) = runs["json"].stderr.splitlines()
    found = json.loads(line)
    assert datetime.fromisoformat(found.pop("ts")).tzinfo is not None
    assert found.pop("pid") > 0
    assert found == {"level": "error", "logger": "pylvs", "message": said, "file": str(config),
                     "key": "virtual_server[0].scheduler", "reason": reason}


def test_auto_writes_journals_lines_to_the_stream_journal_stream_names(tmp_path):
    config = tmp_path / "lb.toml"
    config.write_text(BAD_SCHEDULER)
    outputs = []
    for named in (True, False):
        with open(tmp_path / f"stderr-{named}", "w+") as stderr:
            found = os.fstat(stderr.fileno())
            stream = f"{found.st_dev}:{found.st_ino}" if named else f"{found.st_dev}:1"
            subprocess.run([sys.executable, "-m", "pylvs", "run", str(config)], stderr=stderr,
                           env={**os.environ, "JOURNAL_STREAM": stream}, timeout=60)
            stderr.seek(0)
            outputs.append(stderr.read())
    assert outputs[0].startswith("<3>bad config: ")
    assert " pylvs: error: bad config: " in outputs[1]  # JOURNAL_STREAM inherited, not ours


@pytest.mark.skipif(os.path.exists(cli.DEFAULT_CONFIG), reason=f"this host has a "
                    f"{cli.DEFAULT_CONFIG}: pylvs run would start a director")
def test_run_without_a_file_reads_the_default_path_and_names_it_when_missing():
    result = _pylvs("run")
    assert result.returncode == 2
    assert f"no config file at {cli.DEFAULT_CONFIG}" in result.stderr
    assert "examples/pylvs.toml" in result.stderr
    assert f"(default: {cli.DEFAULT_CONFIG})" in " ".join(_pylvs("run", "--help").stdout.split())


def test_adm_without_director_is_a_clear_error(tmp_path):
    sock = str(tmp_path / "none.sock")
    result = _pylvs("adm", "--socket", sock, "-Ln")
    assert result.returncode == 255
    assert "no pylvs director is running" in result.stderr and sock in result.stderr


def test_adm_usage_error_exits_2_without_a_director(tmp_path):
    result = _pylvs("adm", "-Ln", "--timeout", "-c", env_socket=str(tmp_path / "x.sock"))
    assert result.returncode == 2
    assert "conflicts with" in result.stderr


def test_adm_help_and_version():
    assert "pylvs adm -L" in _pylvs("adm", "-h").stdout
    assert _pylvs("adm", "-v").stdout.startswith("ipvsadm v1.31")


def test_realserver_rejects_bad_vip():
    result = _pylvs("realserver", "--mode", "dr", "--vip", "300.1.1.1")
    assert result.returncode != 0
    assert "300.1.1.1" in result.stderr


def _loopback_engine() -> Engine:
    """An engine not started (no host state) whose rules name only loopback."""
    service = VirtualService("tcp", "127.0.0.1", 80, schedulers.get("rr")())
    service.add_real_server(RealServer("127.0.0.1", 80))
    return Engine(Config("lo", services=[service]))


def _serving(path: str, handler) -> tuple[ControlServer, threading.Event, threading.Thread]:
    server, stop = ControlServer(path, handler), threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.poll()
            stop.wait(0.01)

    thread = threading.Thread(target=serve)
    thread.start()
    return server, stop, thread


def test_adm_lists_names_it_looked_up_itself_and_numbers_with_n(tmp_path):
    sock = str(tmp_path / "ctl.sock")
    engine = _loopback_engine()
    seen = []
    server, stop, thread = _serving(sock, lambda request: seen.append(request) or
                                    engine.handle(request))
    try:
        named = _pylvs("adm", "--socket", sock, "-L")
        numeric = _pylvs("adm", "--socket", sock, "-L", "-n")
        saved = _pylvs("adm", "--socket", sock, "-S")
        connections = _pylvs("adm", "--socket", sock, "-L", "-c")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines()[3:] == [
        "TCP  localhost:http rr",
        "  -> localhost:http               Route   1      0          0         "]
    assert numeric.stdout.splitlines()[3] == "TCP  127.0.0.1:80 rr"
    assert saved.stdout.splitlines()[0] == "-A -t localhost:http -s rr"
    assert connections.returncode == 0
    kinds = [type(request).__name__ for request in seen]
    assert kinds == ["Endpoints", "AdmLine", "AdmLine", "Endpoints", "AdmLine", "AdmLine"]
    assert seen[1].names == ({"127.0.0.1": "localhost"}, {"80/tcp": "http"})
    assert seen[2].names is None and seen[5].names is None


def test_reload_and_status_are_requests_of_their_own(tmp_path):
    sock = str(tmp_path / "ctl.sock")
    server, stop, thread = _serving(sock, _loopback_engine().handle)
    try:
        reload = _pylvs("reload", "--socket", sock)
        status = _pylvs("status", "--socket", sock)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert reload.returncode == 1
    assert reload.stderr.startswith("reload refused, the running rules stay: <config>")
    assert status.returncode == 0


def test_restore_splits_on_blanks_as_ipvsadm_and_refuses_an_odd_quote(tmp_path):
    """ipvsadm -R splits each line on blanks: `-s "rr` names a scheduler `"rr`, which the
    kernel does not know; no parser error ends pylvs adm, and the table stays as it was."""
    sock = str(tmp_path / "ctl.sock")
    engine = _loopback_engine()
    server, stop, thread = _serving(sock, engine.handle)
    try:
        before = _pylvs("adm", "--socket", sock, "-S", "-n").stdout
        result = subprocess.run([sys.executable, "-m", "pylvs", "adm", "--socket", sock, "-R"],
                                input='-A -t 203.0.113.7:80 -s "rr\n', capture_output=True,
                                text=True, timeout=60)
        after = _pylvs("adm", "--socket", sock, "-S", "-n").stdout
    finally:
        stop.set()
        thread.join()
        server.close()
    assert (result.returncode, result.stderr) == (
        255, "Scheduler or persistence engine not found\n")
    assert "Traceback" not in result.stderr and after == before


def test_listings_of_any_size_arrive_whole(tmp_path):
    """Issue 12's first finding: the request bound was applied to the reply, so -Lnc failed past
    ~1,500 connections and -Ln past ~3,000 real servers. Now 20,000 and 5,000 arrive whole."""
    sock = str(tmp_path / "ctl.sock")
    engine = _loopback_engine()
    (service,) = engine.director.services.values()
    for i in range(5000):
        service.real_servers.append(RealServer(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 80))
    table, server = engine.director.table, service.real_servers[0]
    for i in range(20000):
        table.create((6, 0xCB007100 + i // 50000, 1024 + i % 50000, service.ip, 80), service,
                     server, 0.0)
    server_, stop, thread = _serving(sock, engine.handle)
    try:
        connections = _pylvs("adm", "--socket", sock, "-Lnc")
        services = _pylvs("adm", "--socket", sock, "-Ln")
    finally:
        stop.set()
        thread.join()
        server_.close()
    assert connections.returncode == 0, connections.stderr
    assert len(connections.stdout.splitlines()) == 2 + 20000
    assert services.returncode == 0, services.stderr
    assert len(services.stdout.splitlines()) == 4 + 5001

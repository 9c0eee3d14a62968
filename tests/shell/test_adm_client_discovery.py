"""Which director `pylvs adm`, `status` and `top` talk to without --socket
(pylvs.shell.adm_client.choose), in a run directory of the test's own ($PYLVS_RUN_DIR): no
other pylvs on this host can be found, nor change what the test sees. The directors are real
control sockets served by an engine's handler (no root needed), each with a service of its own
address, so a listing says which one answered."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest

import schedulers
from pylvs.adm.config import DEFAULT_CONTROL_SOCKET, Config
from pylvs.core.model import RealServer, VirtualService
from pylvs.shell import adm_client
from pylvs.shell.control import ControlServer
from pylvs.shell.engine import Engine

Start = Callable[[str, str], str]


@pytest.fixture
def run_dir() -> Iterator[str]:
    """A short path of its own (a unix socket's path has 108 bytes at most)."""
    path = tempfile.mkdtemp(prefix="pylvs-run-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(run_dir: str) -> Iterator[Start]:
    """start(name, vip): a director answering on RUN_DIR/name whose one service is vip:80."""
    running: list[tuple[ControlServer, threading.Event, threading.Thread]] = []

    def serve(name: str, vip: str) -> str:
        service = VirtualService("tcp", vip, 80, schedulers.get("rr")())
        service.add_real_server(RealServer("127.0.0.1", 80))
        server = ControlServer(os.path.join(run_dir, name),
                               Engine(Config("lo", services=[service])).handle)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                server.poll()
                stop.wait(0.01)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        running.append((server, stop, thread))
        return server.path

    yield serve
    for server, stop, thread in running:
        stop.set()
        thread.join()
        server.close()


def _pylvs(run_dir: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != adm_client.ENV_SOCKET}
    env[adm_client.ENV_RUN_DIR] = run_dir
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True,
                          text=True, timeout=60, env=env)


def _stale(path: str) -> None:
    """A socket file whose director died without removing it: nothing listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


def _not_pylvs(path: str) -> tuple[socket.socket, threading.Thread]:
    """Something else listening on a pylvs-like name: it answers, but not as a director."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)

    def answer() -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            with client:
                client.recv(1024)
                client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return sock, thread


def test_the_default_socket_is_the_run_directorys_pylvs_sock():
    assert os.path.join(adm_client.RUN_DIR, adm_client.SOCKET_NAME) == DEFAULT_CONTROL_SOCKET


def test_with_no_director_the_error_is_todays(run_dir, monkeypatch):
    monkeypatch.delenv(adm_client.ENV_SOCKET, raising=False)
    _stale(os.path.join(run_dir, "pylvs-dead01.sock"))
    default = os.path.join(run_dir, "pylvs.sock")
    assert adm_client.choose(directory=run_dir) == (default, None)
    result = _pylvs(run_dir, "adm", "-Ln")
    assert result.returncode == 255 and result.stdout == ""
    assert result.stderr.startswith(f"pylvs adm: no pylvs director is running on the control "
                                    f"socket {default} ")


def test_the_one_director_running_is_found_and_stdout_is_ipvsadms(run_dir, start, monkeypatch):
    monkeypatch.delenv(adm_client.ENV_SOCKET, raising=False)
    path = start("pylvs-ab12cd.sock", "192.0.2.1")
    _stale(os.path.join(run_dir, "pylvs.sock"))  # the default one, left by a dead director
    _stale(os.path.join(run_dir, "pylvs-dead01.sock"))
    with open(os.path.join(run_dir, "pylvs-zz.sock"), "w"):  # a file, not a socket
        pass
    other, _ = _not_pylvs(os.path.join(run_dir, "pylvs-web.sock"))
    try:
        assert adm_client.choose(directory=run_dir) == (path, adm_client.Running(path))
        named = _pylvs(run_dir, "adm", "--socket", path, "-Ln")
        found = _pylvs(run_dir, "adm", "-Ln")
        status = _pylvs(run_dir, "status", "--json")
        top = _pylvs(run_dir, "top", "--once")
    finally:
        other.close()
    assert (found.returncode, found.stdout, found.stderr) == (0, named.stdout, "")
    assert "TCP  192.0.2.1:80 rr" in found.stdout
    assert status.returncode == 0 and "connections" in json.loads(status.stdout)
    assert top.returncode == 0 and f"pylvs top  {path}" in top.stdout
    assert "-> 127.0.0.1:80" in top.stdout


def test_the_default_socket_wins_when_a_director_listens_there(run_dir, start):
    default = start("pylvs.sock", "192.0.2.1")
    start("pylvs-ab12cd.sock", "192.0.2.2")
    assert adm_client.choose(directory=run_dir) == (default, None)
    result = _pylvs(run_dir, "adm", "-Ln")
    assert result.returncode == 0 and "192.0.2.1:80" in result.stdout


def test_several_directors_are_listed_each_with_its_command_line(run_dir, start):
    first = start("pylvs-ab12cd.sock", "192.0.2.1")
    second = start("pylvs-ef34ab-d1.sock", "192.0.2.2")
    _stale(os.path.join(run_dir, "pylvs-dead01.sock"))
    with open(os.path.join(run_dir, "pylvs-ab12cd-lab.json"), "w") as fh:  # pylvs.lab.kept's
        json.dump({"prefix": "pylvs-ab12cd", "mode": "dr", "control_socket": first}, fh)
    with pytest.raises(adm_client.SeveralDirectors) as several:
        adm_client.choose(directory=run_dir)
    assert several.value.running == [adm_client.Running(first, "kept lab pylvs-ab12cd (dr)"),
                                     adm_client.Running(second)]
    adm = _pylvs(run_dir, "adm", "-L", "-n", "--stats")
    status = _pylvs(run_dir, "-v", "status", "--json")
    top = _pylvs(run_dir, "top", "--once")
    default = os.path.join(run_dir, "pylvs.sock")
    assert (adm.returncode, adm.stdout) == (255, "")
    assert adm.stderr.splitlines() == [
        f"pylvs adm: no director is running on the default control socket {default}, and 2 "
        f"run on others: name one with --socket (or PYLVS_SOCKET=PATH):",
        f"    pylvs adm --socket {first} -L -n --stats    # kept lab pylvs-ab12cd (dr)",
        f"    pylvs adm --socket {second} -L -n --stats"]
    assert (status.returncode, status.stdout) == (255, "")
    assert status.stderr.splitlines()[1:] == [
        f"    pylvs -v status --socket {first} --json    # kept lab pylvs-ab12cd (dr)",
        f"    pylvs -v status --socket {second} --json"]
    assert top.returncode == 255 and f"pylvs top --socket {second} --once" in top.stderr


def test_a_socket_named_wins_over_the_search(run_dir, start, monkeypatch):
    start("pylvs-ab12cd.sock", "192.0.2.1")
    second = start("pylvs-ef34ab.sock", "192.0.2.2")
    assert _pylvs(run_dir, "adm", "--socket", second, "-Ln").stdout.count("192.0.2.2:80") == 1
    status = _pylvs(run_dir, "status", "--socket", second)
    assert status.returncode == 0, status.stderr
    monkeypatch.setenv(adm_client.ENV_SOCKET, second)
    assert adm_client.choose(directory=run_dir) == (second, None)
    elsewhere = os.path.join(run_dir, "none.sock")
    assert adm_client.choose(elsewhere, directory=run_dir) == (elsewhere, None)


def test_a_kept_lab_says_which_command_reaches_it(run_dir, start, monkeypatch):
    """`pylvs lab ... --keep`'s lines (pylvs.lab.kept.reach): `pylvs adm -Ln` while its director
    is the only one, the --socket form always."""
    from pylvs.lab import kept
    monkeypatch.delenv(adm_client.ENV_SOCKET, raising=False)
    monkeypatch.setenv(adm_client.ENV_RUN_DIR, run_dir)
    ours = start("pylvs-ab12cd.sock", "192.0.2.1")
    assert kept.found_alone(ours)
    named = f"    pylvs adm --socket {ours} -Ln    ("
    alone = kept.reach(ours, True)
    assert "    pylvs adm -Ln" in alone and any(line.startswith(named) for line in alone)
    start("pylvs-ef34ab.sock", "192.0.2.2")
    assert not kept.found_alone(ours)
    crowded = kept.reach(ours, False)
    assert "    pylvs adm -Ln" not in crowded and any(line.startswith(named) for line in crowded)


def test_a_terminal_is_told_which_director_was_found(run_dir, start, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(adm_client.ENV_SOCKET, raising=False)
    monkeypatch.setenv(adm_client.ENV_RUN_DIR, run_dir)
    path = start("pylvs-ab12cd.sock", "192.0.2.1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert adm_client.socket_for(None, ["status"], "status") == path
    assert adm_client.socket_for(None, ["top"], "top", note=False) == path
    assert sys.stderr.getvalue() == (f"pylvs status: the director on {path}, the only one "
                                     f"running\n")

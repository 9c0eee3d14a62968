"""The control socket and the workers' channel: typed requests and replies over a real unix
socket (mode 0600) and a real socketpair."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading

import pytest

from pylvs.adm import ipvsadm
from pylvs.ha.sync import SyncConn
from pylvs.shell import control
from pylvs.shell.messages import (
    Adm,
    AdmLine,
    Endpoints,
    InstallSynced,
    Reload,
    Reply,
    Snapshot,
    Status,
    Sysctl,
)


@contextlib.contextmanager
def serving(path, handler):
    """A ControlServer polled from a thread, as the director's loop polls it."""
    server = control.ControlServer(path, handler)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.poll()
            stop.wait(0.01)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        server.close()


def echo(request):
    if isinstance(request, AdmLine):
        return Reply(7, " ".join(request.argv), "err", data=request.names)
    return Reply(0, type(request).__name__, data={"addresses": ["127.0.0.1"], "ports": ["80/tcp"]}
                 if isinstance(request, Endpoints) else None)


def raw(path, line: bytes) -> dict:
    """One request as bytes; the reply may come before the whole request is sent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sender = threading.Thread(target=_send_all, args=(sock, line))
        sender.start()
        try:
            with sock.makefile("rb") as reader:
                return json.loads(reader.readline())
        finally:
            sender.join()


def _send_all(sock, line):
    with contextlib.suppress(OSError):
        sock.sendall(line)


def test_round_trip_and_permissions(tmp_path):
    path = str(tmp_path / "ctl.sock")
    with serving(path, echo):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert control.request(path, ["-L", "-n"]) == (7, "-L -n", "err")
    assert not os.path.exists(path)


def test_each_op_reaches_the_handler_typed(tmp_path):
    path = str(tmp_path / "ctl.sock")
    names = ({"127.0.0.1": "localhost"}, {"80/tcp": "http"})
    with serving(path, echo):
        assert control.ask(path, Reload()) == Reply(0, "Reload")
        assert control.ask(path, Status()) == Reply(0, "Status")
        assert control.endpoints(path) == (["127.0.0.1"], ["80/tcp"])
        named = control.ask(path, AdmLine(["-L"], names))
        assert (named.stdout, named.data) == ("-L", [names[0], names[1]])


def test_a_sysctl_request_carries_its_name_and_value(tmp_path):
    path = str(tmp_path / "ctl.sock")
    seen = []

    def handler(request):
        seen.append(request)
        return Reply(0, "ok")

    with serving(path, handler):
        for request in (Sysctl(), Sysctl("drop_entry"), Sysctl("drop_entry", 2)):
            assert control.ask(path, request) == Reply(0, "ok")
        reply = raw(path, b'{"op": "sysctl", "name": "drop_entry", "value": "2"}\n')
        assert reply["rc"] == 255 and "a value (integer or null)" in reply["stderr"]
    assert seen == [Sysctl(), Sysctl("drop_entry"), Sysctl("drop_entry", 2)]


def test_the_old_argv_form_still_works(tmp_path):
    path = str(tmp_path / "ctl.sock")
    with serving(path, echo):
        assert raw(path, b'{"argv": ["-L", "-n"]}\n') == {"rc": 7, "stdout": "-L -n",
                                                           "stderr": "err"}


@pytest.mark.parametrize("line,reason", [
    (b"[1, 2]\n", "a JSON object"),
    (b'{"op": "explode"}\n', "unknown op"),
    (b'{"op": "adm", "argv": "-L"}\n', "argv must be a list of strings"),
    (b'{"op": "adm", "argv": ["-L"], "names": [{"a": 1}, {}]}\n', "names must be"),
    (b"not json\n", "bad control request"),
])
def test_a_bad_request_is_answered_not_fatal(tmp_path, line, reason):
    path = str(tmp_path / "ctl.sock")
    with serving(path, echo):
        reply = raw(path, line)
        assert reply["rc"] == 255 and reason in reply["stderr"]
        assert control.request(path, ["-L"])[0] == 7  # the server goes on


def test_an_oversized_request_is_refused_and_a_large_reply_arrives(tmp_path):
    path = str(tmp_path / "ctl.sock")
    big = "x" * (3 << 20)
    with serving(path, lambda request: Reply(0, big)):
        reply = raw(path, b'{"argv": ["' + b"y" * (2 << 20) + b'"]}\n')
        assert reply["rc"] == 255 and "too large" in reply["stderr"]
        assert control.request(path, ["-Lnc"]) == (0, big, "")


def test_second_director_on_same_socket_is_refused(tmp_path):
    path = str(tmp_path / "ctl.sock")
    server = control.ControlServer(path, echo)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            control.ControlServer(path, echo)
    finally:
        server.close()


def test_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "ctl.sock")
    server = control.ControlServer(path, echo)
    server.close_in_child()  # as a forked worker does: the path stays, nobody listens
    assert os.path.exists(path)
    again = control.ControlServer(path, echo)
    again.close()


def test_the_channel_carries_typed_messages_both_ways():
    mine, theirs = socket.socketpair()
    seen = []

    def handler(message):
        seen.append(message)
        if isinstance(message, InstallSynced):
            return Reply(0, data={"installed": len(message.entries)})
        return Reply(0, "x" * (1 << 20))  # more than one recv's worth

    supervisor, worker = control.Channel(mine), control.Channel(theirs, handler)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            worker.poll()
            stop.wait(0.005)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        command = ipvsadm.parse(["-a", "-t", "192.0.2.1:80", "-r", "198.51.100.1"])
        entry = SyncConn(6, "203.0.113.1", 4000, "192.0.2.1", 80, "198.51.100.1", 80, 1, 0, 900)
        assert supervisor.ask(Adm(command)).stdout == "x" * (1 << 20)
        assert supervisor.ask(InstallSynced([entry, entry])).data == {"installed": 2}
        assert supervisor.ask(Snapshot()).rc == 0
    finally:
        stop.set()
        thread.join()
        supervisor.close()
        worker.close()
    assert seen[0] == Adm(command) and seen[1].entries == [entry, entry]
    assert isinstance(seen[2], Snapshot)


def test_a_closed_channel_raises_connection_error():
    mine, theirs = socket.socketpair()
    theirs.close()
    with pytest.raises(ConnectionError):
        control.Channel(mine).receive(1.0)


def test_a_handler_that_raises_is_answered_and_the_server_goes_on(tmp_path):
    path = str(tmp_path / "ctl.sock")
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise AttributeError("a bug in answering")
        return Reply(0, "fine")

    with serving(path, handler):
        rc, out, err = control.request(path, ["-Ln"])
        assert rc == 255 and "AttributeError('a bug in answering')" in err
        assert control.request(path, ["-Ln"]) == (0, "fine", "")

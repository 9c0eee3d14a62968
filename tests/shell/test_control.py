"""The control socket: a request/response round trip over a real unix socket, mode 0600."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from pylvs.shell import control


def test_round_trip_and_permissions(tmp_path):
    path = str(tmp_path / "ctl.sock")
    server = control.ControlServer(path, lambda argv: (7, " ".join(argv), "err"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.poll()
            stop.wait(0.01)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert control.request(path, ["-L", "-n"]) == (7, "-L -n", "err")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not os.path.exists(path)


def test_second_director_on_same_socket_is_refused(tmp_path):
    path = str(tmp_path / "ctl.sock")
    server = control.ControlServer(path, lambda argv: (0, "", ""))
    try:
        with pytest.raises(RuntimeError, match="already running"):
            control.ControlServer(path, lambda argv: (0, "", ""))
    finally:
        server.close()


def test_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "ctl.sock")
    server = control.ControlServer(path, lambda argv: (0, "", ""))
    server.sock.close()  # a director that died without clean-up
    again = control.ControlServer(path, lambda argv: (0, "", ""))
    again.close()

"""pylvs.shell.notify against a real unix datagram socket standing in for systemd's: the
messages arrive as sd_notify(3) writes them, and the address leaves the environment."""

from __future__ import annotations

import os
import socket
import time

from pylvs.shell.notify import Notifier


def fields(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_reloading_and_stopping_arrive_on_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        environ = {"NOTIFY_SOCKET": path, "PATH": "/bin"}
        notifier = Notifier.from_environment(environ)
        assert environ == {"PATH": "/bin"}  # the director's commands must not speak for it
        assert notifier.ready("director up")
        assert fields(systemd) == {"READY": "1", "STATUS": "director up"}
        before = time.monotonic_ns() // 1000
        assert notifier.reloading()
        reloading = fields(systemd)
        assert reloading["RELOADING"] == "1"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
        assert notifier.stopping("stopping on SIGTERM")
        assert fields(systemd) == {"STOPPING": "1", "STATUS": "stopping on SIGTERM"}


def test_an_abstract_socket_is_reached_by_its_at_name():
    name = f"pylvs-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        assert Notifier("@" + name).ready("up")
        assert fields(systemd)["READY"] == "1"


def test_without_systemd_or_with_a_socket_gone_nothing_is_sent(tmp_path):
    assert not Notifier.from_environment({}).ready("up")
    assert not Notifier(str(tmp_path / "absent")).ready("up")
    assert not Notifier("vsock:2:1234").ready("up")

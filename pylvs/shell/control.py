"""The control socket: a running director answers `pylvs adm` over a unix socket (mode 0600).

One request per connection: a JSON line {"argv": [...]} in, a JSON line {"rc", "stdout",
"stderr"} out. The server is polled from the director's own loop, so commands never race the
data path.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable

Handler = Callable[[list[str]], tuple[int, str, str]]
_MAX_REQUEST = 1 << 16


class DirectorNotRunning(ConnectionError):
    pass


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        _refuse_if_alive(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> None:
        """Serve every client waiting now; never blocks when none is."""
        while True:
            try:
                client, _ = self.sock.accept()
            except BlockingIOError:
                return
            with client:
                self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(1.0)
        try:
            _answer(client, _read_line(client), self.handler)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Channel:
    """The same requests over one end of a socketpair: how a supervisor drives its workers.
    The worker's end serves with ``poll()`` from its loop; the supervisor's end ``ask()``s."""

    def __init__(self, sock: socket.socket, handler: Handler | None = None) -> None:
        self.sock = sock
        self.handler = handler
        self.pending = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> None:
        """Answer every complete request waiting now; never blocks."""
        assert self.handler is not None
        try:
            self.pending += self.sock.recv(_MAX_REQUEST, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            _answer(self.sock, line, self.handler)

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        try:
            line = _read_line(self.sock)
        finally:
            self.sock.settimeout(None)
        if not line:
            raise ConnectionError("the other end closed the channel")
        return json.loads(line)

    def ask(self, argv: list[str], timeout: float = 5.0) -> tuple[int, str, str]:
        self.send({"argv": argv})
        reply = self.receive(timeout)
        return reply["rc"], reply["stdout"], reply["stderr"]

    def close(self) -> None:
        self.sock.close()


def _answer(sock: socket.socket, line: bytes, handler: Handler) -> None:
    try:
        argv = json.loads(line)["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of strings")
        rc, out, err = handler(argv)
    except (OSError, ValueError, KeyError) as exc:
        rc, out, err = 255, "", f"bad control request: {exc}\n"
    sock.sendall(json.dumps({"rc": rc, "stdout": out, "stderr": err}).encode() + b"\n")


def _read_line(sock: socket.socket) -> bytes:
    chunks = b""
    while not chunks.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        chunks += chunk
        if len(chunks) > _MAX_REQUEST:
            raise ValueError("request too large")
    return chunks


def _refuse_if_alive(path: str) -> None:
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # left by a director that died
        return
    finally:
        probe.close()
    raise RuntimeError(f"a director is already running on the control socket {path}")


def request(path: str, argv: list[str], timeout: float = 5.0) -> tuple[int, str, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DirectorNotRunning(
                f"no pylvs director is running on the control socket {path} ({exc.strerror}); "
                "start one with `pylvs run CONFIG`, or pass --socket PATH") from None
        sock.sendall(json.dumps({"argv": argv}).encode() + b"\n")
        reply = json.loads(_read_line(sock))
    finally:
        sock.close()
    return reply["rc"], reply["stdout"], reply["stderr"]

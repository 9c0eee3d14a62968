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
            data = _read_line(client)
            argv = json.loads(data)["argv"]
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("argv must be a list of strings")
            rc, out, err = self.handler(argv)
        except (OSError, ValueError, KeyError) as exc:
            rc, out, err = 255, "", f"bad control request: {exc}\n"
        try:
            client.sendall(json.dumps({"rc": rc, "stdout": out, "stderr": err}).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


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

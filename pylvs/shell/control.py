"""The control socket `pylvs adm`, `pylvs reload` and `pylvs status` talk to (a unix socket,
mode 0600), and the channel a supervisor drives its workers over.

The control socket takes one request per connection: a JSON line {"op": "adm", "argv": [...],
"names": [hosts, services]}, {"op": "reload"}, {"op": "status"}, {"op": "endpoints"} or
{"op": "sysctl", "name": ..., "value": ...} in (the
older {"argv": [...]} is "adm"), a JSON line {"rc", "stdout", "stderr"} out, with "data" for
endpoints. The channel carries pylvs.shell.messages as pickles, length-prefixed: its other end
is a worker forked from the same process, so it is trusted. Both are polled from the
director's own loop, so commands never race the data path.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from pylvs.shell.messages import AdmLine, Endpoints, Reload, Reply, Request, Status, Sysctl

log = logging.getLogger("pylvs")

Handler = Callable[[Any], Reply]
_MAX_REQUEST = 1 << 20
"""A request's bound (names for a few thousand addresses fit); replies have none."""
_OPS: dict[str, type[Reload | Status | Endpoints]] = {
    "reload": Reload, "status": Status, "endpoints": Endpoints}
_FRAME = struct.Struct("!I")


class DirectorNotRunning(ConnectionError):
    pass


class ControlServer:
    """The director's end; ``handler`` answers each request (pylvs.shell.messages.Request)."""

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
            reply = self._answer(client)
            client.sendall(encode_reply(reply))
        except OSError:
            pass  # the client went away: nothing to answer

    def _answer(self, client: socket.socket) -> Reply:
        try:
            request = decode_request(_read_line(client, _MAX_REQUEST))
        except (ValueError, KeyError, TypeError) as exc:
            return Reply(255, "", f"bad control request: {exc}\n")
        return _handled(self.handler, request)

    def close_in_child(self) -> None:
        """In a process forked from the director: let go of the socket, keep its path."""
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Channel:
    """Typed messages over one end of a socketpair: the worker's end serves with ``poll()``
    from its loop, answering each message with ``handler``'s Reply; the supervisor's end
    ``ask()``s."""

    def __init__(self, sock: socket.socket, handler: Handler | None = None) -> None:
        self.sock = sock
        self.handler = handler
        self.pending = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> None:
        """Answer every complete message waiting now; never blocks."""
        assert self.handler is not None
        try:
            self.pending += self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        while len(self.pending) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self.pending)
            if len(self.pending) < _FRAME.size + size:
                return
            body = self.pending[_FRAME.size:_FRAME.size + size]
            self.pending = self.pending[_FRAME.size + size:]
            self.send(self._answer(pickle.loads(body)))

    def _answer(self, message: object) -> Reply:
        assert self.handler is not None
        return _handled(self.handler, message)

    def send(self, message: object) -> None:
        body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(_FRAME.pack(len(body)) + body)

    def receive(self, timeout: float) -> object:
        self.sock.settimeout(timeout)
        try:
            (size,) = _FRAME.unpack(_read_exactly(self.sock, _FRAME.size))
            return pickle.loads(_read_exactly(self.sock, size))
        finally:
            self.sock.settimeout(None)

    def ask(self, message: object, timeout: float = 5.0) -> Reply:
        self.send(message)
        reply = self.receive(timeout)
        if not isinstance(reply, Reply):
            raise ValueError(f"a {type(reply).__name__} where a reply was due")
        return reply

    def close(self) -> None:
        self.sock.close()


def _handled(handler: Callable[[Any], Reply], request: object) -> Reply:
    """The handler's reply; whatever it raises is logged and answered, never the end of the
    director that serves it."""
    try:
        return handler(request)
    except Exception as exc:  # noqa: BLE001 - one request fails, the director goes on
        log.exception("control request %s failed", type(request).__name__)
        return Reply(255, "", f"pylvs: the director could not answer: {exc!r}\n")


def encode_request(request: Request) -> bytes:
    if isinstance(request, AdmLine):
        body: dict[str, Any] = {"op": "adm", "argv": list(request.argv)}
        if request.names is not None:
            body["names"] = [dict(request.names[0]), dict(request.names[1])]
    elif isinstance(request, Sysctl):
        body = {"op": "sysctl", "name": request.name, "value": request.value}
    else:
        body = {"op": next(op for op, kind in _OPS.items() if isinstance(request, kind))}
    return json.dumps(body).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    body = json.loads(line)
    if not isinstance(body, dict):
        raise ValueError("a request is a JSON object")
    op = body.get("op", "adm")
    if op == "adm":
        return AdmLine(_strings(body["argv"], "argv"), _names(body.get("names")))
    if op == "sysctl":
        return _sysctl(body)
    if op not in _OPS:
        raise ValueError(f"unknown op {op!r}")
    return _OPS[op]()


def _sysctl(body: dict[str, Any]) -> Sysctl:
    name, value = body.get("name", ""), body.get("value")
    if not isinstance(name, str) or not (value is None or type(value) is int):
        raise ValueError("sysctl takes a name (string) and a value (integer or null)")
    return Sysctl(name, value)


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return value


def _names(value: object) -> tuple[dict[str, str], dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(m, dict) and all(isinstance(x, str) for kv in m.items() for x in kv)
            for m in value):
        raise ValueError("names must be [hosts, services], each a map of strings")
    return value[0], value[1]


def encode_reply(reply: Reply) -> bytes:
    body: dict[str, Any] = {"rc": reply.rc, "stdout": reply.stdout, "stderr": reply.stderr}
    if reply.data is not None:
        body["data"] = reply.data
    return json.dumps(body).encode() + b"\n"


def decode_reply(line: bytes) -> Reply:
    body = json.loads(line)
    return Reply(body["rc"], body["stdout"], body["stderr"], body.get("data"))


def _read_line(sock: socket.socket, limit: int | None = None) -> bytes:
    chunks = b""
    while not chunks.endswith(b"\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks += chunk
        if limit is not None and len(chunks) > limit:
            raise ValueError("request too large")
    return chunks


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise ConnectionError("the other end closed the channel")
        chunks += chunk
    return bytes(chunks)


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


def ask(path: str, request: Request, timeout: float = 5.0) -> Reply:
    """One request to the director on ``path``, and its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DirectorNotRunning(
                f"no pylvs director is running on the control socket {path} ({exc.strerror}); "
                "start one with `pylvs run CONFIG`, or pass --socket PATH") from None
        sock.sendall(encode_request(request))
        return decode_reply(_read_line(sock))
    finally:
        sock.close()


def request(path: str, argv: list[str], timeout: float = 5.0) -> tuple[int, str, str]:
    """An ipvsadm command line: (exit status, stdout, stderr)."""
    reply = ask(path, AdmLine(list(argv)), timeout)
    return reply.rc, reply.stdout, reply.stderr


def endpoints(path: str, timeout: float = 5.0) -> tuple[list[str], list[str]]:
    """The addresses and "port/protocol"s the director's listing would name."""
    reply = ask(path, Endpoints(), timeout)
    if reply.rc != 0:
        raise ValueError(reply.stderr.strip() or f"endpoints refused ({reply.rc})")
    return _strings(reply.data["addresses"], "addresses"), _strings(reply.data["ports"], "ports")

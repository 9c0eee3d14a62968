"""The lab's real server: Python's http.server answering with its own name.

``GET /`` answers ``NAME\\n``; ``GET /blob/<n>`` answers n bytes of ``blob(n)``, content anyone can
recompute to check a download end to end; ``POST /sha256`` answers the SHA-256 of what it was
sent, to check an upload. Run as ``python3 -m pylvs.lab.httpserver --name rs1``.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BLOB = 1 << 30
_BLOCK = hashlib.sha256(b"pylvs blob").digest() * 2048  # 64 KiB, repeated
CHUNK = len(_BLOCK)


def blob(n: int) -> bytes:
    """n bytes of the repeating 64 KiB block: blob(n)[:k] == blob(k)."""
    whole, rest = divmod(n, CHUNK)
    return _BLOCK * whole + _BLOCK[:rest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pylvs-httpserver"
    server: NamedServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/":
            self._reply(200, (self.server.name + "\n").encode())
        elif self.path.startswith("/blob/"):
            self._blob(self.path[len("/blob/"):])
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = self.headers.get("Content-Length", "")
        if self.path != "/sha256" or not length.isdigit() or int(length) > MAX_BLOB:
            self._reply(400, b"POST /sha256 with a Content-Length\n")
            return
        digest = hashlib.sha256()
        left = int(length)
        while left:
            chunk = self.rfile.read(min(left, CHUNK))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        self._reply(200, (digest.hexdigest() + "\n").encode())

    def _blob(self, text: str) -> None:
        if not text.isdigit() or int(text) > MAX_BLOB:
            self._reply(400, f"bad size (0..{MAX_BLOB} bytes)\n".encode())
            return
        size = int(text)
        self._head(200, size, "application/octet-stream")
        whole, rest = divmod(size, CHUNK)
        for _ in range(whole):
            self.wfile.write(_BLOCK)
        self.wfile.write(_BLOCK[:rest])

    def _reply(self, status: int, body: bytes) -> None:
        self._head(status, len(body), "text/plain")
        self.wfile.write(body)

    def _head(self, status: int, length: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class NamedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, address: tuple[str, int]) -> None:
        self.name = name
        if ":" in address[0]:  # '::' or an IPv6 address: an IPv6 socket
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        """'::' takes IPv4 too (as mapped addresses), whatever net.ipv6.bindv6only says."""
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_server(name: str, port: int, bind: str = "0.0.0.0") -> NamedServer:
    """``bind`` 0.0.0.0 (IPv4), '::' (IPv6 and IPv4) or one address."""
    return NamedServer(name, (bind, port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m pylvs.lab.httpserver")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--bind", default="0.0.0.0",
                        help="the address to listen on ('::': IPv6 and IPv4)")
    args = parser.parse_args(argv)
    server = make_server(args.name, args.port, args.bind)
    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(f"serving {args.name} on {where}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

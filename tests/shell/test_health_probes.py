"""pylvs.shell.health_probes against real servers on loopback, and the checker thread: a server
that hangs costs its own check a timeout, never the caller."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from pylvs.core.model import RealServer
from pylvs.ha.health import CheckSpec, ServerHealth, ServiceHealth
from pylvs.shell.health_probes import Checker, probe


class Server:
    """A loopback TCP server that answers each connection with ``reply`` (None: says nothing,
    keeps it open) and then closes."""

    def __init__(self, reply: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(conn)
                continue
            conn.recv(1024)
            conn.sendall(self.reply)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def server(request):
    made = Server(request.param)
    yield made
    made.close()


def run(spec: CheckSpec, port: int) -> tuple[bool, str]:
    """A probe's verdict and text (``timed`` has its latency too)."""
    return timed(spec, port)[:2]


def timed(spec: CheckSpec, port: int) -> tuple[bool, str, float | None]:
    return asyncio.run(probe(spec, "127.0.0.1", port))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("server", [b"HTTP/1.0 200 OK\r\n\r\nrs1"], indirect=True)
def test_tcp_and_http_against_a_live_server(server):
    assert run(CheckSpec("tcp", timeout=2), server.port)[0]
    ok, detail = run(CheckSpec("http", timeout=2), server.port)
    assert ok and detail.startswith("HTTP 200 in")
    ok, detail = run(CheckSpec("http", timeout=2, status=(204,)), server.port)
    assert not ok and detail.endswith("(not accepted)")


@pytest.mark.parametrize("server", [b"HTTP/1.0 503 Busy\r\n\r\n"], indirect=True)
def test_tcp_and_http_time_their_answer_as_a_number_the_text_shows(server):
    for kind in ("tcp", "http"):
        ok, detail, took = timed(CheckSpec(kind, timeout=2), server.port)
        assert took is not None and 0 < took < 2, (kind, took)
        assert detail.split(" in ")[1].startswith(f"{took * 1000:.1f} ms"), (kind, detail)
    assert not ok and detail.endswith("(not accepted)")  # an answer refused is timed too
    assert timed(CheckSpec("tcp", timeout=2), closed_port())[2] is None
    assert timed(CheckSpec("misc", command="exit 0", timeout=2), 0)[2] is None


def test_a_closed_port_is_refused():
    assert run(CheckSpec("tcp", timeout=2), closed_port()) == (False, "Connection refused")


@pytest.mark.parametrize("server", [None], indirect=True)
def test_a_server_that_never_answers_costs_the_timeout(server):
    assert run(CheckSpec("http", timeout=0.3), server.port) == (False, "no answer in 0.3 s")


@pytest.mark.parametrize("server", [b"SSH-2.0-OpenSSH\r\n", b""], indirect=True)
def test_what_is_not_an_http_status_line_fails(server):
    ok, detail = run(CheckSpec("http", timeout=2), server.port)
    assert not ok and detail.startswith("not an HTTP status line")


def test_misc_exit_status_and_a_command_killed_at_its_timeout(tmp_path):
    assert run(CheckSpec("misc", command="exit 0", timeout=2), 0) == (True, "exit status 0")
    assert run(CheckSpec("misc", command="exit 3", timeout=2), 0) == (False, "exit status 3")
    marker = tmp_path / "pid"
    ok, detail = run(CheckSpec("misc", command=f"sleep 30 & echo $! > {marker}; wait",
                               timeout=0.5), 0)
    assert (ok, detail) == (False, "no answer in 0.5 s")
    pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the command's own child outlived the timeout"


def test_the_checker_thread_reports_transitions_and_runs_notify(tmp_path):
    up, down = tmp_path / "up", tmp_path / "down"
    port = closed_port()
    health = ServerHealth(RealServer("127.0.0.1", port),
                          CheckSpec("tcp", interval=0.1, timeout=0.5, retry=1,
                                    delay_before_retry=0.05),
                          notify_up=f"touch {up}", notify_down=f"touch {down}")
    checker = Checker([ServiceHealth((6, 1, port), "TCP test", [health])])
    checker.start()
    try:
        changed = wait_for(checker)
        assert changed == [health] and not health.alive and health.latency is None
        live = socket.create_server(("127.0.0.1", port))
        try:
            assert wait_for(checker) == [health] and health.alive
            assert health.latency is not None and 0 < health.latency < 0.5
        finally:
            live.close()
        deadline = time.monotonic() + 5
        while not (up.exists() and down.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.exists() and down.exists()
    finally:
        checker.stop()


def wait_for(checker: Checker) -> list[ServerHealth]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        changed = checker.changed()
        if changed:
            return changed
        time.sleep(0.02)
    return []


@pytest.mark.parametrize("server", [b"HTTP/1.0 200 OK\r\n\r\n"], indirect=True)
def test_a_stopped_checker_ends_its_thread_and_its_probes(server):
    """A cancel that a failing connect swallows (asyncio.wait_for on 3.11) must not keep a
    stopped checker probing: found by bench/soak.py, where a reload then froze for 5 s."""
    refused = closed_port()
    for _ in range(60):
        servers = [ServerHealth(RealServer("127.0.0.1", port), CheckSpec(
            "tcp", interval=0.001, timeout=0.5, retry=0, delay_before_retry=0.001))
            for port in (server.port, refused)]
        checker = Checker([ServiceHealth((6, 1, 80), "TCP test", servers)])
        checker.start()
        time.sleep(0.01)
        checker.stop()
        assert checker._thread is not None and not checker._thread.is_alive()
        checks = [s.checks for s in servers]
        time.sleep(0.01)
        assert [s.checks for s in servers] == checks


@pytest.fixture
def tls_server(tmp_path):
    """Python's http.server over TLS with a self-signed certificate (openssl made it), on
    loopback: what an SSL_GET checks."""
    import ssl
    import subprocess
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=rs1.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/ok" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.skipif(not __import__("shutil").which("openssl"), reason="needs openssl")
def test_https_speaks_tls_to_a_self_signed_server_and_reads_its_status(tls_server):
    """keepalived's SSL_GET: the certificate is not verified (check_ssl.c sets no verify
    mode), the status is."""
    ok, detail, took = timed(CheckSpec("https", timeout=5, path="/ok"), tls_server)
    assert ok and detail.startswith("HTTP 200 in ") and took is not None
    ok, detail = run(CheckSpec("https", timeout=5, path="/missing"), tls_server)
    assert not ok and "HTTP 404" in detail
    ok, detail = run(CheckSpec("http", timeout=5, path="/ok"), tls_server)
    assert not ok  # plain HTTP to a TLS port: no status line


@pytest.mark.parametrize("server", [b"HTTP/1.0 200 OK\r\n\r\n"], indirect=True)
def test_https_to_a_plain_http_server_fails_with_a_tls_reason(server):
    ok, detail = run(CheckSpec("https", timeout=2), server.port)
    assert not ok and detail.startswith("TLS: "), detail


def test_http_to_an_ipv6_server_names_its_host_in_brackets():
    """keepalived's check_http.c writes an IPv6 Host as [addr] (RFC 7230's IP-literal)."""
    try:
        sock = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = sock.accept()
        seen.append(conn.recv(1024))
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    ok, _, _ = asyncio.run(probe(CheckSpec("http", timeout=2), "::1", sock.getsockname()[1]))
    sock.close()
    assert ok
    assert b"\r\nHost: [::1]\r\n" in seen[0]

"""The lab's real HTTP server, on loopback."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import subprocess
import sys
import threading

import pytest

from pylvs.lab.httpserver import CHUNK, blob, make_server


@pytest.fixture
def server():
    srv = make_server("rs7", 0, "127.0.0.1")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_root_answers_the_server_name(server):
    assert get(server, "/") == (200, b"rs7\n")


def test_blob_is_the_advertised_content(server):
    size = 5 * 1024 * 1024 + 3
    status, body = get(server, f"/blob/{size}")
    assert status == 200 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob(size)).digest()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_blob_prefixes_agree(size):
    assert len(blob(size)) == size
    assert blob(3 * CHUNK + 100)[:size] == blob(size)


def test_bad_requests(server):
    assert get(server, "/nothing")[0] == 404
    assert get(server, "/blob/12x")[0] == 400
    assert get(server, f"/blob/{2 ** 31}")[0] == 400


def test_module_serves_and_exits_cleanly_on_sigterm():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "pylvs.lab.httpserver", "--name", "solo",
                             "--port", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(f"serving solo on 127.0.0.1:{port}")
        assert get(port, "/") == (200, b"solo\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.stdout.close()


def test_post_answers_the_sha256_of_the_body(server):
    body = blob(300_000)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        conn.request("POST", "/sha256", body=body)
        response = conn.getresponse()
        assert (response.status, response.read()) == (
            200, (hashlib.sha256(body).hexdigest() + "\n").encode())
    finally:
        conn.close()

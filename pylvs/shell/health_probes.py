"""Runs the health checks: a thread of its own with an asyncio loop, so a server that hangs,
resets or swallows packets delays only its own check and never the data plane.

Probes, as keepalived's checkers: TCP_CHECK connects; HTTP_GET sends ``GET path HTTP/1.0`` and
reads the status line; SSL_GET (https) does the same over TLS, without verifying the server's
certificate (keepalived's check_ssl.c sets no verify mode); MISC_CHECK runs a command through the
shell (exit 0: alive), killed at its timeout. Each result goes through pylvs.ha.health; a
server that changed is queued for the director's loop (``changed()``), and its
notify_up/notify_down command is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import ssl
import threading
import time
from collections.abc import Iterable

from pylvs.ha.health import CheckSpec, ServerHealth, ServiceHealth, endpoint

log = logging.getLogger("pylvs")

MAX_STATUS_LINE = 1024


Probed = tuple[bool, str, float | None]
"""(alive, what was seen, seconds until the answer when one was timed)."""


async def probe(spec: CheckSpec, address: str, port: int) -> Probed:
    """One check. tcp times its connect, http the status line; misc and failures time
    nothing."""
    start = time.monotonic()
    try:
        if spec.kind == "misc":
            return (*await asyncio.wait_for(_misc(spec.command), spec.timeout), None)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            address, spec.port or port, ssl=_TLS if spec.kind == "https" else None),
            spec.timeout)
        try:
            if spec.kind == "tcp":
                took = time.monotonic() - start
                return True, f"connected in {_ms(took)}", took
            host = f"[{address}]" if ":" in address else address  # check_http.c's Host
            request = f"GET {spec.path} HTTP/1.0\r\nHost: {host}\r\n\r\n"
            writer.write(request.encode())
            line = await asyncio.wait_for(reader.readline(), spec.timeout)
            took = time.monotonic() - start
        finally:
            writer.close()
    except TimeoutError:
        return False, f"no answer in {spec.timeout:g} s", None
    except ssl.SSLError as exc:
        return False, f"TLS: {exc.reason or exc}", None
    except OSError as exc:
        return False, os.strerror(exc.errno) if exc.errno else str(exc), None
    except ValueError:  # a status line longer than the stream's limit
        return False, "not an HTTP status line (too long)", None
    parts = line[:MAX_STATUS_LINE].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, f"not an HTTP status line: {line[:60]!r}", None
    code = int(parts[1])
    verdict = spec.status_ok(code)
    return (verdict, f"HTTP {code} in {_ms(took)}" + ("" if verdict else " (not accepted)"),
            took)


async def _misc(command: str) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_shell(command, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL,
                                                 start_new_session=True)
    try:
        code = await proc.wait()
    except asyncio.CancelledError:  # the timeout: the command and what it started go too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return code == 0, f"exit status {code}"


def _unverified() -> ssl.SSLContext:
    """keepalived's SSL_GET: encrypted, the peer's certificate not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _unverified()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class Checker:
    def __init__(self, services: Iterable[ServiceHealth]) -> None:
        self.services = list(services)
        self.events: queue.SimpleQueue[ServerHealth] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pylvs-checks", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        now = time.monotonic()
        servers = [server for service in self.services for server in service.servers]
        for server in servers:
            server.begin(now)
        tasks = [asyncio.create_task(self._watch(server)) for server in servers]
        self._ready.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, server: ServerHealth) -> None:
        address, port = server.key
        while not self._stop.is_set():  # a cancel can be lost in a probe (wait_for, 3.11)
            await asyncio.sleep(max(0.0, server.due - time.monotonic()))
            ok, detail, took = await probe(server.spec, address, port)
            if server.result(ok, detail, time.monotonic(), took):
                log.info("health: %s is %s (%s)", endpoint(address, port),
                         "up" if server.alive else "down", detail)
                self.events.put(server)
                command = server.notify_up if server.alive else server.notify_down
                if command:
                    asyncio.create_task(self._notify(command))

    @staticmethod
    async def _notify(command: str) -> None:
        try:
            proc = await asyncio.create_subprocess_shell(command, start_new_session=True)
            await proc.wait()
        except OSError as exc:
            log.error("health: notify command %r failed: %s", command, exc)

    def changed(self) -> list[ServerHealth]:
        """The servers that went up or down since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

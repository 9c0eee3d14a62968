"""What VRRP tracks, read from the host: vrrp_scripts run, interfaces' links read, and the
notify commands started. No decisions: the outcomes go to pylvs.ha.vrrp_group.

The scripts and the notify commands run in a thread of their own with an asyncio loop (as the
health checks do, pylvs.shell.health_probes), so a script that hangs costs its own timeout and
never a frame's time: each script runs at once and then every ``interval``, with /bin/sh, and
one that outlives its timeout is killed (it and what it started) and counts as failed, as
keepalived's. Links are read where the director's loop runs, with the SIOCGIFFLAGS ioctl on a
socket: one system call per tracked interface per poll, no thread and no netlink subscription
to keep in step, and it answers for the director's own network namespace whatever /sys shows;
up is IFF_UP and IFF_RUNNING, keepalived's test, and a missing interface is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterable

from pylvs.ha.vrrp_notify import Notify
from pylvs.ha.vrrp_track import ScriptSpec

log = logging.getLogger("pylvs")

SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_RUNNING = 0x1, 0x40


def link_up(sock: socket.socket, ifname: str) -> bool:
    try:
        request = struct.pack("16sH14x", ifname.encode()[:15], 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
    except OSError:
        return False
    return flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING


class Links:
    """The tracked interfaces' states, and which changed since the last read."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.state = {name: link_up(self.sock, name) for name in self.names}

    def changed(self) -> dict[str, bool]:
        now = {name: link_up(self.sock, name) for name in self.names}
        found = {name: up for name, up in now.items() if self.state[name] != up}
        self.state = now
        return found

    def close(self) -> None:
        self.sock.close()


async def run_script(spec: ScriptSpec) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", spec.script, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    try:
        return await asyncio.wait_for(proc.wait(), spec.time_limit) == 0
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        log.info("vrrp: script %s timed out after %.1f s", spec.name, spec.time_limit)
        return False


class Scripts:
    """The thread that runs the vrrp_scripts and starts the notify commands; ``outcomes()``
    hands the scripts' exits to the loop, never blocking it."""

    def __init__(self, scripts: Iterable[ScriptSpec]) -> None:
        self.scripts = list(scripts)
        self.outcomes_queue: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._children: set[asyncio.Task] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),),
                                        name="pylvs-vrrp-scripts", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        tasks = [asyncio.create_task(self._watch(script)) for script in self.scripts]
        self._ready.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._children:  # notify_stop and the like: given a second, as keepalived's
            await asyncio.wait(self._children, timeout=1)

    async def _watch(self, script: ScriptSpec) -> None:
        while True:
            due = time.monotonic() + script.interval
            try:
                ok = await run_script(script)
            except OSError as exc:
                log.error("vrrp: script %s cannot run: %s", script.name, exc)
                ok = False
            self.outcomes_queue.put((script.name, ok))
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def outcomes(self) -> list[tuple[str, bool]]:
        out = []
        while True:
            try:
                out.append(self.outcomes_queue.get_nowait())
            except queue.Empty:
                return out

    def notify(self, command: Notify) -> None:
        """Start the command; nobody waits for it (its exit is only reaped)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_child, command)

    def _start_child(self, command: Notify) -> None:
        task = asyncio.ensure_future(self._child(command))
        self._children.add(task)
        task.add_done_callback(self._children.discard)

    @staticmethod
    async def _child(command: Notify) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(*command.argv, start_new_session=True,
                                                        stdin=asyncio.subprocess.DEVNULL)
            await proc.wait()
        except OSError as exc:
            log.error("vrrp: notify %r failed: %s", command.argv, exc)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

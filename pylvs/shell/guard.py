"""What the director holds on the host ends with its process, even on ``kill -9``.

A small guard process, forked before anything is installed, reads the director's holdings (its
VIPs, nftables tables, control socket, XDP programs and the BIRD it started) from a pipe, one
JSON line per change. When the pipe closes, whatever closed it (a clean stop, a crash, SIGKILL),
the guard removes what is still listed and exits; a clean stop lists nothing first. So a killed
director's host neither answers ARP for a VIP that another director has taken over nor keeps
dropping the services' frames, nor keeps announcing them over BGP.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time

log = logging.getLogger("pylvs")


class Guard:
    def __init__(self) -> None:
        read, self.fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the guard: never returns into the director's stack
            status = 1
            try:
                os.close(self.fd)
                status = _watch(read)
            finally:
                os._exit(status)
        os.close(read)

    def hold(self, vips: list[tuple[str, str]], tables: list[str],
             files: list[str] | None = None, xdp: list[str] | None = None,
             processes: list[int] | None = None) -> None:
        """What the host holds now: (interface, VIP) pairs, netdev table names, files (and
        emptied folders), the interfaces with the director's XDP program, and processes it
        started (ended first, with SIGTERM)."""
        held = {"vips": vips, "tables": tables, "files": files or [], "xdp": xdp or [],
                "processes": processes or []}
        os.write(self.fd, json.dumps(held).encode() + b"\n")

    def close_in_child(self) -> None:
        """In a process forked from the director: the guard watches the director alone."""
        os.close(self.fd)

    def close(self) -> None:
        """After a clean stop: nothing left to remove; the guard exits."""
        self.hold([], [])
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _watch(fd: int) -> int:
    # the director's Ctrl-C or a group-wide SIGTERM must not take the guard before its work
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    held: dict = {"vips": [], "tables": [], "files": [], "xdp": [], "processes": []}
    pending = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                held = json.loads(lines[-1])
    return _release(held)


def _release(held: dict) -> int:
    from pylvs.shell import addresses, nftables, xdp
    failed = 0
    _end(held.get("processes", []))
    for ifname in held.get("xdp", []):
        try:
            xdp.detach(ifname)
        except Exception as exc:  # noqa: BLE001 - the interface may be gone with its namespace
            failed += 1
            log.error("guard: could not take the XDP program off %s: %s", ifname, exc)
    for ifname, vip in held["vips"]:
        try:
            addresses.remove_vip(ifname, vip)
        except Exception as exc:  # noqa: BLE001 - the interface may be gone with its namespace
            failed += 1
            log.error("guard: could not remove VIP %s from %s: %s", vip, ifname, exc)
    for table in held["tables"]:
        try:
            nftables.remove_table(table)
        except Exception as exc:  # noqa: BLE001
            failed += 1
            log.error("guard: could not remove nftables table %s: %s", table, exc)
    for path in held["files"]:
        try:
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed += 1
            log.error("guard: could not remove %s: %s", path, exc)
    if any(held.get(kind) for kind in ("vips", "tables", "files", "xdp", "processes")):
        log.warning("guard: the director ended without cleaning up; removed %s", ", ".join(
            [v for _, v in held["vips"]] + held["tables"] + held["files"]
            + [f"XDP on {name}" for name in held.get("xdp", [])]
            + [f"process {pid}" for pid in held.get("processes", [])]))
    return 1 if failed else 0


def _end(pids: list[int], timeout: float = 3.0) -> None:
    """SIGTERM, and a wait for them to go (they are not the guard's children: no wait())."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)

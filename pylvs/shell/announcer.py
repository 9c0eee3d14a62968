"""BGP on the host: the BIRD 2 the director starts (or a running one), told which VIPs to announce.

pylvs.ha.bgp decides what to announce and pylvs.ha.bird writes it in BIRD's words; this module
writes the files, starts BIRD in the foreground as the director's child, and speaks its control
socket (birdc's protocol) to reconfigure it when the announced set changes. Each family has
its routes file (``vips.conf`` for the IPv4 static protocol, ``vips6.conf`` for the IPv6 one);
one ``configure`` takes both. BIRD is listed to the guard, so a director killed with -9 takes
its BIRD along: the BGP sessions close and the router withdraws the routes at once.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from pylvs.ha import bird
from pylvs.ha.bgp import Bgp, by_family, family, prefix
from pylvs.shell import addresses

log = logging.getLogger("pylvs")

START_TIMEOUT = 5.0
ASK_TIMEOUT = 2.0


class AnnounceError(RuntimeError):
    pass


class Announcer:
    def __init__(self, spec: Bgp, interface: str, run_dir: str,
                 exclude: list[str] | None = None) -> None:
        self.spec = spec
        self.announced: list[str] | None = None
        """What BIRD was last told to announce; None before the first word."""
        self.process: subprocess.Popen[bytes] | None = None
        self.run_dir = Path(run_dir)
        self.files: list[str] = []
        """What this director made on the host (the guard removes them after kill -9)."""
        self.routes_paths: dict[int, Path] = {}
        """Each family's routes file, for the families BIRD is told of."""
        if spec.bird_socket:
            self.socket_path = spec.bird_socket
            self.routes_paths = {of: Path(spec.include(of)) for of in (4, 6)
                                 if spec.include(of)}
            self._write_routes([])
            return
        self.socket_path = str(self.run_dir / "bird.ctl")
        self.routes_paths = {of: self.run_dir / name
                             for of, name in ((4, "vips.conf"), (6, "vips6.conf"))
                             if of in spec.families}
        self.conf = self.run_dir / "bird.conf"
        router_id = spec.router_id or _router_id(interface, exclude or [])
        self.run_dir.mkdir(mode=0o700)
        self.log_path = self.run_dir / "bird.log"
        self.files = [*(str(path) for path in self.routes_paths.values()), str(self.conf),
                      self.socket_path, str(self.log_path), str(self.run_dir)]
        try:
            self.conf.write_text(bird.config(
                spec, router_id, str(self.routes_paths.get(4, "")),
                str(self.routes_paths.get(6, ""))))
            self._write_routes([])
            self._start()
        except BaseException:
            self.close()
            raise

    def restart(self) -> None:
        """A BIRD of pylvs's own that exited, started again on the same files."""
        self.announced = None
        self._start()

    def exit_status(self) -> str:
        if self.process is None or self.process.returncode is None:
            return "running"
        return f"exit status {self.process.returncode}"

    def _start(self) -> None:
        argv = [self.spec.bird, "-f", "-c", str(self.conf), "-s", self.socket_path]
        try:
            with open(self.log_path, "ab") as log_file:  # BIRD's own words, for its errors
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                stdout=log_file, stderr=log_file,
                                                start_new_session=True)
        except OSError as exc:
            raise AnnounceError(f"bgp: cannot start {self.spec.bird}: {exc.strerror}") from None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise AnnounceError(f"bgp: {self.spec.bird} exited ({self.process.returncode})"
                                    f": {' / '.join(said)}")
            try:
                self.ask("show status")
                return
            except OSError:
                time.sleep(0.05)
        raise AnnounceError(f"bgp: {self.spec.bird} did not open {self.socket_path} in "
                            f"{START_TIMEOUT:.0f} s")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def update(self, vips: list[str]) -> None:
        """Announce exactly ``vips`` (both families: each goes to its own file); BIRD is told
        only when the set changes."""
        if vips == self.announced:
            return
        if unplaced := [vip for vip in vips if family(vip) not in self.routes_paths]:
            raise AnnounceError(f"bgp: nothing carries {', '.join(unplaced)}: no session (or "
                                f"routes file) of its family")
        self._write_routes(vips)
        reply = self.ask("configure")
        if not reply.ok:
            raise AnnounceError(f"bgp: BIRD refused the new routes: {reply.text}")
        before, self.announced = set(self.announced or []), vips
        for vip in vips:
            if vip not in before:
                log.info("bgp: announcing %s", prefix(vip))
        for vip in sorted(before - set(vips)):
            log.info("bgp: withdrew %s", prefix(vip))

    def _write_routes(self, vips: list[str]) -> None:
        """Each family's file, whole (written aside and renamed: BIRD never reads half)."""
        split = by_family(vips)
        for of, path in self.routes_paths.items():
            part = path.with_name(path.name + ".new")
            part.write_text(bird.routes(split[of]))
            os.replace(part, path)

    def ask(self, command: str) -> bird.Reply:
        """One command over the control socket, as birdc sends it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(ASK_TIMEOUT)
            sock.connect(self.socket_path)
            reader = sock.makefile("r", encoding="utf-8", errors="replace")
            _read_reply(reader)  # the greeting: "0001 BIRD 2.0.12 ready."
            sock.sendall(command.encode() + b"\n")
            return _read_reply(reader)

    def sessions(self) -> list[bird.Session]:
        return bird.sessions(self.ask("show protocols"))

    def alive(self) -> bool:
        """A running BIRD's is not ours to watch; ours is alive until it exits."""
        return self.process is None or self.process.poll() is None

    def close(self) -> None:
        """Stop announcing: a BIRD of pylvs's own ends (closing its sessions, so the router
        withdraws at once); a running one is told to announce nothing."""
        if self.spec.bird_socket:
            try:
                self.update([])
            except (OSError, AnnounceError) as exc:
                log.error("bgp: could not withdraw from the running BIRD: %s", exc)
            return
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.files:
            try:
                os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
            except FileNotFoundError:
                pass


def _read_reply(reader: object) -> bird.Reply:
    lines: list[tuple[int, str]] = []
    code = 0
    while True:
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            raise OSError("BIRD closed its control socket mid-reply")
        code, text, last = bird.reply_line(line.rstrip("\n"), code)
        lines.append((code, text))
        if last:
            return bird.Reply(lines)


def _router_id(interface: str, exclude: list[str]) -> str:
    own = [a for a in addresses.interface_addresses(interface) if a not in exclude]
    if not own:
        raise AnnounceError(f"bgp: {interface} has no IPv4 address to be the router id; "
                            f"set [bgp] router_id (a 32-bit number written as an IPv4 "
                            f"address, on an IPv6-only director too)")
    return own[0]

"""`pylvs adm` and the other requests of the command line, as a client of the running director.

`pylvs adm` checks its argv as ipvsadm does, then sends it to the director's control socket; for
a listing without -n it first asks the director what the listing would name, and looks the names
up here (pylvs.shell.names), so the director's loop never waits on DNS.

Which control socket (``choose``): --socket, else $PYLVS_SOCKET, as given; else the default one
(/run/pylvs.sock) when a director listens there; else the one director that answers a status
request on a ``pylvs*.sock`` of the run directory (/run, or $PYLVS_RUN_DIR): a kept lab's
/run/pylvs-XXXXXX.sock, whichever network namespace its director runs in (a unix socket is a
file). Stale sockets, with no listener, are passed over; when several directors answer, the
error lists each with the command line that names it.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import socket
import stat
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pylvs.adm import config as config_mod
from pylvs.adm import ipvsadm
from pylvs.shell.messages import AdmLine, Request, Status

ENV_SOCKET = "PYLVS_SOCKET"
ENV_RUN_DIR = "PYLVS_RUN_DIR"
"""Where to look for running directors' control sockets (tests point it at their own)."""
RUN_DIR, SOCKET_NAME = os.path.split(config_mod.DEFAULT_CONTROL_SOCKET)
PROBE_TIMEOUT = 2.0


# --- which director: the control socket to talk to ----------------------------------------------

@dataclass(frozen=True)
class Running:
    """A director that answered on a control socket of the run directory."""
    path: str
    label: str = ""
    """What else is known of it: "kept lab pylvs-ab12cd (dr)"."""


class SeveralDirectors(Exception):
    """No director on the default socket, and more than one elsewhere: the user must say."""

    def __init__(self, default: str, running: list[Running]) -> None:
        super().__init__(f"{len(running)} directors run")
        self.default, self.running = default, running

    def message(self, words: list[str], command: str) -> str:
        lines = [f"pylvs {command}: no director is running on the default control socket "
                 f"{self.default}, and {len(self.running)} run on others: name one with "
                 f"--socket (or {ENV_SOCKET}=PATH):"]
        for found in self.running:
            line = "    " + suggestion(words, command, found.path)
            lines.append(f"{line}    # {found.label}" if found.label else line)
        return "\n".join(lines)


def suggestion(words: list[str], command: str, path: str) -> str:
    """The command line ``words`` (pylvs's argv) with --socket PATH after the subcommand."""
    at = words.index(command) + 1 if command in words else 0
    return shlex.join(["pylvs", *words[:at], "--socket", path, *words[at:]])


def run_dir() -> str:
    return os.environ.get(ENV_RUN_DIR) or RUN_DIR


def choose(explicit: str | None = None, directory: str | None = None) -> tuple[str, Running | None]:
    """The control socket, and the Running found when it took a search to find it; with
    neither a socket named nor a director anywhere, the default one (whose error says so).
    Raises SeveralDirectors."""
    named = explicit or os.environ.get(ENV_SOCKET)
    if named:
        return named, None
    directory = directory or run_dir()
    default = os.path.join(directory, SOCKET_NAME)
    if listening(default):
        return default, None
    running = running_directors(directory, skip=default)
    if len(running) > 1:
        raise SeveralDirectors(default, running)
    return (running[0].path, running[0]) if running else (default, None)


def socket_for(explicit: str | None, words: list[str], command: str, note: bool = True
               ) -> str | None:
    """``choose``'s socket; None when several directors run (said on standard error). A
    director found by searching is named on standard error when that is a terminal (``note``);
    standard output stays ipvsadm's."""
    try:
        path, found = choose(explicit)
    except SeveralDirectors as several:
        print(several.message(words, command), file=sys.stderr)
        return None
    if found is not None and note and sys.stderr.isatty():
        what = f" ({found.label})" if found.label else ""
        print(f"pylvs {command}: the director on {path}{what}, the only one running",
              file=sys.stderr)
    return path


def listening(path: str) -> bool:
    """Something accepts connections on ``path`` (the default socket: as `pylvs adm` always
    took it, without asking it anything)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def running_directors(directory: str, skip: str = "") -> list[Running]:
    """The control sockets ``pylvs*.sock`` in ``directory`` a director answers on, by name."""
    paths = [p for p in sorted(glob.glob(os.path.join(glob.escape(directory), "pylvs*.sock")))
             if p != skip and _is_socket(p)]
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(paths))) as pool:
        live = list(pool.map(answers, paths))
    labels = kept_labs(directory)
    return [Running(p, labels.get(os.path.realpath(p), ""))
            for p, ok in zip(paths, live, strict=True) if ok]


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def answers(path: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """A pylvs director answers a status request on ``path``."""
    from pylvs.shell import control
    try:
        return control.ask(path, Status(), timeout).rc == 0
    except (OSError, ValueError, KeyError, TypeError):
        return False


def kept_labs(directory: str) -> dict[str, str]:
    """Control socket (real path) → "kept lab PREFIX (MODE)", from the records `pylvs lab
    --keep` writes beside them (pylvs.lab.kept)."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(directory), "pylvs-*-lab.json")):
        try:
            with open(path) as fh:
                record = json.load(fh)
            found[os.path.realpath(record["control_socket"])] = (
                f"kept lab {record['prefix']} ({record['mode']})")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


# --- the requests -------------------------------------------------------------------------------

def split_socket(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """(--socket's PATH or None, the rest); None when --socket has no PATH."""
    if argv[:1] == ["--socket"]:
        if len(argv) < 2:
            return None
        return argv[1], argv[2:]
    return None, argv


def adm(argv: list[str]) -> int:
    found = split_socket(argv)
    if found is None:
        print("pylvs adm: --socket needs a PATH", file=sys.stderr)
        return ipvsadm.EXIT_USAGE
    explicit, argv = found
    try:
        command = ipvsadm.parse(argv)
    except ipvsadm.UsageError as exc:
        print(exc, file=sys.stderr)
        return ipvsadm.EXIT_USAGE
    if command.name == "help":
        sys.stdout.write(ipvsadm.USAGE)
        return 0
    if command.name == "version":
        print(ipvsadm.VERSION_LINE)
        return 0
    socket_path = socket_for(explicit, ["adm", *argv], "adm")
    if socket_path is None:
        return ipvsadm.EXIT_DIRECTOR
    if command.name == "restore":
        return restore(socket_path, sys.stdin)
    return send(socket_path, AdmLine(argv), named=names_itself(command))


def names_itself(command: ipvsadm.Command) -> bool:
    """A listing of services or -S without -n: addresses and ports by name, as ipvsadm's."""
    options = command.options
    if "numeric" in options:
        return False
    return command.name == "save" or (
        command.name == "list" and not options & {"connection", "timeout", "daemon"})


def send(socket_path: str, request: Request, named: bool = False, as_json: bool = False
          ) -> int:
    from pylvs.shell import control
    try:
        if named and isinstance(request, AdmLine):
            request = replace(request, names=lookup(socket_path))
        reply = control.ask(socket_path, request)
    except control.DirectorNotRunning as exc:
        print(f"pylvs adm: {exc}", file=sys.stderr)
        return ipvsadm.EXIT_DIRECTOR
    except (OSError, ValueError) as exc:
        print(f"pylvs adm: cannot talk to the director on {socket_path}: {exc}", file=sys.stderr)
        return ipvsadm.EXIT_DIRECTOR
    if as_json:
        print(json.dumps(reply.data, indent=2, sort_keys=True))
        return reply.rc
    sys.stdout.write(reply.stdout)
    sys.stderr.write(reply.stderr)
    return reply.rc


def lookup(socket_path: str) -> tuple[dict[str, str], dict[str, str]]:
    from pylvs.shell import control, names
    addresses, ports = control.endpoints(socket_path)
    return names.lookup(addresses, ports)


def restore(socket_path: str, lines: Iterable[str]) -> int:
    """ipvsadm -R: one command per line (a leading `ipvsadm` is allowed); stops at an error."""
    from pylvs.adm.ruleset import command_lines
    for _, _, argv in command_lines(lines):
        try:
            ipvsadm.parse(argv)
        except ipvsadm.UsageError as exc:
            print(exc, file=sys.stderr)
            return ipvsadm.EXIT_USAGE
        rc = send(socket_path, AdmLine(argv))
        if rc != 0:
            return rc
    return 0

"""`pylvs adm` and the other requests of the command line, as a client of the running director.

`pylvs adm` checks its argv as ipvsadm does, then sends it to the director's control socket; for
a listing without -n it first asks the director what the listing would name, and looks the names
up here (pylvs.shell.names), so the director's loop never waits on DNS.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import replace

from pylvs.adm import config as config_mod
from pylvs.adm import ipvsadm
from pylvs.shell.messages import AdmLine, Request

ENV_SOCKET = "PYLVS_SOCKET"


def split_socket(argv: list[str]) -> tuple[str, list[str]] | None:
    socket_path = os.environ.get(ENV_SOCKET, config_mod.DEFAULT_CONTROL_SOCKET)
    if argv[:1] == ["--socket"]:
        if len(argv) < 2:
            return None
        socket_path, argv = argv[1], argv[2:]
    return socket_path, argv


def adm(argv: list[str]) -> int:
    found = split_socket(argv)
    if found is None:
        print("pylvs adm: --socket needs a PATH", file=sys.stderr)
        return ipvsadm.EXIT_USAGE
    socket_path, argv = found
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

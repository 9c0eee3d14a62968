"""`pylvs lab ... --keep` and `pylvs lab down`: a lab left running, and its removal.

A kept lab is written down in /run/<prefix>-lab.json: its namespaces, and each process it left
running as (pid, start time), so that `pylvs lab down` signals those processes and never a
later one that got the same pid. The director's config and log live in /run/<prefix>-lab/.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import time
from typing import Any

from pylvs.lab.topology import Lab

RUN_DIR = "/run"
STOP_TIMEOUT = 10.0


def record_path(prefix: str) -> str:
    return os.path.join(RUN_DIR, f"{prefix}-lab.json")


def make_directory(lab: Lab) -> str:
    path = os.path.join(RUN_DIR, f"{lab.prefix}-lab")
    os.makedirs(path, mode=0o700)
    return path


def servers_log(directory: str) -> Any:
    """The file the kept lab's servers write their errors to (it stays open in them)."""
    return open(os.path.join(directory, "servers.log"), "w")  # noqa: SIM115


def discard(lab: Lab, directory: str) -> None:
    """A lab meant to be kept that failed: its files go with it."""
    if lab.stderr is not None:
        lab.stderr.close()
        lab.stderr = None
    shutil.rmtree(directory, ignore_errors=True)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def keep(lab: Lab, director: Any) -> str:
    """Write the lab down, take it out of ``lab``'s hands (close() leaves it), return the
    instructions to print."""
    procs = [director.proc, *lab.processes]  # the director first: it goes first
    record = {"prefix": lab.prefix, "mode": lab.mode, "namespaces": list(lab.created),
              "processes": [[p.pid, start_time(p.pid)] for p in procs],
              "directory": director.directory, "control_socket": lab.control_socket}
    with open(record_path(lab.prefix), "w") as fh:
        json.dump(record, fh, indent=1)
    for proc in lab.processes:
        if proc.stdout is not None:
            proc.stdout.close()
    if lab.stderr is not None:
        lab.stderr.close()  # the servers hold their own copies
    lab.processes.clear()
    lab.created.clear()
    return instructions(lab, alone=found_alone(lab.control_socket))


def found_alone(control_socket: str) -> bool:
    """`pylvs adm` without --socket would talk to this director (no other one runs)."""
    from pylvs.shell import adm_client
    try:
        return adm_client.choose()[0] == control_socket
    except adm_client.SeveralDirectors:
        return False


def reach(control_socket: str, alone: bool) -> list[str]:
    """How to talk to the kept lab's director from the host: `pylvs adm -Ln` when it is the
    only director running (pylvs.shell.adm_client.choose), and with --socket in any case."""
    named = f"    pylvs adm --socket {control_socket} -Ln"
    if not alone:
        return ["the director's table, from here (other directors run too, so name its "
                "control socket):", f"{named}    (status and top take --socket too)"]
    return ["the director's table, from here (the only director running: status and top "
            "find it too):", "    pylvs adm -Ln", f"{named}    (once other directors run)"]


def instructions(lab: Lab, alone: bool = True) -> str:
    plans = [lab.plans[f] for f in lab.families]
    hosts = [("client", lab.client_ns, ", ".join(p.client for p in plans)),
             ("director", lab.director_ns, ", ".join(p.director for p in plans))]
    if "tun" in lab.server_modes:
        hosts.append(("router", lab.router_ns, ", ".join(
            a for p in plans for a in (p.router_outside, p.router_inside))))
    hosts += [(name, ns, ", ".join(lab.server_addresses(i)))
              for i, (name, ns) in enumerate(zip(lab.server_names, lab.server_ns, strict=True))]
    width = max(len(ns) for _, ns, _ in hosts)
    lines = ["the lab keeps running (--keep). Enter a host:"]
    lines += [f"    ip netns exec {ns:<{width}} bash    # {name} {ip}" for name, ns, ip in hosts]
    requests = [f"    ip netns exec {lab.client_ns} curl -s "
                + (f"-6 -g '{t.url()}'" if t.family == 6 else t.url()) for t in lab.targets()]
    lines += ["a request, as the client:" if len(requests) == 1 else "requests, as the client:",
              *requests,
              *reach(lab.control_socket, alone),
              "watch a wire (each host's link is a port of a bridge in the bridge namespace):",
              f"    ip netns exec {lab.bridge_ns} tcpdump -i director -n -e --immediate-mode",
              "remove it:",
              f"    pylvs lab down {lab.prefix}    (or `pylvs lab down`: every kept lab)"]
    return "\n".join(lines) + "\n"


def kept_labs() -> list[str]:
    """The prefixes of the labs kept on this host."""
    return sorted(os.path.basename(p)[:-len("-lab.json")]
                  for p in glob.glob(os.path.join(RUN_DIR, "pylvs-*-lab.json")))


def down(prefix: str) -> list[str]:
    """Stop a kept lab's processes (the director first, so it removes its own state), delete
    its namespaces and files; returns what was done."""
    path = record_path(prefix)
    with open(path) as fh:
        record = json.load(fh)
    done = []
    ours = [(pid, started) for pid, started in record["processes"]
            if started is not None and start_time(pid) == started]
    for group in (ours[:1], ours[1:]):
        done += [f"stopped process {pid}" for pid in _stop(group)]
    for ns in reversed(record["namespaces"]):
        if subprocess.run(["ip", "netns", "del", ns], capture_output=True).returncode == 0:
            done.append(f"ip netns del {ns}")
    shutil.rmtree(record["directory"], ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record["control_socket"])
    os.unlink(path)
    return done


def _stop(group: list[tuple[int, int]]) -> list[int]:
    """SIGTERM, and SIGKILL what is still there after STOP_TIMEOUT."""
    alive = [(pid, started) for pid, started in group if _signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [(pid, started) for pid, started in alive if start_time(pid) == started
                 and not _zombie(pid)]
    for pid, _ in alive:
        _signal(pid, signal.SIGKILL)
    return [pid for pid, _ in group]


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

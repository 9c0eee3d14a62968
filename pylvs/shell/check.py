"""`pylvs check CONFIG` and `pylvs run`'s pre-flight: this host's facts, read without changing
anything (rtnetlink reads, /proc, a connect to the control socket, the XDP program loaded and
closed unattached), judged by pylvs.adm.check, and said.

`pylvs check` prints a line per check (ok, warn, FAIL), then what `pylvs run` would do, and
exits 0, or 2 when `pylvs run` would refuse the config. `pylvs run` logs the same findings
before it touches the network and exits 2 on a FAIL, naming the file and the key."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from typing import TextIO

from pyroute2 import IPRoute

from pylvs.adm import check
from pylvs.adm.config import Config, ConfigError
from pylvs.shell import addresses, config_file
from pylvs.shell.offload import Offload, OffloadError

log = logging.getLogger("pylvs")

CAPS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}
"""The bits of /proc/self/status's CapEff `pylvs run` needs (linux/capability.h)."""
_IFF_UP = 0x1
_PROBE_ENTRIES = 64
"""The XDP probe's map size: enough to know the maps load."""


# -- the facts ----------------------------------------------------------------------------------

def gather(config: Config, probe_xdp: bool = True) -> check.Facts:
    """This host's facts for ``config``; ``probe_xdp``: load the fast path's program and maps
    (never attached) when offload is "xdp" or "auto" and the process may."""
    facts = check.Facts(links=links(), missing_caps=missing_caps())
    facts.routes = {a: route(a) for a in check.real_server_addresses(config)}
    facts.control_socket = control_socket(config.control_socket)
    facts.programs = {p: found for p in check.programs(config)
                      if (found := shutil.which(p)) is not None}
    if probe_xdp and config.offload != "none" and not facts.missing_caps:
        facts.xdp = xdp(config, facts.links)
    return facts


def links() -> dict[str, check.Link]:
    """Every interface of this network namespace with its addresses."""
    with IPRoute() as ipr:
        found = {msg["index"]: _link(msg) for msg in ipr.get_links()}
        owned: dict[int, list[str]] = {}
        for msg in ipr.get_addr():
            text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            owned.setdefault(msg["index"], []).append(f"{text}/{msg['prefixlen']}")
    return {link.name: _with(link, owned.get(index, [])) for index, link in found.items()}


def _link(msg: object) -> check.Link:
    get = msg.get_attr  # type: ignore[attr-defined]
    info, xdp_info = get("IFLA_LINKINFO"), get("IFLA_XDP")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    name = get("IFLA_IFNAME")
    return check.Link(name, bool(msg["flags"] & _IFF_UP),  # type: ignore[index]
                      get("IFLA_MTU") or 0, kind or _driver(name),
                      xdp_program=(xdp_info.get_attr("IFLA_XDP_PROG_ID") or 0)
                      if xdp_info is not None else 0)


def _with(link: check.Link, owned: list[str]) -> check.Link:
    return check.Link(link.name, link.up, link.mtu, link.kind, tuple(owned), link.xdp_program)


def _driver(name: str) -> str:
    """A NIC's driver (sysfs), "" when unknown."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{name}/device/driver"))
    except OSError:
        return ""


def route(address: str) -> check.Route | str:
    try:
        found = addresses.route(address)
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)
    return check.Route(found.interface, found.gateway, found.source)


def missing_caps() -> tuple[str, ...]:
    """Of the capabilities `pylvs run` needs, those this process has not."""
    try:
        with open("/proc/self/status") as fh:
            line = next(ln for ln in fh if ln.startswith("CapEff:"))
        effective = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        effective = 0 if os.geteuid() else ~0
    return tuple(name for name, bit in CAPS.items() if not effective >> bit & 1)


def control_socket(path: str) -> str:
    """"alive" when a director answers on ``path`` (connected to, nothing sent, nothing
    removed), "no directory" when it cannot be made, else "free"."""
    if not os.path.isdir(os.path.dirname(path) or "."):
        return "no directory"
    if not os.path.exists(path):
        return "free"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return "free"  # left by a director that died: `pylvs run` removes it
    return "alive"


def xdp(config: Config, found: dict[str, check.Link]) -> str | None:
    """"" when the fast path's program and maps load here (closed at once, attached
    nowhere), else why not; None: not tried (an interface is missing, which is said)."""
    names = list(dict.fromkeys((config.interface, config.inside_interface or config.interface)))
    if not all(n in found for n in names):
        return None
    try:
        Offload(names, _PROBE_ENTRIES, attach=False).close()
    except (OffloadError, OSError) as exc:
        return str(exc)
    return ""


# -- pylvs check --------------------------------------------------------------------------------

def run(path: str, fmt: str = "auto", interface: str = "", control: str = "",
        out: TextIO = sys.stdout) -> int:
    """`pylvs check`: 0 when `pylvs run` would start with the config, 2 when it would refuse;
    ``control``: a keepalived.conf's control socket (PYLVS_SOCKET, as `pylvs run` takes it)."""
    print(f"pylvs check: {path}", file=out)
    try:
        config, notes, where = config_file.load_placed(path, fmt, interface)
    except ConfigError as exc:
        for note in getattr(exc, "notes", []):
            print(f"note  {note}", file=out)
        print(f"FAIL  {exc}", file=out)
        return _verdict(path, 1, 0, out)
    for note in notes:
        print(f"note  {note}", file=out)
    if config.source_format == "keepalived" and control:
        config.control_socket = control
    facts = gather(config)
    findings = check.check(config, facts)
    for finding in findings:
        print(_placed(finding, where).line(), file=out)
    print("pylvs run would:", file=out)
    for line in check.plan(config, facts):
        print(f"  {line}", file=out)
    warned = sum(f.verdict == check.WARN for f in findings)
    return _verdict(path, len(check.failures(findings)), warned, out)


def _verdict(path: str, failed: int, warned: int, out: TextIO) -> int:
    warnings = f" ({warned} warning{'s' * (warned != 1)})" if warned else ""
    if failed:
        print(f"{path}: {failed} problem{'s' * (failed != 1)}{warnings}: `pylvs run` would "
              "refuse it (exit 2)", file=out)
        return 2
    print(f"{path}: no problems{warnings}: `pylvs run` would start as above", file=out)
    return 0


def _placed(finding: check.Finding, where: dict[str, str]) -> check.Finding:
    if finding.key == "-":
        return finding
    return check.Finding(finding.verdict, config_file.locate(finding.key, where), finding.text)


# -- pylvs run's pre-flight ---------------------------------------------------------------------

def preflight(config: Config, where: dict[str, str]) -> bool:
    """The same checks before `pylvs run` touches the network (the XDP program is left to
    the start, which falls back to Python): each warning and refusal logged, naming the file
    and key; False when the config is refused."""
    findings = check.check(config, gather(config, probe_xdp=False))
    for finding in findings:
        key = _placed(finding, where).key
        if finding.verdict == check.FAIL:
            log.error("bad config: %s: %s: %s", config.source, key, finding.text,
                      extra={"file": config.source, "key": key, "reason": finding.text})
        elif finding.verdict == check.WARN:
            log.warning("%s: %s: %s", config.source, key, finding.text)
    return not check.failures(findings)


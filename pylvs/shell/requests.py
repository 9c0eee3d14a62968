"""Answering the control plane's requests (pylvs.shell.messages): pylvs adm with its roll-back,
the sync daemon's commands, sysctl, status, reload, the names a listing needs.

A change is atomic: the command runs on the director core, then the host is made to follow the
new rules (steal rules, VIPs, socket filters, next hops); when the host cannot (nftables,
netlink), the rules and timeouts go back to what they were, the host follows them again, and the
command is refused. ``Requests`` answers for one director; a supervisor's and a worker's answers
(pylvs.shell.workers) add their fan-out and their own messages to it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pylvs.adm import commands, ipvsadm, layouts, ruleset
from pylvs.adm import config as config_mod
from pylvs.adm.config import Config
from pylvs.core.director import Director
from pylvs.core.marks import MarkRule, Marks
from pylvs.core.model import VirtualService
from pylvs.core.sysctls import KNOBS
from pylvs.ha import replica
from pylvs.ha.health import render_status
from pylvs.ha.sync import SyncConn
from pylvs.shell import config_file
from pylvs.shell.messages import Adm, AdmLine, Endpoints, Reload, Reply, Status, Sysctl

if TYPE_CHECKING:
    from pylvs.shell.engine import Engine

log = logging.getLogger("pylvs")


def is_daemon(command: ipvsadm.Command) -> bool:
    """The sync daemon's ipvsadm commands, which the shell (not the director core) serves."""
    return command.name in ("start-daemon", "stop-daemon") or (
        command.name == "list" and "daemon" in command.options)


def changes_rules(command: ipvsadm.Command) -> bool:
    return command.name in commands.CHANGES or command.name == "flush"


def apply(director: Director, command: ipvsadm.Command, names: commands.Lookup | None = None,
          follow: Callable[[], None] = lambda: None, syncing: bool = False) -> Reply:
    """One parsed command on ``director``, with commands.adm's exit statuses and texts, then
    ``follow`` (the host made to match the rules) when the core's outbox says the rules
    changed. Atomic: when the host cannot follow, the rules and timeouts go back to what they
    were and the command is refused. ``syncing``: a sync daemon half runs (commands.run)."""
    changes = changes_rules(command)
    saved = ruleset.commands(director.services.values()) if changes else []
    timeouts = director.table.timeouts.triple()
    try:
        reply = Reply(*commands.answer(director, command, time.monotonic(), names, syncing))
        if director.outbox.take_rules_changed():  # the core's word, whatever the command
            follow()
        return reply
    except (OSError, RuntimeError) as exc:
        error = exc
    log.error("%s %s: the host could not follow (%s); back to the rules before it",
              command.name, command.service or "", error)
    _roll_back(director, saved, timeouts, follow)
    return Reply(255, "", f"the host could not follow ({error}); the rules stay as they were\n")


def _roll_back(director: Director, saved: list[list[str]], timeouts: tuple[int, int, int],
               follow: Callable[[], None]) -> None:
    """Back to the rules ``saved`` (ruleset.commands) by the fewest edits, keeping what did not
    change (and its connections); the host is then made to match them again."""
    director.table.timeouts.set(*timeouts)
    before = Director([])
    for argv in saved:
        commands.run(before, ipvsadm.parse(argv), 0.0)
    for argv in ruleset.diff(director.services.values(), before.services.values()):
        commands.run(director, ipvsadm.parse(argv), 0.0)
    try:
        follow()
    except (OSError, RuntimeError) as exc:
        log.error("the host could not follow the rules before it either: %s", exc)


def checked(config: Config) -> list[VirtualService]:
    """The config's services as their checks want them (what was found carried over a
    reload): a dead server is not added back only for its check to take it out again."""
    health = {service.key: service for service in config.health}
    return [health[s.key].desired(s) if s.key in health else s for s in config.services]


def render_counts(counts: dict[str, Any]) -> str:
    counters = ", ".join(f"{k} {v}" for k, v in sorted(counts["counters"].items()))
    text = (f"connections {counts['connections']} (max {counts['max_connections']})\n"
            f"counters: {counters or 'none yet'}\n")
    if counts.get("sync") is not None:
        text += "sync daemon: " + ", ".join(f"{k} {v}" for k, v in sorted(
            counts["sync"].items())) + "\n"
    return text


def render_offload(report: dict[str, Any]) -> str:
    """The fast path's lines of pylvs status (Engine.offload_report)."""
    head = f"offload {report['mode']}"
    if "links" not in report:
        return f"{head}: every frame through Python" + (
            f" ({report['python']})\n" if report.get("python") else "\n")
    lines = [f"{head}:"]
    for name, link in report["links"].items():
        state = "XDP fast path" if link["fast"] else "Python"
        lines.append(f"  {name}: {state}, dropped {link['dropped']}: {link['reason']}")
    if report["partial"]:
        lines.append(f"  frames with partial checksums passed to Python: {report['partial']} "
                     "(senders on this host leave them to the NIC: `ethtool -K IF tx off` "
                     "there lets the fast path take them)")
    return "\n".join(lines) + "\n"


class Requests:
    """The answers of one director (``engine``: the parts they read and change)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.director = engine.director

    def handle(self, message: object) -> Reply:
        """Answer one control request (pylvs.shell.messages)."""
        if isinstance(message, AdmLine):
            return self.adm_line(message.argv, message.names)
        if isinstance(message, Adm):
            return self.adm(message.command, message.names)
        if isinstance(message, Reload):
            return self.reload()
        if isinstance(message, Status):
            return self.status()
        if isinstance(message, Sysctl):
            return self.sysctl(message)
        if isinstance(message, Endpoints):
            addresses, ports = commands.endpoints(self.director)
            return Reply(0, data={"addresses": addresses, "ports": ports})
        return Reply(255, "", f"not a request this director answers: {type(message).__name__}\n")

    def adm_line(self, argv: list[str], names: commands.Lookup | None = None) -> Reply:
        """The one parse of a command line; a usage error is answered at once."""
        try:
            command = ipvsadm.parse(argv)
        except ipvsadm.UsageError as exc:
            return Reply(ipvsadm.EXIT_USAGE, "", f"{exc}\n")
        return self.adm(command, names)

    def adm(self, command: ipvsadm.Command, names: commands.Lookup | None = None) -> Reply:
        """The sync daemon's commands in the HA runtime, the rest in the director core."""
        if is_daemon(command):
            return self.engine.ha.daemon(command)
        if command.name == "list":  # what the fast path counted
            self.engine.read_offload("connection" in command.options)
        return apply(self.director, command, names, self.engine.follow,
                     self.engine.ha.syncing)

    def install_synced(self, entries: list[SyncConn], now: float) -> Counter[str]:
        """Connections the sync daemon heard, into the table."""
        return replica.install(self.director, entries, now)

    def counts(self) -> dict[str, Any]:
        """The connection table's size and bound, the core's and the shell's counters."""
        table = self.director.table
        return {"connections": len(table), "max_connections": table.max_connections,
                "counters": self.engine.counters(), "sync": self.engine.ha.sync_counts()}

    def listed_services(self) -> list[VirtualService]:
        """The services with their counters as -Ln --stats shows them."""
        self.engine.read_offload()
        return list(self.director.services.values())

    def worker_counters(self) -> list[dict[str, int]]:
        """Each data plane's counters: this one's alone."""
        return [self.engine.counters()]

    def status(self) -> Reply:
        ha = self.engine.ha
        data = self.counts()
        text = render_status(self.engine.config.health, time.monotonic()) + render_counts(data)
        offload = self.engine.guarded_report()
        if offload is not None:
            data["offload"] = offload
            text += render_offload(offload)
        if ha.vrrp is not None:  # pylvs status --json: each VRRP instance
            text = ha.vrrp.status(self.engine.master) + text
            data["vrrp"] = ha.vrrp.described()
        text = ha.bgp_status() + text
        if (bgp_part := ha.bgp_part()) is not None:
            data["bgp"] = {"announced": sorted(a for a, on in bgp_part.announced.items() if on),
                           "sessions": [{"neighbor": n, "remote_as": r, "established": e}
                                        for n, r, e in bgp_part.sessions]}
        return Reply(0, text, data=data)

    def sysctl(self, message: Sysctl) -> Reply:
        """sysctl(8) on IPVS's knobs (pylvs.core.sysctls), with its refusals and exit status."""
        name = message.name.removeprefix(layouts.SYSCTL_PREFIX)
        if name and name not in KNOBS:
            return Reply(255, "", f"sysctl: cannot stat /proc/sys/net/ipv4/vs/{name}: "
                         "No such file or directory\n")
        defense = self.director.defense
        if message.value is not None:
            try:
                defense.set(name, message.value)
            except (KeyError, ValueError):
                return Reply(255, "", f'sysctl: setting key "{layouts.SYSCTL_PREFIX}{name}": '
                             "Invalid argument\n")
        return Reply(0, layouts.render_sysctls(
            [(k, v) for k, v in defense.sysctls.items() if not name or k == name]))

    def set_marks(self, rules: list[MarkRule]) -> None:
        """The director's mark rules, then the host and data plane follow them."""
        self.engine.set_marks(Marks(rules))

    def reload(self) -> Reply:
        """Apply the config file's difference from the running rules as live edits."""
        engine = self.engine
        config, ha = engine.config, engine.ha
        try:  # as pylvs run read it: TOML, or a keepalived.conf converted again
            new, notes = config_file.load(config.source, config.source_format,
                                          config.interface_option)
        except config_mod.ConfigError as exc:
            return Reply(1, "", f"reload refused, the running rules stay: {exc}\n")
        for note in notes:
            log.warning("%s: %s", config.source, note)
        if (new.interface, new.inside_interface) != (config.interface, config.inside_interface):
            return Reply(1, "", "reload refused, the running rules stay: a new interface needs "
                         "a restart of pylvs run\n")
        ha.stop_checks()
        known = {service.key: service for service in config.health}
        for service in new.health:
            if service.key in known:
                service.carry(known[service.key])
            service.start()
        marked = new.marks != config.marks
        if marked:  # first: the fwmark services the changes add take frames by the new rules
            self.set_marks(new.marks)
        changes = ruleset.diff(self.director.services.values(), checked(new))
        for argv in changes:
            reply = self.adm_line(argv)
            if reply.rc != 0:
                if marked:
                    self.set_marks(config.marks)
                ha.start_checks(self.adm_line)  # the running rules' checks go on
                return Reply(reply.rc, "", f"reload stopped at `{' '.join(argv)}`: {reply.stderr}")
        lines = [" ".join(argv) for argv in changes]
        if marked:
            lines.append(f"mark rules: {len(new.marks)} (were {len(config.marks)})")
            config.marks = new.marks
        for name, value in new.sysctls.items():
            if value != getattr(config.sysctls, name):
                lines += self.sysctl(Sysctl(name, value)).stdout.splitlines()
        config.sysctls, config.health = new.sysctls, new.health
        if new.bgp != config.bgp:
            lines.append(engine.rebgp(new))
        log.info("reloaded %s: %d changes", config.source, len(lines))
        ha.start_checks(self.adm_line)
        return Reply(0, "".join(f"{line}\n" for line in lines))

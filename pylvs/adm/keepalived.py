"""keepalived.conf → a pylvs config, sans-IO: text in; the pylvs config dict (``[director]``,
``[[virtual_server]]``, ``[[vrrp]]``, ``[vrrp_script.NAME]``, ``[[vrrp_sync_group]]``) and one
note for each thing not carried over out. The syntax (comments, conditional lines, includes
through a reader the caller passes) is pylvs.adm.keepalived_syntax's.

keepalived's own rules and defaults (keepalived 2.2.7: check_parser.c, check_data.c,
check_api.c, check_http.c, check_misc.c, vrrp_parser.c, global_parser.c, lib/parser.c):
comments start at ``!`` or ``#`` outside quotes; a line starting ``@ID`` is read only when ID is
the config id (the short host name by default), ``@^ID`` only when it is not; no ``protocol`` is
UDP, no ``lb_kind`` NAT, no ``lb_algo`` wlc, a bare ``persistence_timeout`` 360 s; a real
server's weight defaults to the service's ``weight`` (1); a checker's ``delay_loop``,
``connect_timeout``, ``retry`` and ``delay_before_retry`` default to its real server's, then
its service's (delay_loop 60 s, connect_timeout 5 s), then the checker's own (retry 1, MISC_CHECK
0; delay_before_retry 3 s for HTTP_GET and SSL_GET, 1 s otherwise); MISC_CHECK's timeout is
misc_timeout or the service's delay_loop; HTTP_GET and SSL_GET (the https check) accept 200-299
unless status_code says otherwise; a
``vrrp_script`` runs every second with weight 0, rise 1, fall 1, its timeout the interval; the
sync daemon's syncid is ``id``, else the vrid of the instance it follows, else 0.

IPv6, as keepalived reads it (check_parser.c, check_data.c, vrrp_parser.c, vrrp_data.c): a
virtual_server's family is its address's; a real server or sorry server of the other family is
skipped ("Address family of virtual server and real server ... don't match") unless it is
tunnelled, and IPVS refuses it too while the sync daemon runs; ``persistence_granularity`` is a
prefix length 1..128 for an IPv6 service (else "Invalid IPv6 persistence_granularity specified"
and the line is ignored); a virtual_server_group's ``A-B`` range counts in hex in an IPv6
address's last group. A vrrp_instance's family is that of its first address in the file (a VIP,
unicast_src_ip or mcast_src_ip, a unicast peer) or IPv6 for a ``native_ipv6`` before any; an
address of the other family is ignored, as keepalived does ("address family must match VRRP
instance", "MUST be of the same family"), and so is a ``native_ipv6`` after an IPv4 address
("Cannot specify native_ipv6 with IPv4 addresses"). An IPv6 instance runs VRRPv3
(vrrp_complete_instance: the global ``vrrp_version`` is not its; its own ``version 2`` "conflicts
with configured or deduced version 3") and has no authentication ("VRRP version 3 does not
support authentication. Ignoring.").

Firewall marks, as keepalived makes IPVS's services of them: ``virtual_server fwmark N``
(check_data.c alloc_vs) is of the family check_parser.c settles (``fwmark_family``); its
``protocol`` is ignored (validate_check_config: "protocol specified for fwmark - protocol will
be ignored"); a DR or TUN real server goes to IPVS at port 0 while its checker keeps the line's
port (ipvswrapper.c ipvs_cmd). A virtual_server_group's ``fwmark N [inet|inet6]`` members
(alloc_vsg_entry) follow its addresses (ipvs_group_cmd), a group of IPv4 and IPv6 members with
a mark of no family is removed (vsg_handler). keepalived.conf has no mark rules (the host's
firewall sets marks, which pylvs never sees): each fwmark service is written with
``allow_unmarked = true`` and a note that ``[[mark]]`` rules must be added.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pylvs.adm.check import choose_interface
from pylvs.adm.config import ConfigError
from pylvs.adm.keepalived_syntax import Block, Include, parse_blocks
from pylvs.adm.toml_text import dumps
from pylvs.core.marks import MAX_MARK
from pylvs.core.model import AF_INET, AF_INET6, endpoint_text, family_of
from pylvs.ha.health import HTTP_KINDS

DEFAULT_PERSISTENCE = 360  # IPVS_SVC_PERSISTENT_TIMEOUT
DEFAULT_DELAY_LOOP = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
NO_BLOCKS = ("no virtual_server block and no vrrp_instance block: a keepalived.conf needs one "
             "of them for pylvs to run anything")
CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK")
OTHER_CHECKERS = {
    "SMTP_CHECK": "pylvs has no SMTP check", "DNS_CHECK": "pylvs has no DNS check",
    "UDP_CHECK": "pylvs has no UDP check", "PING_CHECK": "pylvs has no ICMP check",
    "BFD_CHECK": "pylvs has no BFD", "FILE_CHECK": "pylvs has no file check"}
REASONS = {
    "notification_email": "pylvs sends no mail", "notification_email_from": "pylvs sends no mail",
    "smtp_server": "pylvs sends no mail", "smtp_connect_timeout": "pylvs sends no mail",
    "smtp_helo_name": "pylvs sends no mail", "smtp_alert": "pylvs sends no mail",
    "router_id": "pylvs names itself nowhere (keepalived puts it in mail and SNMP)",
    "snmp_name": "pylvs has no SNMP agent", "enable_traps": "pylvs has no SNMP agent",
    "vrrp_strict": "pylvs installs no DROP rules for the VIPs (docs/ha.md)",
    "enable_script_security": "pylvs runs scripts as its own user",
    "script_user": "pylvs runs scripts as its own user", "user": "pylvs runs scripts as its "
    "own user",
    "static_ipaddress": "pylvs adds no static addresses: configure them on the host",
    "static_routes": "pylvs installs no routes: configure them on the host",
    "static_rules": "pylvs installs no policy rules: configure them on the host",
    "virtual_routes": "pylvs installs no routes", "virtual_rules": "pylvs installs no rules",
    "use_vmac": "pylvs uses the interface's own MAC address, not VRRP's virtual MAC",
    "garp_master_delay": "pylvs's gratuitous ARPs are fixed (5 at once, 5 more after 5 s)",
    "garp_master_repeat": "pylvs's gratuitous ARPs are fixed (5 at once, 5 more after 5 s)",
    "garp_master_refresh": "pylvs's gratuitous ARPs are fixed (5 at once, 5 more after 5 s)",
    "mcast_src_ip": "pylvs sends from the interface's primary address",
    "accept": "pylvs has no accept mode: its VIPs answer ping (docs/ha.md)",
    "no_accept": "pylvs has no accept mode: its VIPs answer ping (docs/ha.md)",
    "warmup": "pylvs starts every check at once",
    "ha_suspend": "pylvs checks on every director, master or not (docs/ha.md)",
    "omega": "pylvs runs no quorum scripts", "quorum_up": "pylvs runs no quorum scripts",
    "quorum_down": "pylvs runs no quorum scripts",
    "sorry_server_inhibit": "pylvs removes the sorry server when the quorum is back",
    "sorry_server_lvs_method": "pylvs forwards to the sorry server by the service's method",
    "virtualhost": "pylvs's http check sends the real server's address as Host",
    "digest": "pylvs's http check looks at the status code only",
    "regex": "pylvs's http check looks at the status code only",
    "http_protocol": "pylvs's http check speaks HTTP/1.0",
    "fast_recovery": "pylvs's checks keep their interval",
    "misc_dynamic": "pylvs takes any non-zero exit status as down and never sets a weight "
    "from it",
    "connect_ip": "pylvs checks the real server's own address",
    "bindto": "pylvs's checks leave from the address the route picks",
    "bind_port": "pylvs's checks leave from a port the kernel picks",
    "persistence_engine": "pylvs has no persistence engines (ipvsadm --pe)",
    "hashed": "IPVS's internal flag", "lvs_flush": "pylvs starts with an empty table anyway",
    "lvs_timeouts": "pylvs's timeouts are IPVS's defaults (pylvs adm --set)",
    "net_namespace": "pylvs runs in the namespace it is started in",
    "dont_track_primary": "pylvs tracks only the interfaces track_interface names",
    "virtual_ipaddress_excluded": "pylvs moves only the addresses of virtual_ipaddress",
    "include": "it matched no file, so nothing was included (keepalived's plain include says "
    "nothing of it)",
}


@dataclass
class Conversion:
    data: dict[str, Any]
    """The pylvs config as a dict, as tomllib would read it."""
    notes: list[str]
    """One line per thing not carried over, with its line and reason."""
    where: dict[str, str]
    """A config key (``virtual_server[0].real_server[1]``) → the keepalived line it came from."""

    def toml(self) -> str:
        return dumps(self.data)


class KeepalivedError(ConfigError):
    """A keepalived.conf pylvs cannot run; ``notes`` has what was noted before it stopped."""

    def __init__(self, source: str, key: str, reason: str, notes: list[str]) -> None:
        super().__init__(source, key, reason)
        self.notes = notes


# -- the conversion ----------------------------------------------------------------------------

Route = Callable[[str], str | None]
"""The interface the host routes an address through, None when it has no route."""


def convert(text: str, source: str = "keepalived.conf", *, interface: str = "",
            include: Include | None = None, config_id: str | None = None,
            route: Route | None = None) -> Conversion:
    """The whole file; ``interface`` is the director's when no vrrp_instance's VIPs say it,
    else ``route`` finds it from the routes to the real servers (pylvs.adm.check's choice,
    said in a note). KeepalivedError when nothing can run or something would run wrong."""
    converter = _Converter(source)
    converter.route = route
    return converter.run(parse_blocks(text, source, include, config_id), interface)


class _Converter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.notes: list[str] = []
        self.where: dict[str, str] = {}
        self.director: dict[str, Any] = {}
        self.vrrp_version: int | None = None
        self.default_interface = "eth0"  # keepalived's DFLT_INT
        self.sync_inst = ""
        """lvs_sync_daemon's `inst`: its vrid is the syncid when no `id` is given."""
        self.server_lines: list[str] = []
        self.counts: dict[str, int] = {}
        self.used_groups: set[str] = set()
        self.tunnels: dict[int, dict[str, Any]] = {}
        """A virtual_server's TUN options (by the id of its dict): its real servers' default."""
        self.route: Route | None = None

    # notes and errors

    def at(self, block: Block) -> str:
        line = f"line {block.line}"
        return line if block.source in ("", self.source) else f"{block.source} {line}"

    def note(self, block: Block, context: str, reason: str) -> None:
        prefix = f"{self.at(block)}: {context}: " if context else f"{self.at(block)}: "
        self.notes.append(f"{prefix}`{block.text}` is not carried over: {reason}")

    def part(self, block: Block, context: str, part: str, reason: str) -> None:
        """Part of a line not carried over (the rest of it is)."""
        prefix = f"{self.at(block)}: {context}: " if context else f"{self.at(block)}: "
        self.notes.append(f"{prefix}`{block.text}`: its `{part}` is not carried over: {reason}")

    def drop(self, block: Block, context: str, reason: str = "") -> None:
        self.note(block, context, reason or REASONS.get(block.keyword,
                                                        "pylvs has no equivalent"))

    def refuse(self, block: Block, reason: str) -> None:
        self.notes.append(f"{self.at(block)}: `{block.text}` is refused: {reason}")

    def fail(self, block: Block, reason: str) -> KeepalivedError:
        return KeepalivedError(block.source or self.source, f"{self.at(block)}: {block.text}",
                               reason, self.notes)

    # the file

    def run(self, blocks: list[Block], interface: str) -> Conversion:
        kinds = {b.keyword for b in blocks}
        if not kinds & {"virtual_server", "vrrp_instance"}:
            raise KeepalivedError(self.source, "-", NO_BLOCKS, self.notes)
        groups = {b.args[0]: b for b in blocks if b.keyword == "virtual_server_group" and b.args}
        for block in blocks:
            if block.keyword == "global_defs":
                self.global_defs(block)
        scripts = self.scripts([b for b in blocks if b.keyword == "vrrp_script"])
        instances = [i for b in blocks if b.keyword == "vrrp_instance"
                     if (i := self.instance(b, scripts)) is not None]
        names = {i["name"] for i in instances}
        sync_groups = [g for b in blocks if b.keyword == "vrrp_sync_group"
                       if (g := self.sync_group(b, names)) is not None]
        services = [s for b in blocks if b.keyword == "virtual_server"
                    for s in self.virtual_server(b, groups)]
        for block in blocks:
            if block.keyword == "virtual_server_group" and block.args[:1] and \
                    block.args[0] not in self.used_groups:
                self.drop(block, "", "no virtual_server uses it")
            elif block.keyword not in ("global_defs", "vrrp_script", "vrrp_instance",
                                       "vrrp_sync_group", "virtual_server",
                                       "virtual_server_group"):
                self.drop(block, "")
        if not services and not instances:
            raise KeepalivedError(self.source, "-", "nothing pylvs can run is left: every "
                                  "virtual_server and vrrp_instance was refused (see above)",
                                  self.notes)
        self.unused_scripts(scripts, instances)
        self.sync_daemon(instances)
        data: dict[str, Any] = {"director": {"interface": self.interface(
            interface, services, instances, blocks), **self.director}}
        if services:
            data["virtual_server"] = services
        if instances:
            data["vrrp"] = instances
        used = {_name(t) for i in instances for t in i.get("track_script", [])}
        if used:
            data["vrrp_script"] = {n: s for n, s in scripts.items() if n in used}
        if sync_groups:
            data["vrrp_sync_group"] = sync_groups
        return Conversion(data, list(dict.fromkeys(self.notes)), self.where)

    def interface(self, given: str, services: list[dict[str, Any]],
                  instances: list[dict[str, Any]], blocks: list[Block]) -> str:
        """The vrrp_instance whose VIPs hold the services says it, else ``given``."""
        if given:
            return given
        by_vip = {vip.split("/")[0]: i for i in instances
                  for vip in i.get("virtual_ipaddress", [])}
        found = {}
        for service in (s for s in services if "address" in s):
            instance = by_vip.get(service["address"].rpartition(":")[0].strip("[]"))
            if instance is not None:
                found.setdefault(instance["interface"], instance["name"])
        if len(found) == 1:
            return next(iter(found))
        where = blocks[0] if blocks else Block("", [])
        if len(found) > 1:
            listed = ", ".join(f"{i} ({n})" for i, n in found.items())
            raise self.fail(where, f"the virtual servers' addresses are VIPs on more than one "
                            f"interface: {listed}; pylvs's director has one: name it with "
                            "--interface")
        if not services and instances:
            return str(instances[0]["interface"])
        unknown = ("no vrrp_instance's virtual_ipaddress holds a virtual_server's address, so "
                   "which interface the services arrive on is unknown (keepalived needs none "
                   "for LVS)")
        if self.route is None:
            raise KeepalivedError(self.source, "interface", f"{unknown}: name it with "
                                  "--interface", self.notes)
        return self.routed(services, unknown)

    def routed(self, services: list[dict[str, Any]], unknown: str) -> str:
        """The interface the real servers are routed through, said in a note."""
        assert self.route is not None
        found = {a: self.route(a) for a in dict.fromkeys(
            _host_of(rs["address"]) for s in services for rs in s.get("real_server", []))}
        try:
            name, how = choose_interface(found)
        except ValueError as exc:
            raise KeepalivedError(self.source, "interface", f"{unknown}, and {exc}: name it "
                                  "with --interface", self.notes) from None
        self.notes.append(f"the director's interface is {how}: --interface names another")
        return name

    # global_defs

    def global_defs(self, block: Block) -> None:
        for child in block.children:
            if child.keyword == "lvs_sync_daemon":
                self.lvs_sync_daemon(child)
            elif child.keyword == "vrrp_version":
                self.vrrp_version = self.integer(child, 0)
            elif child.keyword == "default_interface":
                self.default_interface = self.word(child, 0)
            else:
                self.drop(child, "global_defs")

    def lvs_sync_daemon(self, block: Block) -> None:
        """``lvs_sync_daemon IF [inst NAME] [id N] [maxlen N] [port N] [ttl N] [group IP]``."""
        self.director.update(sync_daemon=True, sync_interface=self.word(block, 0))
        args = block.args[1:]
        for i in range(0, len(args) - 1, 2):
            key, value = args[i], args[i + 1]
            if key == "id":
                self.director["syncid"] = self.integer(block, i + 2)
            elif key == "inst":
                self.sync_inst = value
            else:
                self.part(block, "global_defs", f"{key} {value}", "pylvs's sync daemon "
                          "uses IPVS's defaults (port 8848, group 224.0.0.81, ttl 1)")
        if self.sync_inst:
            self.part(block, "global_defs", f"inst {self.sync_inst}", "pylvs's sync daemon "
                      "runs its master and backup halves at once, whatever an instance's state "
                      "(docs/ha.md)")

    def sync_daemon(self, instances: list[dict[str, Any]]) -> None:
        if not self.director.get("sync_daemon") or "syncid" in self.director:
            return
        vrids = {i["name"]: i["virtual_router_id"] for i in instances}
        self.director["syncid"] = vrids.get(self.sync_inst, 0)

    # virtual_server

    def virtual_server(self, block: Block, groups: dict[str, Block]) -> list[dict[str, Any]]:
        args = block.args
        if args[:1] == ["fwmark"]:
            return self.fwmark_server(block)
        if args[:1] == ["group"]:
            return self.group_service(block, groups)
        if len(args) != 2:
            self.refuse(block, "pylvs needs an address and a port")
            return []
        address = self.ip(block, args[0])
        service = self.service(block, address, self.port(block, args[1]),
                               f"virtual_server {address} {args[1]}")
        return [service] if service is not None else []

    def group_service(self, block: Block, groups: dict[str, Block]) -> list[dict[str, Any]]:
        """keepalived's virtual_server_group: one IPVS service per address (ranges expanded),
        then one per ``fwmark N [inet|inet6]``, all with the block's real servers
        (ipvswrapper.c ipvs_group_cmd: the address entries first, then the marks)."""
        name = block.args[1] if len(block.args) > 1 else ""
        group = groups.get(name)
        self.used_groups.add(name)
        if group is None:
            self.refuse(block, "no virtual_server_group of that name")
            return []
        context = f"virtual_server group {group.args[0]}"
        marks = [m for e in group.children if e.keyword == "fwmark"
                 if (m := self.group_mark(e)) is not None]
        entries = [e for e in group.children if e.keyword != "fwmark"]
        if not self.group_families(group, entries, marks):
            return []
        out = []
        for entry in entries:
            if len(entry.args) != 1:
                self.refuse(entry, "pylvs needs an address and a port in each group entry")
                continue
            for text in self.addresses(entry, entry.keyword):
                address = self.ip(entry, text)
                service = self.service(block, address, self.port(entry, entry.args[0]),
                                       context)
                out += [service] if service is not None else []
        return out + self.group_marks(block, context, marks, bool(entries)) if marks else out

    def group_marks(self, block: Block, context: str, marks: list[tuple[int, int | None]],
                    addresses: bool) -> list[dict[str, Any]]:
        """A group's fwmark services: each of its own family, else the virtual server's,
        else IPv4 (ipvs_group_cmd); the protocol is ignored when the group has no address."""
        opts = self.options(block, context, _SERVICE_OPTIONS)
        if "protocol" in opts and not addresses:
            self.note(opts["protocol"], context, "keepalived ignores it too ('protocol "
                      "specified for fwmark - protocol will be ignored'): a fwmark service "
                      "takes TCP and UDP")
        af = self.fwmark_family(block, opts, context, True) or AF_INET
        out = []
        for mark, family in marks:
            service = self.service(block, "", 0, context, _Mark(mark, family or af))
            out += [service] if service is not None else []
        return out

    def group_mark(self, entry: Block) -> tuple[int, int | None] | None:
        """A group's ``fwmark N [inet|inet6]`` (check_data.c alloc_vsg_entry): the mark and
        the family it names (None: the service's)."""
        mark = self.mark_of(entry, entry.args[0] if entry.args else "")
        if mark is None:
            return None
        family = entry.args[1] if len(entry.args) > 1 else None
        if family not in (None, "inet", "inet6"):
            self.refuse(entry, f"family {family} is not inet or inet6 (keepalived: 'fwmark "
                        f"'{mark}' family {family} unknown - ignoring')")
            return None
        return mark, {"inet": AF_INET, "inet6": AF_INET6}.get(family or "")

    def group_families(self, group: Block, entries: list[Block],
                       marks: list[tuple[int, int | None]]) -> bool:
        """keepalived's vsg_handler removes a group of IPv4 and IPv6 members with a fwmark
        that names no family."""
        families = {_family_of_word(e.keyword) for e in entries} | {f for _, f in marks}
        if {AF_INET, AF_INET6} <= families and any(f is None for _, f in marks):
            self.refuse(group, "it has IPv4 and IPv6 members and a fwmark without a family "
                        "(keepalived removes it too: 'cannot have IPv4, IPv6 and fwmark "
                        "without family'); write `fwmark N inet` or `fwmark N inet6`")
            return False
        return True

    def fwmark_server(self, block: Block) -> list[dict[str, Any]]:
        """``virtual_server fwmark N``: one fwmark service, of the family ``fwmark_family``
        finds (check_data.c alloc_vs, check_parser.c vs_end_handler)."""
        mark = self.mark_of(block, block.args[1] if len(block.args) > 1 else "")
        if mark is None:
            return []
        if block.args[2:]:
            self.part(block, "", " ".join(block.args[2:]), "keepalived reads no more words "
                      "after the mark")
        context = f"virtual_server fwmark {mark}"
        opts = self.options(block, context, _SERVICE_OPTIONS)
        if "protocol" in opts:
            self.note(opts["protocol"], context, "keepalived ignores it too ('protocol "
                      "specified for fwmark - protocol will be ignored'): a fwmark service "
                      "takes TCP and UDP")
        service = self.service(block, "", 0, context,
                               _Mark(mark, self.fwmark_family(block, opts, context, False)))
        return [service] if service is not None else []

    def mark_of(self, block: Block, text: str) -> int | None:
        """A fwmark's number (keepalived's read_unsigned, 0..2^32-1); 0 is refused, as no
        mark; None when refused."""
        if not text.isdigit() or int(text) > MAX_MARK:
            self.refuse(block, f"fwmark {text!r} is not in 0..{MAX_MARK} (keepalived ignores "
                        "it too)")
            return None
        if not int(text):
            self.refuse(block, "fwmark 0 is no mark: IPVS takes a service of mark 0 for one "
                        "of an address")
            return None
        return int(text)

    def fwmark_family(self, block: Block, opts: dict[str, Block], context: str, group: bool
                      ) -> int | None:
        """A fwmark service's family as keepalived settles it, in the file's order: the first
        of ``ip_family``, ``persistence_granularity`` (a dot: IPv4) and an untunnelled real
        server (check_parser.c ip_family_handler, pgr_handler, rs_end_handler), then an
        untunnelled sorry server (vs_end_handler); else, for a virtual_server fwmark, the
        tunnelled servers' family when they share one, else IPv4 (vs_end_handler); for a
        group, None (the member's own family word, else IPv4: ipvs_group_cmd)."""
        method = opts.get("lb_kind") or opts.get("lvs_method")
        default = self.word(method, 0).upper() if method else "NAT"
        af: int | None = None
        tunnelled: list[int] = []
        for child in block.children:
            found = self.family_word(child, af, context, default, tunnelled)
            af = af or found
        sorry = opts.get("sorry_server")
        if af is None and sorry is not None and sorry.args and default != "TUN":
            af = _family_of_word(sorry.args[0])
        if af is None and not group:
            af = tunnelled[0] if len(set(tunnelled)) == 1 else AF_INET
        return af

    def family_word(self, child: Block, af: int | None, context: str, default: str,
                    tunnelled: list[int]) -> int | None:
        """The family one line of a fwmark service says (None: none)."""
        if child.keyword == "ip_family" and child.args:
            word = child.args[0]
            said = {"inet": AF_INET, "inet6": AF_INET6}.get(word)
            if said is None:
                self.note(child, context, f"keepalived ignores it too (unknown address family "
                          f"{word})")
            elif af not in (None, said):
                self.note(child, context, f"the service is {_FAMILIES[af]} already, by the "
                          f"lines before (keepalived: 'Virtual server specified family {word} "
                          "conflicts with server family')")
            return said
        if child.keyword == "persistence_granularity" and child.args:
            return AF_INET if "." in child.args[0] else AF_INET6
        if child.keyword == "real_server" and child.args:
            kind = next((c for c in child.children if c.keyword in ("lvs_method", "lb_kind")
                         and c.args), None)
            if (kind.args[0].upper() if kind else default) == "TUN":
                tunnelled += [f for f in [_family_of_word(child.args[0])] if f]
                return None
            return _family_of_word(child.args[0])
        return None

    def service(self, block: Block, address: str, port: int, context: str,
                mark: _Mark | None = None) -> dict[str, Any] | None:
        """A service of ``address`` and ``port``, or of ``mark`` (address "", port 0)."""
        opts = self.options(block, context, _SERVICE_OPTIONS)
        protocol = self.protocol(block, opts, context) if mark is None else ""
        if protocol is None:
            return None
        kind = opts.get("lb_kind") or opts.get("lvs_method")
        forward = self.method(kind, "nat", block)
        if forward is None:
            return None
        key = f"virtual_server[{self.count('virtual_server')}]"
        tunnel = self.tunnel(kind) if forward == "tun" else {}
        self.where[key] = f"{self.at(block)}: {context}"
        service = _selector(address, port, protocol, mark)
        service["forward"] = forward
        af = _family(service)
        self.tunnels[id(service)] = tunnel
        if mark is None:
            self.ip_family(opts.get("ip_family"), af, context)
        else:
            self.unmarked(block, context, mark)
        self.scheduling(service, opts, context)
        self.persistence(service, opts, context, af)
        if "ops" in opts:
            if protocol in ("UDP", ""):
                service["one_packet"] = True
            else:
                self.note(opts["ops"], context, "one-packet scheduling is for UDP and fwmark "
                          "services (keepalived resets it too)")
        defaults = _Defaults.of(opts, self)
        servers = [s for b in block.children if b.keyword == "real_server"
                   if (s := self.real_server(b, service, port, defaults, context)) is not None]
        self.where.update({f"{key}.real_server[{i}]": w for i, w in enumerate(
            self.server_lines)})
        self.server_lines = []
        self.health_keys(service, opts, servers, port, context)
        service["real_server"] = servers
        return service

    def protocol(self, block: Block, opts: dict[str, Block], context: str) -> str | None:
        """A service of an address: TCP or UDP (none given: UDP, as keepalived); None when
        refused."""
        protocol = self.word(opts["protocol"], 0).upper() if "protocol" in opts else "UDP"
        if "protocol" not in opts:
            self.notes.append(f"{self.at(block)}: {context}: no `protocol`: UDP, as keepalived "
                              "(which logs 'no protocol set - defaulting to UDP')")
        if protocol not in ("TCP", "UDP"):
            self.refuse(block, f"protocol {protocol}: pylvs forwards TCP and UDP")
            return None
        return protocol

    def unmarked(self, block: Block, context: str, mark: _Mark) -> None:
        """keepalived.conf has no mark rules: the host's firewall marks, which pylvs, reading
        frames before netfilter, never sees."""
        name = f"FWM {mark.mark}" + (" IPv6" if mark.af == AF_INET6 else "")
        self.notes.append(
            f"{self.at(block)}: {context}: {name} gets no packet until a [[mark]] rule gives "
            f"{'IPv6 packets ' if mark.af == AF_INET6 else ''}mark {mark.mark}: "
            "keepalived.conf has none (the host's iptables or nftables sets marks, which pylvs, "
            "reading frames before netfilter, never sees), so it is written with "
            "allow_unmarked = true: add [[mark]] rules to the TOML (docs/config.md)")

    def count(self, kind: str) -> int:
        """The index the next config entry of ``kind`` gets."""
        self.counts[kind] = self.counts.get(kind, -1) + 1
        return self.counts[kind]

    def scheduling(self, service: dict[str, Any], opts: dict[str, Block], context: str) -> None:
        algo = opts.get("lb_algo") or opts.get("lvs_sched")
        scheduler = self.word(algo, 0) if algo else "wlc"
        service["scheduler"] = scheduler
        flags = [k for k in ("sh-port", "sh-fallback", "mh-port", "mh-fallback") if k in opts]
        for number, kind in (("flag-1", "fallback"), ("flag-2", "port")):
            if number in opts:
                if scheduler in ("sh", "mh"):
                    flags.append(f"{scheduler}-{kind}")
                else:
                    self.note(opts[number], context, f"it means nothing to {scheduler}")
        if "flag-3" in opts:
            self.note(opts["flag-3"], context, "no scheduler of pylvs reads it")
        if flags:
            service["scheduler_flags"] = sorted(set(flags))

    def ip_family(self, block: Block | None, af: int, context: str) -> None:
        """``ip_family inet|inet6``: the address says it already; keepalived ignores a
        conflicting one."""
        if block is None:
            return
        word = self.word(block, 0)
        if word not in ("inet", "inet6"):
            self.note(block, context, f"keepalived ignores it too (unknown address family "
                      f"{word})")
        elif (word == "inet6") != (af == AF_INET6):
            self.note(block, context, f"the address is {_FAMILIES[af]} (keepalived: 'Virtual "
                      f"server specified family {word} conflicts with server family')")

    def persistence(self, service: dict[str, Any], opts: dict[str, Block], context: str,
                    af: int = AF_INET) -> None:
        if "persistence_timeout" in opts:
            block = opts["persistence_timeout"]
            service["persistence_timeout"] = (self.integer(block, 0) if block.args
                                              else DEFAULT_PERSISTENCE)
        if "persistence_granularity" in opts:
            block = opts["persistence_granularity"]
            if not service.get("persistence_timeout"):
                self.note(block, context, "without persistence_timeout it does nothing")
            elif af == AF_INET6:
                prefix = self.prefix_length(block, context)
                if prefix is not None:
                    service["persistence_netmask"] = prefix
            else:
                service["persistence_netmask"] = self.netmask(block)

    def prefix_length(self, block: Block, context: str) -> str | None:
        """An IPv6 service's granularity (pgr_handler): a prefix length 1..128; keepalived
        ignores any other value, and the service keeps /128."""
        text = self.word(block, 0)
        if text.isdigit() and 1 <= int(text) <= 128:
            return str(int(text))
        self.note(block, context, "an IPv6 service's persistence_granularity is a prefix "
                  "length 1..128 (keepalived: 'Invalid IPv6 persistence_granularity specified - "
                  f"{text}'), so the service keeps /128")
        return None

    def health_keys(self, service: dict[str, Any], opts: dict[str, Block],
                    servers: list[dict[str, Any]], port: int, context: str) -> None:
        checked = any("check" in s for s in servers)
        for key in ("quorum", "hysteresis"):
            if key in opts:
                if checked:
                    service[key] = self.integer(opts[key], 0)
                else:
                    self.note(opts[key], context, "no real server has a check pylvs runs")
        if "sorry_server" in opts:
            block = opts["sorry_server"]
            address = self.ip(block, self.word(block, 0))
            if not self.same_family(block, address, service, service["forward"], "sorry"):
                return
            if not checked:
                self.note(block, context, "no real server has a check pylvs runs")
                return
            given = self.port(block, block.args[1]) if len(block.args) > 1 else port
            kept = self.kept_port(block, service, given, port, context)
            service["sorry_server"] = _server_address(address, kept)

    def kept_port(self, block: Block, service: dict[str, Any], given: int, port: int,
                  context: str) -> int:
        if service["forward"] == "nat" or given == port:
            return given
        if service.get("fwmark"):
            return 0  # ipvs_cmd: a fwmark service's DR or TUN server is port 0 in IPVS
        self.notes.append(f"{self.at(block)}: {context}: port {given} of `{block.text}` is not "
                          f"carried over: {service['forward'].upper()} forwards to the "
                          f"service's port {port}")
        return port

    # real_server

    def real_server(self, block: Block, service: dict[str, Any], port: int,
                    defaults: _Defaults, context: str) -> dict[str, Any] | None:
        if not 1 <= len(block.args) <= 2:
            raise self.fail(block, "a real_server needs an address and a port")
        address = self.ip(block, block.args[0])
        context = f"{context}: real_server {' '.join(block.args)}"
        opts = self.options(block, context, _SERVER_OPTIONS)
        kind = opts.get("lvs_method") or opts.get("lb_kind")
        forward = self.method(kind, service["forward"], block)
        if forward is None or not self.same_family(block, address, service, forward, "real"):
            return None
        given = self.port(block, block.args[1]) if len(block.args) == 2 else port
        kept = self.kept_port(block, {"forward": forward, "fwmark": service.get("fwmark")},
                              given, port, context)
        server: dict[str, Any] = {"address": _server_address(address, kept),
                                  "weight": self.integer(opts["weight"], 0) if "weight" in opts
                                  else defaults.weight}
        if forward != service["forward"]:
            server["forward"] = forward
        if forward == "tun":
            server.update(self.tunnel(kind) if kind is not None
                          else self.tunnels.get(id(service), {}))
        for ours, theirs in (("upper_threshold", "uthreshold"), ("lower_threshold",
                                                                 "lthreshold")):
            if theirs in opts:
                server[ours] = self.integer(opts[theirs], 0)
        mine = defaults.under(opts, self)
        check = self.checker(block, mine, defaults, context)
        if check is not None:
            check_block, server["check"] = check
            if kept != given and server["check"]["type"] != "misc":
                server["check"].setdefault("port", given)  # a fwmark's DR/TUN server
            alpha = self.flag(check_block.children, "alpha", mine.alpha)
            if alpha:
                server["alpha"] = True
            if mine.inhibit:
                server["inhibit_on_failure"] = True
            for key in ("notify_up", "notify_down"):
                if key in opts:
                    server[key] = " ".join(opts[key].args)
        else:
            for key in ("notify_up", "notify_down", "alpha", "inhibit_on_failure"):
                if key in opts:
                    self.note(opts[key], context, "the real server has no check pylvs runs")
        self.server_lines.append(f"{self.at(block)}: {context}")
        return server

    def same_family(self, block: Block, address: str, service: dict[str, Any], forward: str,
                    kind: str) -> bool:
        """keepalived's rs_end_handler and vs_end_handler: a real (sorry) server of the
        service's family, or tunnelled; IPVS (ip_vs_ctl.c) refuses a tunnelled one of the other
        family too while the sync daemon runs."""
        if family_of(address) == _family(service):
            return True
        if forward != "tun":
            self.refuse(block, f"{address} is {_FAMILIES[family_of(address)]} and the service "
                        f"{_name_of(service)} {_FAMILIES[_family(service)]}, and only a "
                        "tunnelled server may be of another family (keepalived skips it too: "
                        f"'Address family of virtual server and {kind} server {address} don't "
                        f"match - skipping {kind} server')")
            return False
        if self.director.get("sync_daemon"):
            self.refuse(block, f"{address} is of another family than the service "
                        f"{_name_of(service)}, and IPVS refuses such a server while the sync "
                        "daemon runs (lvs_sync_daemon)")
            return False
        return True

    def checker(self, block: Block, mine: _Defaults, defaults: _Defaults, context: str
                ) -> tuple[Block, dict[str, Any]] | None:
        found = None
        for child in block.children:
            if child.keyword in OTHER_CHECKERS:
                self.note(child, context, f"{OTHER_CHECKERS[child.keyword]}; the real server "
                          "is added without it")
            elif child.keyword in CHECKERS:
                if found is not None:
                    self.note(child, context, "pylvs runs one check per real server (the "
                              f"first, {found[0].keyword}), where keepalived needs all to pass")
                else:
                    found = child, self.check(child, mine, defaults, context)
        return found

    def check(self, block: Block, mine: _Defaults, service: _Defaults, context: str
              ) -> dict[str, Any]:
        kind = {"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https",
                "MISC_CHECK": "misc"}[block.keyword]
        context = f"{context}: {block.keyword}"
        opts = self.options(block, context, _CHECK_OPTIONS[kind])
        retry = opts.get("retry") or opts.get("nb_get_retry")
        check: dict[str, Any] = {"type": kind, "interval": self.seconds(opts["delay_loop"])
                                 if "delay_loop" in opts else mine.delay_loop}
        if kind == "misc":
            timeout = self.seconds(opts["misc_timeout"]) if "misc_timeout" in opts else 0
            check["timeout"] = timeout or service.delay_loop
        else:
            check["timeout"] = (self.seconds(opts["connect_timeout"])
                                if "connect_timeout" in opts else mine.connect_timeout)
        check["retry"] = (self.integer(retry, 0) if retry else mine.retry
                          if mine.retry is not None else (0 if kind == "misc" else 1))
        check["delay_before_retry"] = (
            self.seconds(opts["delay_before_retry"]) if "delay_before_retry" in opts
            else mine.delay_before_retry if mine.delay_before_retry is not None
            else (3 if kind in HTTP_KINDS else 1))
        if kind == "misc":
            if "misc_path" not in opts:
                raise self.fail(block, "a MISC_CHECK needs misc_path")
            check["command"] = " ".join(opts["misc_path"].args)
        if "connect_port" in opts:
            check["port"] = self.port(opts["connect_port"], opts["connect_port"].args[0]
                                      if opts["connect_port"].args else "")
        if kind in HTTP_KINDS:
            self.url(block, check, context)
        return check

    def url(self, block: Block, check: dict[str, Any], context: str) -> None:
        urls = [b for b in block.children if b.keyword == "url"]
        if not urls:
            raise self.fail(block, f"an {block.keyword} needs a url {{ path ... }}")
        for extra in urls[1:]:
            self.note(extra, context, "pylvs's http check asks for one url (the first)")
        opts = self.options(urls[0], f"{context}: url", {"path", "status_code"})
        if "path" not in opts:
            raise self.fail(urls[0], "a url needs a path")
        check["path"] = self.word(opts["path"], 0)
        if "status_code" in opts:
            check["status"] = self.status_codes(opts["status_code"])

    # vrrp

    def scripts(self, blocks: list[Block]) -> dict[str, dict[str, Any]]:
        out = {}
        for block in blocks:
            name = self.word(block, 0)
            context = f"vrrp_script {name}"
            opts = self.options(block, context, {"script", "interval", "timeout", "weight",
                                                 "rise", "fall"})
            if "script" not in opts:
                self.refuse(block, "it has no `script` (so the track_script lines naming it "
                            "are dropped too)")
                continue
            interval = self.seconds(opts["interval"]) if "interval" in opts else 1
            timeout = self.seconds(opts["timeout"]) if "timeout" in opts else 0
            script: dict[str, Any] = {"script": " ".join(opts["script"].args),
                                      "interval": interval, "timeout": timeout or interval}
            weight = opts.get("weight")
            script["weight"] = self.integer(weight, 0) if weight else 0
            if weight is not None and len(weight.args) > 1:
                self.part(weight, context, " ".join(weight.args[1:]), "pylvs applies the "
                          "weight as keepalived does without it")
            script["rise"] = self.integer(opts["rise"], 0) if "rise" in opts else 1
            script["fall"] = self.integer(opts["fall"], 0) if "fall" in opts else 1
            out[name] = script
            self.where[f"vrrp_script.{name}"] = f"{self.at(block)}: {context}"
        return out

    def unused_scripts(self, scripts: dict[str, dict[str, Any]],
                       instances: list[dict[str, Any]]) -> None:
        used = {_name(t) for i in instances for t in i.get("track_script", [])}
        for name in scripts:
            if name not in used:
                self.notes.append(f"{self.where[f'vrrp_script.{name}'].split(':')[0]}: "
                                  f"`vrrp_script {name}` is not carried over: no vrrp_instance "
                                  "tracks it (keepalived drops it too)")

    def instance(self, block: Block, scripts: dict[str, dict[str, Any]]
                 ) -> dict[str, Any] | None:
        name = self.word(block, 0)
        context = f"vrrp_instance {name}"
        first = self.instance_address(block)
        family = AF_INET6 if first is not None and family_of(first) == AF_INET6 else AF_INET
        if family == AF_INET6 and not any(
                _family_of_word(line.keyword) == AF_INET6 for child in block.children
                if child.keyword == "virtual_ipaddress" for line in child.children):
            self.refuse(block, "it is an IPv6 instance, so VRRPv3, and it has no IPv6 VIP: "
                        "keepalived does not start with it ('No VIP specified; at least one is "
                        "required')")
            return None
        opts = self.options(block, context, _INSTANCE_OPTIONS)
        if "virtual_router_id" not in opts:
            raise self.fail(block, "a vrrp_instance needs virtual_router_id")
        interface = (self.word(opts["interface"], 0) if "interface" in opts
                     else self.default_interface)
        instance: dict[str, Any] = {"name": name, "interface": interface,
                                    "virtual_router_id": self.integer(opts["virtual_router_id"],
                                                                      0)}
        self.where[f"vrrp[{self.count('vrrp')}]"] = f"{self.at(block)}: {context}"
        if "state" in opts:
            instance["state"] = self.word(opts["state"], 0).upper()
        for key in ("priority",):
            if key in opts:
                instance[key] = self.integer(opts[key], 0)
        for key in ("advert_int", "preempt_delay"):
            if key in opts:
                instance[key] = self.seconds(opts[key])
        preempt = [b for b in block.children if b.keyword in ("nopreempt", "preempt")]
        if preempt:
            instance["nopreempt"] = preempt[-1].keyword == "nopreempt"
        if family == AF_INET6:
            self.ipv6_instance(instance, opts, context)
        else:
            if "native_ipv6" in opts:
                self.note(opts["native_ipv6"], context, "keepalived ignores it too: "
                          "'Cannot specify native_ipv6 with IPv4 addresses'")
            version = (self.integer(opts["version"], 0) if "version" in opts
                       else self.vrrp_version)
            if version is not None:
                instance["version"] = version
            if "authentication" in opts:
                instance["authentication"] = self.authentication(opts["authentication"],
                                                                 context)
        if "unicast_src_ip" in opts:
            source = self.word(opts["unicast_src_ip"], 0)
            if _family_of_word(source) not in (None, family):
                self.note(opts["unicast_src_ip"], context, "keepalived ignores it too: the "
                          f"instance is {_FAMILIES[family]} ('src address MUST be of the same "
                          "family')")
            else:
                instance["unicast_src_ip"] = source
        if "unicast_peer" in opts:
            instance["unicast_peers"] = [p for b in opts["unicast_peer"].children
                                         if (p := self.peer(b, b.keyword, family)) is not None]
            for peer in opts["unicast_peer"].children:
                if peer.args:
                    self.part(peer, context, " ".join(peer.args), "pylvs takes a VRRP packet "
                              "with TTL 255 only" if family == AF_INET else "pylvs takes a "
                              "unicast VRRP packet with any hop limit, as keepalived's "
                              "default min_ttl 0 and max_ttl 255")
        vips = self.vips(opts.get("virtual_ipaddress"), context, interface, family)
        if vips:
            instance["virtual_ipaddress"] = vips
        else:
            self.notes.append(f"{self.at(block)}: {context}: it has no virtual_ipaddress "
                              "(pylvs then moves the virtual servers' addresses, when it is "
                              "the only instance)")
        for key in ("track_interface", "track_script"):
            if key in opts:
                tracked = self.tracked(opts[key], context, scripts if key == "track_script"
                                       else None)
                if tracked:
                    instance[key] = tracked
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            if key in opts:
                instance[key] = " ".join(opts[key].args)
        if "lvs_sync_daemon_interface" in opts:
            self.deprecated_sync(opts["lvs_sync_daemon_interface"], name, context)
        return instance

    def ipv6_instance(self, instance: dict[str, Any], opts: dict[str, Block],
                      context: str) -> None:
        """keepalived's rules for an IPv6 instance: VRRPv3 whatever the global vrrp_version,
        no authentication; ``native_ipv6`` kept (it says the family without an address)."""
        if "native_ipv6" in opts:
            instance["native_ipv6"] = True
        if "version" in opts:
            version = self.integer(opts["version"], 0)
            if version == 2:
                self.note(opts["version"], context, "an IPv6 instance speaks VRRPv3 (keepalived: "
                          "'vrrp_version 2 conflicts with configured or deduced version 3; "
                          "ignoring')")
            else:
                instance["version"] = version
        if "authentication" in opts:
            self.note(opts["authentication"], context, "keepalived ignores it too: an IPv6 "
                      "instance is VRRPv3 ('VRRP version 3 does not support authentication. "
                      "Ignoring.')")

    def instance_address(self, block: Block) -> str | None:
        """The instance's first address in the file (unicast_src_ip or mcast_src_ip, a
        unicast_peer, a VIP), whose family keepalived gives the instance; ``::`` for
        ``native_ipv6`` first."""
        for child in block.children:
            if child.keyword == "native_ipv6":
                return "::"
            words = (child.args[:1] if child.keyword in ("unicast_src_ip", "mcast_src_ip") else
                     [c.keyword for c in child.children] if child.keyword in (
                         "unicast_peer", "virtual_ipaddress") else [])
            for word in words:
                text = word.partition("/")[0].partition("-")[0]
                if _is_ipv6(text) or _is_ipv4(text):
                    return text
        return None

    def deprecated_sync(self, block: Block, name: str, context: str) -> None:
        """The old per-instance form: the sync daemon follows this instance, syncid 0."""
        if self.director.get("sync_daemon"):
            self.note(block, context, "the sync daemon is set already (the first one counts, "
                      "as in keepalived)")
            return
        self.director.update(sync_daemon=True, sync_interface=self.word(block, 0))
        self.notes.append(f"{self.at(block)}: {context}: `{block.text}`: the sync daemon is "
                          "carried over, but not its following this instance's state: pylvs "
                          "runs its master and backup halves at once (docs/ha.md)")

    def authentication(self, block: Block, context: str) -> dict[str, str]:
        opts = self.options(block, f"{context}: authentication", {"auth_type", "auth_pass"})
        kind = self.word(opts["auth_type"], 0).upper() if "auth_type" in opts else "PASS"
        if kind != "PASS":
            raise self.fail(block, f"auth_type {kind}: pylvs speaks VRRP with no "
                            "authentication or a simple password (PASS) only, and a peer "
                            f"using {kind} would not take its adverts")
        password = " ".join(opts["auth_pass"].args) if "auth_pass" in opts else ""
        if len(password) > 8:
            self.notes.append(f"{self.at(opts['auth_pass'])}: {context}: auth_pass cut to "
                              "its first 8 characters, as keepalived does")
        return {"auth_type": "PASS", "auth_pass": password[:8]}

    def vips(self, block: Block | None, context: str, interface: str,
             family: int = AF_INET) -> list[str]:
        out: list[str] = []
        for line in block.children if block is not None else []:
            if _family_of_word(line.keyword) not in (None, family):
                self.note(line, context, f"keepalived ignores it too: the instance is "
                          f"{_FAMILIES[family]}, and an address of another family is dropped "
                          "('address family must match VRRP instance')")
                continue
            for text in self.addresses(line, line.keyword):
                try:
                    network = ipaddress.ip_interface(text if "/" in text else f"{text}/32"
                                                     if ":" not in text else text)
                except ValueError:
                    raise self.fail(line, f"{text!r} is not an address") from None
                vip = f"{network.ip}/{network.network.prefixlen}"
                if vip not in out:
                    out.append(vip)
            extra = line.args
            for i in range(0, len(extra), 2):
                option = " ".join(extra[i:i + 2])
                if extra[i] == "dev" and extra[i + 1:i + 2] == [interface]:
                    continue
                self.part(line, context, option, f"pylvs puts the address on {interface} "
                          "with no label, scope or broadcast of its own")
        return out

    def tracked(self, block: Block, context: str,
                scripts: dict[str, dict[str, Any]] | None) -> list[Any]:
        out: list[Any] = []
        for line in block.children:
            name = line.keyword
            if scripts is not None and name not in scripts:
                self.note(line, context, f"no vrrp_script {name} (keepalived ignores it too)")
                continue
            if line.args[:1] == ["weight"] and len(line.args) >= 2:
                out.append({"name": name, "weight": self.integer(line, 1)})
                if line.args[2:]:
                    self.part(line, context, " ".join(line.args[2:]), "pylvs has no such "
                              "option")
            else:
                out.append(name)
                if line.args:
                    self.part(line, context, " ".join(line.args), "pylvs has no such option")
        return out

    def sync_group(self, block: Block, names: set[str]) -> dict[str, Any] | None:
        name = self.word(block, 0)
        context = f"vrrp_sync_group {name}"
        for child in block.children:
            if child.keyword in names:
                self.notes.append(f"{self.at(child)}: {context}: `{child.keyword}` is not "
                                  "carried over: members go in `group { ... }`, and keepalived "
                                  "ignores this line too (an unknown keyword to it)")
        opts = self.options(block, context, {"group", "notify_master", "notify_backup",
                                             "notify_fault", "notify", *names})
        members = [w for line in (opts["group"].children if "group" in opts else [])
                   for w in [line.keyword, *line.args]]
        for member in [m for m in members if m not in names]:
            self.notes.append(f"{self.at(block)}: {context}: member {member} is not carried "
                              "over: no vrrp_instance of that name")
        members = [m for m in members if m in names]
        if not members:
            self.refuse(block, "it has no members (they go in `group { ... }`; keepalived "
                        "removes it too)")
            return None
        group: dict[str, Any] = {"name": name, "group": members}
        self.where[f"vrrp_sync_group[{self.count('vrrp_sync_group')}]"] = \
            f"{self.at(block)}: {context}"
        for key in ("notify_master", "notify_backup", "notify_fault", "notify"):
            if key in opts:
                group[key] = " ".join(opts[key].args)
        return group

    # values

    def options(self, block: Block, context: str, known: set[str]) -> dict[str, Block]:
        """The last of each known keyword (keepalived's handlers overwrite); the rest noted."""
        out = {}
        for child in block.children:
            if child.keyword in known:
                out[child.keyword] = child
            elif child.keyword not in _HANDLED_ELSEWHERE:
                self.drop(child, context)
        return out

    def word(self, block: Block, index: int) -> str:
        if len(block.args) <= index:
            raise self.fail(block, f"{block.keyword} needs a value")
        return block.args[index]

    def integer(self, block: Block, index: int) -> int:
        text = self.word(block, index)
        if not re.fullmatch(r"-?\d+", text):
            raise self.fail(block, f"{text!r} is not a whole number")
        return int(text)

    def seconds(self, block: Block) -> int | float:
        text = self.word(block, 0)
        try:
            value = float(text)
        except ValueError:
            raise self.fail(block, f"{text!r} is not a number of seconds") from None
        return int(value) if value.is_integer() else value

    def port(self, block: Block, text: str) -> int:
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise self.fail(block, f"port {text!r} is not in 1..65535")
        return int(text)

    def ip(self, block: Block, text: str) -> str:
        """An IPv4 or IPv6 address, as the model writes it."""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise self.fail(block, f"{text!r} is not an IP address") from None
        if "%" in text:
            raise self.fail(block, f"{text!r}: an IPVS address has no zone")
        return str(address)

    def peer(self, block: Block, text: str, family: int) -> str | None:
        """A unicast peer of the instance; keepalived skips one of the other family."""
        address = self.ip(block, text)
        if family_of(address) != family:
            self.refuse(block, f"keepalived skips it too: the instance is {_FAMILIES[family]} "
                        "('unicast peer address MUST be of the same family')")
            return None
        return address

    def netmask(self, block: Block) -> str:
        text = self.word(block, 0)
        try:
            return str(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
        except ValueError:
            raise self.fail(block, f"{text!r} is not an IPv4 netmask") from None

    def addresses(self, block: Block, text: str) -> list[str]:
        """keepalived's ranges: ``10.0.0.3-10`` is .3 to .10 in the last part."""
        text, slash, prefix = text.partition("/")
        if slash:
            return [f"{a}/{prefix}" for a in self.addresses(block, text)]
        head, sep, last = text.rpartition("-")
        if not sep:
            return [text]
        first = re.split(r"[.:]", head)[-1]
        base = head[:len(head) - len(first)]
        hexa = ":" in head
        try:
            lo, hi = (int(first, 16), int(last, 16)) if hexa else (int(first), int(last))
        except ValueError:
            raise self.fail(block, f"{text!r} is not an address range") from None
        if hi < lo:
            raise self.fail(block, f"{text!r}: the range ends before it starts")
        return [f"{base}{n:x}" if hexa else f"{base}{n}" for n in range(lo, hi + 1)]

    def status_codes(self, block: Block) -> list[int]:
        codes: set[int] = set()
        for text in block.args:
            lo, _, hi = text.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise self.fail(block, f"{text!r} is not a status code or a range of them")
            first, last = int(lo), int(hi or lo)
            if not 100 <= first <= last <= 599:
                raise self.fail(block, f"{text!r} is not within 100..599")
            codes.update(range(first, last + 1))
        return sorted(codes)

    def method(self, block: Block | None, default: str, owner: Block) -> str | None:
        if block is None:
            return default
        kind = self.word(block, 0).upper()
        if kind not in ("NAT", "DR", "TUN"):
            raise self.fail(block, f"unknown lb_kind {kind!r} (NAT, DR or TUN)")
        return kind.lower()

    def tunnel(self, block: Block | None) -> dict[str, Any]:
        """The rest of ``lvs_method TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]``
        (keepalived's lbkind handler): the real server's tun_type, tun_port and tun_flags
        keys ({} for IP-in-IP, the default); the config checks them as ipvsadm does."""
        if block is None:
            return {}
        rest, tunnel = block.args[1:], {}
        if rest[:1] == ["type"] and len(rest) > 1:
            tunnel["tun_type"], rest = rest[1].lower(), rest[2:]
            if tunnel["tun_type"] == "ipip":
                del tunnel["tun_type"]
            if rest[:1] == ["port"] and len(rest) > 1:
                if not rest[1].isdigit():
                    raise self.fail(block, f"{rest[1]!r} is not a port")
                tunnel["tun_port"], rest = int(rest[1]), rest[2:]
        if rest[:1] and rest[0].lower() in ("nocsum", "csum", "remcsum"):
            if "tun_type" in tunnel:
                tunnel["tun_flags"] = rest[0].lower()
            else:
                self.part(block, "", rest[0], "IP-in-IP has no checksum option")
            rest = rest[1:]
        if rest:
            self.part(block, "", " ".join(rest), "not a word of keepalived's TUN options")
        return tunnel

    def flag(self, blocks: list[Block], keyword: str, default: bool) -> bool:
        found = [b for b in blocks if b.keyword == keyword]
        if not found:
            return default
        return found[-1].args[:1] not in (["no"], ["false"], ["off"], ["0"])


@dataclass
class _Defaults:
    """What a level (service, real server) gives the checkers below it."""
    delay_loop: int | float = DEFAULT_DELAY_LOOP
    connect_timeout: int | float = DEFAULT_CONNECT_TIMEOUT
    retry: int | None = None
    delay_before_retry: int | float | None = None
    weight: int = 1
    alpha: bool = False
    inhibit: bool = False

    @classmethod
    def of(cls, opts: dict[str, Block], conv: _Converter) -> _Defaults:
        return cls(_int_or(conv.seconds(opts["delay_loop"]) if "delay_loop" in opts else 60),
                   conv.seconds(opts["connect_timeout"]) if "connect_timeout" in opts else 5,
                   conv.integer(opts["retry"], 0) if "retry" in opts else None,
                   conv.seconds(opts["delay_before_retry"]) if "delay_before_retry" in opts
                   else None,
                   conv.integer(opts["weight"], 0) if "weight" in opts else 1,
                   conv.flag(list(opts.values()), "alpha", False),
                   conv.flag(list(opts.values()), "inhibit_on_failure", False))

    def under(self, opts: dict[str, Block], conv: _Converter) -> _Defaults:
        own = list(opts.values())
        return _Defaults(
            conv.seconds(opts["delay_loop"]) if "delay_loop" in opts else self.delay_loop,
            conv.seconds(opts["connect_timeout"]) if "connect_timeout" in opts
            else self.connect_timeout,
            conv.integer(opts["retry"], 0) if "retry" in opts else self.retry,
            conv.seconds(opts["delay_before_retry"]) if "delay_before_retry" in opts
            else self.delay_before_retry,
            self.weight, conv.flag(own, "alpha", self.alpha),
            conv.flag(own, "inhibit_on_failure", self.inhibit))


_FAMILIES = {AF_INET: "IPv4", AF_INET6: "IPv6"}


def _family(service: dict[str, Any]) -> int:
    """A converted service's family, by its address ([IPv6]:port or A.B.C.D:port), or a
    fwmark service's ``family``."""
    if "fwmark" in service:
        return AF_INET6 if service.get("family") == "ipv6" else AF_INET
    return AF_INET6 if service["address"].startswith("[") else AF_INET


def _server_address(address: str, port: int) -> str:
    """``addr:port`` (``[addr]:port``); a port-0 server (a fwmark service's) without its port,
    as pylvs.adm.ruleset writes it."""
    if port:
        return endpoint_text(address, port, family_of(address))
    return f"[{address}]" if family_of(address) == AF_INET6 else address


def _host_of(address: str) -> str:
    """A converted real server's address without its port (``[addr]:port``, ``addr:port``,
    ``addr``)."""
    if address.startswith("["):
        return address[1:address.index("]")]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def _name_of(service: dict[str, Any]) -> str:
    """A converted service's address, or its mark (``FWM 1``)."""
    return f"FWM {service['fwmark']}" if "fwmark" in service else service["address"]


@dataclass(frozen=True)
class _Mark:
    """A fwmark service's mark and family."""
    mark: int
    af: int


def _selector(address: str, port: int, protocol: str, mark: _Mark | None) -> dict[str, Any]:
    """A converted service's first keys: ``address`` and ``protocol``, or ``fwmark`` (and
    ``family = "ipv6"``) with ``allow_unmarked``, keepalived.conf having no mark rules."""
    if mark is None:
        return {"address": endpoint_text(address, port, family_of(address)),
                "protocol": protocol.lower()}
    return {"fwmark": mark.mark, **({"family": "ipv6"} if mark.af == AF_INET6 else {}),
            "allow_unmarked": True}


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_interface(text).version == 4
    except ValueError:
        return False


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_interface(text).version == 6
    except ValueError:
        return False


def _family_of_word(word: str) -> int | None:
    """The family of an address word of keepalived's (``A``, ``A/len``, a range ``A-B``);
    None when it is no address."""
    for text in (word, word.partition("/")[0].partition("-")[0]):
        if _is_ipv6(text):
            return AF_INET6
        if _is_ipv4(text):
            return AF_INET
    return None


def _int_or(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _name(tracked: Any) -> str:
    return tracked["name"] if isinstance(tracked, dict) else str(tracked)


_SERVICE_OPTIONS = {"delay_loop", "lb_algo", "lvs_sched", "lb_kind", "lvs_method",
                    "persistence_timeout", "persistence_granularity", "protocol", "quorum",
                    "hysteresis", "alpha", "inhibit_on_failure", "sorry_server",
                    "connect_timeout", "retry", "delay_before_retry", "weight", "ops",
                    "sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2",
                    "flag-3", "ip_family"}
_SERVER_OPTIONS = {"weight", "lvs_method", "lb_kind", "uthreshold", "lthreshold",
                   "inhibit_on_failure", "notify_up", "notify_down", "alpha", "retry",
                   "delay_before_retry", "connect_timeout", "delay_loop"}
_COMMON_CHECK = {"connect_timeout", "connect_port", "retry", "delay_before_retry",
                 "delay_loop", "alpha"}
_CHECK_OPTIONS = {"tcp": _COMMON_CHECK, "http": _COMMON_CHECK | {"nb_get_retry"},
                  "https": _COMMON_CHECK | {"nb_get_retry"},
                  "misc": {"misc_path", "misc_timeout", "retry", "delay_before_retry",
                           "delay_loop", "alpha"}}
_INSTANCE_OPTIONS = {"state", "interface", "virtual_router_id", "priority", "advert_int",
                     "authentication", "virtual_ipaddress", "nopreempt", "preempt",
                     "preempt_delay", "version", "unicast_src_ip", "unicast_peer", "native_ipv6",
                     "track_interface", "track_script", "notify_master", "notify_backup",
                     "notify_fault", "notify_stop", "notify", "lvs_sync_daemon_interface"}
_HANDLED_ELSEWHERE = {"real_server", "url", *CHECKERS, *OTHER_CHECKERS}

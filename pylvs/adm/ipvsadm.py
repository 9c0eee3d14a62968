"""ipvsadm's command line, as ipvsadm 1.31 reads it (reference §1).

``parse`` turns argv into a ``Command`` the way ipvsadm's popt table and ``process_options`` do:
one command, options each at most once (``multiple 'weight' options specified``), values checked
with ipvsadm's texts, then the command × option table ``commands_v_options`` (compulsory,
illegal, mutually exclusive) and ipvsadm's special rules. Every usage error is a ``UsageError``
(exit status 2); errors from the director itself are ``DirectorError`` (exit status 255).
IPv6 as ipvsadm reads it (parse_service): ``[addr]:port``, an unbracketed IPv6 address without
a port, ``-6`` only after ``-f``, ``-M`` a prefix length once the service is known to be IPv6,
and a real server of the other family only with ``-i``. Firewall-mark services as parse_fwmark
reads them (``-f N``, N in 1..UINT_MAX, ``-6`` after it for IPv6): no address, no port, so no
"Zero port" rule, ``-o`` allowed, and a real server's port kept as given (0 when none). The
sync daemon's ``--mcast-group`` (a multicast group of either family), ``--mcast-port``,
``--mcast-ttl`` and ``--sync-maxlen`` with ipvsadm's checks and texts. Addresses come out in the
model's text. Pure: no sockets, no model changes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import forwarders
from pylvs.core.model import AF_INET, AF_INET6, canonical, family_of

VERSION_LINE = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)"
EXIT_USAGE = 2
EXIT_DIRECTOR = 255
MAX_TIMEOUT = 86400 * 31
MAX_PERSISTENCE = 2678400
DEFAULT_PERSISTENCE = 360

CMDNAMES = ("add-service", "edit-service", "delete-service", "flush", "list", "add-server",
            "delete-server", "edit-server", "set", "start-daemon", "stop-daemon", "restore",
            "save", "zero")
OPTNAMES = ("numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
            "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
            "mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds",
            "persistent-conn", "nosort", "syncid", "exact", "ops", "pe", "sched-flags",
            "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
            "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_SERVICE_OPTIONAL = {"scheduler": " ", "persistent": " ", "netmask": " ", "ops": " ", "pe": " ",
                     "sched-flags": " "}
_SERVER_OPTIONAL = {"forwarding-method": " ", "weight": " ", "u-threshold": " ",
                    "l-threshold": " ", "tun-type": " ", "tun-port": " ", "tun-nocsum": " ",
                    "tun-csum": " ", "tun-remcsum": " "}
_RULES: dict[str, dict[str, str]] = {
    "add-service": {"service-address": "+", **_SERVICE_OPTIONAL},
    "edit-service": {"service-address": "+", **_SERVICE_OPTIONAL},
    "delete-service": {"service-address": "+"},
    "flush": {},
    "list": {"numeric": " ", "connection": "1", "service-address": "1", "timeout": "1",
             "daemon": "1", "stats": " ", "rate": " ", "thresholds": " ", "persistent-conn": " ",
             "nosort": " ", "exact": " ", "tun-info": " "},
    "add-server": {"service-address": "+", "real-server": "+", **_SERVER_OPTIONAL},
    "delete-server": {"service-address": "+", "real-server": "+"},
    "edit-server": {"service-address": "+", "real-server": "+", **_SERVER_OPTIONAL},
    "set": {},
    "start-daemon": {k: " " for k in ("mcast-interface", "syncid", "mcast-group", "mcast-port",
                                      "mcast-ttl", "sync-maxlen")},
    "stop-daemon": {"syncid": " "},
    "restore": {},
    "save": {"numeric": " "},
    "zero": {"service-address": " "},
}
# commands_v_options: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional (OPTNAMES order)
_TABLE = {name: "".join(rules.get(option, "x") for option in OPTNAMES)
          for name, rules in _RULES.items()}

_COMMAND_FLAGS = {
    "-A": "add-service", "--add-service": "add-service", "-E": "edit-service",
    "--edit-service": "edit-service", "-D": "delete-service", "--delete-service": "delete-service",
    "-C": "flush", "--clear": "flush", "-R": "restore", "--restore": "restore", "-S": "save",
    "--save": "save", "-a": "add-server", "--add-server": "add-server", "-e": "edit-server",
    "--edit-server": "edit-server", "-d": "delete-server", "--delete-server": "delete-server",
    "-L": "list", "-l": "list", "--list": "list", "-Z": "zero", "--zero": "zero", "--set": "set",
    "--start-daemon": "start-daemon", "--stop-daemon": "stop-daemon", "-h": "help",
    "--help": "help", "-v": "version", "--version": "version",
}
# option flag → (option name, takes a value: "no" | "yes" | "optional", canonical value)
_OPTIONS: dict[str, tuple[str, str, str]] = {
    "-t": ("service-address", "yes", "tcp"), "--tcp-service": ("service-address", "yes", "tcp"),
    "-u": ("service-address", "yes", "udp"), "--udp-service": ("service-address", "yes", "udp"),
    "--sctp-service": ("service-address", "yes", "sctp"),
    "-f": ("service-address", "yes", "fwmark"),
    "--fwmark-service": ("service-address", "yes", "fwmark"),
    "-s": ("scheduler", "yes", ""), "--scheduler": ("scheduler", "yes", ""),
    "-p": ("persistent", "optional", ""), "--persistent": ("persistent", "optional", ""),
    "-M": ("netmask", "yes", ""), "--netmask": ("netmask", "yes", ""),
    "-r": ("real-server", "yes", ""), "--real-server": ("real-server", "yes", ""),
    **{option: ("forwarding-method", "no", forwarders.by_flag(flag).name)
       for flag, long in (("-g", "--gatewaying"), ("-i", "--ipip"), ("-m", "--masquerading"))
       for option in (flag, long)},
    "-w": ("weight", "yes", ""), "--weight": ("weight", "yes", ""),
    "-x": ("u-threshold", "yes", ""), "--u-threshold": ("u-threshold", "yes", ""),
    "-y": ("l-threshold", "yes", ""), "--l-threshold": ("l-threshold", "yes", ""),
    "-n": ("numeric", "no", ""), "--numeric": ("numeric", "no", ""),
    "-c": ("connection", "no", ""), "--connection": ("connection", "no", ""),
    "--timeout": ("timeout", "no", ""), "--daemon": ("daemon", "no", ""),
    "--stats": ("stats", "no", ""), "--rate": ("rate", "no", ""),
    "--thresholds": ("thresholds", "no", ""), "--persistent-conn": ("persistent-conn", "no", ""),
    "--nosort": ("nosort", "no", ""),
    "--exact": ("exact", "no", ""), "-X": ("exact", "no", ""),
    "-o": ("ops", "no", ""), "--ops": ("ops", "no", ""), "--pe": ("pe", "yes", ""),
    "-b": ("sched-flags", "yes", ""), "--sched-flags": ("sched-flags", "yes", ""),
    "--tun-info": ("tun-info", "no", ""), "--tun-type": ("tun-type", "yes", ""),
    "--tun-port": ("tun-port", "yes", ""), "--tun-nocsum": ("tun-nocsum", "no", ""),
    "--tun-csum": ("tun-csum", "no", ""), "--tun-remcsum": ("tun-remcsum", "no", ""),
    "--mcast-interface": ("mcast-interface", "yes", ""), "--syncid": ("syncid", "yes", ""),
    "--mcast-group": ("mcast-group", "yes", ""), "--mcast-port": ("mcast-port", "yes", ""),
    "--mcast-ttl": ("mcast-ttl", "yes", ""), "--sync-maxlen": ("sync-maxlen", "yes", ""),
}
IPV6_FLAGS = ("-6", "--ipv6")
"""ipvsadm's -6: "fwmark entry uses IPv6", legal only after -f (no option of the table)."""
IPV6 = "-6"
"""Where each -6 came among the options parse saw (-M reads and -6 resets the mask)."""
IPV6_BEFORE_FWMARK = "-6 used before -f\n"
"""ipvsadm's text, its own newline included (fail() adds another)."""
MIXED_FAMILY = "Different address family is allowed only for tunneling servers"
IP_VS_CONN_F_TUNNEL = 0x0002
NOT_HERE = {
    "pe": "persistence engines (--pe) are not supported by this version of pylvs",
    "sctp": "SCTP services are not supported by this version of pylvs",
}


TUNNEL_OPTIONS = {"ipip": "xxxx", "gue": "+111", "gre": "x11x"}
"""ipvsadm's tunnel_types_v_options: per tunnel type, for tun-port, tun-nocsum, tun-csum and
tun-remcsum: '+' compulsory, 'x' illegal, '1' at most one of the '1's."""
_TUN_OPTION_ORDER = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_TUN_OPTIONS = {"tun-nocsum", "tun-csum", "tun-remcsum"}


class UsageError(Exception):
    """An ipvsadm usage error: printed and exit status 2."""


class DirectorError(Exception):
    """What the kernel would have refused (libipvs's ipvs_strerror texts): exit status 255."""


@dataclass
class Command:
    name: str
    options: set[str] = field(default_factory=set)
    service: tuple[str, str, int] | None = None     # (protocol, address, port); -f: ("", "", 0)
    fwmark: int = 0                                 # -f: the service's mark (0: not a fwmark one)
    fwmark_af: int = AF_INET                        # -f's family: AF_INET6 with -6
    scheduler: str | None = None
    persistent: int | None = None
    netmask: str | None = None
    sched_flags: tuple[str, ...] = ()
    server: tuple[str, int | None] | None = None    # (address, port or None: the service's)
    forward: str | None = None
    weight: int | None = None
    u_threshold: int | None = None
    l_threshold: int | None = None
    timeouts: tuple[int, int, int] | None = None
    tun_type: str | None = None
    tun_port: int | None = None
    tun_flags: str | None = None                    # nocsum | csum | remcsum
    daemon_state: str | None = None                 # --start/--stop-daemon: master | backup
    mcast_interface: str | None = None
    syncid: int | None = None
    mcast_group: str | None = None                  # a multicast group of either family
    mcast_port: int | None = None
    mcast_ttl: int | None = None
    sync_maxlen: int | None = None

    @property
    def af(self) -> int:
        """The service's family: its address's, or a fwmark service's (-6: AF_INET6)."""
        if self.fwmark:
            return self.fwmark_af
        return family_of(self.service[1]) if self.service else AF_INET

    @property
    def flags(self) -> set[str]:
        """The list options given (numeric, connection, stats, ...)."""
        return self.options


def _tokens(argv: Sequence[str]) -> list[str]:
    """Split clustered short options (-Lnc) and --long=value, as popt reads them; the word
    after an option that needs a value is that value, even one starting with '-' (``-f -1``:
    parse_fwmark's error, not an unknown option)."""
    out: list[str] = []
    pending = False  # the option just read needs a value: this word is it
    for arg in argv:
        if pending:
            out.append(arg)
            pending = False
        elif arg.startswith("--") and "=" in arg:
            out += arg.split("=", 1)
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            pending = _cluster(arg, out)
        else:
            out.append(arg)
            pending = _needs_value(arg)
    return out


def _cluster(arg: str, out: list[str]) -> bool:
    """-Lnc as -L -n -c, and -fN as -f N; True when its last option still needs a value."""
    for i, ch in enumerate(arg[1:], start=1):
        flag = f"-{ch}"
        out.append(flag)
        if _needs_value(flag):
            if i == len(arg) - 1:
                return True
            out.append(arg[i + 1:])
            return False
    return False


def _needs_value(flag: str) -> bool:
    return _OPTIONS.get(flag, ("", "no", ""))[1] == "yes"


def parse(argv: Sequence[str]) -> Command:
    tokens = _tokens(argv)
    name: str | None = None
    values: dict[str, str] = {}
    order: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token in _COMMAND_FLAGS:
            if name is not None:
                raise UsageError("multiple commands specified")
            name = _COMMAND_FLAGS[token]
        elif token == "--sort":
            pass  # sorting is the default: a no-op, as in ipvsadm
        elif token in IPV6_FLAGS:  # ipvsadm: only once -f has set a fwmark; may repeat
            if not values.get("service-address", "").startswith("fwmark "):
                raise UsageError(IPV6_BEFORE_FWMARK)
            order.append(IPV6)
        elif token in _OPTIONS:
            option, takes, canonical = _OPTIONS[token]
            if option in values:
                raise UsageError(f"multiple '{option}' options specified")
            value = canonical
            if takes == "yes":
                if i >= len(tokens):
                    raise UsageError(f"{token}: missing argument")
                value = (canonical + " " if canonical else "") + tokens[i]
                i += 1
            elif takes == "optional" and i < len(tokens) and not tokens[i].startswith("-"):
                value = tokens[i]
                i += 1
            values[option] = value
            order.append(option)
        elif token.startswith("-") and token != "-":
            raise UsageError(f"{token}: unknown option")
        else:
            positional.append(token)
    command = Command(name or "list", set(order) - {IPV6})
    _values(command, values, positional, order)
    _check(command)
    return command


def _values(command: Command, values: dict[str, str], positional: list[str],
            order: list[str]) -> None:
    if command.name == "set":
        if len(positional) < 3:
            raise UsageError("--set option requires 3 timeout values")
        command.timeouts = tuple(_number(v, 0, MAX_TIMEOUT, "illegal timeout value")
                                 for v in positional[:3])  # type: ignore[assignment]
        positional = positional[3:]
    elif command.name in ("start-daemon", "stop-daemon"):
        state = positional[0] if positional else ""
        if state not in ("master", "backup"):  # sic: ipvsadm's two texts
            raise UsageError("illegal start-daemon parameter specified" if command.name ==
                             "start-daemon" else "illegal start_daemon specified")
        command.daemon_state = state
        positional = positional[1:]
    if positional:
        raise UsageError(f"unexpected argument {positional[0]}")
    if "service-address" in values:
        _service(command, values["service-address"], order)
    if "scheduler" in values:
        command.scheduler = values["scheduler"]
    if "persistent" in values:
        text = values["persistent"]
        command.persistent = (_number(text, 1, MAX_PERSISTENCE,
                                      "illegal timeout for persistent service")
                              if text else DEFAULT_PERSISTENCE)
    if "netmask" in values:
        command.netmask = _netmask(values["netmask"], command, order)
    if "sched-flags" in values:
        command.sched_flags = tuple(f for f in values["sched-flags"].split(",") if f)
    if "real-server" in values:
        command.server = _endpoint(values["real-server"],
                                   "illegal real server address[:port] specified")
    if "forwarding-method" in values:
        command.forward = values["forwarding-method"]
    for option, attr, message, hi in (("weight", "weight", "illegal weight specified", 65535),
                                      ("u-threshold", "u_threshold",
                                       "illegal u_threshold specified", 2**31 - 1),
                                      ("l-threshold", "l_threshold",
                                       "illegal l_threshold specified", 2**31 - 1)):
        if option in values:
            setattr(command, attr, _number(values[option], 0, hi, message))
    if "mcast-interface" in values:
        command.mcast_interface = values["mcast-interface"]
    if "syncid" in values:
        command.syncid = _number(values["syncid"], 0, 255, "illegal syncid specified")
    if "mcast-group" in values:
        command.mcast_group = _mcast_group(values["mcast-group"])
    if "mcast-port" in values:
        command.mcast_port = _number(values["mcast-port"], 1, 65535, "illegal mcast-port specified")
    if "mcast-ttl" in values:
        command.mcast_ttl = _number(values["mcast-ttl"], 1, 255, "illegal mcast-ttl specified")
    if "sync-maxlen" in values:
        command.sync_maxlen = _number(values["sync-maxlen"], 1, 65535 - 20 - 8,
                                      "illegal sync-maxlen specified")
    if "tun-type" in values:
        if values["tun-type"] not in TUNNEL_OPTIONS:
            raise UsageError("illegal tunnel type specified")
        command.tun_type = values["tun-type"]
    if "tun-port" in values:
        command.tun_port = _number(values["tun-port"], 1, 65535, "illegal tunnel port specified")
    for flags in ("nocsum", "csum", "remcsum"):
        if f"tun-{flags}" in command.options:
            command.tun_flags = flags


def _service(command: Command, value: str, order: list[str]) -> None:
    """-t/-u as parse_service reads them; -f as parse_fwmark, its family AF_INET6 once a -6
    follows it (-6 before -f is refused as it comes)."""
    kind, _, text = value.partition(" ")
    if kind == "fwmark":
        command.fwmark = _fwmark(text)
        command.fwmark_af = AF_INET6 if IPV6 in order else AF_INET
        command.service = ("", "", 0)
        return
    if kind in NOT_HERE:
        raise UsageError(NOT_HERE[kind])
    address, port = _endpoint(text, "illegal virtual server address[:port] specified")
    command.service = (kind, address, 0 if port is None else port)


_BLANKS = " \t\n\v\f\r"
_STRTOL = re.compile(f"[{_BLANKS}]*[+-]?[0-9]+")


def _fwmark(text: str) -> int:
    """parse_fwmark: strtol(buf, &end, 10) read to the end (leading blanks and a sign allowed),
    kept in an unsigned long, then 1..UINT_MAX (a negative one wraps far above it)."""
    if not _STRTOL.fullmatch(text) or not 1 <= int(text.lstrip(_BLANKS)) <= 0xFFFFFFFF:
        raise UsageError(f"invalid fwmark value `{text}' specified")
    return int(text.lstrip(_BLANKS))


def _mcast_group(text: str) -> str:
    """ipvsadm's --mcast-group: with a ``:`` an IPv6 address in ff00::/8 (inet_pton,
    IN6_IS_ADDR_MULTICAST), else an IPv4 one in 224.0.0.0/4 (IN_MULTICAST); the model's text."""
    if ":" in text:
        try:
            ok = "%" not in text and ipaddress.IPv6Address(text).is_multicast
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"invalid IPv6 mcast-group `{text}'")
        return canonical(text)
    try:
        ok = ipaddress.IPv4Address(text).is_multicast
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"invalid IPv4 mcast-group `{text}'")
    return text


def _number(text: str, lo: int, hi: int, message: str) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise UsageError(message)
    return int(text)


def _endpoint(text: str, message: str) -> tuple[str, int | None]:
    """ipvsadm's parse_service: ``[IPv6]:port``; an IPv6 address unbracketed (then it has no
    port: ``2001:db8::1:80`` is one address); or ``IPv4[:port]``. The address comes back as
    the model keeps it, the port None when none was given. ipvsadm's quirks are kept: after
    ``]`` only ``:port`` may follow (``[2001:db8::1]`` alone is illegal), and brackets around
    an IPv4 address hide its port (``[192.0.2.1]:80`` is 192.0.2.1 with no port). Host and
    service names are not looked up here (no DNS in pylvs.adm): numbers only."""
    if not text or text.isdigit():
        raise UsageError(message)  # str_is_digit: a bare number is no address
    host, port = text, None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise UsageError(message)
        port = rest[1:]
    if inet_pton6(host):
        address = canonical(host)
    else:
        head, colon, tail = host.rpartition(":")
        host, port = (head, tail) if colon else (host, None)
        try:
            address = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UsageError(message) from None
    if port is None:
        return address, None
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UsageError(message)
    return address, int(port)


def inet_pton6(text: str) -> bool:
    """glibc's inet_pton(AF_INET6) would read ``text``: hex groups, one ``::``, a dotted IPv4
    tail; no zone (``%eth0``), no blanks."""
    if "%" in text or not text.isascii():
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _netmask(text: str, command: Command, order: list[str]) -> str | None:
    """ipvsadm -M, read when popt reaches it: for a service already known to be IPv6 a prefix
    length 1..128 as ``atoi`` reads it; else an IPv4 mask. An IPv6 service given *after* -M
    (a -t/-u one, or a -6 after -f; each sets the mask to 128) resets the mask, so that mask is
    dropped (None: the family's default)."""
    ipv6_then, reset = _ipv6_around(command, order, order.index("netmask"))
    if ipv6_then:
        prefix = _atoi(text) & 0xFFFFFFFF  # int → the u_int32_t netmask
        if not 1 <= prefix <= 128:
            raise UsageError("illegal ipv6 netmask specified")
        return None if reset else str(prefix)
    if reset:  # parse_netmask then, and parse_service's (or -6's) 128 after it
        if not inet_aton(text):
            raise UsageError("illegal virtual server persistent mask specified")
        return None
    try:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
    except ValueError:
        raise UsageError("illegal virtual server persistent mask specified") from None


def _ipv6_around(command: Command, order: list[str], at: int) -> tuple[bool, bool]:
    """Whether the service was IPv6 when popt reached option ``at`` (-M), and whether an IPv6
    service (parse_service) or a -6 came after it, setting the mask to 128."""
    if command.service is None or command.af != AF_INET6:
        return False, False
    marks = [i for i, option in enumerate(order)
             if option == (IPV6 if command.fwmark else "service-address")]
    return any(i < at for i in marks), any(i > at for i in marks)


_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _atoi(text: str) -> int:
    """C's atoi as glibc has it: (int) strtol(text, NULL, 10), 0 when there is no number."""
    match = _ATOI.match(text)
    if match is None:
        return 0
    value = max(-(1 << 63), min((1 << 63) - 1, int(match.group(1))))  # strtol saturates
    value &= 0xFFFFFFFF  # (int): the low 32 bits
    return value - (1 << 32) if value >= 1 << 31 else value


def inet_aton(text: str) -> bool:
    """Whether glibc's inet_aton reads ``text``: 1 to 4 parts, each decimal, octal (0...) or
    hex (0x...), the last filling the bytes left; it stops at a blank."""
    parts: list[int] = []
    i, n = 0, len(text)
    while True:
        if i >= n or not text[i].isascii() or not text[i].isdigit():
            return False
        base, digits = 10, ""
        if text[i] == "0":
            i += 1
            base = 8
            digits = "0"
            if i < n and text[i] in "xX":
                if i + 1 >= n or text[i + 1] not in "0123456789abcdefABCDEF":
                    return False  # strtoul reads the 0 and stops at the x
                base, digits = 16, ""
                i += 1
        allowed = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}[base]
        while i < n and text[i] in allowed:
            digits += text[i]
            i += 1
        if base == 8 and i < n and text[i] in "89":
            return False
        value = int(digits, base) if digits else 0
        if value > 0xFFFFFFFF:
            return False
        if i < n and text[i] == ".":
            if len(parts) > 2 or value > 0xFF:
                return False
            parts.append(value)
            i += 1
            continue
        break
    if i < n and not (text[i].isascii() and text[i] in " \t\n\v\f\r"):
        return False
    return value <= (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)[len(parts)]


def _check(command: Command) -> None:
    """generic_opt_check, then ipvsadm's rules for particular commands."""
    name, options = command.name, command.options
    if name in ("help", "version"):
        return
    if "pe" in options:
        raise UsageError(NOT_HERE["pe"])
    if name in NOT_HERE:
        raise UsageError(NOT_HERE[name])
    _check_row(OPTNAMES, _TABLE[name], options, f"'{name}' command")
    if name == "list" and (
            options & {"connection", "timeout", "daemon"} and options & {
                "stats", "rate", "thresholds"}
            or options & {"timeout", "daemon"} and "persistent-conn" in options):
        raise UsageError("options conflicts in the list command")
    protocol, _, port = command.service or ("", "", 0)
    plain = command.service is not None and not command.fwmark  # a -t/-u service
    if plain and port == 0 and command.persistent is None and name in (
            "add-service", "edit-service"):
        raise UsageError("Zero port specified for non-persistent service")
    if "ops" in options and plain and protocol != "udp":
        raise UsageError("One-Packet Scheduling is only for UDP virtual services")
    if name in ("add-server", "edit-server") and command.service and command.server and (
            command.af != family_of(command.server[0])
            and forwarders.get(command.forward or forwarders.DEFAULT).conn_flag
            != IP_VS_CONN_F_TUNNEL):
        raise UsageError(MIXED_FAMILY)
    if name in ("add-server", "edit-server"):
        _check_tunnel(command)


def _check_tunnel(command: Command) -> None:
    """ipvsadm's "only tunneling allows tunnel options", then tunnel_opt_check by the
    tunnel_types_v_options table (the type's default: ipip)."""
    given = _TUN_OPTIONS & command.options
    if command.tun_type is not None:
        given = given | {"tun-type"}
    if command.tun_port is not None:
        given = given | {"tun-port"}
    tunnelling = forwarders.get(command.forward or forwarders.DEFAULT).conn_flag == \
        IP_VS_CONN_F_TUNNEL
    if given and not tunnelling:
        raise UsageError("Tunnel options conflict with forward method")
    kind = command.tun_type or "ipip"
    _check_row(_TUN_OPTION_ORDER, TUNNEL_OPTIONS[kind], given, f"'{kind}' tunnel type")


def _check_row(names: Sequence[str], row: Sequence[str], given: set[str], what: str) -> None:
    """One row of ipvsadm's legality tables (commands_v_options, tunnel_types_v_options):
    '+' compulsory, 'x' illegal, '1' at most one of the '1's; ``what`` names the row."""
    exclusive: str | None = None
    for option, rule in zip(names, row, strict=True):
        if option not in given:
            if rule == "+":
                raise UsageError(f"You need to supply the '{option}' option for the {what}")
        elif rule == "x":
            raise UsageError(f"Illegal '{option}' option with the {what}")
        elif rule == "1":
            if exclusive is not None:
                raise UsageError(f"The option '{option}' conflicts with the '{exclusive}' "
                                 f"option in the {what}")
            exclusive = option


USAGE = f"""{VERSION_LINE}
Usage:
  pylvs adm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  pylvs adm -D virtual-service
  pylvs adm -C
  pylvs adm -R
  pylvs adm -S [-n]
  pylvs adm -a|e virtual-service -r server-address [options]
  pylvs adm -d virtual-service -r server-address
  pylvs adm -L|l [virtual-service] [options]
  pylvs adm -Z [virtual-service]
  pylvs adm --set tcp tcpfin udp
  pylvs adm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --help            -h        display this help message
  --version         -v        show the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      or a plug-in; the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
"""

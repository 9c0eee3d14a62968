"""An iptables (ip6tables) or nft MARK line → a mark rule (pylvs.core.marks), sans-IO.

IPVS takes a firewall-mark service's packets by the mark netfilter set on them; the ipvsadm(8)
man page sets it so: ``iptables  -A PREROUTING -t mangle -d 207.175.44.110/31 -j MARK
--set-mark 1``. pylvs reads frames before netfilter, so it classifies them itself by such
lines, copied into the config's ``[[mark]]`` tables. What is read:

- iptables: an optional ``iptables`` or ``ip6tables`` word (the family the destination must be
  of), ``-A|--append PREROUTING`` or ``-I|--insert PREROUTING [N]`` (N from 1, default 1),
  ``-t|--table mangle``, ``-d|--destination|--dst ADDRESS[/LEN or /MASK]``, ``-p|--protocol
  tcp|udp|6|17|all``, ``--dport|--destination-port N``, ``N:M``, ``:M`` or ``N:`` (after
  ``-p``), ``-m tcp|udp``, ``-m multiport --dports|--destination-ports P,Q,N:M`` (at most 15
  ports, a range counting two), ``-m comment --comment TEXT``, ``-w|--wait [S]``, ``-j|--jump
  MARK`` with ``--set-mark V`` or ``--set-xmark V`` (with or without ``/0xffffffff``); numbers
  as iptables reads them (strtoul with base 0: ``0x1``, ``010`` is 8); long options also as
  ``--opt=value``.
- nft: an optional ``nft`` word, ``add rule [ip|ip6|inet] TABLE CHAIN`` (``insert rule``:
  first), then ``ip daddr A[/LEN]`` or ``ip6 daddr A[/LEN]``, ``meta l4proto tcp|udp``,
  ``ip protocol tcp|udp``, ``ip6 nexthdr tcp|udp``, ``tcp|udp|th dport N``, ``N-M`` or
  ``{ P, Q, N-M }``, ``counter``, and ``meta mark set V`` (or ``mark set V``).

Anything else is refused with the token and why (RuleError): matches pylvs cannot see or keep
(``-s``, ``-i``, ``--sport``, ``!``, conntrack state), other tables, chains, targets and
commands, partial masks (``--set-mark V/M``: the mark would depend on what an earlier rule
set), ``--or-mark`` and the like, port names (numbers only: no /etc/services is read).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from pylvs.core.marks import MAX_MARK, MarkRule, PortRange

PROTOCOLS = {"tcp": 6, "udp": 17, "6": 6, "17": 17, "all": 0, "0": 0}
IPTABLES = {"iptables": 4, "ip6tables": 6, "iptables-nft": 4, "ip6tables-nft": 6,
            "iptables-legacy": 4, "ip6tables-legacy": 6}
MULTIPORT_MAX = 15  # XT_MULTI_PORTS
FULL_MASK = MAX_MARK
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_OPTION_NAMES = {
    "-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
    "-t": "table", "--table": "table", "-d": "destination", "--destination": "destination",
    "--dst": "destination", "-p": "protocol", "--protocol": "protocol", "-m": "match",
    "--match": "match", "-j": "jump", "--jump": "jump", "--dport": "dport",
    "--destination-port": "dport", "--dports": "dports", "--destination-ports": "dports",
    "--set-mark": "set-mark", "--set-xmark": "set-xmark", "--comment": "comment"}
_REFUSED = {
    "-s": "a source match: pylvs's rules match the destination only",
    "--source": "a source match: pylvs's rules match the destination only",
    "--src": "a source match: pylvs's rules match the destination only",
    "--sport": "a source-port match: pylvs's rules match destination ports only",
    "--source-port": "a source-port match: pylvs's rules match destination ports only",
    "--sports": "a source-port match: pylvs's rules match destination ports only",
    "--source-ports": "a source-port match: pylvs's rules match destination ports only",
    "--ports": "multiport --ports matches source ports too: write --dports",
    "-i": "an interface match: pylvs reads [director] interface alone",
    "--in-interface": "an interface match: pylvs reads [director] interface alone",
    "-o": "an output interface: PREROUTING has none",
    "--out-interface": "an output interface: PREROUTING has none",
    "!": "a negation: pylvs's rules match what they name",
    "-f": "a fragment match: pylvs's rules match every packet to the destination",
    "--fragment": "a fragment match: pylvs's rules match every packet to the destination",
    "--or-mark": "it keeps bits an earlier rule set: pylvs's rules set the whole mark",
    "--and-mark": "it keeps bits an earlier rule set: pylvs's rules set the whole mark",
    "--xor-mark": "it keeps bits an earlier rule set: pylvs's rules set the whole mark",
    "-D": "it deletes a rule: only -A or -I adds one", "-R": "it replaces a rule: only -A "
    "or -I adds one", "-F": "it flushes: only -A or -I adds a rule", "-N": "it makes a "
    "chain: only -A or -I adds a rule", "-P": "it sets a policy: only -A or -I adds a rule"}


class RuleError(ValueError):
    """A line pylvs cannot honour; the message names the token and why."""


@dataclass(frozen=True)
class MarkLine:
    rule: MarkRule
    insert: int | None = None
    """-I's position (1: first) among the rules before it; None: appended (-A)."""


def parse_iptables(line: str) -> MarkLine:
    """An iptables or ip6tables MARK line, as the ipvsadm(8) man page writes it."""
    try:
        words = shlex.split(line, comments=False)
    except ValueError as exc:
        raise RuleError(f"{line!r}: {exc}") from None
    family = IPTABLES.get(words[0].rsplit("/", 1)[-1]) if words else None
    if family is not None:
        words = words[1:]
    return _Iptables(_long_options(words), family).line()


def _long_options(words: list[str]) -> list[str]:
    """``--opt=value`` as two words, as getopt_long reads it."""
    out: list[str] = []
    for word in words:
        name, eq, value = word.partition("=")
        out += [name, value] if eq and name.startswith("--") else [word]
    return out


class _Iptables:
    def __init__(self, words: list[str], family: int | None) -> None:
        self.words, self.family, self.at = words, family, 0
        self.found: dict[str, str] = {}
        self.insert: int | None = None
        self.matches: set[str] = set()
        self.destination: Network | None = None
        self.proto: int | None = None
        """-p's protocol number (0: all); None: no -p."""
        self.ports: tuple[PortRange, ...] = ()
        self.mark: int | None = None

    def take(self, option: str) -> str:
        """The value after ``option``."""
        if self.at >= len(self.words):
            raise RuleError(f"{option!r} needs a value")
        value = self.words[self.at]
        self.at += 1
        return value

    def line(self) -> MarkLine:
        if not self.words:
            raise RuleError("an empty line: write the iptables rule that sets the mark")
        while self.at < len(self.words):
            word = self.words[self.at]
            self.at += 1
            self.option(word)
        return MarkLine(self.rule(), self.insert)

    def option(self, word: str) -> None:
        if word in _REFUSED:
            raise RuleError(f"{word!r} is refused: {_REFUSED[word]}")
        if word in ("-w", "--wait"):
            if self.at < len(self.words) and self.words[self.at].isdigit():
                self.at += 1
            return
        name = _OPTION_NAMES.get(word)
        if name is None:
            raise RuleError(f"{word!r} is refused: not an option pylvs reads of a MARK rule "
                            "(docs/config.md lists them)")
        if name in self.found and name not in ("match",):
            raise RuleError(f"{word!r} given twice")
        value = self.take(word)
        if value == "!":
            raise RuleError(f"'!' after {word!r} is refused: {_REFUSED['!']}")
        getattr(self, "opt_" + name.replace("-", "_"))(word, value)
        self.found[name] = value

    def opt_append(self, word: str, chain: str) -> None:
        self.chain(word, chain)

    def opt_insert(self, word: str, chain: str) -> None:
        self.chain(word, chain)
        self.insert = 1
        if self.at < len(self.words) and self.words[self.at].isdigit():
            self.insert = int(self.words[self.at])
            self.at += 1
            if self.insert < 1:
                raise RuleError(f"{word!r} {chain} {self.insert}: positions start at 1")

    def chain(self, word: str, chain: str) -> None:
        if "append" in self.found or "insert" in self.found:
            raise RuleError(f"{word!r}: one command per line")
        if chain != "PREROUTING":
            raise RuleError(f"chain {chain!r} is refused: pylvs honours mangle PREROUTING, "
                            "where the ipvsadm man page marks packets before IPVS sees them")

    def opt_table(self, word: str, table: str) -> None:
        if table != "mangle":
            raise RuleError(f"table {table!r} is refused: pylvs honours mangle PREROUTING only")

    def opt_destination(self, word: str, text: str) -> None:
        if "," in text:
            raise RuleError(f"{word} {text!r}: one destination per line (iptables makes a rule "
                            "of each)")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise RuleError(f"{word} {text!r} is not an address, address/len or "
                            "address/mask (names are not looked up)") from None
        if self.family is not None and network.version != self.family:
            tool = "ip6tables" if self.family == 6 else "iptables"
            raise RuleError(f"{word} {text!r} is IPv{network.version}, and {tool} is "
                            f"IPv{self.family}'s")
        self.destination = network

    def opt_protocol(self, word: str, name: str) -> None:
        if name.lower() not in PROTOCOLS:
            raise RuleError(f"{word} {name!r} is refused: pylvs's fwmark services take tcp and "
                            "udp")
        self.proto = PROTOCOLS[name.lower()]

    def opt_match(self, word: str, name: str) -> None:
        if name in ("tcp", "udp"):
            if PROTOCOLS[name] != self.proto:
                raise RuleError(f"{word} {name} needs -p {name} before it")
        elif name not in ("multiport", "comment"):
            raise RuleError(f"{word} {name!r} is refused: pylvs reads the tcp, udp, multiport "
                            "and comment matches only")
        self.matches.add(name)

    def opt_dport(self, word: str, text: str) -> None:
        if not self.proto:
            raise RuleError(f"{word!r} needs -p tcp or -p udp before it (iptables: unknown "
                            "option)")
        self.set_ports(word, [_port_range(word, text, ":")])

    def opt_dports(self, word: str, text: str) -> None:
        if "multiport" not in self.matches:
            raise RuleError(f"{word!r} needs -m multiport before it")
        if not self.proto:
            raise RuleError(f"{word!r}: multiport needs -p tcp or -p udp before it")
        ranges = [_port_range(word, part, ":") for part in text.split(",")]
        if sum(1 if lo == hi else 2 for lo, hi in ranges) > MULTIPORT_MAX:
            raise RuleError(f"{word} {text!r}: at most {MULTIPORT_MAX} ports (a range counts "
                            "two), as multiport takes")
        self.set_ports(word, ranges)

    def set_ports(self, word: str, ranges: list[PortRange]) -> None:
        if self.ports:
            raise RuleError(f"{word!r}: the ports are given already (one --dport or --dports "
                            "per line)")
        self.ports = tuple(ranges)

    def opt_comment(self, word: str, text: str) -> None:
        if "comment" not in self.matches:
            raise RuleError(f"{word!r} needs -m comment before it")

    def opt_jump(self, word: str, target: str) -> None:
        if target != "MARK":
            raise RuleError(f"target {target!r} is refused: MARK sets the mark pylvs reads")

    def opt_set_mark(self, word: str, text: str) -> None:
        if "jump" not in self.found:
            raise RuleError(f"{word!r} needs -j MARK before it")
        if "set-mark" in self.found or "set-xmark" in self.found:
            raise RuleError(f"{word!r}: the mark is set already")
        value, slash, mask = text.partition("/")
        if slash and _number(word, mask) != FULL_MASK:
            raise RuleError(f"{word} {text!r}: the mask {mask} is refused: with a mask other "
                            "than 0xffffffff the mark keeps bits an earlier rule set, and "
                            "pylvs's rules set the whole mark")
        self.mark = _number(word, value)

    def opt_set_xmark(self, word: str, text: str) -> None:
        self.opt_set_mark(word, text)

    def rule(self) -> MarkRule:
        if "append" not in self.found and "insert" not in self.found:
            raise RuleError("no -A PREROUTING (or -I PREROUTING): the rule is added nowhere")
        if self.found.get("table") != "mangle":
            raise RuleError("no -t mangle: the rule would go to the filter table (iptables's "
                            "default), and pylvs honours mangle PREROUTING only")
        if "jump" not in self.found or self.mark is None:
            raise RuleError("no -j MARK --set-mark N: the rule sets no mark")
        if self.destination is None:
            raise RuleError("no -d: every destination would be marked; pylvs takes frames for "
                            "each address a rule names, so name them (-d ADDRESS[/LEN])")
        try:
            return MarkRule(str(self.destination), self.mark, self.proto or 0, self.ports)
        except ValueError as exc:
            raise RuleError(str(exc)) from None


def _number(word: str, text: str) -> int:
    """strtoul with base 0, as iptables reads marks: 0x hex, a leading 0 octal."""
    try:
        if re.fullmatch(r"0[0-7]+", text):
            return int(text, 8)
        value = int(text, 0)
    except ValueError:
        raise RuleError(f"{word} {text!r} is not a number") from None
    if not 0 <= value <= MAX_MARK:
        raise RuleError(f"{word} {text!r} is not within 0..{MAX_MARK:#x}")
    return value


def _port_range(word: str, text: str, sep: str) -> PortRange:
    """``N``, ``N{sep}M``; with ":" also ``:M`` (from 0) and ``N:`` (to 65535), as iptables."""
    low, mark, high = text.partition(sep)
    if sep == ":" and mark:
        low, high = low or "0", high or "65535"
    for part in (low, high) if mark else (low,):
        if not part.isdigit():
            raise RuleError(f"{word} {text!r}: {part!r} is not a port number (names are not "
                            "looked up)")
    lo, hi = int(low), int(high) if mark else int(low)
    if not 0 <= lo <= hi <= 0xFFFF:
        raise RuleError(f"{word} {text!r} is not a port or a range low to high within 0..65535")
    return lo, hi


# -- nft ---------------------------------------------------------------------------------------

_NFT_TOKEN = re.compile(r"\{[^}]*\}|[^\s{}]+")
_NFT_FAMILIES = {"ip": 4, "ip6": 6, "inet": None}


def parse_nft(line: str) -> MarkLine:
    """An nft rule that sets a mark: ``nft add rule ip mangle PREROUTING ip daddr
    207.175.44.110/31 meta mark set 1``."""
    words = _NFT_TOKEN.findall(line)
    if words[:1] == ["nft"]:
        words = words[1:]
    if len(words) < 2 or words[1] != "rule" or words[0] not in ("add", "insert"):
        raise RuleError(f"{' '.join(words[:2])!r}: an nft line here is `add rule` or `insert "
                        "rule` (insert: first)")
    insert = 1 if words[0] == "insert" else None
    words = words[2:]
    family = 4
    if words[:1] and words[0] in _NFT_FAMILIES:
        family, words = _NFT_FAMILIES[words[0]], words[1:]
    elif words[:1] and words[0] in ("arp", "bridge", "netdev"):
        raise RuleError(f"family {words[0]!r} is refused: ip, ip6 or inet")
    if len(words) < 2:
        raise RuleError("the table and the chain are missing")
    return MarkLine(_Nft(words[2:], family).rule(), insert)


class _Nft:
    def __init__(self, words: list[str], family: int | None) -> None:
        self.words, self.family = words, family
        self.destination: Network | None = None
        self.proto = 0
        self.ports: tuple[PortRange, ...] = ()
        self.mark: int | None = None

    def rule(self) -> MarkRule:
        words = self.words
        while words:
            words = self.expression(words)
        if self.mark is None:
            raise RuleError("no `meta mark set N`: the rule sets no mark")
        if self.destination is None:
            raise RuleError("no `ip daddr` (`ip6 daddr`): every destination would be marked; "
                            "pylvs takes frames for each address a rule names, so name them")
        try:
            return MarkRule(str(self.destination), self.mark, self.proto, self.ports)
        except ValueError as exc:
            raise RuleError(str(exc)) from None

    def expression(self, words: list[str]) -> list[str]:
        head = words[0]
        if head == "counter":
            return words[1:]
        pair = tuple(words[:2])
        if pair in (("ip", "daddr"), ("ip6", "daddr")):
            self.daddr(head, _value(words, 2))
        elif pair in (("meta", "l4proto"), ("ip", "protocol"), ("ip6", "nexthdr")):
            self.protocol(" ".join(pair), _value(words, 2))
        elif pair in (("tcp", "dport"), ("udp", "dport"), ("th", "dport")):
            if head != "th":
                self.protocol(head, head)
            self.dport(" ".join(pair), _value(words, 2))
        elif pair == ("meta", "mark") or head == "mark":
            return self.set_mark(words[2:] if head == "meta" else words[1:])
        else:
            raise RuleError(f"{' '.join(words[:3])!r} is refused: pylvs reads ip/ip6 daddr, "
                            "meta l4proto, tcp/udp/th dport and meta mark set")
        return words[3:]

    def daddr(self, head: str, text: str) -> None:
        if text.startswith("{") or text in ("!=", "!"):
            raise RuleError(f"{head} daddr {text!r} is refused: one destination, matched as "
                            "it is named")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise RuleError(f"{head} daddr {text!r} is not an address or address/len") from None
        want = 6 if head == "ip6" else 4
        if network.version != want or self.family not in (None, want):
            raise RuleError(f"{head} daddr {text!r}: not of the rule's family")
        self.destination = network

    def protocol(self, what: str, name: str) -> None:
        if name not in ("tcp", "udp"):
            raise RuleError(f"{what} {name!r} is refused: pylvs's fwmark services take tcp and "
                            "udp, one per rule")
        if self.proto and self.proto != PROTOCOLS[name]:
            raise RuleError(f"{what} {name}: the rule names another protocol already")
        self.proto = PROTOCOLS[name]

    def dport(self, what: str, text: str) -> None:
        if text in ("!=", "!"):
            raise RuleError(f"{what} {text!r} is refused: a negation")
        parts = text.strip("{}").split(",") if text.startswith("{") else [text]
        self.ports = tuple(_port_range(what, p.strip(), "-") for p in parts if p.strip())

    def set_mark(self, words: list[str]) -> list[str]:
        if words[:1] != ["set"] or len(words) < 2:
            raise RuleError(f"{' '.join(['mark', *words[:2]])!r}: only `meta mark set N` is read")
        self.mark = _number("meta mark set", words[1])
        return words[2:]


def _value(words: list[str], index: int) -> str:
    if len(words) <= index:
        raise RuleError(f"{' '.join(words)!r} needs a value")
    return words[index]

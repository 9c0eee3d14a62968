"""BIRD 2's language, as far as a director needs it: the config pylvs starts BIRD with, the files
of VIP routes it includes, and the replies of BIRD's control socket (what birdc speaks).

The VIPs are static routes (``route VIP/32 blackhole``, ``route VIP/128 blackhole``, never
installed in the kernel: no kernel protocol), in one static protocol per family (a static
protocol has one channel): ``pylvs_vips`` (``ipv4``) and ``pylvs_vips6`` (``ipv6``), each
including its own routes file. Each neighbour's BGP protocol has the one channel of its address's
family, exporting that family's static protocol with the session's own address as next hop
(pylvs.ha.bgp says why IPv6 routes never ride an IPv4 session). A family is written only when
some neighbour is of it, so an IPv4-only director's config is what it always was. To announce
or withdraw, the routes files are rewritten and BIRD reconfigured: the static protocols take the
change without resetting a session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pylvs.ha.bgp import Bgp, prefix

STATIC_PROTOCOL = "pylvs_vips"
STATIC_PROTOCOLS = {4: STATIC_PROTOCOL, 6: "pylvs_vips6"}
CHANNELS = {4: "ipv4", 6: "ipv6"}
_LINE = re.compile(r"^(\d{4})([ -])(.*)$")


def routes(vips: list[str]) -> str:
    """A routes file: one blackhole host route per VIP, /32 or /128 (an empty file announces
    nothing). A file is included by one family's static protocol: give it that family's VIPs."""
    return "".join(f"route {prefix(vip)} blackhole;\n" for vip in vips)


def config(spec: Bgp, router_id: str, routes_path: str, routes6_path: str = "") -> str:
    """bird.conf for a director: its VIPs to every neighbour, each family over the sessions of
    that family, nothing learnt back. ``routes_path``/``routes6_path``: the IPv4 and IPv6
    routes files (the IPv6 one is needed once a neighbour is IPv6)."""
    paths = {4: routes_path, 6: routes6_path}
    lines = [f"router id {router_id};", "protocol device { scan time 10; }"]
    for of in spec.families:
        if not paths[of]:
            raise ValueError(f"an {CHANNELS[of]} neighbour needs the {CHANNELS[of]} routes file")
        lines += [f"protocol static {STATIC_PROTOCOLS[of]} {{", f"  {CHANNELS[of]};",
                  f'  include "{paths[of]}";', "}"]
    if spec.bfd:
        ms = max(1, round(spec.bfd_interval * 1000))
        lines += ["protocol bfd {", '  interface "*" {',
                  f"    min rx interval {ms} ms; min tx interval {ms} ms;",
                  f"    multiplier {spec.bfd_multiplier};", "  };", "}"]
    for i, peer in enumerate(spec.neighbors, start=1):
        lines += [f"protocol bgp peer{i} {{", f"  local as {spec.local_as};",
                  f"  neighbor {peer.address} as {peer.remote_as};",
                  f"  hold time {spec.hold_time};", f"  keepalive time {spec.keepalive_time};",
                  "  connect retry time 1;", "  error wait time 1, 10;"]
        if spec.bfd:
            lines.append("  bfd on;")
        if peer.password:
            lines.append(f'  password "{_quoted(peer.password)}";')
        lines += [f"  {CHANNELS[peer.family]} {{", "    import none;",
                  f'    export where proto = "{STATIC_PROTOCOLS[peer.family]}";',
                  "    next hop self;", "  };", "}"]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    if '"' in text or "\n" in text or "\\" in text:
        raise ValueError("a BGP password cannot hold a quote, a backslash or a newline")
    return text


@dataclass
class Reply:
    """One answer of the control socket: its lines' codes and texts. Codes 8000 and up are
    errors ("8001 Command too long", "9001 syntax error")."""
    lines: list[tuple[int, str]]

    @property
    def ok(self) -> bool:
        return not any(code >= 8000 for code, _ in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)


def reply_line(line: str, previous: int) -> tuple[int, str, bool]:
    """(code, text, last) of one line of a reply: ``CODE-text`` goes on, ``CODE text`` ends it,
    `` text`` continues the previous code."""
    match = _LINE.match(line)
    if match is None:
        return previous, line[1:] if line.startswith(" ") else line, False
    code = int(match.group(1))
    return code, match.group(3), match.group(2) == " "


@dataclass(frozen=True)
class Session:
    """A row of ``show protocols`` for a BGP protocol."""
    name: str
    state: str
    """BIRD's protocol state: up, start, ..."""
    info: str
    """Its BGP state: Established, Active, Connect, ..."""

    @property
    def established(self) -> bool:
        return self.state == "up" and self.info.startswith("Established")


def sessions(reply: Reply) -> list[Session]:
    """The BGP protocols of a ``show protocols`` reply."""
    out = []
    for code, text in reply.lines:
        fields = text.split(None, 5)
        if code == 1002 and len(fields) >= 5 and fields[1] == "BGP":
            out.append(Session(fields[0], fields[3], fields[5].strip() if len(fields) > 5
                               else ""))
    return out

"""`pylvs lab ... --explain`: what each part of the lab's report shows, in plain paragraphs.

Why the real servers' steps are needed is fixed text. Everything said of the director's tables
is generated from what this run printed: its `-Ln` listing and `-Lnc` rows (ipvsadm's layouts,
pylvs.adm.layouts, parsed back), its socket counts, its requests' answers and its mistake. The
rules those paragraphs state are read from pylvs's own tables (pylvs.core.conntrack:
ACTIVE_STATES, TRANSITIONS), which tests/lab/test_explain.py holds against IPVS's; so every
number, state and count a paragraph names is the table's above it. `paragraphs` wraps and
indents them so they stand apart from the output.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pylvs.core import conntrack as ct
from pylvs.lab.mistakes import NO_ANSWER, Mistake

WIDTH = 96

REAL_SERVERS = {
    "dr": "Why these steps (DR): the director sends the client's frame on unchanged but for the "
          "MACs, so it still says 'to the VIP'; a real server takes it only if it holds the VIP, "
          "hence the VIP on lo. It must hold it as a /32: a /24 on lo would make the whole "
          "subnet local to it (a loop: its answers to the client's subnet would come back into "
          "itself). And it must never "
          "tell the segment it has the VIP, or the client would send to it directly and bypass "
          "the director. arp_ignore=1: answer an ARP request only for an address configured on "
          "the interface it arrived on (the VIP is on lo, the request on eth0: no answer). "
          "arp_announce=2: in its own ARP requests, use the best address of the outgoing "
          "interface (its RIP) as the sender, never the VIP, which would teach the neighbours "
          "the VIP's MAC. The kernel uses the larger of the 'all' value and the interface's, so "
          "both are set.",
    "nat": "Why this step (NAT): the director rewrote the destination to the real server's own "
           "address but kept the client's, so the real server answers the client's address. "
           "That answer must go back through the director, which puts the VIP back as the "
           "source; sent straight to the client it would come from an address the client never "
           "talked to, and be dropped. Hence the default route via the director's inside "
           "address.",
    "tun": "Why these steps (TUN): the director wraps the client's packet in a new IP header to "
           "the real server's own address (IP-in-IP, protocol 4). The real server unwraps it "
           "and finds a packet to the VIP, so it holds the VIP on the tunnel's device; "
           "rp_filter is off there because the unwrapped packet's source, the client, is not "
           "reached through that device. It answers the client directly, from the VIP, "
           "through its own router.",
}

REAL_SERVERS6 = {
    "dr": "Why this one step (DR, IPv6): as in IPv4 the director changes only the MACs (and the "
          "hop limit), so a real server takes the packet only if it holds the VIP: on lo, as "
          "a /128 (a shorter prefix on lo would route the whole prefix into lo, where the "
          "answers to the clients vanish). IPv6 needs no arp_ignore or arp_announce: a Linux "
          "host answers a Neighbor Solicitation only for an address on the device it arrived "
          "on (ndisc_recv_ns), and eth0 never even joins the VIP's solicited-node multicast "
          "group, which only lo joined; its own solicitations name an address of eth0 as the "
          "source, never the VIP on lo. So only the director, which holds the VIP on eth0, "
          "answers for it. The VIP is added nodad: lo does no duplicate address detection "
          "anyway, and on an interface that speaks NDP it would find the director holding the "
          "same address and leave the VIP unusable (dadfailed).",
    "nat": "Why this step (NAT, IPv6): as in IPv4, the director rewrote the destination to the "
           "real server's own address and kept the client's, so the answer must go back "
           "through the director, which puts the VIP back as its source (NAT66): hence the "
           "default route via the director's inside address.",
    "tun": "Why these steps (TUN, IPv6): the director wraps the client's packet in a new IPv6 "
           "header to the real server's own address (ip6ip6, next header 41). The real server "
           "unwraps it, finds a packet to the VIP, and holds the VIP as a /128 on the tunnel's "
           "device. IPv6 has no rp_filter, so nothing there drops a packet from a client routed "
           "through another interface. It answers the client directly, from the VIP, through "
           "its own router.",
}

DUAL_STACK = ("Why two decapsulators (dual stack): IPVS picks the outer header by the real "
              "server's family, whatever the packet's. An IPv4 packet to an IPv6 real server "
              "travels in an IPv6 header (4in6, next header 4) and an IPv6 packet to an IPv4 "
              "real server in an IPv4 header (6in4, protocol 41); IPVS allows a real server of "
              "the other family only with TUN. Each real server holds both VIPs: the IPv4 "
              "one's decapsulator takes IP-in-IP and 4in6 into pylvs-tun0, the IPv6 one's "
              "ip6ip6 and 6in4 into pylvs-tun6.")



def paragraphs(texts: Iterable[str]) -> str:
    return "".join(textwrap.fill(text, WIDTH, initial_indent="  | ", subsequent_indent="  | ",
                                 break_on_hyphens=False) + "\n" for text in texts)


def real_servers(modes: Iterable[str], families: Iterable[int] = (4,),
                 mistake: Mistake | None = None) -> str:
    """The steps' reasons for each method, in each family (the dual-stack lab's too); with
    ``mistake``, that this run's real servers make it."""
    families = tuple(families)
    texts = [(REAL_SERVERS6 if family == 6 else REAL_SERVERS)[m]
             for family in families for m in dict.fromkeys(modes)]
    if len(families) > 1:
        texts.append(DUAL_STACK)
    if mistake is not None:
        texts.append(f"This run's real servers make the mistake {mistake.name} instead: "
                     f"{mistake.summary}. What it breaks is shown at the end.")
    return paragraphs(texts)


# -- what the run printed, read back -----------------------------------------------------------

_SERVICE = re.compile(r"^(TCP|UDP|FWM)\s+(\S+)\s*(\S*)")
_SERVER = re.compile(r"^  -> (\S+)\s+([A-Z][a-z]+)\s+(?:\S+\s+)?(-?\d+)\s+(\d+)\s+(\d+)\s*$")
"""A real server's row of -Ln (with --tun-info's column or without)."""
_ENTRY = re.compile(r"^(TCP|UDP|IP)\s+(\d+:\d\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")

ACTIVE = tuple(ct.STATE_NAMES[state] for state in sorted(ct.ACTIVE_STATES))
"""The states pylvs counts in ActiveConn (ConnectionTable.update: ``state in ACTIVE_STATES``)."""
IPVS_ACTIVE = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK")
"""IPVS's, since Linux 4.8: tcp_state_active_table in ip_vs_proto_tcp.c (be2cef49904b)."""


@dataclass(frozen=True)
class Server:
    """A real server's row of `-Ln`."""

    service: str
    """Its virtual service as the -Lnc rows name it: protocol and VIP:port."""
    address: str
    forward: str
    weight: int
    active: int
    inactive: int


@dataclass(frozen=True)
class Service:
    name: str
    scheduler: str
    servers: list[Server] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """A row of `-Lnc`."""

    proto: str
    expire: str
    state: str
    source: str
    virtual: str
    destination: str

    @property
    def port(self) -> int:
        return int(self.source.rsplit(":", 1)[1])

    @property
    def template(self) -> bool:
        """A persistence template (client port 0): counted in neither column."""
        return self.port == 0

    @property
    def active(self) -> bool:
        return self.proto == "TCP" and not self.template and self.state in ACTIVE

    def of(self, server: Server) -> bool:
        """This connection is ``server``'s (of a fwmark service: by the real server alone,
        as -Lnc names the packet's VIP, not the mark)."""
        return self.destination == server.address and (
            server.service.startswith("FWM ") or f"{self.proto} {self.virtual}" == server.service)


def parse_listing(text: str) -> list[Service]:
    """`ipvsadm -Ln`: the services and their real servers."""
    services: list[Service] = []
    for line in text.splitlines():
        if head := _SERVICE.match(line):
            services.append(Service(f"{head[1]} {head[2]}", head[3]))
        elif (row := _SERVER.match(line)) and services:
            services[-1].servers.append(Server(services[-1].name, row[1], row[2], int(row[3]),
                                               int(row[4]), int(row[5])))
    return services


def parse_connections(text: str) -> list[Entry]:
    """`ipvsadm -Lnc`: its rows."""
    return [Entry(*m.groups()) for line in text.splitlines() if (m := _ENTRY.match(line))]


# -- words -------------------------------------------------------------------------------------

def _series(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _seconds(expire: str) -> int:
    minutes, seconds = expire.split(":")
    return int(minutes) * 60 + int(seconds)


def _expiring(entries: Sequence[Entry]) -> str:
    times = sorted({e.expire for e in entries}, key=_seconds)
    return f"expiring in {times[0]}" + (f" to {times[-1]}" if len(times) > 1 else "")


def _origin(entries: Sequence[Entry], held: Collection[int] | None, per: int = 1) -> str:
    """Which of the lab's connections these are: held open, or the requests' (each curl)."""
    if held is None:
        return ""
    kept = sum(e.port in held for e in entries)
    if kept == len(entries):
        return ", held open by the client"
    if not kept:
        return ", from the requests"
    return f", {kept // per} held open by the client and {(len(entries) - kept) // per} from " \
           "the requests"


def _states(entries: Sequence[Entry], held: Collection[int] | None = None, per: int = 1) -> str:
    """"3 FIN_WAIT, expiring in 01:59; 1 ESTABLISHED, ...", in pylvs's order of the states;
    ``per``: the entries are that many servers' alike, each has its share."""
    order = {name: i for i, name in enumerate(ct.STATE_NAMES)}
    parts = []
    for state in sorted({e.state for e in entries}, key=lambda s: order.get(s, len(order))):
        group = [e for e in entries if e.state == state]
        parts.append(f"{len(group) // per} {state}{_origin(group, held, per)}, "
                     f"{_expiring(group)}")
    return "; ".join(parts)


# -- after -Ln -----------------------------------------------------------------------------------

FORWARD = {
    "Route": "Route is DR (ipvsadm -g, 'gatewaying': only the MACs change, and the TTL or hop "
             "limit drops by one)",
    "Masq": "Masq is NAT (-m, masquerading: the addresses rewritten both ways)",
    "Tunnel": "Tunnel is TUN (-i: the whole packet wrapped in a new IP header to the real "
              "server)",
    "Local": "Local is a real server on the director itself",
}


def table(listing: str, rows: str, held: Collection[int] | None = None) -> str:
    """After -Ln: its columns, the rule of its two counts and each count of this run, read
    against the -Lnc ``rows`` taken with it. ``held``: the client ports of the connections the
    lab holds open (the others are its requests'); None: say nothing of where they come from."""
    services, entries = parse_listing(listing), parse_connections(rows)
    texts = [_columns(services), _rule(entries)]
    if any(service.servers for service in services):
        texts.append(_this_run(services, entries, held))
    return paragraphs(texts)


def _columns(services: Sequence[Service]) -> str:
    if not services:
        return "What -Ln shows: no virtual service."
    names = [f"{s.name} (scheduler {s.scheduler}, {_count(len(s.servers), 'real server')})"
             for s in services]
    text = (f"What -Ln shows: the virtual service{'s' * (len(services) > 1)} {_series(names)}; "
            "under a service, each real server's address, how the director reaches it "
            "(Forward), its weight and its two connection counts.")
    servers = [server for service in services for server in service.servers]
    labels = dict.fromkeys(server.forward for server in servers)
    if labels:
        text += " " + "; ".join(FORWARD.get(label, label) for label in labels) + "."
    return text + _weights(services, servers)


WEIGHTLESS = ("rr", "lc")
"""Schedulers that read a weight only to skip a real server at 0 (ip_vs_rr.c, ip_vs_lc.c)."""


def _weights(services: Sequence[Service], servers: Sequence[Server]) -> str:
    weights = Counter(server.weight for server in servers)
    if not weights:
        return ""
    said = (f"{next(iter(weights))} for each here" if len(weights) == 1 else ", ".join(
        f"{server.weight} for {server.address}" for server in servers))
    schedulers = sorted({s.scheduler for s in services if s.servers})
    if all(name in WEIGHTLESS for name in schedulers):
        verb = "ignores" if len(schedulers) == 1 else "ignore"
        return (f" Weight: {said}; {_series(schedulers)} {verb} it but for 0, which takes a "
                "real server out of the choice for new connections.")
    return f" Weight is the real server's share for a weighted scheduler: {said}."


def _rule(entries: Sequence[Entry]) -> str:
    same = set(ACTIVE) == set(IPVS_ACTIVE)
    ipvs = ("as IPVS does since Linux 4.8 (tcp_state_active_table in ip_vs_proto_tcp.c)" if same
            else f"while IPVS since Linux 4.8 counts {_series(IPVS_ACTIVE)}")
    text = (f"ActiveConn counts a real server's connections in a state pylvs counts as active, "
            f"{_series(ACTIVE)} (ACTIVE_STATES in pylvs/core/conntrack.py), {ipvs}; InActConn "
            "counts its connections in any other state, until they expire. A new connection "
            "starts inactive and moves from one count to the other when its state changes.")
    if any(e.proto == "UDP" for e in entries):
        text += " A UDP connection has no TCP state: it always counts as inactive."
    if any(e.template for e in entries):
        text += (" A persistence template (client port 0 in -Lnc) counts in neither: -Ln "
                 "--persistent-conn shows them.")
    return text


def _this_run(services: Sequence[Service], entries: Sequence[Entry],
              held: Collection[int] | None) -> str:
    """Each real server's counts and what -Lnc holds of them; a real server under several
    services is named under each ("For TCP 192.168.1.100:80: ...")."""
    parts = [(f"For {service.name}: " if len(services) > 1 else "")
             + _service_counts(service, entries, held) + "." for service in services
             if service.servers]
    text = "In this run (-Lnc below was read with it)" + (": " if len(services) == 1 else ". ")
    text += " ".join(parts)
    pending = [e for e in entries if e.active and e.state != "ESTABLISHED"]
    if pending:
        states = _series(sorted({e.state for e in pending}))
        text += (f" The {_count(len(pending), 'connection')} in {states} "
                 f"{'has' if len(pending) == 1 else 'have'} not finished the handshake, yet "
                 f"count{'s' * (len(pending) == 1)} as active.")
    return text


def _service_counts(service: Service, entries: Sequence[Entry],
                    held: Collection[int] | None) -> str:
    """The service's real servers, those alike together."""
    groups: dict[tuple[object, ...], list[Server]] = {}
    for server in service.servers:
        mine = [e for e in entries if e.of(server) and not e.template]
        key = (server.active, server.inactive,
               frozenset(Counter((e.active, e.state, _origin([e], held)) for e in mine).items()))
        groups.setdefault(key, []).append(server)
    return "; ".join(_group_counts(group, entries, held) for group in groups.values())


def _group_counts(servers: Sequence[Server], entries: Sequence[Entry],
                  held: Collection[int] | None) -> str:
    """"A and B each have ActiveConn 1 (1 ESTABLISHED, ...) and InActConn 3 (3 FIN_WAIT, ...)":
    the first server's counts, which every one of the group shares."""
    first = servers[0]
    mine = [e for e in entries if any(e.of(s) for s in servers) and not e.template]
    active = [e for e in mine if e.active]
    inactive = [e for e in mine if not e.active]
    per = len(servers)
    who = _series([s.address for s in servers]) + (" each have" if per > 1 else " has")
    text = (f"{who} ActiveConn {first.active} ({_states(active, held, per) or 'none active'}) "
            f"and InActConn {first.inactive} ({_states(inactive, held, per) or 'none'})")
    seen = (len(active) // per, len(inactive) // per)
    if seen != (first.active, first.inactive):
        text += (f", where -Lnc, read just after, holds {seen[0]} active and {seen[1]} "
                 "inactive: a connection changed state or expired in between")
    return text


# -- after -Lnc ----------------------------------------------------------------------------------

HALF = {"Route": ("DR", "the answers go around it"),
        "Tunnel": ("TUN", "the answers come back through the router")}
"""The methods whose director sees only the client's half, and why."""
STATE = ct.STATE_NAMES


def connections(listing: str, rows: str) -> str:
    """After -Lnc: what an entry is, and per method of the -Ln ``listing`` the state table it
    follows (read from pylvs's TRANSITIONS) and the states its entries are in."""
    services, entries = parse_listing(listing), parse_connections(rows)
    texts = [_entries(entries)]
    servers = [server for service in services for server in service.servers]
    for label in dict.fromkeys(server.forward for server in servers):
        theirs = [s for s in servers if s.forward == label]
        mine = [e for e in entries if any(e.of(s) for s in theirs) and not e.template]
        texts.append(_method(label, mine))
    return paragraphs(texts)


def _entries(entries: Sequence[Entry]) -> str:
    text = ("What -Lnc shows: one entry per connection: its protocol, the time left before it "
            "expires (minutes:seconds), its state, then the client, the VIP and the real server.")
    templates = sum(e.template for e in entries)
    if templates:
        text += (f" The {_count(templates, 'row')} with client port 0 "
                 f"{'is a persistence template' if templates == 1 else 'are persistence templates'}"
                 ", not connections.")
    conns = [e for e in entries if not e.template]
    if not conns:
        return text + " Here it holds no entry."
    counts = Counter(e.state for e in conns)
    return (text + f" Here it holds {_count(len(conns), 'entry', 'entries')}: "
            + ", ".join(f"{n} {state}" for state, n in counts.most_common()) + ".")


def _method(label: str, entries: Sequence[Entry]) -> str:
    if label in HALF:
        name, why = HALF[label]
        text = f"{label} ({name}): " + _input_only(why)
        direction = ct.INPUT_ONLY
    elif label == "Masq":
        text, direction = "Masq (NAT): " + _both_halves(), ct.INPUT
    else:
        return f"{label}: " + (f"here {_states(entries)}." if entries else "no entry here.")
    text += _syn_recv(entries, direction)
    if not entries:
        return text + f" Here no entry of a {label} real server."
    return text + f" Here the {label} real servers' entries: {_states(entries)}."


def _input_only(why: str) -> str:
    """IPVS's INPUT-ONLY table, as pylvs's TRANSITIONS has it."""
    table = ct.TRANSITIONS[ct.INPUT_ONLY]
    fin = table[ct.EV_FIN][ct.ESTABLISHED]
    text = (f"the director sees only the client's half of each connection ({why}), so pylvs, "
            f"as IPVS, follows the INPUT-ONLY state table: the client's FIN moves an "
            f"{STATE[ct.ESTABLISHED]} entry to {STATE[fin]}")
    if all(table[event][fin] == fin for event in (ct.EV_FIN, ct.EV_ACK)):
        text += (f", and since the real server's FIN never passes the director, the client's "
                 f"later ACKs leave it in {STATE[fin]} until it expires")
    return text + "."


def _both_halves() -> str:
    """IPVS's INPUT and OUTPUT tables, as pylvs's TRANSITIONS has them."""
    tables, es, fin = ct.TRANSITIONS, ct.ESTABLISHED, ct.EV_FIN
    client = tables[ct.INPUT][fin][es]
    server = tables[ct.OUTPUT][fin][es]
    ends = {tables[ct.OUTPUT][fin][client], tables[ct.INPUT][fin][server]}
    text = ("the director sees both halves of each connection (every answer comes back "
            f"through it to be rewritten), so pylvs, as IPVS, follows the INPUT and OUTPUT "
            f"state tables: the client's FIN moves an {STATE[es]} entry to {STATE[client]}, the "
            f"real server's to {STATE[server]}")
    if len(ends) == 1:
        text += f", and the other FIN then to {STATE[ends.pop()]}, as a host's own TCP would"
    return text + "."


def _syn_recv(entries: Sequence[Entry], direction: int) -> str:
    """What a SYN_RECV entry waits for, said where there is one."""
    recv = STATE[ct.SYN_RECV]
    after = ct.TRANSITIONS[direction][ct.EV_ACK][ct.SYN_RECV]
    if not any(e.state == recv for e in entries) or after == ct.SYN_RECV:
        return ""
    return (f" A {recv} entry has seen the client's SYN, not yet the ACK that would move it to "
            f"{STATE[after]}.")


# -- after the sockets ---------------------------------------------------------------------------

def sockets(director: int, servers: Sequence[Sequence[str]]) -> str:
    """After the socket counts: ``director``, the director's TCP sockets for the VIP;
    ``servers``, each real server's `ss -tan` lines with the client."""
    head = "Why the director holds no socket" if director == 0 else "Where the sockets are"
    counts = [len(lines) for lines in servers]
    states = Counter(line.split()[0] for lines in servers for line in lines if line.split())
    each = (f"{counts[0]} each" if len(set(counts)) == 1 and len(counts) > 1
            else _series([str(n) for n in counts]) if counts else "none")
    kinds = f" ({', '.join(f'{n} {s}' for s, n in states.most_common())})" if states else ""
    return paragraphs([
        f"{head}: the director forwards frames, it does not terminate TCP. The three-way "
        "handshake is between the client and the real server, so the server's end of a "
        "balanced connection is a socket in the real server, with the client's own address as "
        "its peer, and the director needs none: the seed's netstat check. Here the director "
        f"holds {director} for the VIP, and the real servers {each} with the client{kinds}."])


# -- after what a mistake broke ------------------------------------------------------------------

def mistake(lesson: str, answers: Mapping[str, int], listing: str, rows: str) -> str:
    """The mistake's ``lesson`` (why it breaks), then what this run shows of it: its answers
    and the director's -Ln and -Lnc printed above."""
    services, entries = parse_listing(listing), parse_connections(rows)
    entries = [e for e in entries if not e.template]
    text = f"In this run {_answered(answers)}, and " + _director_holds(entries)
    pending = [e for e in entries if e.active and e.state != STATE[ct.ESTABLISHED]]
    if pending:
        text += _counted(pending, services)
    return paragraphs([lesson, text + "."])


def _answered(answers: Mapping[str, int]) -> str:
    total = sum(answers.values())
    served = {k: v for k, v in answers.items() if k != NO_ANSWER}
    if not served:
        return f"none of the {total} requests got an answer"
    if len(served) == 1:
        name, count = next(iter(served.items()))
        if count == total:
            return f"{name} answered all {total} requests"
        return f"{name} answered {count} of the {total} requests"
    return (f"{sum(served.values())} of the {total} requests got an answer ("
            + ", ".join(f"{k} {v}" for k, v in sorted(served.items())) + ")")


def _director_holds(entries: Sequence[Entry]) -> str:
    if not entries:
        return "the director's table holds no entry: none of these connections is in it"
    return (f"the director's table holds {_count(len(entries), 'entry', 'entries')}: "
            f"{_states(entries)}")


def _counted(pending: Sequence[Entry], services: Sequence[Service]) -> str:
    """The handshakes that did not finish, and where -Ln counts them."""
    found = sorted({e.state for e in pending})
    counts: dict[int, list[str]] = {}
    for server in (s for service in services for s in service.servers if s.active):
        counts.setdefault(server.active, []).append(server.address)
    where = "; ".join(f"ActiveConn {n} on {_series(names)}" for n, names in counts.items())
    why = ("the client's SYN passed the director, but not the ACK that would end the handshake"
           if found == [STATE[ct.SYN_RECV]] else "the handshake has not finished")
    text = f". For those in {_series(found)} {why}; pylvs, as IPVS, counts them as active"
    return text + (f", in -Ln above: {where}" if counts else "")

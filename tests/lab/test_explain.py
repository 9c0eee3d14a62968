"""`--explain`'s paragraphs, held against the tables they explain.

Every number, state and count a paragraph names comes from the run's own -Ln and -Lnc; the
checkers here (``table_disagreements``, ``connections_disagreements``,
``mistake_disagreements``, ``sockets_disagreements``) read the paragraphs and the tables on
their own, with nothing of pylvs.lab.explain, and list where they differ: the unit tests feed
them real listings captured from `pylvs lab dr|nat|mixed --explain` and `--mistake
netmask|arp`, the hypothesis test any table pylvs's connection table can reach, and
tests/e2e/test_explain.py a lab's whole report. The rule of the two counts is held against
IPVS's own (tcp_state_active_table in the kernel's ip_vs_proto_tcp.c).
"""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

import schedulers
from pylvs.adm import ipvsadm, layouts
from pylvs.core import conntrack as ct
from pylvs.core.model import RealServer, VirtualService
from pylvs.lab import explain
from pylvs.lab.mistakes import MISTAKES, NO_ANSWER

KERNEL_ACTIVE = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"}
"""The states IPVS counts in ActiveConn since Linux 4.8: tcp_state_active_table in
net/netfilter/ipvs/ip_vs_proto_tcp.c (commit be2cef49904b, "ipvs: count pre-established TCP
states as active"); set_tcp_state moves a connection between the counts on a state change."""


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# -- real listings, captured from `pylvs lab ... --explain` (as root) ---------------------------

HEAD = ("IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "TCP  192.168.1.100:80 rr")
ROWS = ("IPVS connection entries",
        "pro expire state       source             virtual            destination")

DR_LN = _lines(*HEAD,
               "  -> 192.168.1.11:80              Route   1      1          3         ",
               "  -> 192.168.1.12:80              Route   1      1          3         ",
               "  -> 192.168.1.13:80              Route   1      1          3         ")
DR_LNC = _lines(*ROWS,
                "TCP 01:59  FIN_WAIT    192.168.1.5:43308  192.168.1.100:80   192.168.1.13:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43310  192.168.1.100:80   192.168.1.12:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43324  192.168.1.100:80   192.168.1.11:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43336  192.168.1.100:80   192.168.1.13:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43350  192.168.1.100:80   192.168.1.12:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43356  192.168.1.100:80   192.168.1.11:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43358  192.168.1.100:80   192.168.1.13:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43368  192.168.1.100:80   192.168.1.12:80",
                "TCP 01:59  FIN_WAIT    192.168.1.5:43370  192.168.1.100:80   192.168.1.11:80",
                "TCP 14:59  ESTABLISHED 192.168.1.5:43380  192.168.1.100:80   192.168.1.13:80",
                "TCP 14:59  ESTABLISHED 192.168.1.5:43394  192.168.1.100:80   192.168.1.12:80",
                "TCP 14:59  ESTABLISHED 192.168.1.5:43408  192.168.1.100:80   192.168.1.11:80")
DR_HELD = [43380, 43394, 43408]

NETMASK_LN = _lines(*HEAD,
                    "  -> 192.168.1.11:80              Route   1      3          0         ",
                    "  -> 192.168.1.12:80              Route   1      3          0         ",
                    "  -> 192.168.1.13:80              Route   1      3          0         ")
NETMASK_LNC = _lines(
    *ROWS,
    "TCP 00:42  SYN_RECV    192.168.1.5:57840  192.168.1.100:80   192.168.1.13:80",
    "TCP 00:44  SYN_RECV    192.168.1.5:57846  192.168.1.100:80   192.168.1.12:80",
    "TCP 00:46  SYN_RECV    192.168.1.5:53074  192.168.1.100:80   192.168.1.11:80",
    "TCP 00:48  SYN_RECV    192.168.1.5:53078  192.168.1.100:80   192.168.1.13:80",
    "TCP 00:50  SYN_RECV    192.168.1.5:53094  192.168.1.100:80   192.168.1.12:80",
    "TCP 00:52  SYN_RECV    192.168.1.5:53096  192.168.1.100:80   192.168.1.11:80",
    "TCP 00:54  SYN_RECV    192.168.1.5:53100  192.168.1.100:80   192.168.1.13:80",
    "TCP 00:56  SYN_RECV    192.168.1.5:58770  192.168.1.100:80   192.168.1.12:80",
    "TCP 00:58  SYN_RECV    192.168.1.5:58782  192.168.1.100:80   192.168.1.11:80")

MIXED_LN = _lines(*HEAD,
                  "  -> 172.16.0.13:80               Tunnel  1      1          3         ",
                  "  -> 192.168.1.11:80              Route   1      1          3         ",
                  "  -> 10.0.0.12:80                 Masq    1      1          3         ")
MIXED_LNC = _lines(
    *ROWS,
    "TCP 01:59  FIN_WAIT    192.168.1.5:57712  192.168.1.100:80   172.16.0.13:80",
    "TCP 01:59  TIME_WAIT   192.168.1.5:57728  192.168.1.100:80   10.0.0.12:80",
    "TCP 01:59  FIN_WAIT    192.168.1.5:57744  192.168.1.100:80   192.168.1.11:80",
    "TCP 01:59  FIN_WAIT    192.168.1.5:57758  192.168.1.100:80   172.16.0.13:80",
    "TCP 01:59  TIME_WAIT   192.168.1.5:57766  192.168.1.100:80   10.0.0.12:80",
    "TCP 01:59  FIN_WAIT    192.168.1.5:57772  192.168.1.100:80   192.168.1.11:80",
    "TCP 01:59  FIN_WAIT    192.168.1.5:57786  192.168.1.100:80   172.16.0.13:80",
    "TCP 01:59  TIME_WAIT   192.168.1.5:57794  192.168.1.100:80   10.0.0.12:80",
    "TCP 01:59  FIN_WAIT    192.168.1.5:57804  192.168.1.100:80   192.168.1.11:80",
    "TCP 14:59  ESTABLISHED 192.168.1.5:57818  192.168.1.100:80   172.16.0.13:80",
    "TCP 14:59  ESTABLISHED 192.168.1.5:57826  192.168.1.100:80   10.0.0.12:80",
    "TCP 14:59  ESTABLISHED 192.168.1.5:57832  192.168.1.100:80   192.168.1.11:80")
MIXED_HELD = [57818, 57826, 57832]

ARP_LN = _lines(*HEAD,
                "  -> 192.168.1.11:80              Route   1      0          0         ",
                "  -> 192.168.1.12:80              Route   1      0          0         ",
                "  -> 192.168.1.13:80              Route   1      0          0         ")
ARP_LNC = _lines(*ROWS)

CAPTURED = {"dr": (DR_LN, DR_LNC, DR_HELD), "netmask": (NETMASK_LN, NETMASK_LNC, []),
            "mixed": (MIXED_LN, MIXED_LNC, MIXED_HELD), "arp": (ARP_LN, ARP_LNC, DR_HELD)}


# -- the checkers: the paragraphs and the tables, each read on its own --------------------------

ADDRESS = r"[\[\]\w.:]+:\d+"
_GROUP = re.compile(rf"((?:{ADDRESS}, )*{ADDRESS}(?: and {ADDRESS})?) (?:each have|has) "
                    r"ActiveConn (\d+) \(([^)]*)\) and InActConn (\d+) \(([^)]*)\)"
                    r"(, where -Lnc, read just after)?")
_STATES = re.compile(r"(\d+) ([A-Z][A-Z_]+)")


def text_of(paragraphs: str) -> str:
    """The paragraphs' words, their `  | ` margins and line breaks gone."""
    return " ".join(line[4:] for line in paragraphs.splitlines() if line.startswith("  | "))


def services_of(listing: str) -> dict[str, dict[str, tuple[str, int, int]]]:
    """-Ln: per service ("TCP 192.168.1.100:80"), each real server's Forward, ActiveConn and
    InActConn."""
    found: dict[str, dict[str, tuple[str, int, int]]] = {}
    for line in listing.splitlines():
        cells = line.split()
        if cells and cells[0] in ("TCP", "UDP", "FWM"):
            service = found.setdefault(f"{cells[0]} {cells[1]}", {})
        elif line.startswith("  -> ") and len(cells) >= 6 and cells[-1].isdigit():
            service[cells[1]] = (cells[2], int(cells[-2]), int(cells[-1]))
    return found


def servers_of(listing: str) -> dict[str, tuple[str, int, int]]:
    """-Ln's real servers of all its services (by address: one service's in the labs)."""
    return {k: v for servers in services_of(listing).values() for k, v in servers.items()}


def per_service(text: str, services: list[str]) -> dict[str, str]:
    """The part of the paragraphs that says each service's counts: "For TCP VIP:80: ..." where
    -Ln has several services, else all of it."""
    if len(services) < 2:
        return dict.fromkeys(services, text)
    marks = [(m.start(), m.end(), m[1]) for m in re.finditer(r"For (\w+ \S+): ", text)]
    ends = [start for start, _, _ in marks[1:]] + [len(text)]
    return {name: text[end:stop] for (_, end, name), stop in zip(marks, ends, strict=True)}


def rows_of(rows: str) -> list[list[str]]:
    """-Lnc: [proto, expire, state, source, virtual, destination] of each connection (not the
    persistence templates: client port 0)."""
    return [cells for cells in (line.split() for line in rows.splitlines())
            if len(cells) == 6 and cells[0] in ("TCP", "UDP")
            and not cells[3].endswith(":0")]


def kernel_active(row: list[str]) -> bool:
    return row[0] == "TCP" and row[2] in KERNEL_ACTIVE


def _names(series: str) -> list[str]:
    return re.split(r", | and ", series)


def table_disagreements(listing: str, rows: str, paragraphs: str) -> list[str]:
    """Where the paragraphs after -Ln say other than -Ln and -Lnc: each real server's counts,
    the states they are made of, and the rule of active states (IPVS's)."""
    text, services = text_of(paragraphs), services_of(listing)
    wrong: list[str] = []
    parts = per_service(text, list(services))
    for service, table in services.items():
        entries = [r for r in rows_of(rows) if f"{r[0]} {r[4]}" == service]
        wrong += _service_disagreements(service, table, entries, parts.get(service, ""))
    rule = re.search(r"counts as active, (.*?) \(ACTIVE_STATES", text)
    if rule is None or set(_names(rule[1])) != KERNEL_ACTIVE:
        wrong.append(f"the active states said: {rule and rule[1]}, IPVS's {KERNEL_ACTIVE}")
    return wrong


def _service_disagreements(service: str, table: dict[str, tuple[str, int, int]],
                           entries: list[list[str]], text: str) -> list[str]:
    wrong: list[str] = []
    named: Counter[str] = Counter()
    for group in _GROUP.finditer(text):
        counts = (int(group[2]), int(group[4]))
        for name in _names(group[1]):
            named[name] += 1
            if table.get(name, ("",))[1:] != counts:
                wrong.append(f"{name}: the paragraph says {counts}, -Ln {table.get(name)}")
            mine = [row for row in entries if row[5] == name]
            exact = group[6] is None
            wrong += _parts(name, group[3], [r for r in mine if kernel_active(r)],
                            counts[0] if exact else None)
            wrong += _parts(name, group[5], [r for r in mine if not kernel_active(r)],
                            counts[1] if exact else None)
    if set(named) != set(table) or any(n > 1 for n in named.values()):
        wrong.append(f"{service}: servers named {dict(named)}, in -Ln {sorted(table)}")
    return wrong


def _parts(name: str, said: str, rows: list[list[str]], total: int | None) -> list[str]:
    """One count's parenthesis ("1 ESTABLISHED, ..., expiring in 14:59") against the rows of
    that kind; ``total``: the count it must add up to."""
    states = {state: int(n) for n, state in _STATES.findall(said)}
    wrong = []
    if states != dict(Counter(row[2] for row in rows)):
        wrong.append(f"{name}: the paragraph says {states}, -Lnc {Counter(r[2] for r in rows)}")
    if total is not None and sum(states.values()) != total:
        wrong.append(f"{name}: {states} do not add up to {total}")
    for part in said.split("; "):
        state = _STATES.match(part)
        when = re.search(r"expiring in ([\d:]+)(?: to ([\d:]+))?$", part)
        if state is None or when is None:
            continue
        low, high = _seconds(when[1]), _seconds(when[2] or when[1])
        times = [_seconds(r[1]) for r in rows if r[2] == state[2]]
        if not all(low <= t <= high for t in times):
            wrong.append(f"{name}: {state[2]} expiring in {times}, said: {part}")
    return wrong


def _seconds(expire: str) -> int:
    minutes, seconds = expire.split(":")
    return int(minutes) * 60 + int(seconds)


def connections_disagreements(listing: str, rows: str, paragraphs: str) -> list[str]:
    """Where the paragraphs after -Lnc say other than -Lnc: its entries, and each method's."""
    text, entries, servers = text_of(paragraphs), rows_of(rows), servers_of(listing)
    wrong: list[str] = []
    total = re.search(r"Here it holds (\d+) entr(?:y|ies): (.*?)\.", text)
    if entries and (total is None or int(total[1]) != len(entries)
                    or _said(total[2]) != Counter(r[2] for r in entries)):
        wrong.append(f"the whole table: {total and total[0]}, -Lnc {len(entries)} entries")
    if not entries and "Here it holds no entry." not in text:
        wrong.append("an empty -Lnc not said so")
    for label in dict.fromkeys(forward for forward, _, _ in servers.values()):
        theirs = [r for r in entries if servers.get(r[5], ("",))[0] == label]
        said = re.search(rf"Here the {label} real servers' entries: (.*?)\.(?: |$)", text)
        if theirs and (said is None or _said(said[1]) != Counter(r[2] for r in theirs)):
            wrong.append(f"{label}: {said and said[1]}, -Lnc {Counter(r[2] for r in theirs)}")
        if not theirs and f"Here no entry of a {label} real server." not in text:
            wrong.append(f"{label}: no entry, not said so")
    return wrong


def _said(series: str) -> Counter[str]:
    return Counter({state: int(n) for n, state in _STATES.findall(series)})


def mistake_disagreements(answers: Counter[str], listing: str, rows: str,
                          paragraphs: str) -> list[str]:
    """Where the mistake's paragraph says other than the answers, -Ln and -Lnc."""
    text, entries, table = text_of(paragraphs), rows_of(rows), servers_of(listing)
    wrong: list[str] = []
    total = sum(answers.values())
    served = {k: v for k, v in answers.items() if k != NO_ANSWER}
    if not served and f"none of the {total} requests got an answer" not in text:
        wrong.append(f"the answers: {answers}")
    for name, count in served.items():
        if not re.search(rf"{name} answered (all {total}|{count} of the {total}) requests|"
                         rf"{name} {count}\b", text):
            wrong.append(f"{name} answered {count} of {total}: not said")
    held = re.search(r"the director's table holds (\d+) entr(?:y|ies): (.*?)\.(?: |$)", text)
    if entries and (held is None or int(held[1]) != len(entries)
                    or _said(held[2]) != Counter(r[2] for r in entries)):
        wrong.append(f"the director's table: {held and held[0]}, -Lnc {len(entries)} entries")
    if not entries and "the director's table holds no entry" not in text:
        wrong.append("an empty -Lnc not said so")
    for count, names in re.findall(rf"ActiveConn (\d+) on ((?:{ADDRESS}(?:, | and )?)+)", text):
        wrong += [f"{name}: ActiveConn {count} said, {table.get(name)} in -Ln"
                  for name in _names(names) if table.get(name, ("", -1))[1] != int(count)]
    return wrong


def sockets_disagreements(director: int, servers: list[int], paragraphs: str) -> list[str]:
    """Where the sockets' paragraph says other than the counts printed above it."""
    text = text_of(paragraphs)
    said = re.search(r"Here the director holds (\d+) for the VIPs?, and the real servers "
                     r"(.*?) with the client", text)
    if said is None:
        return [f"no counts in: {text}"]
    each = re.fullmatch(r"(\d+) each", said[2])
    counts = [int(each[1])] * len(servers) if each else [int(n) for n in _names(said[2])
                                                          if n.isdigit()]
    if int(said[1]) != director or counts != servers:
        return [f"said {said[0]}; printed: director {director}, real servers {servers}"]
    return []


# -- the captured runs --------------------------------------------------------------------------

def test_each_captured_run_is_explained_by_its_own_table():
    for name, (listing, rows, held) in CAPTURED.items():
        assert table_disagreements(listing, rows, explain.table(listing, rows, held)) == [], name
        assert connections_disagreements(listing, rows,
                                         explain.connections(listing, rows)) == [], name


def test_netmask_says_syn_recv_counts_as_active_as_the_table_shows():
    """The issue's case: every entry SYN_RECV, ActiveConn 3 each; the old text said only
    ESTABLISHED counts, under a table of 3 active connections that were all SYN_RECV."""
    text = text_of(explain.table(NETMASK_LN, NETMASK_LNC, []))
    assert "each have ActiveConn 3 (3 SYN_RECV, from the requests, expiring in 00:42 to 00:58) " \
           "and InActConn 0 (none)" in text
    assert "The 9 connections in SYN_RECV have not finished the handshake, yet count as " \
           "active." in text
    assert "ESTABLISHED state, InActConn every other" not in text


def test_held_connections_are_the_established_ones_and_requests_the_closing_ones():
    text = text_of(explain.table(DR_LN, DR_LNC, DR_HELD))
    assert ("192.168.1.11:80, 192.168.1.12:80 and 192.168.1.13:80 each have ActiveConn 1 "
            "(1 ESTABLISHED, held open by the client, expiring in 14:59) and InActConn 3 "
            "(3 FIN_WAIT, from the requests, expiring in 01:59)") in text
    assert "held open" not in text_of(explain.table(DR_LN, DR_LNC))  # not told: not said


def test_a_paragraph_of_another_run_disagrees():
    """The checkers catch a paragraph that is not this table's: the netmask run's text under
    the correct DR run's table, and the old fixed rule."""
    wrong = table_disagreements(DR_LN, DR_LNC, explain.table(NETMASK_LN, NETMASK_LNC, []))
    assert any("ActiveConn" in w or "says" in w for w in wrong)
    assert connections_disagreements(DR_LN, DR_LNC, explain.connections(NETMASK_LN,
                                                                        NETMASK_LNC))
    old = ("  | ActiveConn counts the connections in ESTABLISHED state, InActConn every other "
           "one still in the table\n")
    assert table_disagreements(NETMASK_LN, NETMASK_LNC, old)


def test_a_count_changed_between_the_two_reads_is_said_not_hidden():
    rows = DR_LNC.replace("TCP 14:59  ESTABLISHED 192.168.1.5:43408",
                          "TCP 01:59  FIN_WAIT    192.168.1.5:43408")
    text = text_of(explain.table(DR_LN, rows, DR_HELD))
    assert "192.168.1.11:80 has ActiveConn 1 (none active) and InActConn 3 (4 FIN_WAIT" in text
    assert "where -Lnc, read just after, holds 0 active and 4 inactive" in text
    assert table_disagreements(DR_LN, rows, explain.table(DR_LN, rows, DR_HELD)) == []


def test_the_empty_table_of_the_arp_mistake():
    text = text_of(explain.table(ARP_LN, ARP_LNC, DR_HELD))
    assert "each have ActiveConn 0 (none active) and InActConn 0 (none)" in text
    assert "Here it holds no entry." in text_of(explain.connections(ARP_LN, ARP_LNC))


def test_the_mixed_lab_gives_each_method_its_state_table_and_its_own_entries():
    text = text_of(explain.connections(MIXED_LN, MIXED_LNC))
    assert text.index("Tunnel (TUN)") < text.index("Route (DR)") < text.index("Masq (NAT)")
    assert "Here the Masq real servers' entries: 1 ESTABLISHED, expiring in 14:59; " \
           "3 TIME_WAIT, expiring in 01:59." in text
    assert text.count("INPUT-ONLY") == 2


def test_mistakes_explained_with_their_own_answers_and_table():
    cases = [("netmask", Counter({NO_ANSWER: 9}), NETMASK_LN, NETMASK_LNC),
             ("arp", Counter({"rs3": 9}), ARP_LN, ARP_LNC)]
    for name, answers, listing, rows in cases:
        paragraphs = explain.mistake(MISTAKES[name].lesson, answers, listing, rows)
        assert mistake_disagreements(answers, listing, rows, paragraphs) == [], name
    text = text_of(explain.mistake(MISTAKES["netmask"].lesson, cases[0][1], NETMASK_LN,
                                   NETMASK_LNC))
    assert "none of the 9 requests got an answer, and the director's table holds 9 entries: " \
           "9 SYN_RECV" in text
    assert "ActiveConn 3 on 192.168.1.11:80, 192.168.1.12:80 and 192.168.1.13:80" in text
    assert "rs3 answered all 9 requests" in text_of(
        explain.mistake(MISTAKES["arp"].lesson, cases[1][1], ARP_LN, ARP_LNC))
    wrong = mistake_disagreements(Counter({NO_ANSWER: 9}), DR_LN, DR_LNC, explain.mistake(
        MISTAKES["netmask"].lesson, cases[0][1], NETMASK_LN, NETMASK_LNC))
    assert wrong


def test_sockets_say_the_counts_printed_above():
    ss = [["ESTAB 0 0 192.168.1.100:80 192.168.1.5:43408"]] * 3
    text = explain.sockets(0, ss)
    assert sockets_disagreements(0, [1, 1, 1], text) == []
    assert "Here the director holds 0 for the VIP, and the real servers 1 each with the " \
           "client (3 ESTAB)." in text_of(text)
    assert sockets_disagreements(0, [0, 0, 0], explain.sockets(0, [[], [], []])) == []
    assert sockets_disagreements(0, [0, 0, 0], text)
    assert text_of(explain.sockets(2, ss)).startswith("Where the sockets are")


# -- the rules: pylvs's, and IPVS's --------------------------------------------------------------

def test_the_active_states_are_pylvs_s_and_ipvs_s():
    assert set(explain.ACTIVE) == {ct.STATE_NAMES[s] for s in ct.ACTIVE_STATES} == KERNEL_ACTIVE
    assert set(explain.IPVS_ACTIVE) == KERNEL_ACTIVE
    text = text_of(explain.table(DR_LN, DR_LNC))
    assert "as IPVS does since Linux 4.8" in text


def test_the_state_tables_said_are_ipvs_s():
    """IPVS's tcp_states (reference §3.2): INPUT-ONLY FIN on ES → FW and FW stays; INPUT FIN
    on ES → CW, OUTPUT FIN → FW, the other FIN → TW; an ACK moves SR to ES."""
    text = text_of(explain.connections(MIXED_LN, MIXED_LNC))
    assert "the client's FIN moves an ESTABLISHED entry to FIN_WAIT, and since the real " \
           "server's FIN never passes the director, the client's later ACKs leave it in " \
           "FIN_WAIT until it expires" in text
    assert "the client's FIN moves an ESTABLISHED entry to CLOSE_WAIT, the real server's to " \
           "FIN_WAIT, and the other FIN then to TIME_WAIT" in text
    assert "A SYN_RECV entry has seen the client's SYN, not yet the ACK that would move it " \
           "to ESTABLISHED." in text_of(explain.connections(NETMASK_LN, NETMASK_LNC))


def test_udp_and_templates_are_named_only_when_the_table_has_them():
    text = text_of(explain.table(DR_LN, DR_LNC))
    assert "UDP" not in text and "template" not in text
    rows = DR_LNC + "UDP 04:59  UDP         192.168.1.5:5353   192.168.1.100:80   " \
                    "192.168.1.11:80\nTCP 05:00  NONE        192.168.1.5:0      " \
                    "192.168.1.100:80   192.168.1.12:80\n"
    text = text_of(explain.table(DR_LN, rows))
    assert "A UDP connection has no TCP state: it always counts as inactive." in text
    assert "persistence template (client port 0 in -Lnc) counts in neither" in text


# -- the real-server steps ----------------------------------------------------------------------

def test_paragraphs_are_wrapped_and_marked_apart_from_the_output():
    lines = explain.table(MIXED_LN, MIXED_LNC, MIXED_HELD).splitlines()
    assert all(line.startswith("  | ") and len(line) <= explain.WIDTH for line in lines)
    joined = text_of("\n".join(lines))
    for words in ("Route is DR", "Masq is NAT", "Tunnel is TUN"):
        assert words in joined


def test_real_server_steps_say_why_arp_ignore_arp_announce_and_the_32():
    joined = text_of(explain.real_servers(["dr"]))
    assert "arp_ignore=1: answer an ARP request only for an address configured on the" in joined
    assert "arp_announce=2" in joined and "/32" in joined and "/24 on lo" in joined
    assert "larger of the 'all' value and the interface's" in joined
    made = text_of(explain.real_servers(["dr"], mistake=MISTAKES["netmask"]))
    assert "make the mistake netmask instead: the real servers put the VIP on lo as a /24" in made


# -- any table pylvs's connection table can reach --------------------------------------------

EVENTS = st.tuples(st.sampled_from([ct.INPUT, ct.OUTPUT]),
                   st.sampled_from([0x02, 0x12, 0x10, 0x11, 0x04, 0x14]))
CONNECTION = st.tuples(st.integers(0, 3), st.booleans(), st.lists(EVENTS, max_size=6),
                       st.integers(0, 200), st.booleans())


def _director(forwards: list[str], connections: list[tuple[int, bool, list, int, bool]]
              ) -> tuple[str, str, list[int]]:
    """A service per protocol over real servers of ``forwards``, ``connections`` (server,
    UDP?, the packets, the seconds since the last, under a persistence template?) driven
    through a ConnectionTable: its -Ln, its -Lnc and the client ports."""
    services = [VirtualService(proto, "192.168.1.100", 80, schedulers.get("rr")(()))
                for proto in ("tcp", "udp")]
    for service in services:
        for i, forward in enumerate(forwards):
            service.add_real_server(RealServer(f"10.0.0.{i + 1}", 80, forward=forward))
    table, now, ports = ct.ConnectionTable(), 0.0, []
    for number, (index, udp, packets, wait, persistent) in enumerate(connections):
        service = services[udp]
        server = service.real_servers[index % len(forwards)]
        ports.append(40000 + number)
        key = (service.proto, 0xC0A80105, ports[-1], service.ip, 80)
        conn = table.create(key, service, server, now)
        if persistent:
            kept = (service.proto, 0xC0A80105, service.ip, 80)
            template = table.get_template(kept) or table.create_template(kept, service, server,
                                                                         now)
            table.attach(conn, template)
        for direction, flags in packets:
            table.update(conn, direction, flags, now)
        now += wait
        table.expire(now)
    command = ipvsadm.parse(["-L", "-n"])
    listing = layouts.render_services(services, command, layouts.Names(True))
    entries = [*table.templates.values(), *(c for by in table.by_proto.values()
                                            for c in by.values())]
    return listing, layouts.render_connections(entries, now), ports


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["dr", "nat", "tun"]), min_size=1, max_size=4),
       st.lists(CONNECTION, max_size=14), st.data())
def test_for_any_table_the_counts_said_are_the_table_s(forwards, connections, data):
    listing, rows, ports = _director(forwards, connections)
    held = data.draw(st.sets(st.sampled_from(ports)) if ports else st.just(set()))
    table = explain.table(listing, rows, held)
    assert table_disagreements(listing, rows, table) == [], text_of(table)
    assert "where -Lnc, read just after" not in table  # read together: they always agree
    said = connections_disagreements(listing, rows, explain.connections(listing, rows))
    assert said == []

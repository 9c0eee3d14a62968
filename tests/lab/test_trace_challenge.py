"""The trace page's challenge (pylvs.lab.trace_page.questions): the questions asked before a
step, their choices and the right answers, checked against what the capture shows, on a real
trace.json (tests/lab/data/trace-dr.json: `pylvs lab dr --servers 2 --requests 1 --trace`)
and on traces built from scapy frames (NAT, TUN, a real server that answers ARP for the VIP,
a request nobody answers, a SYN nobody takes, IPv6's NDP)."""

from __future__ import annotations

import json
import os

from scapy.layers.l2 import ARP, Ether

from pylvs.lab import trace, trace_page
from tests.helpers.traces import (
    CIP,
    CLIENT,
    DIRECTOR,
    RS1,
    VIP,
    dr_trace,
    frames,
    hosts,
    nat_trace,
    syn,
    wire,
)
from tests.lab import test_trace_ipv6
from tests.lab.test_trace_page import tun_waiting_for_arp

REAL = os.path.join(os.path.dirname(__file__), "data", "trace-dr.json")
GROUPS = {"eth.src": "eth.src", "eth.dst": "eth.dst", "ip.src": "ip.src", "ip.dst": "ip.dst",
          "tcp.sport": "ports", "tcp.dport": "ports", "ip.ttl": "ttl", "ip.hlim": "ttl",
          "outer.ttl": "outer.ttl", "outer.hlim": "outer.ttl"}


def real() -> dict:
    with open(REAL) as fh:
        return json.load(fh)


def of_kind(questions: list[dict], kind: str) -> list[dict]:
    return [q for q in questions if q["kind"] == kind]


def ids(q: dict) -> list[str]:
    return [c["id"] for c in q["choices"]]


def repliers(built: dict, asked: str) -> list[str]:
    """Who the capture shows answering ARP for ``asked``: the senders of its replies."""
    return sorted({h["wires"][0]["host"] for h in built["hops"] if h["kind"] == "arp"
                   and h["wires"][0]["fields"]["arp.op"] != "request"
                   and h["wires"][0]["fields"]["arp.psrc"] == asked})


def test_every_question_of_a_real_trace_is_well_formed():
    built = real()
    questions = trace_page.questions(built)
    assert [q["id"] for q in questions] == [f"q{i}" for i in range(1, len(questions) + 1)]
    assert [q["event"] for q in questions] == sorted(q["event"] for q in questions)
    for q in questions:
        assert set(q["right"]) <= set(ids(q)), q
        assert len(ids(q)) > len(q["right"])  # a wrong choice to make
        assert q["explain"] and q["text"]
        assert q["filter"] == ("arp" if q["kind"] == "answer" else "tcp")
        assert q["multiple"] == (q["kind"] != "take")
    assert {q["kind"] for q in questions} == {"answer", "rewrite", "take"}
    assert trace_page.questions(built) == questions  # the same trace, the same questions


def test_who_answers_the_arp_for_the_vip_is_the_capture_s_director():
    built = real()
    rows = trace_page.event_rows(built)
    vip = built["connection"]["vip"].split(":")[0]
    (q,) = [q for q in of_kind(trace_page.questions(built), "answer")
            if f"who has {vip}?" in q["text"]]
    request = rows[q["at"]]
    assert request["src"] == "client" and request["kind"] == "arp"
    assert q["event"] == q["at"] + 1  # asked when stepping on from the request
    assert q["right"] == repliers(built, vip) == ["director"]
    assert set(ids(q)) == {"director", "rs1", "rs2", trace_page.NOBODY}
    assert q["explain"][0].startswith("director answers: 192.168.1.100 is at")
    assert any("arp_ignore=1 keeps them quiet" in line for line in q["explain"])
    assert "rs1: who has 192.168.1.100? it holds 192.168.1.100, but not on eth0: no answer " \
        "(arp_ignore=1)" in q["explain"]
    for other in of_kind(trace_page.questions(built), "answer"):
        request = rows[other["at"]]
        asked = built["hops"][request["hop"]]["wires"][request["sent"]]["fields"]["arp.pdst"]
        assert other["right"] == repliers(built, asked), other["text"]


def test_the_dr_director_changes_only_the_macs_and_the_ttl_asked_once():
    built = real()
    (q,) = of_kind(trace_page.questions(built), "rewrite")  # the request's and FIN's: same
    row = trace_page.event_rows(built)[q["event"]]
    assert (row["packet"], row["src"], q["at"]) == ("SYN", "director", q["event"])
    sent = built["hops"][row["hop"]]["wires"][row["sent"]]
    assert q["right"] == sorted({GROUPS[k] for k in sent["changed"]}) == \
        ["eth.dst", "eth.src", "ttl"]
    assert {"ip.src", "ip.dst", "ports", "outer"} <= set(ids(q)) - set(q["right"])
    assert "outer.ttl" not in ids(q)  # no outer header came in
    assert q["text"].startswith("director took the SYN in on eth0 (client → director).")
    assert q["explain"][0] == "director sent it on to rs2: " + "; ".join(row["rewrites"])
    assert q["explain"][1].endswith(": DR")


def test_the_real_server_takes_the_syn_as_the_capture_shows():
    built = real()
    (q,) = of_kind(trace_page.questions(built), "take")
    host = built["connection"]["real_server_host"]
    assert q["host"] == host and q["right"] == ["yes"] and ids(q) == ["yes", "no"]
    assert host in trace_page.event_rows(built)[q["at"]]["dst"] and q["event"] == q["at"] + 1
    assert f"{host} takes a packet to 192.168.1.100 as its own: it holds the VIP (on lo, as " \
        "a /32)" in q["explain"]
    assert q["explain"][-1] == f"the capture has {host}'s SYN-ACK"


def test_nat_the_director_rewrites_the_destination_in_and_the_source_out():
    built = nat_trace()
    rewrites = of_kind(trace_page.questions(built), "rewrite")
    assert [q["right"] for q in rewrites] == [["eth.dst", "eth.src", "ip.dst", "ttl"],
                                             ["eth.dst", "eth.src", "ip.src", "ttl"]]
    assert rewrites[0]["explain"][1].endswith(": NAT")
    assert "NAT's way back" in rewrites[1]["explain"][1]
    assert rewrites[1]["text"].startswith("director took the SYN-ACK in on eth1 (rs1 → director)")
    (take,) = of_kind(trace_page.questions(built), "take")
    assert take["right"] == ["yes"] and "10.0.0.11:80" in take["text"]


def test_tun_the_director_adds_a_header_and_the_router_changes_the_outer_ttl():
    built = tun_waiting_for_arp()
    questions = trace_page.questions(built)
    director, router = of_kind(questions, "rewrite")
    assert director["right"] == ["eth.dst", "eth.src", "outer", "ttl"]  # inner TTL 64 → 63
    assert "outer.ttl" not in ids(director)
    assert router["host"] == "router" and router["right"] == ["eth.dst", "eth.src", "outer.ttl"]
    assert {"ttl", "outer", "ip.dst"} <= set(ids(router)) - set(router["right"])
    assert router["explain"][1].startswith("the router routed it")
    (answer,) = of_kind(questions, "answer")
    assert answer["host"] == "router" and answer["right"] == ["rs1"]
    assert answer["event"] < router["event"]  # asked in the order the capture has them
    (take,) = of_kind(questions, "take")
    assert "inside a tunnel to 172.16.0.11" in take["text"]
    assert take["right"] == ["no"]  # this capture ends before any SYN-ACK


def test_every_host_that_answers_the_arp_for_the_vip_is_right():
    built = dr_trace(rs_answers_arp=True)
    (q,) = of_kind(trace_page.questions(built), "answer")
    assert q["right"] == ["director", "rs1"]
    assert any("rs1 answered for the VIP" in line for line in q["explain"])


def test_a_request_nobody_answers_and_a_syn_nobody_takes():
    who_has = Ether(src=CLIENT, dst=trace.BROADCAST) / ARP(op=1, hwsrc=CLIENT, psrc=CIP,
                                                          pdst=VIP)
    forwarded = syn(DIRECTOR, RS1, ttl=63)
    timed = [("client-eth0.pcap", 0.0, who_has), ("director-eth0.pcap", 0.0001, who_has),
             ("rs1-eth0.pcap", 0.0001, who_has),
             ("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.002, forwarded), ("rs1-eth0.pcap", 1.0021, forwarded)]
    built = trace.build("dr", hosts([f"{VIP}/32", "192.168.1.11/24"]),
                        [wire("client"), wire("director"), wire("rs1")], frames(*timed), VIP)
    questions = trace_page.questions(built)
    (answer,) = of_kind(questions, "answer")
    assert answer["right"] == [trace_page.NOBODY]
    assert f"no answer to client for {VIP} is in the capture" in answer["explain"]
    (take,) = of_kind(questions, "take")
    assert take["right"] == ["no"] and take["explain"][-1] == "the capture has no SYN-ACK from rs1"


def test_ipv6_asks_who_answers_the_solicitation_and_names_the_hop_limit():
    built = test_trace_ipv6.dr_trace()
    questions = trace_page.questions(built)
    answers = of_kind(questions, "answer")
    assert answers and all("a Neighbor Solicitation" in q["text"] for q in answers)
    vip = next(q for q in answers if f"who has {test_trace_ipv6.VIP}?" in q["text"])
    assert vip["right"] == ["director"]
    (rewrite,) = of_kind(questions, "rewrite")
    assert rewrite["right"] == ["eth.dst", "eth.src", "ttl"]
    assert {"id": "ttl", "text": "hop limit (ip.hlim)"} in rewrite["choices"]


def test_the_page_carries_the_questions_and_asks_them_before_a_step():
    built = real()
    page = trace_page.page(built)
    blob = page.split('<script id="trace-data" type="application/json">', 1)[1]
    data = json.loads(blob.split("</script>", 1)[0])
    assert data["questions"] == trace_page.questions(built)
    assert 'id="challenge-toggle"' in page and 'id="challenge"' in page
    assert "view.hooks.beforeStep.push(" in page and 'q.get("challenge") === "1"' in page

"""The trace page's challenge as a learner meets it: `pylvs lab dr --trace DIR`, then the page
offline in headless Chromium with ``?challenge=1``, opened on a frame (``step=N``), a step
forward replayed (``keys=ArrowRight``) and the answer given by ``answers=`` (the ids a
learner would tick): the step is refused while the question waits, the right answer (worked
out here from trace.json, not from the page) is accepted, a wrong one refused, the verdict is
in the DOM and the next step goes on. And the IPv4 lab's pcaps hold no IPv6 or IGMP noise:
each opens with an ARP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.e2e.test_trace_page import dom

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the lab builds network namespaces"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (--trace)"),
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="needs chromium (scripts/install.sh --test)"),
]

FIELD_CHOICE = {"eth.src": "eth.src", "eth.dst": "eth.dst", "ip.src": "ip.src",
                "ip.dst": "ip.dst", "tcp.sport": "ports", "tcp.dport": "ports", "ip.ttl": "ttl"}


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[str, dict, list[dict]]:
    directory = tmp_path_factory.mktemp("trace-challenge")
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "dr", "--servers", "2",
                             "--requests", "2", "--trace", str(directory)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(directory / "trace.json") as fh:
        manifest = json.load(fh)
    with open(directory / "trace.html") as fh:
        blob = fh.read().split('<script id="trace-data" type="application/json">', 1)[1]
    questions = json.loads(blob.split("</script>", 1)[0])["questions"]
    return str(directory), manifest, questions


def ask(directory: str, questions: list[dict], q: dict, answer: list[str],
        keys: str = "ArrowRight") -> str:
    """The page opened on the frame before ``q``'s, a step forward, ``answer`` given to ``q``
    (and the right one to any question asked before it on the same step)."""
    same = [other for other in questions if other["event"] == q["event"]]
    given = [other["right"] for other in same[:same.index(q)]] + [answer]
    return dom(directory, f"challenge=1&step={q['event']}&keys={keys}"
                          f"&answers={';'.join(','.join(a) for a in given)}")


def state(page: str) -> tuple[str, str, int]:
    box = re.search(r'<div id="challenge" data-state="(\w+)" data-question="(\w*)"', page)
    current = int(re.search(r'<body[^>]* data-current="(-?\d+)"', page).group(1))
    return box.group(1), box.group(2), current


def panel(page: str) -> str:
    """The challenge's box: the question, its verdict and explanation."""
    return page.split('<div id="challenge"', 1)[1].split('<details id="challenge-answered"')[0]


def verdict(page: str, q: dict) -> str:
    return re.search(rf'<li data-question="{q["id"]}" data-verdict="(\w+)"', page).group(1)


def test_the_ipv4_lab_s_pcaps_open_with_arp_and_hold_no_noise(traced):
    directory, manifest, _ = traced
    assert manifest["noise"] == {}  # no DAD, MLD, router solicitation or IGMP
    pcaps = sorted(f for f in os.listdir(directory) if f.endswith(".pcap"))
    assert "client-eth0.pcap" in pcaps
    for name in pcaps:
        first = subprocess.run(["tcpdump", "-nr", os.path.join(directory, name), "-c", "1"],
                               capture_output=True, text=True, check=True).stdout
        assert first.split()[1] == "ARP,", f"{name} opens with {first!r}"
        every = subprocess.run(["tcpdump", "-nr", os.path.join(directory, name),
                                "ip6 or igmp"], capture_output=True, text=True,
                               check=True).stdout
        assert every == "", f"{name}: {every[:300]}"


def test_the_challenge_accepts_the_right_rewrite_and_refuses_a_wrong_one(traced):
    directory, manifest, questions = traced
    q = next(q for q in questions if q["kind"] == "rewrite")
    event = manifest["events"][q["event"]]
    hop = manifest["hops"][event["hop"]]
    sent = hop["wires"][event["sent"]]
    assert (hop["packet"], sent["host"]) == ("SYN", "director")
    right = sorted({FIELD_CHOICE[k] for k in sent["changed"]})
    assert right == q["right"] == ["eth.dst", "eth.src", "ttl"]  # DR: the MACs and the TTL

    waiting = dom(directory, f"challenge=1&step={q['event']}&keys=ArrowRight")
    assert state(waiting) == ("asking", q["id"], q["event"] - 1)  # the step waits
    assert re.search(rf'<g class="arrow[^"]*future[^"]*" data-event="{q["event"]}"', waiting)

    accepted = ask(directory, questions, q, right)
    assert state(accepted) == ("right", q["id"], q["event"] - 1)
    assert verdict(accepted, q) == "right" and "Right: the capture agrees." in panel(accepted)
    assert f"step on to #{q['event'] + 1}" in accepted

    refused = ask(directory, questions, q, ["eth.dst", "ip.dst"])
    assert state(refused) == ("wrong", q["id"], q["event"] - 1)
    assert verdict(refused, q) == "wrong"
    assert "Wrong: the capture says: destination MAC (eth.dst); source MAC (eth.src); TTL " \
        "(ip.ttl)." in panel(refused)
    assert ": DR</li>" in panel(refused)  # the explanation: the hop's own line

    on = ask(directory, questions, q, ["eth.dst", "ip.dst"], keys="ArrowRight,ArrowRight")
    assert state(on)[2] == q["event"]  # answered, the next step goes on


def test_the_challenge_checks_who_answers_the_arp_for_the_vip(traced):
    directory, manifest, questions = traced
    vip = manifest["connection"]["vip"].split(":")[0]
    q = next(q for q in questions if q["kind"] == "answer" and f"who has {vip}?" in q["text"])
    replies = {h["wires"][0]["host"] for h in manifest["hops"]
               if h["packet"].startswith(f"ARP: {vip} is at")}
    assert sorted(replies) == q["right"] == ["director"]
    accepted = ask(directory, questions, q, ["director"])
    assert state(accepted)[:2] == ("right", q["id"]) and verdict(accepted, q) == "right"
    assert re.search(r'<span id="score">score: 1 of 1 right</span>', accepted)
    refused = ask(directory, questions, q, ["rs1"])
    assert state(refused)[:2] == ("wrong", q["id"]) and verdict(refused, q) == "wrong"
    assert "arp_ignore=1" in panel(refused)

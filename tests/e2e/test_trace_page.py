"""trace.html as a learner opens it: `pylvs lab dr|dr --ipv6|tun --tun-type gue --trace DIR`,
then the page offline in headless Chromium (Debian's chromium, as tests/e2e/test_trace.py
drives it), its DOM dumped after the page's own ``?step=N`` or replayed key presses
(``?keys=ArrowRight,...``): every frame's MACs and addresses are in the diagram's text, and
stepping moves the highlight, the topology's drawing and the hosts' layers with it."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the lab builds network namespaces"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (--trace)"),
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="needs chromium (scripts/install.sh --test)"),
]

LABS = {"dr": ["dr"], "dr-ipv6": ["dr", "--ipv6"], "tun-gue": ["tun", "--tun-type", "gue"]}


@pytest.fixture(scope="module", params=list(LABS))
def traced(request, tmp_path_factory) -> tuple[str, dict]:
    directory = tmp_path_factory.mktemp(f"trace-{request.param}")
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", *LABS[request.param],
                             "--servers", "2", "--requests", "2", "--trace", str(directory)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(directory / "trace.json") as fh:
        return str(directory), json.load(fh)


def dom(directory: str, query: str = "") -> str:
    """The page's DOM after its script ran, as headless Chromium dumps it."""
    url = f"file://{os.path.join(directory, 'trace.html')}" + (f"?{query}" if query else "")
    profile = os.path.join(directory, "profile")
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60)
    assert "pylvsTrace" in done.stdout, done.stderr[-2000:]
    return done.stdout


def sequence_text(page: str) -> str:
    svg = re.search(r'<svg[^>]*class="sequence".*?</svg>', page, re.S).group(0)
    return html.unescape(re.sub(r"<[^>]+>", "", svg))


def current(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<g class="arrow current" data-event="(\d+)"', page)]


def frame_values(f: dict) -> list[str]:
    """What no diagram of this frame may leave out: its MACs, its addresses (the outer
    header's too), the ARP or NDP question's."""
    keys = ("eth.src", "eth.dst", "ip.src", "ip.dst", "outer.src", "outer.dst", "arp.psrc",
            "arp.pdst", "nd.src", "nd.dst", "nd.target")
    return [str(f[k]) for k in keys if k in f]


def test_the_diagram_carries_every_frame_s_macs_and_addresses(traced):
    directory, manifest = traced
    page = dom(directory)
    text = sequence_text(page)
    assert manifest["hops"] and manifest["events"]
    for hop in manifest["hops"]:
        for obs in hop["wires"]:
            missing = [v for v in frame_values(obs["fields"]) if v not in text]
            assert not missing, f"{hop['packet']} on {obs['wire']}: {missing} not drawn"
    times = [e["time"] for e in manifest["events"]]
    assert times == sorted(times)  # the events in the order they were captured
    noise = sum(manifest["noise"].values())
    assert (f"Left out of the hops: {noise} frame" in text) if noise else \
        "No capture noise was left out." in text
    assert os.path.getsize(os.path.join(directory, "trace.png")) > 20_000


def test_stepping_moves_the_highlight_the_topology_and_the_layers(traced):
    directory, manifest = traced
    last = len(manifest["events"]) - 1
    opened = dom(directory)
    assert current(opened) == [0] and 'data-current="0"' in opened
    stepped = dom(directory, "keys=ArrowRight,ArrowRight,ArrowRight,ArrowLeft")
    assert current(stepped) == [2] and 'data-current="2"' in stepped
    assert current(dom(directory, "step=4")) == [3]
    assert current(dom(directory, "keys=End,ArrowLeft")) == [last - 1]
    overlay = re.search(r'<g id="topology-current">(.*?)</g>', stepped, re.S).group(1)
    assert "<path" in overlay  # the current frame drawn on the topology
    syn = next(i for i, e in enumerate(manifest["events"])
               if manifest["hops"][e["hop"]]["packet"] == "SYN" and e["before"] is not None)
    at_director = dom(directory, f"step={syn + 1}")
    assert current(at_director) == [syn]
    views = re.search(r'<div id="host-views">(.*?)</div>\s*<h2>', at_director, re.S).group(1)
    assert "is a virtual service: a new connection → scheduler rr chose" in views
    assert 'class="changed"' in views and "→" in views  # the rewrite, old → new
    arp = dom(directory, "kind=arp&keys=ArrowRight")
    (n,) = current(arp)
    assert manifest["hops"][manifest["events"][n]["hop"]]["kind"] in ("arp", "ndp")

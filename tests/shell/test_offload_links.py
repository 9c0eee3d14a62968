"""What the shell reads of a link for the fast path (pylvs.shell.interfaces.link_facts,
link_drops, pylvs.shell.xdp.features) on a real veth pair, and what `offload = "auto"` makes of
it (pylvs.shell.offload): no program at all while the peer has none, the fast path once it has
one; how pylvs status and the metrics show a link (no root needed for those)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pylvs.core.offloaded import XDP_ACT_NDO_XMIT
from pylvs.shell import metrics
from pylvs.shell.requests import render_offload
from tests.helpers.veth import NEEDS_NAMESPACES, in_ns

PASS = [sys.executable, "-c", "from pylvs.core.ebpf import XDP_PASS, Assembler\n"
        "from pylvs.shell import xdp\n"
        "xdp.attach('vp', xdp.Program(Assembler().ret(XDP_PASS).assemble(), 'pass'))"]


def namespaces(test):
    """The veth pair's marks (root, ip, nft) on one test of this module."""
    for mark in NEEDS_NAMESPACES:
        test = mark(test)
    return test


def _peer_program(topo) -> None:
    subprocess.run(["ip", "netns", "exec", topo.p, *PASS], check=True, capture_output=True,
                   timeout=30, env={**os.environ, "PYTHONPATH": os.getcwd()})


def _offload(mode: str):
    from pylvs.shell.offload import Offload
    return Offload(["vd"], 16, mode=mode)


@namespaces
def test_a_veths_peer_and_its_program_are_seen_from_the_directors_side(topo):
    from pylvs.shell import xdp
    from pylvs.shell.interfaces import link_drops, link_facts
    facts = in_ns(topo.d, link_facts, "vd")
    assert (facts.kind, facts.peer, facts.peer_xdp) == ("veth", f"vp in netns {topo.p}", 0)
    assert not in_ns(topo.d, xdp.features, "vd") & XDP_ACT_NDO_XMIT
    _peer_program(topo)
    assert in_ns(topo.d, link_facts, "vd").peer_xdp > 0
    assert in_ns(topo.d, xdp.features, "vd") & XDP_ACT_NDO_XMIT  # what GRO would say too
    assert set(in_ns(topo.d, link_drops, ["vd", "nope"])) == {"vd"}


@namespaces
def test_auto_puts_no_program_on_a_bare_veth_and_takes_one_whose_peer_is_ready(topo):
    from pylvs.shell import xdp
    from pylvs.shell.offload import OffloadError
    with pytest.raises(OffloadError, match="vp in netns .* has no XDP program"):
        in_ns(topo.d, _offload, "auto")
    assert in_ns(topo.d, xdp.attached, "vd") == 0
    _peer_program(topo)
    offload = in_ns(topo.d, _offload, "auto")
    try:
        assert offload.attached == ["vd"] and offload.choices["vd"].fast
        report = in_ns(topo.d, offload.report)
        assert report["links"]["vd"]["fast"] and report["links"]["vd"]["dropped"] == 0
        assert report["mode"] == "auto" and report["partial"] == 0
    finally:
        in_ns(topo.d, offload.close)
    assert in_ns(topo.d, xdp.attached, "vd") == 0


REPORT = {"mode": "xdp", "partial": 7, "links": {
    "eth0": {"fast": False, "dropped": 3338001, "reason": "XDP fast path: eth0 dropped ..."},
    "eth1": {"fast": True, "dropped": 0, "reason": "a veth whose peer ..."}}}


def test_status_shows_each_link_its_drops_and_the_partial_frames():
    text = render_offload(REPORT)
    assert text.splitlines()[:3] == [
        "offload xdp:", "  eth0: Python, dropped 3338001: XDP fast path: eth0 dropped ...",
        "  eth1: XDP fast path, dropped 0: a veth whose peer ..."]
    assert "partial checksums passed to Python: 7" in text
    assert render_offload({"mode": "auto", "python": "eth0: a veth whose peer (x) has no XDP "
                           "program"}) == ("offload auto: every frame through Python (eth0: a "
                                           "veth whose peer (x) has no XDP program)\n")


def test_the_metrics_count_each_links_drops():
    found = {family.name: family for family in metrics.families(metrics.Scrape(
        offload=REPORT))}
    fast = {s.labels["interface"]: s.value for s in found["pylvs_xdp_fast_path"].samples}
    dropped = {s.labels["interface"]: s.value for s in found["pylvs_xdp_dropped"].samples}
    assert fast == {"eth0": 0, "eth1": 1} and dropped == {"eth0": 3338001, "eth1": 0}
    assert found["pylvs_xdp_partial_checksum"].samples[0].value == 7
    assert "pylvs_xdp_fast_path" not in {f.name for f in metrics.families(metrics.Scrape(
        offload={"mode": "none", "python": "offload = \"none\""}))}

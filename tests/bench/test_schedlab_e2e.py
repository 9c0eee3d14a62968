"""The scheduler laboratory end to end: `python3 -m bench.schedlab` builds its lab, runs one
scenario live with two schedulers for 5 s each (and in the model), and writes JSON with the
percentiles and per-server shares. Needs root; skipped with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft")),
    reason="the scheduler lab builds network namespaces: run as root with iproute2 and "
           "nftables (scripts/install.sh)")


def test_churn_with_rr_and_wlc(tmp_path):
    out = tmp_path / "schedlab.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.schedlab", "--scenario", "churn", "--scheduler", "rr",
         "wlc", "--duration", "5", "--offload", "none", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "churn: a server added and one removed mid-run" in done.stdout
    results = json.loads(out.read_text())["results"]
    live = {r["scheduler"]: r for r in results if r["source"] == "live-none"}
    assert set(live) == {"rr", "wlc"}
    for r in live.values():
        assert {"p50", "p99", "p99.9"} <= set(r["latency_ms"]), r
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["p99.9"]
        assert r["requests"] > 1000 and r["failed"] < r["requests"] / 10
        assert set(r["share"]) == {"rs1", "rs2", "rs3", "rs4", "rs5"}
        for column in zip(*r["share"].values(), strict=True):
            assert sum(column) == pytest.approx(1.0)
        assert sum(r["extra"]["overall_share"].values()) == pytest.approx(1.0)
        assert r["share"]["rs5"][0] == 0.0 and r["share"]["rs1"][-1] == 0.0  # added, removed
        assert set(r["broken"]) == {"add@1.7s", "remove@3.3s"}

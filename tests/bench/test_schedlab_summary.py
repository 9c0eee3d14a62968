"""The scheduler laboratory's arithmetic without root: a live run's records summarized (the
percentiles with failures counted as the timeout, the shares per interval, what a change broke,
the pacing error), the model-vs-live comparison, and the command line's choices."""

from __future__ import annotations

import pytest

from bench.schedlab import __main__ as cli
from bench.schedlab import report
from bench.schedlab.live import cdf, director_config, server_names, summarize
from bench.schedlab.results import Result, percentiles
from bench.schedlab.scenarios import QUICK, Change, Scenario, Server, by_name


def _scenario(**kw) -> Scenario:
    return Scenario("t", "test", (Server(), Server()), rate=10.0, duration=4.0, **kw)


# (offset s, source, lag ms, latency ms, server, error)
RECORDS = [(0.1, 0, 0.5, 10.0, "rs1", ""), (0.6, 1, 0.7, 30.0, "rs2", ""),
           (1.2, 0, 0.2, 20.0, "rs1", ""), (1.5, 1, 2.0, 2000.0, "", "timeout"),
           (2.5, 0, 0.1, 40.0, "rs2", ""), (3.9, 1, 9.0, 5.0, "rs2", "reset")]


def test_percentiles_nearest_rank():
    samples = [float(i) for i in range(1, 1001)]
    got = percentiles(samples)
    assert (got["p50"], got["p90"], got["p99"], got["p99.9"]) == (500.0, 900.0, 990.0, 999.0)
    assert got["max"] == 1000.0 and got["mean"] == 500.5
    assert percentiles([]) == {} and percentiles([7.0])["p99.9"] == 7.0


def test_summary_counts_failures_as_the_timeout():
    r = summarize(_scenario(), "rr", "live-none", RECORDS, timeout=2.0, interval=1.0)
    assert (r.requests, r.failed) == (6, 2)
    assert r.latency_ms["max"] == 2000.0
    assert r.latency_ms["p50"] == 30.0  # 10, 20, 30, 40, 2000, 2000
    assert r.achieved_rps == 4 / 4.0
    assert r.extra["errors"] == {"timeout": 1, "reset": 1}


def test_shares_per_interval_add_up_to_one():
    r = summarize(_scenario(), "rr", "live-none", RECORDS, interval=1.0)
    assert r.share == {"rs1": [0.5, 1.0, 0.0, 0.0], "rs2": [0.5, 0.0, 1.0, 0.0]}
    assert r.extra["overall_share"] == {"rs1": 0.5, "rs2": 0.5}


def test_broken_counts_failures_ending_within_two_seconds_after_a_change():
    scenario = _scenario(changes=(Change(3.0, "remove", index=0),
                                  Change(1.0, "add", server=Server())))
    r = summarize(scenario, "rr", "live-none", RECORDS)
    # the timeout ends at 1.5 + 2.0 = 3.5 s, the reset at 3.9 + 0.005 s: both after 3.0 s
    assert r.broken == {"remove@3s": 2, "add@1s": 0}
    assert list(r.share) == ["rs1", "rs2", "rs3"]


def test_pacing_and_cdf():
    r = summarize(_scenario(), "rr", "live-none", RECORDS)
    assert r.extra["pacing_ms"]["max"] == 9.0 and r.extra["pacing_ms"]["p50"] == 0.5
    points = cdf([float(i) for i in range(1, 101)])
    assert points[0] == (0.02, 2.0) and points[-1] == (1.0, 100.0)
    assert [q for q, _ in points] == sorted(q for q, _ in points)


def test_server_names_include_the_added_ones():
    assert server_names(by_name("churn", quick=True)) == ["rs1", "rs2", "rs3", "rs4", "rs5"]


def test_director_config_names_the_plugin():
    class FakeLab:
        vip = "192.168.1.100"
    text = director_config(FakeLab(), "prequal", [("192.168.1.11", 2)], "/run/x.sock", "xdp")
    assert 'scheduler = "bench.schedlab.prequal:Prequal"' in text
    assert 'offload = "xdp"' in text and "weight = 2" in text and 'forward = "dr"' in text


def _result(source: str, p50: float, p99: float, share: dict[str, list[float]]) -> Result:
    return Result("s", "wlc", source, {"p50": p50, "p99": p99, "p99.9": p99}, 10, 0, 5.0,
                  share, 1.0)


def test_model_vs_live():
    live = _result("live-none", 20.0, 100.0, {"rs1": [0.5, 0.6], "rs2": [0.5, 0.4]})
    model = _result("model", 15.0, 110.0, {"rs1": [0.5, 0.5], "rs2": [0.5, 0.5]})
    rows = report.compare([model, live])
    assert rows == [{"scenario": "s", "scheduler": "wlc", "live": "live-none", "p50_rel": -0.25,
                     "p99_rel": 0.1, "share_diff": 0.05}]
    assert report.tolerance(rows)["p50_rel"] == {"median": 0.25, "max": 0.25}
    assert "-25%" in report.comparison_text(rows)


def test_overall_share_skips_empty_intervals():
    r = _result("model", 1, 1, {"rs1": [1.0, 0.0, 0.5], "rs2": [0.0, 0.0, 0.5]})
    assert report.overall_share(r) == {"rs1": 0.75, "rs2": 0.25}


def test_table_has_a_row_per_run():
    text = report.table("s", "title", [_result("live-none", 20.0, 100.0, {})])
    assert text.splitlines()[2].split()[:4] == ["wlc", "live-none", "20.0", "100.0"]


def test_quick_trims_and_says_so():
    args = cli.parse(["--quick"])
    assert [s.name for s in cli.chosen_scenarios(args)] == list(cli.QUICK_SCENARIOS)
    assert cli.chosen_schedulers(args) == list(cli.QUICK_SCHEDULERS)
    assert cli.offloads(args) == ["none"] and cli.offloads(cli.parse([])) == ["none", "xdp"]


def test_quick_live_time_is_about_two_minutes():
    args = cli.parse(["--quick"])
    steps = cli.plan(cli.chosen_scenarios(args), cli.chosen_schedulers(args), ["none"],
                     model=True, live=True)
    assert 80 <= sum(s[4] for s in steps) + cli.LAB_SETUP <= 130


def test_duration_moves_the_changes():
    args = cli.parse(["--scenario", "churn", "--duration", "5"])
    (churn,) = cli.chosen_scenarios(args)
    full = by_name("churn")
    assert churn.duration == 5 and [c.at for c in churn.changes] == [
        round(c.at * 5 / full.duration, 1) for c in full.changes]


def test_unknown_scenario():
    with pytest.raises(SystemExit, match="unknown scenario"):
        cli.chosen_scenarios(cli.parse(["--scenario", "nope"]))


def test_quick_scenarios_have_the_same_names_as_full():
    assert [s.name for s in QUICK] == [s.name for s in cli.FULL]

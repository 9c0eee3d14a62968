"""The scheduler laboratory's model (bench/schedlab/model.py): checked against queueing theory
where closed forms exist, deterministic by seed, and counting as the director counts."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest

from bench.schedlab import model, scenarios
from bench.schedlab.scenarios import Change, Scenario, Server

EXACT = model.Knobs(rtt_ms=0.0, timeout=1000.0)
"""No network, no timeouts: the queue alone."""


def one_server(rate: float, duration: float, concurrency: int = 1,
               distribution: str = "exp") -> Scenario:
    """A server of mean service time 10 ms (μ = 100/s per worker)."""
    spec = Server(mean_ms=10.0, distribution=distribution, concurrency=concurrency)
    return Scenario("t", "one server", (spec,), rate, duration)


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``a`` = λ/μ."""
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


def test_mm1_response_time_is_exponential_with_rate_mu_minus_lambda():
    # μ = 100/s, λ = 50/s: response ~ Exp(50/s), mean 20 ms, p99 = ln(100)/50 s = 92.1 ms
    result = model.run(one_server(50.0, 2000.0, concurrency=1), "rr", knobs=EXACT)
    assert result.requests > 95_000 and result.failed == 0
    assert result.latency_ms["mean"] == pytest.approx(20.0, rel=0.03)
    assert result.latency_ms["p99"] == pytest.approx(1000 * math.log(100) / 50, rel=0.05)


def test_mmc_mean_response_matches_erlang_c():
    c, mu, lam = 4, 100.0, 280.0
    expected = 1000 * (1 / mu + erlang_c(c, lam / mu) / (c * mu - lam))  # 13.57 ms
    result = model.run(one_server(lam, 500.0, concurrency=c), "wlc", knobs=EXACT)
    assert result.latency_ms["mean"] == pytest.approx(expected, rel=0.03)


def test_md1_mean_response_matches_pollaczek_khinchine():
    # W = S + ρS/(2(1−ρ)) = 10 + 5 = 15 ms at ρ = 0.5
    result = model.run(one_server(50.0, 1000.0, concurrency=1, distribution="const"), "rr",
                       knobs=EXACT)
    assert result.latency_ms["mean"] == pytest.approx(15.0, rel=0.03)


def test_rtt_is_added_to_every_response():
    scenario = one_server(10.0, 20.0, concurrency=1, distribution="const")
    bare = model.run(scenario, "rr", knobs=EXACT)
    late = model.run(scenario, "rr", knobs=replace(EXACT, rtt_ms=0.2))
    assert late.latency_ms["p50"] == pytest.approx(bare.latency_ms["p50"] + 0.2)


@pytest.mark.parametrize("name", ["twos", "mh", "prequal"])
def test_same_seed_same_result_other_seed_other_result(name):
    scenario = scenarios.by_name("two_directors", quick=True)
    first, again = model.run(scenario, name), model.run(scenario, name)
    assert asdict(first) == asdict(again)
    other = model.run(replace(scenario, seed=2), name)
    assert asdict(other) != asdict(first)


@pytest.mark.parametrize("name", ["rr", "wlc", "mh"])
def test_shares_sum_to_one_in_every_interval(name):
    result = model.run(scenarios.by_name("churn", quick=True), name)
    assert set(result.share) == {"rs1", "rs2", "rs3", "rs4", "rs5"}
    intervals = len(result.share["rs1"])
    assert intervals == 8
    for i in range(intervals):
        assert sum(result.share[s][i] for s in result.share) == pytest.approx(1.0)
    assert result.share["rs5"][0] == 0.0 and result.share["rs5"][-1] > 0.1  # added at 2.7 s
    assert result.share["rs1"][-1] == 0.0  # removed at 5.3 s


def test_removing_a_server_breaks_what_it_had_in_flight():
    # service 100 s: everything sent to rs1 before its removal is still in flight then
    servers = (Server(mean_ms=100_000.0, distribution="const", concurrency=1000),) * 2
    scenario = Scenario("t", "removal", servers, 20.0, 5.0, (Change(4.0, "remove", index=0),))
    run = model.Model(scenario, "rr", EXACT)
    rs1 = run.directors[0].by_backend[0]
    run.run()
    result = run.result("rr")
    assert rs1.stats.conns > 20
    assert result.broken == {"remove@4s": rs1.stats.conns}
    assert result.failed == rs1.stats.conns
    assert result.share["rs1"] == [0.0] * 5  # nothing of it answered
    kept = model.run(scenario, "rr", knobs=replace(EXACT, break_on_remove=False))
    assert kept.broken == {"remove@4s": 0} and kept.failed == 0


def test_closed_connections_stay_inactive_for_fin_wait_then_go():
    scenario = scenarios.by_name("equal", quick=True)
    kept = model.Model(scenario, "wlc", model.Knobs())
    kept.run()
    done = kept.requests - kept.failed
    servers = kept.directors[0].servers
    assert sum(s.inactconns for s in servers) == done  # 8 s < 120 s of FIN_WAIT
    assert all(s.activeconns == 0 for s in servers)
    assert sum(s.stats.conns for s in servers) == kept.requests
    short = model.Model(scenario, "wlc", model.Knobs(fin_wait=0.5))
    short.run()
    assert 0 < sum(s.inactconns for s in short.directors[0].servers) < done / 10


def test_each_director_counts_only_its_own_connections():
    run = model.Model(scenarios.by_name("two_directors", quick=True), "lc", model.Knobs())
    run.run()
    counts = [sum(s.stats.conns for s in d.servers) for d in run.directors]
    assert sum(counts) == run.requests
    assert counts[0] == pytest.approx(counts[1], rel=0.1)
    assert run.directors[0].servers[0] is not run.directors[1].servers[0]


def test_source_hashing_sees_the_clients_addresses():
    one_client = replace(scenarios.by_name("equal", quick=True), clients=1)
    shares = model.run(one_client, "sh").share
    assert sorted(max(s) for s in shares.values())[-1] == 1.0
    spread = model.run(scenarios.by_name("equal", quick=True), "sh").share
    assert all(0.1 < sum(s) / len(s) < 0.4 for s in spread.values())


def test_a_refused_request_fails_at_the_timeout():
    scenario = Scenario("t", "quiesced", (Server(weight=0),), 100.0, 1.0)
    result = model.run(scenario, "wlc")
    assert result.failed == result.requests == result.extra["refused"] > 50
    assert result.latency_ms["p50"] == 2000.0 and result.achieved_rps == 0.0


def test_pauses_freeze_service():
    backend = model.Backend("rs1", Server(pause_every=2.0, pause_for=0.3))
    assert backend.finish(0.5, 1.0) == 1.5  # before the first pause
    assert backend.finish(1.9, 0.2) == pytest.approx(2.4)  # 0.1 s, the pause, 0.1 s
    assert backend.finish(2.1, 0.1) == pytest.approx(2.4)  # starts when the pause ends
    assert backend.finish(1.0, 3.0) == pytest.approx(4.6)  # across two pauses


def test_a_slowdown_multiplies_service_times():
    spec = Server(mean_ms=10.0, distribution="const", concurrency=100)
    scenario = Scenario("t", "slow", (spec,), 50.0, 4.0, (Change(2.0, "slow", factor=3.0),))
    result = model.run(scenario, "rr", knobs=EXACT)
    latency = result.latency_ms
    assert {round(latency[p], 6) for p in ("p50", "p90", "p99", "max")} <= {10.0, 30.0}
    assert latency["max"] == pytest.approx(30.0) and 17.0 < latency["mean"] < 23.0
    assert result.broken == {"slow@2s": 0}


def test_prequal_is_fed_by_health_checks_not_an_oracle():
    run = model.Model(scenarios.by_name("one_slow", quick=True), "prequal", model.Knobs())
    run.run()
    assert run.probes == pytest.approx(8 * 4, abs=4)  # one per server per delay_loop
    latency = run.directors[0].scheduler.latency
    assert len(latency) == 4 and all(ms > 0 for ms in latency.values())
    assert run.requests + run.probes == run.next_id


def test_scaled_to_more_servers_and_requests():
    scenario = model.sized(scenarios.by_name("churn"), 40, 20_000)
    assert len(scenario.servers) == 40
    assert scenario.rate * scenario.duration == pytest.approx(20_000)
    assert scenario.changes[1].at == pytest.approx(2 * scenario.duration / 3)
    result = model.run(scenario, "twos")
    assert len(result.share) == 41
    assert result.failed == result.broken[f"remove@{scenario.changes[1].at:g}s"]


def test_the_live_clients_schedule_draw_for_draw(monkeypatch):
    client = pytest.importorskip("bench.schedlab.client")
    scenario = scenarios.by_name("two_directors", quick=True)
    seen: list[tuple[float, int]] = []
    arrive = model.Model.arrive

    def spy(self: model.Model, t: float, source: int) -> None:
        seen.append((t, source))
        arrive(self, t, source)

    monkeypatch.setattr(model.Model, "arrive", spy)
    model.run(scenario, "rr")
    assert seen == client.schedule(scenario.rate, scenario.duration, scenario.clients,
                                   scenario.seed)


def test_the_addresses_are_the_live_labs():
    run = model.Model(scenarios.by_name("equal", quick=True), "sh", model.Knobs())
    assert [s.address for s in reversed(run.directors[0].servers)] == [
        "192.168.1.11", "192.168.1.12", "192.168.1.13", "192.168.1.14"]  # newest first
    assert model.server_address(999).startswith("10.")


def test_the_cdf_is_the_live_runs():
    live = pytest.importorskip("bench.schedlab.live")
    run = model.Model(scenarios.by_name("pauses", quick=True), "twos", model.Knobs())
    run.run()
    assert model.cdf(run.latencies) == live.cdf(run.latencies)
    assert run.result("twos").extra["cdf_ms"] == live.cdf(run.latencies)

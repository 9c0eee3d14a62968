"""The Prequal plug-in (bench/schedlab/prequal.py): built through the public scheduler face
only, the hot-cold lexicographic rule, its latency estimate, and a seeded probe pool."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

import schedulers
from bench.schedlab import prequal
from bench.schedlab.prequal import Prequal
from schedulers import RealServer


class Cycle:
    """An rng whose draws go round the given values: a pool of chosen servers."""

    def __init__(self, *values: float) -> None:
        self.values, self.i = values, 0

    def random(self) -> float:
        value = self.values[self.i % len(self.values)]
        self.i += 1
        return value


THREE = (0.0, 0.34, 0.67)  # servers[0], [1], [2] of three


def servers(*rifs: int) -> list[RealServer]:
    made = [RealServer(f"198.51.100.{i + 1}", 80) for i in range(len(rifs))]
    for server, rif in zip(made, rifs, strict=True):
        server.activeconns = rif
    return made


def test_built_only_through_the_public_face():
    tree = ast.parse(Path(prequal.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert imported == {"__future__", "random", "collections.abc", "schedulers"}


def test_found_by_name_and_as_module_class():
    assert schedulers.get("prequal") is Prequal
    assert schedulers.get("bench.schedlab.prequal:Prequal") is Prequal
    assert "prequal" in schedulers.names()


def test_the_coldest_by_latency_among_the_not_hot():
    a, b, c = pool = servers(0, 1, 9)
    scheduler = Prequal(rng=Cycle(*THREE))  # type: ignore[arg-type]
    scheduler.update(pool)
    scheduler.observe(a, 50.0)
    scheduler.observe(b, 5.0)
    scheduler.observe(c, 1.0)  # fastest, but hot: 9 in flight is above the 0.6 quantile
    assert scheduler.pick(pool, None) is b


def test_all_hot_the_fewest_in_flight():
    pool = servers(0, 0, 0)
    scheduler = Prequal(rng=Cycle(*THREE))  # type: ignore[arg-type]
    scheduler.update(pool)
    scheduler.pick(pool, None)  # the threshold: 0 in flight
    for server, rif, ms in zip(pool, (3, 2, 5), (1.0, 90.0, 2.0), strict=True):
        server.activeconns = rif
        scheduler.observe(server, ms)
    assert scheduler.pick(pool, None) is pool[1]


def test_latency_is_smoothed_and_forgotten_with_the_server():
    a, b = pool = servers(0, 0)
    scheduler = Prequal(alpha=0.5)
    scheduler.update(pool)
    scheduler.observe(a, 10.0)
    scheduler.observe(a, 20.0)
    scheduler.observe(b, 7.0)
    assert scheduler.latency == {a: 15.0, b: 7.0}
    scheduler.update([b])
    assert scheduler.latency == {b: 7.0}


def test_unavailable_servers_are_never_chosen():
    pool = servers(0, 0, 0)
    pool[0].set_weight(0)
    pool[1].overloaded = True
    scheduler = Prequal(rng=random.Random(1))
    scheduler.update(pool)
    assert {scheduler.pick(pool, None) for _ in range(50)} == {pool[2]}
    pool[2].set_weight(0)
    assert scheduler.pick(pool, None) is None
    assert scheduler.pick([], None) is None


def test_the_same_seed_draws_the_same_pools():
    pool = servers(*range(10))

    def picks(seed: int) -> list[RealServer | None]:
        scheduler = Prequal(rng=random.Random(seed))
        scheduler.update(pool)
        return [scheduler.pick(pool, None) for _ in range(200)]

    assert picks(3) == picks(3) != picks(4)


@pytest.mark.parametrize("probes,q_rif,alpha", [(0, 0.6, 0.5), (3, 0.0, 0.5), (3, 0.6, 1.5)])
def test_bad_parameters_are_refused(probes, q_rif, alpha):
    with pytest.raises(ValueError):
        Prequal(probes=probes, q_rif=q_rif, alpha=alpha)

"""One result shape for the live runs and the model: per scenario and scheduler, the latency
percentiles, the requests per server over time, the connections broken by each change, the
requests per second achieved. ``as_json`` is what ``--json`` writes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CDF_LEVELS = (*(i / 50 for i in range(1, 50)), 0.99, 0.995, 0.998, 0.999, 0.9995, 1.0)


@dataclass
class Result:
    scenario: str
    scheduler: str
    source: str
    """"live" (offload "none" or "xdp": ``live-none``, ``live-xdp``) or "model"."""
    latency_ms: dict[str, float]
    """"p50", "p90", "p99", "p99.9" (and "mean", "max") of the response times, in ms, every
    request sent counted (a request that failed or timed out counts as its timeout)."""
    requests: int
    failed: int
    achieved_rps: float
    share: dict[str, list[float]]
    """Per server (its name, "rs1"...), its share of the requests in each ``interval``."""
    interval: float
    broken: dict[str, int] = field(default_factory=dict)
    """Per change ("add@20s", "remove@40s"), connections or requests that failed because of it."""
    extra: dict[str, Any] = field(default_factory=dict)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles, plus mean and max; {} when there are no samples."""
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)
    out = {f"p{p:g}": ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))]
           for p in PERCENTILES}
    out["mean"] = sum(ordered) / len(ordered)
    out["max"] = ordered[-1]
    return out


def cdf(latencies: Sequence[float]) -> list[tuple[float, float]]:
    """(level, latency ms) at CDF_LEVELS, nearest rank: what the plots draw."""
    ordered = sorted(latencies)
    if not ordered:
        return []
    last = len(ordered) - 1
    return [(q, round(ordered[min(last, max(0, math.ceil(q * len(ordered)) - 1))], 2))
            for q in CDF_LEVELS]


def as_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "results": [asdict(r) for r in results]}

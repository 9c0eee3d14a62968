"""The scheduler laboratory's pictures (matplotlib, `scripts/install.sh --bench`): per scenario,
the latency CDF of each scheduler (a "nines" axis: 50%, 90%, 99%, 99.9%), and each server's
share of the requests over time, one panel per scheduler."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from bench.schedlab.results import Result
from bench.schedlab.scenarios import Scenario

LEVELS = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


def nines(level: float) -> float:
    """The plot's y for a CDF level: 1 for 90%, 2 for 99%, 3 for 99.9%."""
    return -math.log10(max(1e-4, 1.0 - level))


def curve(result: Result) -> tuple[list[float], list[float]]:
    """(latencies, y) of the result's CDF: its quantile grid if it has one (live), else its
    percentiles (the model)."""
    points = result.extra.get("cdf_ms") or sorted(
        (LEVELS[k], v) for k, v in result.latency_ms.items() if k in LEVELS)
    points = [(q, ms) for q, ms in points if q < 1.0]
    return [max(ms, 0.01) for _, ms in points], [nines(q) for q, _ in points]


def plot(results: Sequence[Result], scenarios: Sequence[Scenario], directory: str) -> list[str]:
    """Writes the pictures into ``directory``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    os.makedirs(directory, exist_ok=True)
    written = []
    for scenario in scenarios:
        mine = [r for r in results if r.scenario == scenario.name]
        if mine:
            written.append(_cdf(scenario, mine, directory))
            written.append(_shares(scenario, mine, directory))
    return written


def _cdf(scenario: Scenario, results: Sequence[Result], directory: str) -> str:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    colors: dict[str, str] = {}
    for r in results:
        xs, ys = curve(r)
        if not xs:
            continue
        color = colors.setdefault(r.scheduler, f"C{len(colors) % 10}")
        style = "--" if r.source == "model" else ":" if r.source == "live-xdp" else "-"
        ax.plot(xs, ys, style, color=color, label=f"{r.scheduler} ({r.source})",
                marker="o" if r.source == "model" else None, markersize=3)
    ax.set_xscale("log")
    ax.set_yticks([0, nines(0.5), 1, 2, 3], ["0%", "50%", "90%", "99%", "99.9%"])
    ax.set_xlabel("response time, ms (from the scheduled send)")
    ax.set_ylabel("requests answered within")
    ax.set_title(f"{scenario.name}: {scenario.title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    path = os.path.join(directory, f"{scenario.name}-cdf.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shares(scenario: Scenario, results: Sequence[Result], directory: str) -> str:
    import matplotlib.pyplot as plt
    shown = _one_per_scheduler(results)
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False,
                             sharey=True)
    for ax, r in zip(axes.flat, shown, strict=False):
        times = [(i + 0.5) * r.interval for i in range(len(next(iter(r.share.values()), [])))]
        ax.stackplot(times, *r.share.values(), labels=list(r.share))
        for change in scenario.changes:
            ax.axvline(change.at, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{r.scheduler} ({r.source})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("s", fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("share of requests")
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{scenario.name}: share per server over time (dashed: a change)", fontsize=10)
    path = os.path.join(directory, f"{scenario.name}-share.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _one_per_scheduler(results: Sequence[Result]) -> list[Result]:
    """Each scheduler's first live run (the model's when it has none)."""
    chosen: dict[str, Result] = {}
    for r in sorted(results, key=lambda r: r.source == "model"):
        if r.share:
            chosen.setdefault(r.scheduler, r)
    return list(chosen.values())

"""What the scheduler laboratory prints: a table per scenario, the pacing error, and how close
the model comes to the live runs (the tolerance measured)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from bench.schedlab.results import Result

COLUMNS = ("p50", "p99", "p99.9")


def table(scenario: str, title: str, results: Sequence[Result]) -> str:
    """Schedulers (and sources: live-none, live-xdp, model) × p50/p99/p99.9, rps, failed,
    broken."""
    head = (f"{'scheduler':<10}{'source':<10}" + "".join(f"{c + ' ms':>10}" for c in COLUMNS)
            + f"{'rps':>8}{'failed':>8}{'broken':>8}")
    lines = [f"{scenario}: {title}", head]
    for r in results:
        if r.scenario != scenario:
            continue
        cells = "".join(f"{r.latency_ms.get(c, float('nan')):>10.1f}" for c in COLUMNS)
        broken = sum(r.broken.values()) if r.broken else "-"
        lines.append(f"{r.scheduler:<10}{r.source:<10}{cells}{r.achieved_rps:>8.0f}"
                     f"{r.failed:>8}{broken:>8}")
    return "\n".join(lines)


def overall_share(result: Result) -> dict[str, float]:
    """Each server's share over the whole run: its interval shares averaged over the intervals
    that had answers."""
    rows = list(zip(*result.share.values(), strict=True)) if result.share else []
    used = [row for row in rows if sum(row) > 0]
    if not used:
        return dict.fromkeys(result.share, 0.0)
    return {name: sum(row[i] for row in used) / len(used)
            for i, name in enumerate(result.share)}


def _relative(model: float, live: float) -> float:
    return (model - live) / live if live else float("inf")


def compare(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Per scenario, scheduler and live source with a model run beside it: the model's p50 and
    p99 relative to the live ones, and the largest difference of a server's overall share."""
    models = {(r.scenario, r.scheduler): r for r in results if r.source == "model"}
    rows = []
    for live in results:
        model = models.get((live.scenario, live.scheduler))
        if model is None or not live.source.startswith("live") or not live.latency_ms:
            continue
        a, b = overall_share(model), overall_share(live)
        rows.append({
            "scenario": live.scenario, "scheduler": live.scheduler, "live": live.source,
            "p50_rel": round(_relative(model.latency_ms["p50"], live.latency_ms["p50"]), 3),
            "p99_rel": round(_relative(model.latency_ms["p99"], live.latency_ms["p99"]), 3),
            "share_diff": round(max(abs(a.get(n, 0.0) - b.get(n, 0.0))
                                    for n in {*a, *b}), 3)})
    return rows


def tolerance(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and largest absolute difference, per measure."""
    out = {}
    for key in ("p50_rel", "p99_rel", "share_diff"):
        values = [abs(r[key]) for r in rows]
        if values:
            out[key] = {"median": round(median(values), 3), "max": round(max(values), 3)}
    return out


def comparison_text(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "model vs live: nothing to compare (both a model and a live run are needed)"
    lines = ["model vs live (model − live, relative for latencies; share: largest difference "
             "of one server's share)",
             f"{'scenario':<15}{'scheduler':<10}{'live':<10}{'p50':>8}{'p99':>8}{'share':>8}"]
    for r in rows:
        lines.append(f"{r['scenario']:<15}{r['scheduler']:<10}{r['live']:<10}"
                     f"{r['p50_rel']:>+8.0%}{r['p99_rel']:>+8.0%}{r['share_diff']:>8.3f}")
    tol = tolerance(rows)
    lines.append("tolerance measured (|difference|, median / max): " + ", ".join(
        f"{k} {v['median']:.3g} / {v['max']:.3g}" for k, v in tol.items()))
    return "\n".join(lines)


def pacing_summary(results: Iterable[Result]) -> dict[str, float]:
    """The live sender's pacing error over all runs: the median of the runs' p50s, the largest
    p99 and max."""
    runs = [r.extra["pacing_ms"] for r in results if r.extra.get("pacing_ms")]
    if not runs:
        return {}
    return {"p50": round(median(p["p50"] for p in runs), 3),
            "p99_worst": round(max(p["p99"] for p in runs), 3),
            "p99_median": round(median(p["p99"] for p in runs), 3),
            "max": round(max(p["max"] for p in runs), 3), "runs": len(runs)}


def pacing_text(summary: dict[str, float]) -> str:
    if not summary:
        return ""
    return (f"pacing error (actual send − scheduled), {summary['runs']:g} live runs: p50 "
            f"{summary['p50']:.2f} ms, p99 {summary['p99_median']:.2f} ms (worst run "
            f"{summary['p99_worst']:.2f}), max {summary['max']:.2f} ms")

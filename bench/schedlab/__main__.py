"""python3 -m bench.schedlab [--quick] [--json PATH] [--plot DIR] [--scenario NAME...]
[--scheduler NAME...] [--offload none|xdp|both] [--model-only | --live-only]

Runs each scenario with each scheduler in the discrete-event model (bench.schedlab.model, when
present) and live (root: namespaces, `pylvs run`, real HTTP servers, an open-loop client), prints
a table per scenario, the sender's pacing error and how close the model comes to the live runs,
and writes JSON (``--json``) and pictures (``--plot``). The expected time is said up front and a
progress bar (one line on stderr) shows where it is.

``--quick`` (about 2 minutes): the scenarios one_slow and churn, the schedulers rr, wlc, twos and
prequal, offload none, 8 s each; without it every scenario and scheduler, both offload modes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from datetime import date
from types import ModuleType
from typing import Any

from bench.schedlab import report
from bench.schedlab.results import Result, as_json
from bench.schedlab.scenarios import FULL, QUICK, SCHEDULERS, Scenario

QUICK_SCENARIOS = ("one_slow", "churn")
QUICK_SCHEDULERS = ("rr", "wlc", "twos", "prequal")
PLUGIN = "prequal"
LIVE_OVERHEAD = 4.0
"""Seconds a live run takes beyond its scenario's duration (start, drain, stop): measured."""
LAB_SETUP = 6.0
MODEL_RATE = 40_000.0
"""Requests per second the model gets through (measured), for the estimate."""

Step = tuple[str, Scenario, str, str, float]
"""(kind "model" or "live", scenario, scheduler, offload, expected seconds)."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.schedlab", description=(
        "Which IPVS scheduler gives the best response times: live runs and a model."))
    parser.add_argument("--quick", action="store_true",
                        help=f"about 2 minutes: {', '.join(QUICK_SCENARIOS)} × "
                             f"{', '.join(QUICK_SCHEDULERS)}, offload none, 8 s each")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--plot", metavar="DIR", help="latency CDFs and shares over time (PNG)")
    parser.add_argument("--scenario", nargs="+", metavar="NAME")
    parser.add_argument("--scheduler", nargs="+", metavar="NAME")
    parser.add_argument("--offload", choices=("none", "xdp", "both"))
    parser.add_argument("--duration", type=float, metavar="S",
                        help="seconds a run (the changes moved in proportion)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--model-only", action="store_true")
    only.add_argument("--live-only", action="store_true")
    return parser.parse_args(argv)


def chosen_scenarios(args: argparse.Namespace) -> list[Scenario]:
    table = {s.name: s for s in (QUICK if args.quick else FULL)}
    names = args.scenario or (QUICK_SCENARIOS if args.quick else list(table))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r} (known: {', '.join(table)})")
    chosen = [table[n] for n in names]
    return [stretched(s, args.duration) for s in chosen] if args.duration else chosen


def stretched(scenario: Scenario, duration: float) -> Scenario:
    """The scenario lasting ``duration`` seconds, its changes at the same fractions of it."""
    scale = duration / scenario.duration
    changes = tuple(replace(c, at=round(c.at * scale, 1)) for c in scenario.changes)
    return replace(scenario, duration=duration, changes=changes)


def chosen_schedulers(args: argparse.Namespace) -> list[str]:
    plugin = importlib.util.find_spec(f"bench.schedlab.{PLUGIN}") is not None
    every = [*SCHEDULERS, *([PLUGIN] if plugin else [])]
    names = args.scheduler or [n for n in (QUICK_SCHEDULERS if args.quick else every)
                               if n in every]
    if PLUGIN in names and not plugin:
        raise SystemExit(f"the plug-in {PLUGIN} (bench/schedlab/{PLUGIN}.py) is missing")
    return list(names)


def load_model() -> ModuleType | None:
    try:
        return importlib.import_module("bench.schedlab.model")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.schedlab.model":
            raise
        return None


def offloads(args: argparse.Namespace) -> list[str]:
    mode = args.offload or ("none" if args.quick else "both")
    return ["none", "xdp"] if mode == "both" else [mode]


def plan(scenarios: list[Scenario], schedulers: list[str], modes: list[str], model: bool,
         live: bool) -> list[Step]:
    steps: list[Step] = []
    if model:
        steps += [("model", s, n, "", 0.2 + s.rate * s.duration / MODEL_RATE)
                  for s in scenarios for n in schedulers]
    if live:
        steps += [("live", s, n, m, s.duration + LIVE_OVERHEAD)
                  for m in modes for s in scenarios for n in schedulers]
    return steps


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Progress:
    """One line on stderr, redrawn (carriage return, plain text) twice a second on a terminal,
    every 10 s elsewhere: a bar, the share done by the estimates, the time taken and expected,
    the step under way."""

    WIDTH = 30

    def __init__(self, total: float) -> None:
        self.total, self.done, self.step, self.label = max(total, 1.0), 0.0, 1.0, ""
        self.began = self.step_began = time.monotonic()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.every = 0.5 if sys.stderr.isatty() else 10.0
        self.width = 0

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if exc_type is None:
            self.done, self.step, self.label = self.total, 0.0, "done"
        else:
            self.label = "stopped"
        self._draw(end="\n")

    def start(self, label: str, expected: float) -> None:
        with self.lock:
            self.label, self.step, self.step_began = label, expected, time.monotonic()

    def finish(self) -> None:
        with self.lock:
            self.done += self.step
            self.step = 0.0

    def say(self, line: str) -> None:
        with self.lock:
            sys.stderr.write("\r" + line.ljust(self.width) + "\n")
        self._draw()

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            self._draw()

    def _draw(self, end: str = "") -> None:
        with self.lock:
            now = time.monotonic()
            part = min(self.step, now - self.step_began) if self.step else 0.0
            share = min(1.0, (self.done + part) / self.total)
            bar = "#" * round(share * self.WIDTH)
            line = (f"[{bar:.<{self.WIDTH}}] {share:4.0%} {_clock(now - self.began)} of "
                    f"~{_clock(self.total)}  {self.label}")
            sys.stderr.write("\r" + line.ljust(self.width) + end)
            self.width = 0 if end else len(line)
            sys.stderr.flush()


def run_model(model: ModuleType, step: Step) -> Result:
    _, scenario, scheduler, _, _ = step
    return model.run(scenario, scheduler)


def run_live_steps(steps: list[Step], progress: Progress, results: list[Result]) -> None:
    from bench.schedlab.live import LiveLab, server_names
    if not steps:
        return
    scenarios = {s[1].name: s[1] for s in steps}.values()
    servers = max(len(server_names(s)) for s in scenarios)
    clients = max(s.clients for s in scenarios)
    progress.start("building the lab", LAB_SETUP)
    with LiveLab(servers, clients) as lab:
        progress.finish()
        for step in steps:
            kind, scenario, scheduler, offload, expected = step
            progress.start(f"{scenario.name} {scheduler} live-{offload}", expected)
            try:
                results.append(lab.run(scenario, scheduler, offload))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                progress.say(f"{scenario.name} {scheduler} live-{offload} failed: {exc}\n"
                             f"{lab.log_tail()}")
            progress.finish()


def run_all(steps: list[Step], model: ModuleType | None) -> list[Result]:
    results: list[Result] = []
    total = sum(s[4] for s in steps) + (LAB_SETUP if any(s[0] == "live" for s in steps) else 0)
    with Progress(total) as progress:
        for step in (s for s in steps if s[0] == "model"):
            progress.start(f"{step[1].name} {step[2]} model", step[4])
            assert model is not None
            results.append(run_model(model, step))
            progress.finish()
        run_live_steps([s for s in steps if s[0] == "live"], progress, results)
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _preamble(args: argparse.Namespace, steps: list[Step], model: ModuleType | None,
              live: bool, schedulers: list[str], scenarios: list[Scenario]) -> float:
    if model is None and not args.live_only:
        print("the model (bench/schedlab/model.py) is missing: live runs only")
    if args.quick and not (args.scenario and args.scheduler):
        print(f"--quick: scenarios {', '.join(s.name for s in scenarios)}; schedulers "
              f"{', '.join(schedulers)}; offload {', '.join(offloads(args))}; "
              f"{scenarios[0].duration:g} s a run (the full run has every scenario and "
              f"scheduler, both offload modes)")
    expected = sum(s[4] for s in steps) + (LAB_SETUP if live else 0)
    print(f"{sum(1 for s in steps if s[0] == 'live')} live runs, "
          f"{sum(1 for s in steps if s[0] == 'model')} model runs: expected about "
          f"{_clock(expected)} (m:ss)", flush=True)
    return expected


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scenarios, schedulers = chosen_scenarios(args), chosen_schedulers(args)
    model = None if args.live_only else load_model()
    live = not args.model_only
    if live and os.geteuid() != 0:
        raise SystemExit("the live runs build network namespaces: run as root "
                         "(or --model-only)")
    if model is None and not live:
        raise SystemExit("--model-only, but bench/schedlab/model.py is missing")
    steps = plan(scenarios, schedulers, offloads(args), model is not None, live)
    expected = _preamble(args, steps, model, live, schedulers, scenarios)
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    try:
        results = run_all(steps, model)
    except KeyboardInterrupt:
        print("\ninterrupted: the lab was removed", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - began
    show(results, scenarios)
    meta = _meta(args, scenarios, schedulers, results, elapsed, expected, model is not None)
    _write(args, results, scenarios, meta)
    return 0


def show(results: list[Result], scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        print()
        print(report.table(scenario.name, scenario.title, results))
    print()
    print(report.comparison_text(report.compare(results)))
    pacing = report.pacing_text(report.pacing_summary(results))
    if pacing:
        print(pacing)


def _meta(args: argparse.Namespace, scenarios: list[Scenario], schedulers: list[str],
          results: list[Result], elapsed: float, expected: float,
          model: bool) -> dict[str, Any]:
    rows = report.compare(results)
    return {"date": date.today().isoformat(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "quick": args.quick, "offload": offloads(args),
            "schedulers": schedulers, "scenarios": [asdict(s) for s in scenarios],
            "model": "present" if model else "missing", "elapsed_s": round(elapsed, 1),
            "expected_s": round(expected, 1), "pacing_ms": report.pacing_summary(results),
            "model_vs_live": rows, "tolerance": report.tolerance(rows)}


def _write(args: argparse.Namespace, results: list[Result], scenarios: list[Scenario],
           meta: dict[str, Any]) -> None:
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(as_json(results, meta), fh, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        from bench.schedlab.plots import plot
        try:
            paths = plot(results, scenarios, args.plot)
        except ImportError:
            print("--plot needs matplotlib (scripts/install.sh --bench)")
            return
        print(f"wrote {len(paths)} pictures in {args.plot}")


if __name__ == "__main__":
    sys.exit(main())

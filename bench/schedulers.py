"""How the schedulers compare: speed, balance, disruption. ``python -m bench.schedulers``.

For every scheduler and 3, 100 and 1,000 real servers (weights 1..5, mixed):

- new connections/s: pick a server for a new flow and bind a connection to it (counted inactive,
  then active); the oldest of ``4n`` live connections is released each time, so counters (and
  the least-connection family's indexes) keep changing as in a director; "refused" is the share
  of picks that found no server (ovf refuses once every server has weight-many active ones);
- balance: an event simulation of connections arriving (5 per server per second) with lifetimes
  from 0.1 s to 60 s (exponential and heavy-tailed); weighted load = active connections ÷ weight,
  sampled 100 times after a warm-up: max/mean and Jain's fairness index (1 = perfectly even);
- disruption (hashing schedulers): % of 20,000 flows whose server changes when one server is
  removed, and when one is added;
- Maglev's table build time at M = 65537 with 1,000 servers.

Prints a table; ``--json PATH`` and ``--plot PATH`` (PNG, needs matplotlib) write the results.
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import random
import time
from collections import deque
from datetime import date

import schedulers
from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers.mh import populate

SIZES = (3, 100, 1000)
HASHING = ("sh", "dh", "mh")
VIP = 0xC0000264


def make_servers(n: int, rng: random.Random) -> list[RealServer]:
    return [RealServer(f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 80, rng.randint(1, 5))
            for i in range(n)]


def flows(count: int, rng: random.Random) -> list[Flow]:
    return [Flow(6, rng.getrandbits(32), rng.getrandbits(32) if i % 2 else VIP,
                 rng.randint(1024, 65535), 80, 34, 0x02, 64, 40) for i in range(count)]


def scheduler_for(name: str, servers: list[RealServer]) -> schedulers.Scheduler:
    scheduler = schedulers.get(name)()
    scheduler.update(servers)
    return scheduler


def picks_per_second(name: str, n: int, count: int, rng: random.Random) -> tuple[float, float]:
    """(new connections per second, % of picks refused)."""
    servers = make_servers(n, rng)
    scheduler = scheduler_for(name, servers)
    work = flows(count, rng)
    live: deque[RealServer] = deque()
    refused = 0
    start = time.perf_counter()
    for flow in work:
        server = scheduler.pick(servers, flow)
        if server is None:
            refused += 1
            continue
        server.bind(active=False)
        server.set_active(False, True)
        live.append(server)
        if len(live) > 4 * n:
            old = live.popleft()
            old.set_active(True, False)
            old.unbind(active=False)
    return count / (time.perf_counter() - start), 100.0 * refused / count


def lifetime(rng: random.Random) -> float:
    if rng.random() < 0.8:
        return min(60.0, 0.1 + rng.expovariate(1 / 2.0))
    return min(60.0, 0.1 * rng.paretovariate(1.2))


def balance(name: str, n: int, per_server: int, rng: random.Random) -> tuple[float, float]:
    """(max/mean weighted load, Jain's index), sampled 100 times after a warm-up.

    Connections arrive at 5 per server per second (about 9 alive per server at a time);
    ``per_server`` connections per server are simulated, the first fifth as warm-up."""
    servers = make_servers(n, rng)
    scheduler = scheduler_for(name, servers)
    rate = n * 5.0
    connections = per_server * n
    duration = connections / rate
    step = duration * 0.8 / 100
    ends: list[tuple[float, int, RealServer]] = []
    now, next_sample, seq = 0.0, duration * 0.2, 0
    ratios, fairness = [], []
    for flow in flows(connections, rng):
        now += rng.expovariate(rate)
        while ends and ends[0][0] <= now:
            _, _, done = heapq.heappop(ends)
            done.set_active(True, False)
            done.unbind(active=False)
        if now >= next_sample:
            loads = [s.activeconns / s.weight for s in servers]
            total = sum(loads)
            if total:
                ratios.append(max(loads) / (total / n))
                fairness.append(total * total / (n * sum(x * x for x in loads)))
            next_sample += step
        server = scheduler.pick(servers, flow)
        if server is None:
            continue
        server.bind(active=False)
        server.set_active(False, True)
        seq += 1
        heapq.heappush(ends, (now + lifetime(rng), seq, server))
    if not ratios:
        return float("nan"), float("nan")
    return sum(ratios) / len(ratios), sum(fairness) / len(fairness)


def disruption(name: str, n: int, rng: random.Random) -> tuple[float, float]:
    """% of flows whose server changes when one server goes, and when one is added."""
    servers = make_servers(n + 1, rng)
    work = flows(20000, rng)
    now, newcomer = servers[:n], servers[n]
    base = scheduler_for(name, now)
    before = [base.pick(now, f) for f in work]
    gone = rng.randrange(n)
    fewer = now[:gone] + now[gone + 1:]
    more = [newcomer, *now]  # IPVS lists the newest first
    removed = scheduler_for(name, fewer)
    added = scheduler_for(name, more)
    moved = sum(1 for f, b in zip(work, before, strict=True) if removed.pick(fewer, f) is not b)
    grown = sum(1 for f, b in zip(work, before, strict=True) if added.pick(more, f) is not b)
    return 100.0 * moved / len(work), 100.0 * grown / len(work)


def maglev_build_seconds(rng: random.Random) -> float:
    servers = make_servers(1000, rng)
    start = time.perf_counter()
    populate(servers, 65537)
    return time.perf_counter() - start


def run(picks: int, per_server: int, seed: int) -> dict:
    rng = random.Random(seed)
    rows = []
    for name in schedulers.names():
        for n in SIZES:
            rate, refused = picks_per_second(name, n, picks, rng)
            row = {"scheduler": name, "servers": n, "picks_per_s": round(rate),
                   "refused_pct": round(refused, 1)}
            row["max_over_mean"], row["jain"] = (round(v, 3) for v in balance(
                name, n, per_server, rng))
            if name in HASHING:
                row["moved_on_remove_pct"], row["moved_on_add_pct"] = (
                    round(v, 2) for v in disruption(name, n, rng))
            rows.append(row)
            print(_line(row), flush=True)
    return {"date": date.today().isoformat(), "python": platform.python_version(),
            "machine": platform.machine(), "picks": picks, "per_server": per_server,
            "seed": seed, "results": rows,
            "maglev_build_s_65537x1000": round(maglev_build_seconds(rng), 3)}


HEADER = (f"{'sched':<6}{'servers':>8}{'picks/s':>11}{'refused':>8}{'max/mean':>10}{'Jain':>7}"
          f"{'moved -1':>10}{'moved +1':>10}")


def _line(row: dict) -> str:
    moved = (f"{row['moved_on_remove_pct']:>9.1f}%{row['moved_on_add_pct']:>9.1f}%"
             if "moved_on_remove_pct" in row else f"{'-':>10}{'-':>10}")
    return (f"{row['scheduler']:<6}{row['servers']:>8}{row['picks_per_s']:>11,}"
            f"{row['refused_pct']:>7.1f}%{row['max_over_mean']:>10.2f}{row['jain']:>7.3f}{moved}")


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["results"]
    names = sorted({r["scheduler"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.27
    for k, n in enumerate(SIZES):
        by = {r["scheduler"]: r for r in rows if r["servers"] == n}
        xs = [i + (k - 1) * width for i in range(len(names))]
        axes[0].bar(xs, [by[m]["picks_per_s"] for m in names], width, label=f"{n} servers")
        axes[1].bar(xs, [by[m]["jain"] for m in names], width, label=f"{n} servers")
    for ax, title in zip(axes, ("new connections per second", "Jain's fairness (weighted load)"),
                         strict=True):
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title)
        ax.legend()
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 1.05)
    fig.suptitle(f"pylvs schedulers, {results['date']}, Python {results['python']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.schedulers")
    parser.add_argument("--picks", type=int, default=20000)
    parser.add_argument("--per-server", type=int, default=60,
                        help="connections simulated per real server for the balance figures")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH")
    args = parser.parse_args()
    print(HEADER)
    results = run(args.picks, args.per_server, args.seed)
    print(f"Maglev table build, M=65537, 1,000 servers: "
          f"{results['maglev_build_s_65537x1000']:.3f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

"""`pylvs top --once` against a lab director (one worker and two): every service and real
server is shown, with the connections, packets and rates `pylvs adm -Ln --stats` and `--rate`
give at the same moment, and the ActiveConn/InActConn and weights of `-Ln`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pylvs.lab.demo import HeldConnections


def adm_rows(run, *argv: str) -> dict[str, list[str]]:
    """`pylvs adm -L -n ARGV` per row: "TCP 192.168.1.100:80" or "192.168.1.11:80" → cells."""
    rows = {}
    for line in run.director.adm("-L", "-n", *argv).splitlines():
        cells = line.split()
        if cells[:1] in (["TCP"], ["UDP"]):
            rows[f"{cells[0]} {cells[1]}"] = cells[2:]
        elif cells[:1] == ["->"] and cells[1] != "RemoteAddress:Port":
            rows[cells[1]] = cells[2:]
    return rows


def top_rows(run) -> dict[str, list[str]]:
    """`pylvs top --once`'s rows, keyed as adm_rows, cells after the name."""
    out = subprocess.run([sys.executable, "-m", "pylvs", "top", "--once", "--socket",
                          run.lab.control_socket], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells[:1] == ["TCP"]:
            rows[f"{cells[0]} {cells[1]}"] = cells[2:]
        elif cells[:1] == ["->"]:
            rows[cells[1]] = cells[2:]
    return rows


@pytest.mark.parametrize("workers", [1, 2])
def test_top_once_shows_what_the_listings_show(make_lab, workers):
    run = make_lab(3, "rr", workers=workers)
    for _ in range(9):
        run.lab.curl("/")
    held = HeldConnections(run.lab, 3)
    try:
        steady = None  # the table and counters hold still once the traffic stops; the rates
        for _ in range(20):  # move every 2 s (each worker's estimator on its own beat)
            before = (adm_rows(run), adm_rows(run, "--stats", "--exact"),
                      adm_rows(run, "--rate", "--exact"))
            shown = top_rows(run)
            after = (adm_rows(run), adm_rows(run, "--stats", "--exact"),
                     adm_rows(run, "--rate", "--exact"))
            if before == after:
                break
            if before[:2] == after[:2]:
                steady = (before, shown, after)
        else:
            if steady is None:
                pytest.fail("the listings never held still around a frame")
            before, shown, after = steady
    finally:
        held.close()
    table, stats, rate = before
    rates_after = after[2]
    service = f"TCP {run.lab.vip}:80"
    assert list(shown) == [service, *sorted(r for r in table if r != service)]
    for name, cells in shown.items():
        if name == service:  # Sched, 5 rates, Conns InPkts OutPkts, health
            assert cells[0] == table[name][0]
            numbers = cells[1:9]
        else:  # Fwd Weight ActiveConn InActConn, 5 rates, Conns InPkts OutPkts, health
            assert cells[:4] == table[name][:4]
            numbers = cells[4:12]
        assert numbers[:5] in (rate[name], rates_after[name]), name
        assert numbers[5:] == stats[name][:3], name
        assert cells[-1] == "-"  # no health check configured
    assert stats[service][0] == "12"
    assert sum(int(table[name][2]) for name in table if name != service) == 3

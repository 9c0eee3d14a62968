"""`pylvs top` at the width of its terminal (pylvs.shell.top.render): rendered for real by rich
at 60, 80, 120, 160 and 200 columns, from ipvsadm's own listings of a director core whose
counters hold busy traffic's numbers. Every column shown is whole (no "…", no cut value), the
least important columns go first, and at 80 the names, weights, connections and the rates of
connections and packets are all there."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import schedulers
from pylvs.adm import commands
from pylvs.adm.config import Config
from pylvs.core.model import RealServer, VirtualService
from pylvs.shell import top
from pylvs.shell.engine import Engine

WIDTHS = (60, 80, 120, 160, 200)
AT_80 = ["Service / real server", "Weight", "ActiveConn", "InActConn", "CPS", "InPPS", "OutPPS"]
HEALTH = ("TCP 192.168.1.100:80  quorum up (live weight 4, quorum 1, hysteresis 0), sorry "
          "server none\n  -> 192.168.1.11:80         http UP   for 3s  checks 2  last: x\n"
          "  -> 192.168.1.19:80         http DOWN for 1s  checks 5  last: refused\n")


def _engine() -> Engine:
    """A DR web service of three real servers and a NAT one, counting as a busy day would."""
    web = VirtualService("tcp", "192.168.1.100", 80, schedulers.get("wlc")())
    for i, weight in ((11, 1), (12, 3), (13, 100)):
        web.add_real_server(RealServer(f"192.168.1.{i}", 80, weight=weight))
    dns = VirtualService("udp", "192.168.1.100", 53, schedulers.get("rr")())
    dns.add_real_server(RealServer("172.16.0.21", 53, forward="nat"))
    for n, server in enumerate(web.real_servers + dns.real_servers, 1):
        server.activeconns, server.inactconns = 1234 * n, 56789 * n
        for tick in range(1, 4):  # the estimator's ticks: rates of thousands a second
            stats = server.stats
            stats.conns, stats.inpkts, stats.outpkts = (2345 * n * tick, 91234 * n * tick,
                                                        81234 * n * tick)
            stats.inbytes, stats.outbytes = 7_654_321 * n * tick, 98_765_432 * n * tick
            stats.estimate()
    for service in (web, dns):
        for tick in range(1, 4):
            service.stats.conns = sum(s.stats.conns for s in service.real_servers) * tick
            service.stats.inpkts = sum(s.stats.inpkts for s in service.real_servers) * tick
            service.stats.estimate()
    return Engine(Config("lo", services=[web, dns]))


def _frame(health: str = "") -> top.Frame:
    director = _engine().director

    def listing(*argv: str) -> str:
        rc, out, err = commands.adm(director, ["-L", "-n", *argv], 0.0)
        assert rc == 0, err
        return out

    return top.frame(listing(), listing("--rate", "--exact"), listing("--stats", "--exact"),
                     health, {"connections": 5, "max_connections": 9,
                              "counters": {"forwarded": 123456789, "table_full": 3}})


def _render(view: top.Frame, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(top.render(view, "/run/pylvs-ab12cd.sock", width))
    return console.export_text().splitlines()


def _shown(lines: list[str]) -> list[str]:
    """The headers of the columns the frame shows, in order (read from its header line)."""
    header = next(line for line in lines if line.startswith("Service / real server"))
    found = [c.header for c in top.COLUMNS if c.header in header]
    return sorted(found, key=header.index)


def _row_line(lines: list[str], row: top.Row) -> str:
    name = f"-> {row.name}" if row.server else row.name
    (line,) = [line for line in lines if line.split()[:len(name.split())] == name.split()
               and line.strip().startswith(name)]
    return line


@pytest.mark.parametrize("width", WIDTHS)
def test_every_value_shown_is_whole_and_the_frame_fits(width):
    view = _frame(HEALTH)
    lines = _render(view, width)
    assert max(len(line) for line in lines) <= width
    assert "…" not in "\n".join(lines)
    shown = _shown(lines)
    index = {c.header: i for i, c in enumerate(top.COLUMNS)}
    for row in view.rows:  # the row reads back as exactly its cells in the columns shown
        cells = top.cells(row)
        expected = " ".join(cells[index[h]] for h in shown).split()
        assert _row_line(lines, row).split() == expected, (width, row.name)
    hidden = [c.header for c in top.COLUMNS if c.header not in shown]
    said = [line for line in lines if line.startswith("not shown at")]
    if hidden:  # what is not shown is said, wrapped or not
        tail = " ".join(lines[lines.index(said[0]):])
        assert all(h in tail for h in hidden)
    else:
        assert not said


def test_at_80_the_essential_columns_are_all_there_and_whole():
    for health in ("", HEALTH):
        view = _frame(health)
        lines = _render(view, 80)
        assert [h for h in _shown(lines) if h in AT_80] == AT_80
        for row in view.rows:
            if row.server and row.weight:  # every real server, its counters unbroken
                line = _row_line(lines, row)
                assert row.name in line
                for value in (row.weight, row.active, row.inactive, *row.rates[:3]):
                    assert f" {value}" in f" {line} ", (row.name, value)
    # the numbers are as wide as a busy director's: the frame needs more than 80 for all
    assert "not shown at 80 columns" in "\n".join(_render(_frame(), 80))


def test_columns_go_least_important_first_and_wider_terminals_show_more():
    view = _frame()
    shown = {width: _shown(_render(view, width)) for width in WIDTHS}
    assert shown[200] == [c.header for c in top.COLUMNS]  # everything, in ipvsadm's order
    for narrow, wide in zip(WIDTHS, WIDTHS[1:], strict=False):
        assert set(shown[narrow]) <= set(shown[wide])
    unchecked = {c.header: (top.UNCHECKED if c.header == "Health" else c.rank)
                 for c in top.COLUMNS}
    for headers in shown.values():  # what is shown is the most important ones
        kept = max(unchecked[h] for h in headers)
        assert all(unchecked[c.header] > kept for c in top.COLUMNS if c.header not in headers)
    assert len(shown[60]) < len(shown[80]) < len(shown[120]) <= len(shown[160])


def test_a_checked_server_keeps_its_health_before_the_byte_rates():
    lines = _render(_frame(HEALTH), 80)
    assert _shown(lines) == [*AT_80, "Health"]
    assert _row_line(lines, top.Row("192.168.1.19:80", True)).split()[-2:] == ["DOWN", "(out)"]


def test_a_name_wider_than_the_terminal_is_folded_not_cut():
    view = top.Frame([top.Row("TCP [2001:db8:ffff:ffff:ffff:ffff:ffff:100]:8080", False, "rr")])
    lines = _render(view, 30)
    assert "…" not in "\n".join(lines) and max(len(line) for line in lines) <= 30
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    assert "".join(line.strip() for line in lines[rule + 1:rule + 4]) == \
        "TCP[2001:db8:ffff:ffff:ffff:ffff:ffff:100]:8080"

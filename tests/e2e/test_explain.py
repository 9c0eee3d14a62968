"""`pylvs lab ... --explain` run as a user runs it: each paragraph against the table printed just
above it in the same output.

The -Ln paragraphs against -Ln and -Lnc (each real server's ActiveConn and InActConn, and the
states and times they are made of), the -Lnc paragraphs against -Lnc, the sockets' against the
counts printed above them, and a mistake's against the answers and both tables; the checkers are
tests/lab/test_explain.py's. Needs root (tests/conftest.py skips the module otherwise, saying
why).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from tests.lab.test_explain import (
    connections_disagreements,
    mistake_disagreements,
    sockets_disagreements,
    table_disagreements,
    text_of,
)


def lab_run(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pylvs", "lab", *argv, "--explain",
                           "--servers", "2", "--requests", "4"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def block(output: str, title: str) -> str:
    """What a `$ pylvs adm ...` printed, up to its blank line."""
    return output.split(f"$ pylvs adm {title}\n", 1)[1].split("\n\n", 1)[0] + "\n"


def marked(output: str, after: str, before: str = "") -> str:
    """The `  | ` lines between the first line starting ``after`` and the next starting
    ``before`` (by default the next line of the report's own: not blank, not indented)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    end = next((i for i in range(start + 1, len(lines))
                if (lines[i].startswith(before) if before else lines[i][:1].strip())),
               len(lines))
    found = [line for line in lines[start:end] if line.startswith("  | ")]
    assert found, f"no paragraph between {after!r} and {before!r}"
    return "\n".join(found) + "\n"


def answers_of(output: str) -> Counter[str]:
    line = re.search(r"^answers: (.*)$", output, re.M)[1]
    return Counter({k: int(v) for k, v in (part.rsplit("=", 1) for part in line.split(", "))})


def disagreements(output: str) -> list[str]:
    """Every paragraph of the report against what is printed above it."""
    listing, rows = block(output, "-Ln"), block(output, "-Lnc")
    wrong = table_disagreements(listing, rows, marked(output, "TCP  ", "$ pylvs adm -Lnc"))
    wrong += connections_disagreements(listing, rows,
                                       marked(output, "$ pylvs adm -Lnc", "director: "))
    director = int(re.search(r"^director: TCP sockets for the VIPs? in its own stack: (\d+)$",
                             output, re.M)[1])
    servers = [int(n) for n in re.findall(r"^real server .*: (\d+)$", output, re.M)]
    last = [line for line in output.splitlines() if line.startswith("real server ")][-1]
    wrong += sockets_disagreements(director, servers, marked(output, last))
    if "\nwhat broke (" in output:
        wrong += mistake_disagreements(answers_of(output), listing, rows,
                                       marked(output, "what broke (", "--check in each"))
    return wrong


@pytest.mark.parametrize("argv", [("dr",), ("nat",), ("mixed",), ("dr", "--mistake", "netmask"),
                                  ("nat", "--mistake", "route")],
                         ids=["dr", "nat", "mixed", "netmask", "route"])
def test_each_paragraph_agrees_with_the_table_above_it(argv):
    output = lab_run(*argv)
    assert disagreements(output) == [], output
    table = text_of(marked(output, "TCP  ", "$ pylvs adm -Lnc"))
    assert "SYN_RECV" in table.split("(ACTIVE_STATES")[0]  # the rule: SYN_RECV is active
    if "--mistake" in argv:  # the case: every entry SYN_RECV, counted active
        assert re.search(r"each have ActiveConn [1-9]\d* \(\d+ SYN_RECV", table), table
        assert "yet count as active" in table


def test_the_checker_fails_on_a_paragraph_of_another_run():
    """The same checks catch a report whose paragraphs are not its table's: the correct lab's
    paragraphs spliced under the netmask lab's tables."""
    right, broken = lab_run("dr"), lab_run("dr", "--mistake", "netmask")
    paragraphs = marked(right, "TCP  ", "$ pylvs adm -Lnc")
    assert table_disagreements(block(broken, "-Ln"), block(broken, "-Lnc"), paragraphs)

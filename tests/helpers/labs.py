"""`pylvs lab` started as a user runs it, read up to a given request (running_lab)."""

from __future__ import annotations

import subprocess
import sys


def running_lab(*argv: str, until: int) -> tuple[subprocess.Popen, str]:
    """`pylvs lab ARGV` started, and what it printed up to its request ``until``."""
    proc = subprocess.Popen([sys.executable, "-m", "pylvs", "lab", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if line.startswith(f"request {until:3d}:"):
            break
    return proc, seen

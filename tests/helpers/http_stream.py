"""STREAM: a Python script for `python -c` that requests http://ARGV2/ for ARGV1 seconds and
prints, per request, its start time and the answering server's name (or the error)."""

from __future__ import annotations

STREAM = """
import http.client, sys, time
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline:
    start = time.time()
    try:
        conn = http.client.HTTPConnection(sys.argv[2], 80, timeout=3)
        conn.request("GET", "/")
        name = conn.getresponse().read().decode().strip()
        conn.close()
    except Exception as exc:
        name = "ERROR:" + type(exc).__name__
    print(f"{start:.3f} {name}", flush=True)
    time.sleep(0.02)
"""

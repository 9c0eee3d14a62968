"""`pylvs lab` started as a user runs it, read up to a given request (running_lab), and a lab
with a director the e2e tests build themselves (LabRun, the make_lab fixture's)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import Lab, curl_argv, lab_config


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


class LabRun:
    """A lab of ``mode`` (of ``family`` 4 or 6) with HTTP servers on ``server_port`` and a
    director balancing them."""

    def __init__(self, mode: str, servers: int, scheduler: str, weights: list[int] | None,
                 server_port: int, persistence: int, workers: int,
                 service_keys: tuple[str, ...], tables: str = "", offload: str = "none",
                 family: int = 4, tun_type: str = "ipip") -> None:
        self.lab = Lab(servers=servers, mode=mode, family=family, tun_type=tun_type)
        self.director: DirectorProcess | None = None
        try:
            self.lab.setup()
            self.lab.configure_real_servers()
            self.lab.start_http_servers(server_port)
            if offload == "xdp":
                self.lab.ready_for_xdp()
            self.director = DirectorProcess(self.lab, lab_config(
                self.lab, scheduler, weights=weights, server_port=server_port,
                persistence=persistence, workers=workers, service_keys=service_keys,
                offload=offload) + tables)
        except BaseException:
            self.lab.close()
            raise

    def answers(self, count: int) -> Counter[str]:
        return Counter(self.lab.curl("/").strip() for _ in range(count))

    def close(self) -> None:
        try:
            if self.director is not None:
                self.director.stop()
        finally:
            self.lab.close()


def upload(lab: Lab, body: bytes) -> str:
    """``body`` POSTed from the client to the VIP's /sha256 (curl, no Expect): the digest the
    real server answers."""
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as fh:
        fh.write(body)
    try:
        return lab.run_in(lab.client_ns, [
            *curl_argv(lab.url("/sha256"), max_time=60), "-H", "Expect:",
            "--data-binary", f"@{fh.name}"], capture_output=True, text=True,
            check=True).stdout.strip()
    finally:
        os.unlink(fh.name)

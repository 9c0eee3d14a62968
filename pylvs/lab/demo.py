"""`pylvs lab dr`: build a lab, run a real director in it, send real curl requests, report.

The report shows which real server answered each request, the director's `-Ln` and `-Lnc`, and
the seed's `netstat -natp` check: the director's stack holds no TCP socket for the VIP, while
every real server holds connections from the client's own address.

With ``mistake`` (pylvs/lab/mistakes.py) the real servers do their steps with that mistake: the
requests may go unanswered, and the report ends with what broke and `pylvs realserver --check`
run in each real server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

from pylvs.lab import capture, kept, mistakes
from pylvs.lab import explain as notes
from pylvs.lab.topology import Lab, curl_argv, lab_config
from pylvs.shell import control

START_TIMEOUT = 15.0


class DirectorProcess:
    """`pylvs run` inside the lab's director namespace, its log kept in a temporary file."""

    def __init__(self, lab: Lab, config_text: str, ns: str = "", control_socket: str = "",
                 directory: str = "") -> None:
        """``directory``: keep the config and log there (a lab kept running), not in a
        temporary directory that stop() removes."""
        self.lab = lab
        self.ns = ns or lab.director_ns
        self.control_socket = control_socket or lab.control_socket
        self.dir = None if directory else tempfile.TemporaryDirectory(prefix="pylvs-lab-")
        self.directory = directory or self.dir.name  # type: ignore[union-attr]
        self.config_path = os.path.join(self.directory, "director.toml")
        with open(self.config_path, "w") as fh:
            fh.write(config_text)
        self.log_path = os.path.join(self.directory, "director.log")
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.final_output = ""
        """What the director printed, kept when stop() removes its files."""
        self.proc = lab.popen_in(self.ns,
                                 [sys.executable, "-m", "pylvs", "run", self.config_path],
                                 stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the director exited with {self.proc.returncode}:\n"
                                   f"{self.output()}")
            try:
                control.request(self.control_socket, ["-L", "-n"], timeout=1.0)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the director did not answer in {START_TIMEOUT}s:\n{self.output()}")

    def adm(self, *argv: str) -> str:
        rc, out, err = control.request(self.control_socket, list(argv))
        if rc != 0:
            raise RuntimeError(f"pylvs adm {' '.join(argv)} failed ({rc}): {err}")
        return out

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as fh:
            return fh.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.final_output = self.output()
        self.log.close()
        if self.dir is not None:
            self.dir.cleanup()
        return self.proc.returncode


def tcp_sockets(lab: Lab, ns: str) -> list[str]:
    """`ss -tan` inside a namespace, header dropped: the seed's `netstat -natp`."""
    out = lab.run_in(ns, ["ss", "-tan"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()[1:] if line.strip()]


class HeldConnections:
    """Keep-alive HTTP connections from the client to the VIP, each answered once, left open.

    One request on each makes sure both ends are ESTABLISHED before anyone looks, and tells
    which real server holds it.
    """

    def __init__(self, lab: Lab, count: int, port: int = 80) -> None:
        code = ("import http.client, sys\n"
                f"held = [http.client.HTTPConnection('{lab.vip}', {port}, timeout=5) "
                f"for _ in range({count})]\n"
                "for c in held:\n"
                "    c.request('GET', '/')\n"
                "    name = c.getresponse().read().decode().strip()\n"
                "    print(c.sock.getsockname()[1], name, flush=True)\n"
                "sys.stdin.read()\n")
        self.proc = lab.popen_in(lab.client_ns, [sys.executable, "-c", code],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.servers: dict[int, str] = {}
        for _ in range(count):
            line = self.proc.stdout.readline().split()
            if len(line) != 2:
                self.close()
                raise RuntimeError(f"the client could not hold a connection to {lab.vip}:{port}")
            self.servers[int(line[0])] = line[1]
        self.ports = list(self.servers)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def run(mode: str = "dr", servers: int = 3, requests: int = 9, scheduler: str = "rr",
        trace_dir: str | None = None, keep: bool = False, explain: bool = False,
        mistake: str | None = None) -> int:
    """``trace_dir``: capture every wire into it and print the first connection's hops;
    ``keep``: leave the lab running for `pylvs lab down`; ``explain``: say what the report shows;
    ``mistake``: the real servers make it, and the report shows what broke and why."""
    with Lab(servers=servers, mode=mode, mistake=mistake) as lab:
        _announce(lab, keep)
        lab.setup()
        captures = None if trace_dir is None else capture.Captures(lab, trace_dir)
        directory = kept.make_directory(lab) if keep else ""
        director = None
        try:
            if keep:
                lab.stderr = kept.servers_log(directory)
            _prepare_real_servers(lab, explain)
            lab.start_http_servers()
            director = DirectorProcess(lab, lab_config(lab, scheduler), directory=directory)
            rc, seen = _demo(lab, director, requests, explain)
            hosts = capture.describe_hosts(lab) if lab.mistake is not None else {}
            if captures is not None:
                _trace(lab, captures)
            if lab.mistake is not None:
                rc = _what_broke(lab, lab.mistake, seen, hosts, trace_dir, explain)
            if keep:
                print(f"\n{kept.keep(lab, director)}", end="")
                director, directory = None, ""
            return rc
        finally:
            if director is not None:
                director.stop()
            if captures is not None:
                captures.stop()
            if directory:  # --keep, but the lab did not get that far
                kept.discard(lab, directory)


def _announce(lab: Lab, keep: bool) -> None:
    print(f"lab ({lab.mode}): client {lab.client_ip}, director {lab.director_ip} "
          f"({lab.director_if}), VIP {lab.vip}, real servers {', '.join(lab.server_ips)}")
    if keep:
        print(f"  namespaces {lab.prefix}-* (e.g. ip netns exec {lab.client_ns} ...), kept "
              f"running after the report (--keep)")
    else:
        print(f"  {lab.where()}")
    if lab.mistake is not None:
        print(f"  mistake {lab.mistake.name}: {lab.mistake.summary}")
    if lab.mode in ("nat", "mixed"):
        print(f"  NAT real servers sit on an inside segment behind the director's "
              f"{lab.director_inside_if} ({lab.director_inside_ip})")
    if lab.mode in ("tun", "mixed"):
        print("  TUN real servers sit in their own subnet behind a router (192.168.1.1) and "
              "answer the client through it")


def _trace(lab: Lab, captures: capture.Captures) -> None:
    hosts = capture.describe_hosts(lab)  # while the director holds the VIP
    captures.stop()
    print(f"\n{capture.write_trace(lab, captures, hosts)}", end="")
    written = [name for name in ("trace.json", "trace.txt", "trace.html", "trace.svg",
                                 "trace.png")
               if os.path.exists(os.path.join(captures.directory, name))]
    files = ", ".join([w.file for w in captures.wires] + written)
    print(f"\ntrace written to {captures.directory}: {files}")


def _prepare_real_servers(lab: Lab, explain: bool = False) -> None:
    shown: set[str] = set()
    for name, mode, steps in zip(lab.server_names, lab.server_modes, lab.configure_real_servers(),
                                 strict=True):
        if mode in shown:
            continue
        shown.add(mode)
        made = f", with the mistake {lab.mistake.name}" if lab.mistake is not None else ""
        print(f"\nin {name} ({mode}{made}) and every other {mode} real server:")
        print("".join(f"    {line}\n" for line in steps.splitlines()), end="")
    if explain:
        print(f"\n{notes.real_servers(lab.server_modes)}", end="")
    print()


@dataclass(frozen=True)
class Seen:
    """What the requests got, and the director's -Ln after them."""

    answers: Counter[str]
    listing: str


def _demo(lab: Lab, director: DirectorProcess, requests: int, explain: bool = False
          ) -> tuple[int, Seen]:
    """The requests, the held connections and the report; returns the exit status and what a
    mistake's part of the report needs."""
    answers = _requests(lab, requests)
    held = _hold(lab, answers)
    try:
        rc, listing = _report(lab, director, requests, answers, explain)
        return rc, Seen(answers, listing)
    finally:
        if held is not None:
            held.close()


def _requests(lab: Lab, requests: int) -> Counter[str]:
    answers: Counter[str] = Counter()
    for i in range(1, requests + 1):
        name, failure = _request(lab)
        answers[name] += 1
        print(f"request {i:3d}: curl http://{lab.vip}/ -> {name}"
              + (f" ({failure})" if failure else ""))
    print("\nanswers: " + ", ".join(f"{k}={v}" for k, v in sorted(answers.items())))
    return answers


def _request(lab: Lab) -> tuple[str, str]:
    """One curl; a broken lab's may go unanswered (the name is then NO_ANSWER, with why)."""
    if lab.mistake is None:
        return lab.curl("/").strip(), ""
    done = lab.run_in(lab.client_ns, curl_argv(f"http://{lab.vip}/", mistakes.CURL_TIME),
                      capture_output=True, text=True)
    if done.returncode == 0:
        return done.stdout.strip(), ""
    return mistakes.NO_ANSWER, done.stderr.strip()


def _hold(lab: Lab, answers: Counter[str]) -> HeldConnections | None:
    """Connections held open; a broken lab holds none if no request got an answer."""
    if lab.mistake is not None and not set(answers) - {mistakes.NO_ANSWER}:
        print("\nholding no connection open: no request got an answer")
        return None
    try:
        held = HeldConnections(lab, len(lab.server_ns))
    except RuntimeError as exc:
        if lab.mistake is None:
            raise
        print(f"\nholding no connection open: {exc}")
        return None
    print(f"\nholding {len(held.ports)} connections open from the client: "
          + ", ".join(f"port {p} -> {name}" for p, name in held.servers.items()))
    return held


def _report(lab: Lab, director: DirectorProcess, requests: int, answers: Counter[str],
            explain: bool = False) -> tuple[int, str]:
    """Returns the exit status and the -Ln listing. A broken lab's verdict comes later."""
    listing = director.adm("-Ln")
    print(f"\n$ pylvs adm -Ln\n{listing}")
    if explain:
        print(notes.table())
    print(f"$ pylvs adm -Lnc\n{director.adm('-Lnc')}")
    if explain:
        print(notes.connections(lab.server_modes))
    vip_sockets = [s for s in tcp_sockets(lab, lab.director_ns) if f"{lab.vip}:" in s]
    print(f"director: TCP sockets for the VIP in its own stack: {len(vip_sockets)}")
    ok = not vip_sockets and sum(answers.values()) == requests
    for ns, ip in zip(lab.server_ns, lab.server_ips, strict=True):
        from_client = [s for s in tcp_sockets(lab, ns) if f" {lab.client_ip}:" in s]
        ok = ok and any(s.startswith("ESTAB") for s in from_client)
        print(f"real server {ip}: TCP sockets with the client {lab.client_ip}: "
              f"{len(from_client)}")
        for line in from_client[:3]:
            print(f"    {' '.join(line.split())}")
    if explain:
        print(f"\n{notes.sockets()}", end="")
    if lab.mistake is not None:
        return (0 if ok else 1), listing
    print(f"\n{VERDICTS[lab.mode]}" if ok else "\nsomething is wrong: see above")
    return (0 if ok else 1), listing


def _what_broke(lab: Lab, mistake: mistakes.Mistake, seen: Seen,
                hosts: dict[str, dict[str, object]], trace_dir: str | None,
                explain: bool) -> int:
    """A broken lab's verdict: what broke, what the trace saw, what --check names."""
    print(f"\nwhat broke (mistake {mistake.name}):")
    for line in mistakes.observe(lab, mistake, hosts, seen.answers, seen.listing):
        print(f"  {line}")
    if trace_dir is not None:
        with open(os.path.join(trace_dir, "trace.json")) as fh:
            facts = mistakes.trace_facts(json.load(fh), lab.vip)
        print("\nin the trace:" + "".join(f"\n  {line}" for line in facts))
    if explain:
        print(f"\n{notes.paragraphs([mistake.lesson])}", end="")
    text, found = mistakes.checks_text(mistake, mistakes.run_checks(lab))
    print(f"\n--check in each real server names the cause:\n{text}")
    if found:
        print("--check named the mistake in every real server; the fix: the commands it "
              "printed (or the lab without --mistake)")
        return 0
    print(f"--check did not name the mistake ({mistake.cause}...) in every real server: "
          f"see above")
    return 1


VERDICTS = {
    "dr": "DR works: the director forwarded, the real servers answered the client directly.",
    "nat": "NAT works: the director rewrote VIP→RIP on the way in and RIP→VIP on the way back; "
           "the real servers saw the client's own address.",
    "mixed": "One virtual service, three ways: DR, NAT and TUN real servers all answered.",
    "tun": "TUN works: the director wrapped each packet in IP-in-IP to the real server's own "
           "address; the real servers unwrapped it and answered the client through the router.",
}

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
from pylvs.lab.topology import Lab, Target, curl_argv, endpoint, lab_config
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


def socket_host(column: str) -> str:
    """The address of one of `ss`'s address:port columns: 192.168.1.5:40000, and
    [2001:db8:1::5]:40000, and an IPv4 peer of an IPv6 socket [::ffff:192.168.1.5]:40000 all
    give the bare address."""
    host = column.rsplit(":", 1)[0].strip("[]")
    return host[len("::ffff:"):] if host.startswith("::ffff:") and "." in host else host


def sockets_with(lines: list[str], addresses: set[str], column: int) -> list[str]:
    """The `ss -tan` lines whose local (``column`` 3) or peer (4) address is one of
    ``addresses``."""
    return [line for line in lines if len(line.split()) > column
            and socket_host(line.split()[column]) in addresses]


class HeldConnections:
    """Keep-alive HTTP connections from the client to the VIP, each answered once, left open.

    One request on each makes sure both ends are ESTABLISHED before anyone looks, and tells
    which real server holds it.
    """

    def __init__(self, lab: Lab, count: int, port: int = 80, vip: str = "") -> None:
        """``vip``: the service's (default the lab's first VIP)."""
        vip = vip or lab.vip
        code = ("import http.client, sys\n"
                f"held = [http.client.HTTPConnection('{vip}', {port}, timeout=5) "
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
                raise RuntimeError(f"the client could not hold a connection to "
                                   f"{endpoint(vip, port)}")
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
        mistake: str | None = None, family: int = 4, tun_type: str = "ipip") -> int:
    """``trace_dir``: capture every wire into it and print the first connection's hops;
    ``keep``: leave the lab running for `pylvs lab down`; ``explain``: say what the report shows;
    ``mistake``: the real servers make it, and the report shows what broke and why; ``family``
    6: the lab in IPv6. A dual-stack lab sends ``requests`` to each of its services."""
    with Lab(servers=servers, mode=mode, mistake=mistake, family=family,
             tun_type=tun_type) as lab:
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
    if lab.mode == "dualstack":
        v4, v6 = lab.plans[4], lab.plans[6]
        servers = ", ".join(f"{a} and {b}" for a, b in zip(v4.servers, v6.servers, strict=True))
        print(f"lab (dualstack): client {v4.client} and {v6.client}, director {v4.director} "
              f"and {v6.director} ({lab.director_if}), VIPs {v4.vip} and {v6.vip}, real "
              f"servers {servers}")
    else:
        print(f"lab ({lab.label}): client {lab.client_ip}, director {lab.director_ip} "
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
    if lab.mode in ("tun", "mixed", "dualstack"):
        routers = " and ".join(lab.plans[f].router_outside for f in lab.families)
        print(f"  TUN real servers sit in their own subnet behind a router ({routers}) and "
              f"answer the client through it")
    if lab.mode == "dualstack":
        for target in lab.targets():
            print(f"  service {target.endpoint}: TUN to the real servers' IPv{target.server_family}"
                  f" addresses ({target.encapsulation})")


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
        print(f"\n{notes.real_servers(lab.server_modes, lab.families, lab.mistake)}", end="")
    print()


@dataclass(frozen=True)
class Seen:
    """What the requests got, and the director's -Ln and -Lnc after them."""

    answers: Counter[str]
    listing: str
    connections: str = ""


def _demo(lab: Lab, director: DirectorProcess, requests: int, explain: bool = False
          ) -> tuple[int, Seen]:
    """The requests, the held connections and the report; returns the exit status and what a
    mistake's part of the report needs."""
    answers = _requests(lab, requests)
    held: list[HeldConnections] = []
    try:
        for target in lab.targets():
            one = _hold(lab, answers, target)
            if one is not None:
                held.append(one)
        ports = [port for one in held for port in one.ports]
        rc, listing, rows = _report(lab, director, requests * len(lab.targets()), answers,
                                    explain, ports)
        return rc, Seen(answers, listing, rows)
    finally:
        for one in held:
            one.close()


def _requests(lab: Lab, requests: int) -> Counter[str]:
    """``requests`` to each service (one but in the dual-stack lab); the answers of all."""
    answers: Counter[str] = Counter()
    each: dict[str, Counter[str]] = {}
    targets = lab.targets()
    number = 0
    for target in targets:
        seen = each.setdefault(target.endpoint, Counter())
        for _ in range(requests):
            number += 1
            name, failure = _request(lab, target)
            answers[name] += 1
            seen[name] += 1
            print(f"request {number:3d}: {_typed(target)} -> {name}"
                  + (f" ({failure})" if failure else ""))
    print("\nanswers: " + ", ".join(f"{k}={v}" for k, v in sorted(answers.items())))
    if len(targets) > 1:
        for target in targets:
            print(f"  {target.endpoint} ({target.encapsulation}): "
                  + ", ".join(f"{k}={v}" for k, v in sorted(each[target.endpoint].items())))
    return answers


def _typed(target: Target) -> str:
    """The request as a person would type it."""
    if target.family == 6:
        return f"curl -6 -g '{target.url()}'"
    return f"curl {target.url()}"


def _request(lab: Lab, target: Target) -> tuple[str, str]:
    """One curl; a broken lab's may go unanswered (the name is then NO_ANSWER, with why)."""
    if lab.mistake is None:
        return lab.curl("/", target).strip(), ""
    done = lab.run_in(lab.client_ns, curl_argv(target.url(), mistakes.CURL_TIME),
                      capture_output=True, text=True)
    if done.returncode == 0:
        return done.stdout.strip(), ""
    return mistakes.NO_ANSWER, done.stderr.strip()


def _hold(lab: Lab, answers: Counter[str], target: Target) -> HeldConnections | None:
    """Connections held open to ``target``; a broken lab holds none if no request got an
    answer."""
    if lab.mistake is not None and not set(answers) - {mistakes.NO_ANSWER}:
        print("\nholding no connection open: no request got an answer")
        return None
    try:
        held = HeldConnections(lab, len(lab.server_ns), target.port, target.vip)
    except RuntimeError as exc:
        if lab.mistake is None:
            raise
        print(f"\nholding no connection open: {exc}")
        return None
    to = f" to {target.endpoint}" if len(lab.targets()) > 1 else ""
    print(f"\nholding {len(held.ports)} connections open from the client{to}: "
          + ", ".join(f"port {p} -> {name}" for p, name in held.servers.items()))
    return held


def _report(lab: Lab, director: DirectorProcess, requests: int, answers: Counter[str],
            explain: bool = False, held: list[int] | None = None) -> tuple[int, str, str]:
    """Returns the exit status, the -Ln listing and the -Lnc rows (read with it). A broken
    lab's verdict comes later. ``held``: the client ports of the connections held open."""
    listing, rows = director.adm("-Ln"), director.adm("-Lnc")
    print(f"\n$ pylvs adm -Ln\n{listing}")
    if lab.tun_type != "ipip":
        print(f"$ pylvs adm -Ln --tun-info\n{director.adm('-Ln', '--tun-info')}")
    if explain:
        print(notes.table(listing, rows, held or []))
    print(f"$ pylvs adm -Lnc\n{rows}")
    if explain:
        print(notes.connections(listing, rows))
    vip_sockets = sockets_with(tcp_sockets(lab, lab.director_ns), set(lab.vips), 3)
    vips = "s" if len(lab.vips) > 1 else ""
    print(f"director: TCP sockets for the VIP{vips} in its own stack: {len(vip_sockets)}")
    ok = not vip_sockets and sum(answers.values()) == requests
    clients = [lab.plans[f].client for f in lab.families]
    seen_sockets: list[list[str]] = []
    for index, ns in enumerate(lab.server_ns):
        from_client = sockets_with(tcp_sockets(lab, ns), set(clients), 4)
        seen_sockets.append(from_client)
        ok = ok and any(s.startswith("ESTAB") for s in from_client)
        print(f"real server {' and '.join(lab.server_addresses(index))}: TCP sockets with the "
              f"client {' and '.join(clients)}: {len(from_client)}")
        for line in from_client[:max(3, len(lab.targets()))]:
            print(f"    {' '.join(line.split())}")
    if explain:
        print(f"\n{notes.sockets(len(vip_sockets), seen_sockets)}", end="")
    if lab.mistake is not None:
        return (0 if ok else 1), listing, rows
    verdict = VERDICTS6[lab.mode] if lab.families == (6,) else VERDICTS[lab.mode]
    if lab.tun_type != "ipip":
        verdict = verdict.replace("IP-in-IP", TUNNEL_WORDS[lab.tun_type]).replace(
            "ip6ip6", TUNNEL_WORDS[lab.tun_type])
    print(f"\n{verdict}" if ok else "\nsomething is wrong: see above")
    return (0 if ok else 1), listing, rows


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
        print(f"\n{notes.mistake(mistake.lesson, seen.answers, seen.listing, seen.connections)}",
              end="")
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
    "dualstack": "Dual stack works: one director and one config for an IPv4 and an IPv6 VIP; "
                 "TUN carried each to real servers of its own family (IP-in-IP, ip6ip6) and of "
                 "the other (4in6, 6in4), and they answered the client through the router.",
}

TUNNEL_WORDS = {"gue": "UDP and GUE (port 6080)", "gre": "GRE"}
"""What --tun-type's encapsulation is called where the verdicts say IP-in-IP."""

VERDICTS6 = {
    "dr": "DR works over IPv6: the director forwarded, the real servers answered the client "
          "directly; only the director answered the Neighbor Solicitations for the VIP.",
    "nat": "NAT works over IPv6 (NAT66): the director rewrote VIP→RIP on the way in and "
           "RIP→VIP on the way back; the real servers saw the client's own address.",
    "mixed": "One virtual service, three ways, over IPv6: DR, NAT and TUN real servers all "
             "answered.",
    "tun": "TUN works over IPv6: the director wrapped each packet in ip6ip6 to the real "
           "server's own address; the real servers unwrapped it and answered the client "
           "through the router.",
}

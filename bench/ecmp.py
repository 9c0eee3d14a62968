"""Directors behind ECMP: balance, flows kept across a director's death and return, failover
time with and without BFD, and which flows change real server.

    python3 -m bench.ecmp [--json PATH] [--downloads 15] [--flows 600]

Every lab is pylvs.lab.ecmp's (client → router with BIRD and ECMP, layer-4 hash → 3 pylvs
directors, each with its own BIRD → 3 DR real servers), built fresh per case and removed after.

1. balance: --flows short HTTP connections from one client (its ports vary), counted per
   director (-Ln --stats Conns) and per real server (the answers).
2. flows kept: --downloads rate-limited downloads (8 MB at 1 MB/s, curl gives up after 5 s
   without a byte); director 2 is killed with -9 at 1.5 s and started again at 4.5 s; per case,
   the downloads that arrived intact (sha256), those the killed director held, and those that
   moved onto it when it came back (held by another director just before, by it 1.5 s
   after). Cases: mh + sloppy_tcp through a resilient nexthop group
   (the lab's default); the same through a plain multipath route; mh without sloppy_tcp
   (IPVS's default); rr + sloppy_tcp (a scheduler that cannot agree by hashing).
3. failover time: from a director's hang (SIGSTOP of pylvs and its BIRD: its sessions stay
   open) or its kill -9 (the guard ends BIRD: the session closes) to the router's withdrawal,
   seen in its kernel's route, polled every 10 ms; with BFD (100 ms x 3) and without (hold time
   3 s).
4. real server changes: (a) agreement: the same SYNs (--flows client ports) sent from the router
   straight to each director's MAC, and the real server each one's -Lnc names, compared; (b)
   computed with pylvs's mh and sh over 100,000 random flows: the share that changes real
   server when one of N real servers goes, against 1/N.

Needs BIRD 2, curl; run as root; about 4 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Any

import schedulers
from pylvs.core.model import RealServer, ip_to_int
from pylvs.core.packet import Flow
from pylvs.lab import ecmp
from pylvs.lab.demo import DirectorProcess
from pylvs.lab.ecmp import EcmpLab
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import curl_argv

DOWNLOAD = 8_000_000
RATE = "1000k"
KILL_AT, JOIN_AT = 1.5, 4.5
VICTIM = 1
CASES = {
    "mh+sloppy, resilient group": {"scheduler": "mh", "sloppy": True, "resilient": None},
    "mh+sloppy, multipath route": {"scheduler": "mh", "sloppy": True, "resilient": False},
    "mh, sloppy_tcp off": {"scheduler": "mh", "sloppy": False, "resilient": None},
    "rr+sloppy": {"scheduler": "rr", "sloppy": True, "resilient": None},
}


class Run:
    def __init__(self, scheduler: str = "mh", sloppy: bool = True, resilient: bool | None = None,
                 bfd: bool = True) -> None:
        self.lab = EcmpLab(3, 3, bfd=bfd, resilient=resilient)
        self.tmp = tempfile.TemporaryDirectory(prefix="pylvs-bench-ecmp-")
        self.scheduler, self.sloppy = scheduler, sloppy
        self.directors: list[DirectorProcess | None] = []
        try:
            self.lab.setup()
            self.lab.start_http_servers()
            self.lab.start_router()
            self.directors = [self.start(i) for i in range(3)]
            self.lab.wait_for_hops(self.lab.director_ips)
        except BaseException:
            self.close()
            raise

    def start(self, i: int) -> DirectorProcess:
        directory = os.path.join(self.tmp.name, f"d{i + 1}-{time.monotonic_ns()}")
        os.makedirs(directory)
        text = self.lab.director_config(i, 0.5, self.sloppy, scheduler=self.scheduler)
        return DirectorProcess(self.lab, text, ns=self.lab.director_ns[i],  # type: ignore[arg-type]
                               control_socket=self.lab.control_sockets[i], directory=directory)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for director in self.directors:
            if director is not None:
                director.stop()
        self.lab.close()
        self.tmp.cleanup()


# -- 1. balance ----------------------------------------------------------------------------------

_CLIENT = """
import socket, sys
from collections import Counter
seen = Counter()
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 80), timeout=5)
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    seen[data.split(b"\\r\\n\\r\\n", 1)[1].decode().strip()] += 1
print(dict(seen))
"""


def balance(flows: int) -> dict[str, Any]:
    with Run() as run:
        before = [ecmp._conns(d) for d in run.directors if d is not None]
        out = run.lab.run_in(run.lab.client_ns, [sys.executable, "-c", _CLIENT, ecmp.VIP,
                                                 str(flows)],
                             capture_output=True, text=True, check=True).stdout
        after = [ecmp._conns(d) for d in run.directors if d is not None]
    per_director = [a - b for a, b in zip(after, before, strict=True)]
    per_server = eval(out)  # noqa: S307 - our own client's dict of names
    return {"flows": flows, "per_director": per_director,
            "per_server": [per_server.get(n, 0) for n in ("rs1", "rs2", "rs3")],
            "director_max_over_mean": max(per_director) / (flows / 3)}


# -- 2. flows kept -------------------------------------------------------------------------------

def flows_kept(name: str, case: dict[str, Any], count: int) -> dict[str, Any]:
    with Run(**case) as run, tempfile.TemporaryDirectory() as tmp:
        lab = run.lab
        lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
                   check=True)
        start = time.monotonic()
        procs = {}
        for k in range(count):
            port, path = 42000 + k, os.path.join(tmp, str(k))
            argv = [*curl_argv(f"http://{ecmp.VIP}/blob/{DOWNLOAD}", max_time=60),
                    "--local-port", str(port), "--limit-rate", RATE, "--speed-limit", "1",
                    "--speed-time", "5", "-o", path]
            procs[port] = (lab.popen_in(lab.client_ns, argv), path)
        _sleep_until(start + KILL_AT)
        before = ecmp._holders(lab, run.directors)
        victim = run.directors[VICTIM]
        assert victim is not None
        victim.proc.kill()
        victim.proc.wait()
        victim.stop()
        run.directors[VICTIM] = None
        _sleep_until(start + JOIN_AT)
        before_join = ecmp._holders(lab, run.directors)
        run.directors[VICTIM] = run.start(VICTIM)
        lab.wait_for_hops(lab.director_ips)
        time.sleep(1.5)
        after_join = ecmp._holders(lab, run.directors)
        wanted = hashlib.sha256(blob(DOWNLOAD)).digest()
        intact = {}
        for port, (proc, path) in procs.items():
            proc.wait(120)
            with open(path, "rb") as fh:
                intact[port] = proc.returncode == 0 and hashlib.sha256(fh.read()).digest() \
                    == wanted
    dead = f"d{VICTIM + 1}"
    on_dead = [p for p in procs if before.get(p, ("",))[0] == dead]
    joined = [p for p in procs if after_join.get(p, ("",))[0] == dead
              and before_join.get(p, ("",))[0] not in ("", dead)]
    return {"case": name, "downloads": count, "intact": sum(intact.values()),
            "on_killed_director": len(on_dead),
            "on_killed_director_intact": sum(intact[p] for p in on_dead),
            "others": count - len(on_dead),
            "others_intact": sum(intact[p] for p in procs if p not in on_dead),
            "moved_onto_the_joining_director": len(joined),
            "moved_onto_the_joining_director_intact": sum(intact[p] for p in joined)}


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# -- 3. failover time ----------------------------------------------------------------------------

def failover_times(bfd: bool, hangs: int) -> dict[str, Any]:
    with Run(bfd=bfd) as run:
        lab = run.lab
        survivors = [ip for i, ip in enumerate(lab.director_ips) if i != VICTIM]
        hang = []
        for _ in range(hangs):
            director = run.directors[VICTIM]
            assert director is not None
            pids = [director.proc.pid, _bird_pid(director.proc.pid)]
            start = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                hang.append(_withdrawn(lab, survivors) - start)
            finally:
                for pid in reversed(pids):
                    os.kill(pid, signal.SIGCONT)
            lab.wait_for_hops(lab.director_ips, timeout=30)
        director = run.directors[VICTIM]
        assert director is not None
        start = time.monotonic()
        director.proc.kill()
        killed = _withdrawn(lab, survivors) - start
    return {"bfd": bfd, "hang_seconds": hang, "kill_seconds": killed}


def _bird_pid(pylvs_pid: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"/run/pylvs-{pylvs_pid}-bird/bird.conf"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _withdrawn(lab: EcmpLab, survivors: list[str]) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if lab.next_hops() == survivors:
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError("the router never withdrew the director")


# -- 4. real server changes ----------------------------------------------------------------------

_SYNS = """
import sys
from scapy.all import Ether, IP, TCP, get_if_hwaddr, sendp
macs, first, count = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
own = get_if_hwaddr("eth0")  # else 00:00:00:00:00:00, which a bridge drops
frames = [Ether(src=own, dst=mac) / IP(src=sys.argv[4], dst=sys.argv[5]) / TCP(sport=port, dport=80,
          flags="S", seq=1) for mac in macs for port in range(first, first + count)]
sendp(frames, iface="eth0", verbose=False)
"""


def agreement(flows: int) -> dict[str, Any]:
    """The same SYNs to every director: does each pick the same real server?"""
    with Run() as run:
        lab = run.lab
        macs = [json.loads(lab.run_in(ns, ["ip", "-j", "link", "show", "eth0"],
                                      capture_output=True, text=True).stdout)[0]["address"]
                for ns in lab.director_ns]
        lab.run_in(lab.router_ns, [sys.executable, "-c", _SYNS, ",".join(macs), "50000",
                                   str(flows), ecmp.CLIENT_IP, ecmp.VIP], check=True)
        time.sleep(1.0)
        picks = []
        for director in run.directors:
            assert director is not None
            rows = [line.split() for line in director.adm("-Lnc").splitlines()[2:]]
            picks.append({row[3]: row[5] for row in rows if len(row) >= 6
                          and int(row[3].rsplit(":", 1)[1]) >= 50000})
    common = set(picks[0]) & set(picks[1]) & set(picks[2])
    differ = sum(len({p[flow] for p in picks}) > 1 for flow in common)
    return {"flows": flows, "seen_by_every_director": len(common), "disagreements": differ}


def server_changes(flows: int = 100_000) -> list[dict[str, Any]]:
    """For mh and sh (both hash the client's address and port): the share of flows another
    director would send elsewhere (built from the same list: 0), and the share that moves when
    one of N real servers goes."""
    rng = random.Random(7)
    sample = [Flow(6, rng.getrandbits(32), ip_to_int(ecmp.VIP), rng.randrange(1024, 65536), 80,
                   34, 0x02, 64, 60) for _ in range(flows)]
    out = []
    for name in ("mh", "sh"):
        for n in (3, 5, 10):
            servers = [RealServer(f"10.0.0.{100 + i}", 80) for i in range(1, n + 1)]
            picks = {label: _picks(name, listed, sample)
                     for label, listed in (("all", servers), ("again", servers),
                                           ("one gone", servers[:-1]))}
            out.append({"scheduler": name, "servers": n,
                        "changed_on_another_director": _changed(picks["all"], picks["again"]),
                        "changed_when_one_server_goes": _changed(picks["all"],
                                                                 picks["one gone"]),
                        "one_over_n": 1 / n})
    return out


def _picks(name: str, servers: list[RealServer], sample: list[Flow]) -> list[str]:
    scheduler = schedulers.get(name)([f"{name}-port"])
    scheduler.update(servers)
    return [scheduler.pick(servers, flow).address for flow in sample]  # type: ignore[union-attr]


def _changed(a: list[str], b: list[str]) -> float:
    return sum(x != y for x, y in zip(a, b, strict=True)) / len(a)


# -- the report ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--downloads", type=int, default=15)
    parser.add_argument("--flows", type=int, default=600)
    parser.add_argument("--hangs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.ecmp: needs root (it builds network namespaces)")
    result: dict[str, Any] = {"date": date.today().isoformat(),
                              "python": platform.python_version(), "kernel": os.uname().release}
    result["balance"] = b = balance(args.flows)
    print(f"balance: {b['flows']} flows; per director {b['per_director']} (max/mean "
          f"{b['director_max_over_mean']:.2f}); per real server {b['per_server']}")
    result["flows_kept"] = []
    print(f"\nflows kept ({args.downloads} downloads of {DOWNLOAD / 1e6:.0f} MB; director "
          f"{VICTIM + 1} killed at {KILL_AT} s, back at {JOIN_AT} s):")
    print(f"  {'case':<28} {'intact':>7} {'killed d.':>10} {'others':>8} {'onto joiner':>12}")
    for name, case in CASES.items():
        r = flows_kept(name, case, args.downloads)
        result["flows_kept"].append(r)
        print(f"  {name:<28} {r['intact']:>3}/{r['downloads']:<3} "
              f"{r['on_killed_director_intact']:>4}/{r['on_killed_director']:<5} "
              f"{r['others_intact']:>3}/{r['others']:<4} "
              f"{r['moved_onto_the_joining_director_intact']:>5}/"
              f"{r['moved_onto_the_joining_director']:<6}")
    result["failover"] = []
    print("\nfailover time (director to withdrawn route on the router):")
    for bfd in (True, False):
        r = failover_times(bfd, args.hangs)
        result["failover"].append(r)
        print(f"  {'BFD 100 ms x 3' if bfd else 'hold time 3 s':<15} hang: "
              f"{', '.join(f'{s:.2f}' for s in r['hang_seconds'])} s (median "
              f"{statistics.median(r['hang_seconds']):.2f}); kill -9: "
              f"{r['kill_seconds']:.2f} s")
    result["agreement"] = a = agreement(args.flows)
    print(f"\nagreement: {a['flows']} SYNs to each of 3 directors, {a['seen_by_every_director']}"
          f" seen by all: {a['disagreements']} with different real servers")
    result["server_changes"] = changes = server_changes()
    print("\nshare of flows that change real server (100,000 random flows):")
    for c in changes:
        print(f"  {c['scheduler']} {c['servers']:>2} servers: another director "
              f"{c['changed_on_another_director']:.3f}; one real server gone "
              f"{c['changed_when_one_server_goes']:.3f} "
              f"(1/N = {c['one_over_n']:.3f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""`pylvs lab dr --ha`: the seed's lesson 4 as a demonstration. Two directors share the VIP by
VRRP and each other's connections by the sync daemon; the master is killed with -9 in the middle
of a client's rate-limited download, and the report shows the backup taking the VIP, the killed
host holding none, and the download arriving whole from the same real server.

`pylvs lab dr --ipv6 --ha`: the same in IPv6, the directors a VRRPv3 pair over IPv6 (link-local
sources, ff02::12, unsolicited Neighbor Advertisements for the /128 VIP), syncing the IPv6
connection (IPVS's IPv6 sync records) as the IPv4 pair syncs its own.

`pylvs lab dr --ha --mistake NAME`: the seed's lesson 4 troubles (pylvs/lab/mistakes.py says
what they are). ``no-cleanup``: the master and its guard are killed at once; both directors
hold the VIP, both answer ARP, the client lands on either; then what keepalived's restart and
pylvs's guard do about it. ``vrrp-strict``: keepalived's vrrp_strict table on the master; the
VIP answers ARP but not ping; then without it. With ``trace_dir`` the wires are captured
(pylvs.lab.capture) while the fault is on, and the report reads the client's wire.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Mapping

from pylvs.lab import capture, mistakes
from pylvs.lab.demo import DirectorProcess, _prepare_real_servers
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import Lab, curl_argv, lab_config
from pylvs.shell import control
from pylvs.shell.messages import Status

DOWNLOAD = 3_000_000
RATE = "400k"
KILL_AFTER = 2.5
WAIT = 15.0


def run(servers: int = 3, scheduler: str = "rr", family: int = 4, mistake: str | None = None,
        trace_dir: str | None = None, explain: bool = False) -> int:
    """``mistake``: one of the two-director mistakes (no-cleanup, vrrp-strict) instead of the
    failover under a download; ``trace_dir``: capture the wires while its fault is on;
    ``explain``: say why it breaks."""
    fault = None if mistake is None else mistakes.validate("dr", mistake, ha=True)
    with Lab(servers=servers, mode="dr", ha=True, family=family) as lab:
        print(f"lab ({lab.label}, ha): client {lab.client_ip}, directors {lab.director_ip} "
              f"(priority 150) and {lab.director2_ip} (priority 100), VIP {lab.vip}, real "
              f"servers {', '.join(lab.server_ips)}")
        print(f"  {lab.where()}")
        if fault is not None:
            print(f"  mistake {fault.name}: {fault.summary}")
        lab.setup()
        _prepare_real_servers(lab)
        lab.start_http_servers()
        pair = Pair(lab, scheduler, strict=fault is not None and fault.name == "vrrp-strict")
        try:
            first, second = pair.start()
            print(f"\n$ pylvs status   # director 1\n{_status(lab.control_socket)}")
            print(f"$ pylvs status   # director 2\n{_status(lab.control_socket2)}")
            if fault is None:
                return _demo(lab, first, second)
            faulty = _no_cleanup if fault.name == "no-cleanup" else _vrrp_strict
            rc = faulty(lab, pair, trace_dir)
            if explain:
                print("\n" + "".join(textwrap.fill(fault.lesson, 100, initial_indent="  | ",
                                                   subsequent_indent="  | ") + "\n"), end="")
            return rc
        finally:
            pair.stop()


class Pair:
    """The lab's two directors: director 1 (priority 150) and director 2 (100); director 1
    may be started again after a kill. ``strict``: their VRRP without authentication, which
    keepalived's vrrp_strict ignores."""

    def __init__(self, lab: Lab, scheduler: str, strict: bool = False) -> None:
        self.lab = lab
        self.configs = [lab_config(lab, scheduler, priority=150),
                        lab_config(lab, scheduler, priority=100,
                                   control_socket=lab.control_socket2)]
        if strict:
            self.configs = [_without_authentication(c) for c in self.configs]
        self.first: DirectorProcess | None = None
        self.second: DirectorProcess | None = None
        self.done: list[DirectorProcess] = []

    def start(self) -> tuple[DirectorProcess, DirectorProcess]:
        lab = self.lab
        self.first = first = DirectorProcess(lab, self.configs[0])
        _until(lambda: _holds_vip(lab, lab.director_ns), "director 1 to become MASTER")
        self.second = second = DirectorProcess(lab, self.configs[1], lab.director2_ns,
                                               lab.control_socket2)
        _until(lambda: "BACKUP" in _status(lab.control_socket2), "director 2 to be BACKUP")
        return first, second

    def start_first_again(self) -> DirectorProcess:
        if self.first is not None:
            self.done.append(self.first)
        self.first = first = DirectorProcess(self.lab, self.configs[0])
        return first

    def stop(self) -> None:
        for director in (self.second, self.first, *self.done):
            if director is not None:
                director.stop()


def _without_authentication(config: str) -> str:
    return "".join(line for line in config.splitlines(keepends=True)
                   if not line.startswith("authentication ="))


def small_receive_buffer(lab: Lab) -> None:
    """The client's TCP receive buffer at most 256 KB: without it the real server could put
    most of the download in flight before the kill, and the failover would prove little."""
    lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
               check=True)


def _demo(lab: Lab, first: DirectorProcess, second: DirectorProcess) -> int:
    small_receive_buffer(lab)
    url = lab.url(f"/blob/{DOWNLOAD}")
    print(f"client: curl --limit-rate {RATE} {url}   ({DOWNLOAD:,} bytes)")
    start = time.monotonic()
    curl = lab.popen_in(lab.client_ns, [*curl_argv(url, max_time=90), "--limit-rate", RATE],
                        stdout=subprocess.PIPE)
    time.sleep(KILL_AFTER)
    synced = second.adm("-Lnc")
    print(f"\ndirector 2 already has the connection from its sync daemon:\n"
          f"$ pylvs adm -Lnc\n{synced}")
    first.proc.kill()
    first.proc.wait()
    killed = time.monotonic()
    print(f"{killed - start:5.2f} s  kill -9 director 1 (the MASTER)")
    took = _until(lambda: _holds_vip(lab, lab.director2_ns), "director 2 to take the VIP")
    print(f"{took - start:5.2f} s  director 2 holds the VIP ({took - killed:.2f} s after the "
          "kill; Master_Down_Interval, 3.61 s, runs from the master's last advert)")
    _until(lambda: not _holds_vip(lab, lab.director_ns), "director 1's host to drop the VIP")
    print("        director 1's host holds no VIP (its guard removed it)")
    body, _ = curl.communicate(timeout=120)
    done = time.monotonic()
    intact = curl.returncode == 0 and hashlib.sha256(body).digest() == \
        hashlib.sha256(blob(DOWNLOAD)).digest()
    print(f"{done - start:5.2f} s  download finished: {len(body):,} bytes, "
          f"{'intact (sha256 matches)' if intact else f'BROKEN (curl exit {curl.returncode})'}")
    print(f"\n$ pylvs status   # director 2\n{_status(lab.control_socket2)}")
    print("HA works: the backup took the VIP and the synced connection, and the client's "
          "transfer went on." if intact else "\nsomething is wrong: see above")
    return 0 if intact else 1


def _status(socket_path: str) -> str:
    try:
        return control.ask(socket_path, Status()).stdout
    except OSError:
        return ""


def _holds_vip(lab: Lab, ns: str) -> bool:
    out = lab.run_in(ns, ["ip", f"-{lab.family}", "addr", "show", "dev", "eth0"],
                     capture_output=True, text=True).stdout
    return f"{lab.vip}/{32 if lab.family == 4 else 128}" in out


def _until(predicate: Callable[[], bool], what: str) -> float:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"waited {WAIT:.0f} s for {what}")


# -- the two-director mistakes (pylvs/lab/mistakes.py) -----------------------------------------

ROUNDS = 2
"""How often the no-cleanup lab's client forgets the VIP's MAC and asks again."""


def _no_cleanup(lab: Lab, pair: Pair, trace_dir: str | None) -> int:
    first = pair.first
    assert first is not None
    names = _names(lab)
    lab.curl("/")  # the client's neighbour table learns the VIP: director 1's MAC
    print(f"before: {_answers_line(lab, mistakes.ask_who_has(lab), names)}; "
          f"{_neighbour_line(lab, names)}")
    captures = None if trace_dir is None else capture.Captures(lab, trace_dir)
    try:
        seen = _kill_both(lab, first, names)
        if captures is not None:
            time.sleep(0.5)  # the frames of these last requests, into the pcaps
    finally:
        if captures is not None:
            captures.stop()
    if trace_dir is not None:
        seen = _trace_no_cleanup(lab, trace_dir, names) and seen
    print(f"\ncause: {mistakes.MISTAKES['no-cleanup'].cause}: killed with its guard, director 1 "
          f"ran nothing that deletes it; its kernel still answers ARP for {lab.vip}, as "
          f"director 2's does since it took over. keepalived killed with -9 leaves the "
          f"same: it has no guard")
    fixed = _keepalived_answer(lab, pair, names) and _guard_answer(lab, pair, names)
    return 0 if seen and fixed else 1


def _kill_both(lab: Lab, first: DirectorProcess, names: Mapping[str, str]) -> bool:
    """Kill director 1 with its guard; what broke. True if both held the VIP and both
    answered ARP for it."""
    guards = _children(first.proc.pid)
    start = time.monotonic()
    for pid in guards:
        os.kill(pid, signal.SIGKILL)
    first.proc.kill()
    first.proc.wait()
    print(f"\n 0.00 s  kill -9 director 1's guard (pid {', '.join(map(str, guards))}) and "
          f"director 1 (pid {first.proc.pid}) at once, as `systemctl kill -s KILL` or an OOM "
          f"kill of the service's cgroup would: nothing runs to clean up after them "
          f"(keepalived has no guard: a plain kill -9 of it is enough)")
    took = _until(lambda: _holds_vip(lab, lab.director2_ns), "director 2 to take the VIP")
    print(f"{took - start:5.2f} s  director 2 holds the VIP (no advert from director 1 for "
          f"Master_Down_Interval) and sends gratuitous ARPs")
    leftovers = _pylvs_tables(lab, lab.director_ns)
    both = _holds_vip(lab, lab.director_ns)
    if both:
        print(f"        director 1's host still holds {lab.vip}/32 on eth0, and its steal "
              f"rules ({', '.join(leftovers) or 'none'}), with no process behind them")
    time.sleep(0.5)  # director 2's first gratuitous ARPs reach the client
    print("\nwhat broke (mistake no-cleanup):")
    holders = [name for name, ns in (("director", lab.director_ns),
                                     ("director2", lab.director2_ns)) if _holds_vip(lab, ns)]
    print(f"  {lab.vip}/32 is on eth0 of {' and '.join(holders)}")
    print(f"  {_neighbour_line(lab, names)}: director 2's gratuitous ARPs moved it")
    answers = mistakes.ask_who_has(lab)
    print(f"  asked again, {_answers_line(lab, answers, names)}")
    print(f"  the client forgets the VIP's MAC (ip neigh del {lab.vip} dev eth0) and sends a "
          f"request, {ROUNDS} times; a Linux client keeps the first ARP answer:")
    reached: dict[str, list[str]] = {}
    for number in range(1, ROUNDS + 1):
        lab.run_in(lab.client_ns, ["ip", "neigh", "del", lab.vip, "dev", "eth0"],
                   capture_output=True)
        got = _request(lab)
        mac = _neighbour(lab)
        reached.setdefault(names.get(mac, "nobody"), []).append(got)
        print(f"    {number}: it took {names.get(mac, 'nobody')}'s answer ({mac}): {got}")
    dead = next(mac for mac, name in names.items() if name == "director")
    if "director" not in reached:
        print("  here the bridge floods the request to director 2 first, so its answer wins "
              "every time; behind another switch, or for another client, it is a race. A "
              "client that heard director 1's host first holds what this sets:")
        argv = ["ip", "neigh", "replace", lab.vip, "lladdr", dead, "dev", "eth0"]
        lab.run_in(lab.client_ns, argv, check=True, capture_output=True)
        print(f"  $ {' '.join(argv)}")
        reached["director"] = [_request(lab)]
        print(f"    curl {lab.url()}: {reached['director'][0]}")
    lost = [got for got in reached["director"] if got.startswith(mistakes.NO_ANSWER)]
    if lost:
        print("  through director 1's host the requests are lost: the dead director's steal "
              "rules still drop the service's frames, and nothing forwards them")
    if _neighbour(lab) == dead:
        pinged = mistakes.ask_echo(lab, lab.vip)
        print(f"  yet ping {lab.vip} (3 ICMP echo requests) through it: {pinged} answered: "
              f"its kernel still holds the VIP, so a monitor that pings the VIP sees nothing "
              f"wrong")
    split = len(reached) == 2 and bool(lost) and any(
        not got.startswith(mistakes.NO_ANSWER) for got in reached.get("director2", []))
    return both and len(answers) == 2 and split


def _trace_no_cleanup(lab: Lab, trace_dir: str, names: Mapping[str, str]) -> bool:
    """The client's wire from just before the kill; True if it shows both answering ARP."""
    frames = _client_frames(trace_dir)
    answered = mistakes.arp_answers(frames, lab.vip, names)
    lines = mistakes.trace_lines(frames, lab.vip, names)
    facts = [f"{len(answered)} hosts answered ARP for {lab.vip}: {', '.join(answered)}",
             *mistakes.syn_facts(frames, lab.vip, names),
             mistakes.echo_facts(frames, lab.vip, names),
             mistakes.gratuitous_line(frames, lab.vip, names), mistakes.vrrp_line(frames, names)]
    arp = [line for line in lines if "ARP who has" in line or
           ("is at" in line and "gratuitous" not in line)]
    _write_trace(lab, trace_dir, "no-cleanup", facts, lines)
    print(f"\nin the trace (client-eth0.pcap in {trace_dir}, from just before the kill):")
    print("".join(f"  {fact}\n" for fact in facts), end="")
    print("  the ARP requests for the VIP and their answers, frame by frame:")
    print("".join(f"    {line}\n" for line in arp), end="")
    print(f"  every frame about the VIP: {os.path.join(trace_dir, 'trace.txt')}")
    return len(answered) == 2


def _keepalived_answer(lab: Lab, pair: Pair, names: Mapping[str, str]) -> bool:
    """Delete the leftovers as keepalived's start does, start director 1 again: one holder."""
    print("\nwhat keepalived does about it: started again, it deletes its instances' VIPs "
          "before anything else (its log: \"removing VIPs.\", then \"Entering BACKUP STATE "
          "(init)\"; vrrp_restore_interfaces_startup), then its higher priority takes the "
          "master back, with gratuitous ARPs. pylvs started again does the same: a VIP of its "
          "config found on the interface is removed while it starts as BACKUP (or held, as "
          "MASTER), and the steal tables of dead directors are deleted (its log says each):")
    stale = _pylvs_tables(lab, lab.director_ns)
    start = time.monotonic()
    again = pair.start_first_again()
    print(f"$ ip netns exec {lab.director_ns} pylvs run {again.config_path}   # director 1 "
          f"again, priority 150")
    took = _until(lambda: _holds_vip(lab, lab.director_ns)
                  and not _holds_vip(lab, lab.director2_ns), "director 1 to be MASTER again")
    answers = mistakes.ask_who_has(lab)
    left = [table for table in stale if table in _pylvs_tables(lab, lab.director_ns)]
    print(f"{took - start:5.2f} s  director 1 is MASTER again and director 2 dropped the VIP; "
          f"{_answers_line(lab, answers, names)}; the dead run's steal tables "
          f"{'still there: ' + ', '.join(left) if left else 'deleted'}")
    return len(answers) == 1 and not left


def _guard_answer(lab: Lab, pair: Pair, names: Mapping[str, str]) -> bool:
    """kill -9 director 1 alone: its guard removes the VIP and the steal rules."""
    first = pair.first
    assert first is not None
    print("\nwhat pylvs does about it: its guard, a process of its own that removes the VIP "
          "when the director dies, however it dies. The same kill -9, of director 1 alone:")
    start = time.monotonic()
    first.proc.kill()
    first.proc.wait()
    took = _until(lambda: _holds_vip(lab, lab.director2_ns), "director 2 to take the VIP")
    _until(lambda: not _holds_vip(lab, lab.director_ns), "director 1's guard to drop the VIP")
    left = _pylvs_tables(lab, lab.director_ns)
    answers = mistakes.ask_who_has(lab)
    print(f"{took - start:5.2f} s  director 2 holds the VIP; director 1's host holds no VIP and "
          f"{'steal rules ' + ', '.join(left) if left else 'no steal rules'} (its guard "
          f"removed them); {_answers_line(lab, answers, names)}")
    return len(answers) == 1 and not left


def _vrrp_strict(lab: Lab, pair: Pair, trace_dir: str | None) -> int:
    names = _names(lab)
    before = mistakes.ask_echo(lab, lab.vip)
    print(f"before: ping {lab.vip} (3 ICMP echo requests): {before} answered; "
          f"curl {lab.url()}: {_request(lab)}")
    print("\npylvs has no vrrp_strict (its keepalived.conf conversion leaves the keyword out: "
          "it installs no DROP rules for the VIPs). The lab installs on director 1, the "
          "MASTER, what keepalived's vrrp_strict installs when it enters MASTER "
          "(keepalived/vrrp/vrrp_nftables.c):")
    lab.run_in(lab.director_ns, ["nft", "-f", "-"],
               input=mistakes.keepalived_strict_ruleset([lab.vip]), text=True, check=True,
               capture_output=True)
    listing = lab.run_in(lab.director_ns, ["nft", "list", "table", "ip", "keepalived"],
                         capture_output=True, text=True, check=True).stdout
    print(f"$ nft list table ip keepalived   # in director 1\n{listing}", end="")
    captures = None if trace_dir is None else capture.Captures(lab, trace_dir)
    try:
        answers = mistakes.ask_who_has(lab)
        echoed = mistakes.ask_echo(lab, lab.vip)
        served = _request(lab)
    finally:
        if captures is not None:
            captures.stop()
    print("\nwhat broke (mistake vrrp-strict):")
    print(f"  ping {lab.vip} (3 ICMP echo requests): {echoed} answered")
    print(f"  {_answers_line(lab, answers, names)}: the VIP is still on director 1's eth0, "
          f"and ARP is not IP, so the table never sees it")
    print(f"  curl {lab.url()}: {served}: pylvs takes the service's frames at the interface, "
          f"before netfilter's input hook")
    if trace_dir is not None:
        _trace_strict(lab, trace_dir, names)
    print(f"\ncause: {mistakes.MISTAKES['vrrp-strict'].cause}: keepalived drops every IP "
          f"packet to a VIP on the input hook (ip daddr @vips drop), so ping gets no answer "
          f"(a VIP of a master that is not the address owner, priority 255, accepts nothing "
          f"unless `accept`: RFC 5798's Accept_Mode). pylvs reads a virtual service's frames "
          f"before that hook, so here only what is not a virtual service's is lost; under "
          f"keepalived with the kernel's IPVS, whose LOCAL_IN hooks come after the filter, "
          f"the virtual services are cut off too")
    print("\nthe fix: no vrrp_strict in global_defs (or `accept` with `version 3`: for VRRPv2 "
          "keepalived resets accept under vrrp_strict). Without the table:")
    lab.run_in(lab.director_ns, ["nft", "delete", "table", "ip", "keepalived"], check=True,
               capture_output=True)
    print(f"$ ip netns exec {lab.director_ns} nft delete table ip keepalived")
    after = mistakes.ask_echo(lab, lab.vip)
    print(f"ping {lab.vip} (3 ICMP echo requests): {after} answered")
    ok = before == 3 and echoed == 0 and after == 3 and len(answers) == 1 and \
        not served.startswith(mistakes.NO_ANSWER)
    return 0 if ok else 1


def _trace_strict(lab: Lab, trace_dir: str, names: Mapping[str, str]) -> None:
    frames = _client_frames(trace_dir)
    director = mistakes.pcap_frames(_read(os.path.join(trace_dir, "director-eth0.pcap")))
    facts = [f"on the client's wire: {mistakes.echo_facts(frames, lab.vip, names)}",
             f"on director 1's wire: {mistakes.echo_facts(director, lab.vip, names)}",
             *mistakes.syn_facts(frames, lab.vip, names)]
    lines = mistakes.trace_lines(frames, lab.vip, names)
    _write_trace(lab, trace_dir, "vrrp-strict", facts, lines)
    print(f"\nin the trace (client-eth0.pcap and director-eth0.pcap in {trace_dir}):")
    print("".join(f"  {fact}\n" for fact in facts), end="")
    print("  frame by frame, on the client's wire:")
    print("".join(f"    {line}\n" for line in lines), end="")


def _write_trace(lab: Lab, trace_dir: str, name: str, facts: list[str],
                 lines: list[str]) -> None:
    with open(os.path.join(trace_dir, "trace.txt"), "w") as fh:
        fh.write(f"pylvs lab dr --ha --mistake {name}: the client's wire (client-eth0.pcap), "
                 f"the frames about {lab.vip}\n\n")
        fh.write("".join(f"{fact}\n" for fact in facts) + "\n")
        fh.write("".join(f"{line}\n" for line in lines))


def _client_frames(trace_dir: str) -> list[tuple[float, bytes]]:
    return mistakes.pcap_frames(_read(os.path.join(trace_dir, "client-eth0.pcap")))


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _request(lab: Lab) -> str:
    done = lab.run_in(lab.client_ns, curl_argv(lab.url(), mistakes.CURL_TIME),
                      capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else \
        f"{mistakes.NO_ANSWER} ({done.stderr.strip()})"


def _names(lab: Lab) -> dict[str, str]:
    """Each host's eth0 MAC → its name in the report."""
    hosts = {"client": lab.client_ns, "director": lab.director_ns,
             "director2": lab.director2_ns, **dict(zip(lab.server_names, lab.server_ns,
                                                       strict=True))}
    names = {}
    for name, ns in hosts.items():
        out = lab.run_in(ns, ["ip", "-j", "link", "show", "eth0"], capture_output=True,
                         text=True, check=True).stdout
        names[json.loads(out)[0]["address"]] = name
    return names


def _answers_line(lab: Lab, macs: list[str], names: Mapping[str, str]) -> str:
    hosts = f"{len(macs)} host{'s' * (len(macs) != 1)} answer{'s' * (len(macs) == 1)}"
    return f"who has {lab.vip}? {hosts}: " + ", ".join(
        f"{names.get(mac, 'an unknown host')} ({mac})" for mac in macs)


def _neighbour(lab: Lab) -> str:
    out = lab.run_in(lab.client_ns, ["ip", "-j", "neigh", "show", lab.vip],
                     capture_output=True, text=True, check=True).stdout
    return next((n.get("lladdr", "") for n in json.loads(out or "[]")), "")


def _neighbour_line(lab: Lab, names: Mapping[str, str]) -> str:
    mac = _neighbour(lab)
    return f"the client's neighbour table: {lab.vip} is at {mac} ({names.get(mac, 'nobody')})"


def _pylvs_tables(lab: Lab, ns: str) -> list[str]:
    """The nftables tables a pylvs director made in ``ns`` (its steal rules)."""
    out = lab.run_in(ns, ["nft", "list", "tables"], capture_output=True, text=True,
                     check=True).stdout
    return [line.split()[-1] for line in out.splitlines() if " pylvs_" in line]


def _children(pid: int) -> list[int]:
    """The processes ``pid`` forked (a director's: its guard)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(child) for child in fh.read().split()]
    return found

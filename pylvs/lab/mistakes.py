"""`pylvs lab MODE --mistake NAME`: the real-server mistakes the course notes warn about, made.

The lab's real servers do their steps with one mistake; the lab runs as usual, then shows what
broke (looked at in the lab itself: who answers ARP for the VIP, where the real servers route
the client, which kernel counters moved, what the trace saw) and runs
`pylvs realserver --check` in each real server to name the cause.

- ``arp`` (DR): the VIP on lo, but no arp_ignore/arp_announce. Every real server answers the
  client's ARP for the VIP; the client keeps the first answer and sends straight to that real
  server: the director sees nothing and balancing stops.
- ``netmask`` (DR): the VIP on lo as a /24. The kernel makes the whole subnet local: the real
  servers' answers to the client loop back into themselves, and every request times out.
- ``rp_filter`` (TUN): strict rp_filter, as some distributions set it. The unwrapped packets
  arrive on the tunnel device from a client routed elsewhere: the kernel drops them.
- ``route`` (NAT): no default route via the director. The real servers cannot answer the
  client at all.

The definitions, the steps and the reading of what was seen are pure; the few functions that
look into the lab (``observe``, ``run_checks``, ``who_has``) say so.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pylvs.lab.topology import Lab

NO_ANSWER = "no answer"
CURL_TIME = 2  # seconds a request of a broken lab may take before it counts as unanswered
ARP_WAIT = 0.5


@dataclass(frozen=True)
class Mistake:
    name: str
    mode: str
    summary: str
    """What the real servers do wrong."""
    cause: str
    """What --check must name: a word of each wrong step it reports."""
    lesson: str
    """Why it breaks, for --explain."""


MISTAKES = {m.name: m for m in (
    Mistake("arp", "dr", "the real servers put the VIP on lo but skip the ARP sysctls "
            "(arp_ignore and arp_announce left at 0)", "arp_",
            "With arp_ignore=0 a Linux host answers ARP for any address it holds, on any "
            "interface: the VIP on lo included. The client asks who has the VIP, the director "
            "and every real server answer, and the client keeps the first answer it gets. If "
            "that is a real server's, the client sends every frame for the VIP to that real "
            "server's MAC: the director never sees them, the scheduler never runs, and one real "
            "server takes all the load. With arp_announce=0 a real server's own ARP requests "
            "also name the VIP as their sender, which teaches its neighbours the same wrong MAC."),
    Mistake("netmask", "dr", "the real servers put the VIP on lo as a /24 (netmask "
            "255.255.255.0), not a /32", "the VIP on lo",
            "An address on lo with a /24 makes the kernel add a `local` route for the whole /24 "
            "(on lo, a prefix is taken as local, not as a segment). The real server then takes "
            "every address of the client's subnet as its own: the SYN-ACK it sends the client "
            "is delivered back to itself, where it resets its own half-open connection. Nothing "
            "leaves it, and every request times out: the loop the notes warn about "
            "(255.255.255.255, not 255.255.255.0)."),
    Mistake("rp_filter", "tun", "the real servers' rp_filter is strict (all.rp_filter=1, as "
            "some distributions set it), after the decapsulator turned it off", "rp_filter",
            "The director's packet arrives wrapped on eth0; once unwrapped, the inner packet "
            "arrives on the tunnel device with the client as its source. Strict rp_filter "
            "(1) keeps a packet only if the route back to its source goes out the interface it "
            "came in on; the route to the client goes out eth0, not the tunnel device, so the "
            "kernel drops every unwrapped packet. rp_filter must be 0 (or 2, loose) there, and "
            "the kernel uses the larger of all's value and the device's."),
    Mistake("route", "nat", "the real servers keep no default route via the director",
            "default route",
            "The NAT director rewrites only the destination: the real server sees the client's "
            "own address and must send its answer back through the director, which puts the "
            "VIP back as the source. With no route to the client's subnet the real server "
            "cannot send its SYN-ACK at all (network unreachable), and the director's table "
            "stays at SYN_RECV."),
)}


def for_mode(mode: str) -> list[str]:
    return [m.name for m in MISTAKES.values() if m.mode == mode]


def validate(mode: str, name: str) -> Mistake:
    """The mistake ``name`` of a ``mode`` lab, or ValueError saying which ones there are."""
    mistake = MISTAKES.get(name)
    if mistake is None or mistake.mode != mode:
        known = "; ".join(f"{mode}: {', '.join(for_mode(mode))}"
                          for mode in dict.fromkeys(m.mode for m in MISTAKES.values()))
        raise ValueError(f"no mistake {name!r} for a {mode} lab (there are {known})")
    return mistake


# -- the mistaken steps ------------------------------------------------------------------------

Step = tuple[list[str] | None, str]
"""A command a real server runs (None: a step it leaves out) and a note on it."""


def dr_steps(name: str, vip: str, ifname: str) -> list[Step]:
    """What a DR real server does instead of `pylvs realserver --mode dr`."""
    lo = ["ip", "addr", "add", f"{vip}/32", "dev", "lo"]
    if name == "arp":
        return [(None, "no arp_ignore, no arp_announce: the mistake"), (lo, "")]
    sysctls: list[Step] = [(["sysctl", "-qw", f"net.ipv4.conf.{i}.{key}={value}"], "")
                           for i in ("all", ifname)
                           for key, value in (("arp_ignore", 1), ("arp_announce", 2))]
    return [*sysctls, (["ip", "addr", "add", f"{vip}/24", "dev", "lo"],
                       "the mistake: /24, not /32")]


def tun_steps(name: str) -> list[Step]:
    """Run after the decapsulator is up."""
    return [(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"], "the mistake: strict rp_filter")]


def nat_steps(name: str) -> list[Step]:
    return [(None, "no `ip route replace default via` the director: the mistake")]


def step_line(step: Step) -> str:
    argv, note = step
    if argv is None:
        return f"({note})"
    text = " ".join(argv).replace("sysctl -qw", "sysctl -w")
    return f"{text}   <- {note}" if note else text


# -- reading what was seen (pure) --------------------------------------------------------------

def netstat_counters(text: str) -> dict[str, int]:
    """/proc/net/netstat (and /proc/net/snmp): ``TcpExt:`` header and value lines in pairs."""
    counters: dict[str, int] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, names = header.partition(":")
        for key, value in zip(names.split(), values.partition(":")[2].split(), strict=False):
            counters[f"{prefix}{key}"] = int(value)
    return counters


def connections_seen(listing: str) -> int:
    """ActiveConn + InActConn over the real servers of an `-Ln` listing."""
    total = 0
    for line in listing.splitlines():
        parts = line.split()
        if line.startswith("  -> ") and len(parts) >= 6 and parts[4].isdigit():
            total += int(parts[4]) + int(parts[5])
    return total


def owner(mac: str, hosts: Mapping[str, Mapping[str, Any]]) -> str:
    return next((name for name, host in hosts.items() if mac in host["mac"]), "an unknown host")


def trace_facts(manifest: Mapping[str, Any], vip: str) -> list[str]:
    """What the trace of the first connection shows of a broken lab."""
    hops = manifest.get("hops") or []
    facts = []
    answers = [hop["wires"][0]["fields"]["eth.src_host"] for hop in hops
               if hop["kind"] == "arp" and hop["packet"].startswith(f"ARP: {vip} is at")]
    if len(answers) == 1:
        facts.append(f"only the {answers[0]} answered ARP for {vip}")
    elif answers:
        facts.append(f"{len(answers)} hosts answered ARP for {vip}: {', '.join(answers)}")
    syn = next((hop for hop in hops if hop["packet"].startswith("SYN") and
                hop.get("side") == "client"), None)
    if syn is None:
        return facts + ["no SYN to the VIP was captured"]
    path = list(dict.fromkeys(obs["host"] for obs in syn["wires"]))
    bypass = "" if "director" in path else ": never through the director"
    facts.append(f"the SYN went {' → '.join(path)}{bypass}")
    synack = next((hop for hop in hops if hop["packet"].startswith("SYN-ACK")), None)
    if synack is None:
        facts.append(f"no SYN-ACK appears on any wire: {path[-1]}'s answer never left it")
    else:
        back = list(dict.fromkeys(obs["host"] for obs in synack["wires"]))
        facts.append(f"the SYN-ACK went {' → '.join(back)}")
    return facts


def answers_line(answers: Mapping[str, int]) -> str:
    served = {k: v for k, v in answers.items() if k != NO_ANSWER}
    total = sum(answers.values())
    if not served:
        return f"none of the {total} requests got an answer"
    if len(served) == 1 and total > 1:
        name, count = next(iter(served.items()))
        return f"{name} answered {count} of the {total} requests: no balancing"
    return "answers: " + ", ".join(f"{k}={v}" for k, v in sorted(answers.items()))


def summary_line(output: str) -> str:
    """The last line of a --check report: "N of M steps wrong: ..." or "all M steps right"."""
    lines = output.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def named(mistake: Mistake, rc: int, output: str) -> bool:
    """--check named the cause: it failed, and a wrong step is the mistake's."""
    return rc == 1 and mistake.cause in summary_line(output).partition(":")[2]


# -- looking into the lab ----------------------------------------------------------------------

def who_has(ifname: str, source_ip: str, target: str, wait: float = ARP_WAIT) -> list[str]:
    """Broadcast one ARP request for ``target`` on ``ifname`` and return the MACs that answer,
    in the order their answers arrive. Run in the asking host's namespace."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    try:
        sock.bind((ifname, 0x0806))
        mac = sock.getsockname()[4]
        request = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                   + mac + socket.inet_aton(source_ip) + b"\x00" * 6 + socket.inet_aton(target))
        sock.send(request)
        return _arp_replies(sock, target, time.monotonic() + wait)
    finally:
        sock.close()


def _arp_replies(sock: socket.socket, target: str, deadline: float) -> list[str]:
    macs: list[str] = []
    want = socket.inet_aton(target)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            break
        if len(frame) >= 42 and frame[20:22] == b"\x00\x02" and frame[28:32] == want:
            sender = frame[22:28].hex(":")
            if sender not in macs:
                macs.append(sender)
    return macs


_WHO_HAS = ("import json, sys\nfrom pylvs.lab.mistakes import who_has\n"
            "print(json.dumps(who_has(*sys.argv[1:4])))\n")


def observe(lab: Lab, mistake: Mistake, hosts: Mapping[str, Mapping[str, Any]],
            answers: Mapping[str, int], listing: str) -> list[str]:
    """In the lab: what the mistake broke. ``hosts``: capture.describe_hosts (for MACs)."""
    seen = [answers_line(answers)]
    director = connections_seen(listing)
    seen.append(f"the director's table counts {director} connection{'s' * (director != 1)} "
                f"for {sum(answers.values())} requests")
    if mistake.name == "arp":
        return seen + _observe_arp(lab, hosts)
    for i, (ns, name) in enumerate(zip(lab.server_ns, lab.server_names, strict=True)):
        way, counters = _server_facts(lab, ns)
        seen.append(server_line(mistake, name, lab.client_ip, way, counters, first=i == 0))
    return seen


def _observe_arp(lab: Lab, hosts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    entry = lab.run_in(lab.client_ns, ["ip", "-j", "neigh", "show", lab.vip],
                       capture_output=True, text=True, check=True).stdout
    learned = [n.get("lladdr", "") for n in json.loads(entry or "[]")]
    seen = []
    if learned and learned[0]:
        seen.append(f"the client's neighbour table: {lab.vip} is at {learned[0]} "
                    f"({owner(learned[0], hosts)})")
        seen.append(_who_won(owner(learned[0], hosts), lab.server_names))
    out = lab.run_in(lab.client_ns, [sys.executable, "-c", _WHO_HAS, "eth0", lab.client_ip,
                                     lab.vip], capture_output=True, text=True, check=True).stdout
    macs = json.loads(out)
    seen.append(f"asked again, who has {lab.vip}? {len(macs)} hosts answer: "
                + ", ".join(f"{owner(m, hosts)} ({m})" for m in macs))
    return seen


def _who_won(winner: str, servers: Sequence[str]) -> str:
    if winner in servers:
        return (f"so the client sends every frame for the VIP straight to {winner}: the "
                f"director, which holds the VIP, never sees them")
    return (f"the {winner}'s answer came first this time, so the client still goes through it; "
            f"but {', '.join(servers)} answer too, and any of them may win the next ARP")


def _server_facts(lab: Lab, ns: str) -> tuple[str, dict[str, int]]:
    """How the real server would reach the client, and its kernel's counters."""
    route = lab.run_in(ns, ["ip", "route", "get", lab.client_ip], capture_output=True,
                       text=True)
    way = (route.stdout.splitlines() or [""])[0].replace(" uid 0", "").strip()
    counters = netstat_counters(lab.run_in(ns, ["cat", "/proc/net/netstat"], capture_output=True,
                                           text=True, check=True).stdout)
    return way or route.stderr.strip(), counters


COUNTER = {"netmask": "TcpExtEmbryonicRsts", "rp_filter": "TcpExtIPReversePathFilter"}


def server_line(mistake: Mistake, name: str, client: str, way: str,
                counters: Mapping[str, int], first: bool) -> str:
    """What one real server shows of the mistake; after the first, only the facts."""
    key = COUNTER.get(mistake.name)
    count = f"{key} = {counters.get(key, 0)}" if key else ""
    if not first:
        return f"in {name}: the same: `{way}`" + (f", {count}" if count else "")
    if mistake.name == "netmask":
        return (f"in {name}: ip route get {client} says `{way}`: the client's address is "
                f"{name}'s own, so its SYN-ACKs went to itself, and it reset its own half-open "
                f"connections ({count})")
    if mistake.name == "route":
        return (f"in {name}: ip route get {client} says `{way}`: {name} has no way back to the "
                f"client, so it never sent its SYN-ACKs")
    return (f"in {name}: the kernel dropped the unwrapped packets by rp_filter ({count}), "
            f"though its route to the client is `{way}`: not through the tunnel device")


def check_argv(lab: Lab, mode: str) -> list[str]:
    """`pylvs realserver --check` as the lab runs it in a real server of ``mode``."""
    argv = [sys.executable, "-m", "pylvs", "realserver", "--check", "--mode", mode, "--vip",
            lab.vip]
    if mode == "dr":
        argv += ["--interface", "eth0"]
    elif mode == "nat":
        argv += ["--director", lab.director_inside_ip]
    return argv


def run_checks(lab: Lab) -> list[tuple[str, str, int, str]]:
    """--check in each real server: (name, the command as typed, exit status, report)."""
    results = []
    for ns, name, mode in zip(lab.server_ns, lab.server_names, lab.server_modes, strict=True):
        argv = check_argv(lab, mode)
        done = lab.run_in(ns, argv, capture_output=True, text=True)
        typed = " ".join(["ip", "netns", "exec", ns, "pylvs", *argv[3:]])
        results.append((name, typed, done.returncode, done.stdout + done.stderr))
    return results


def checks_text(mistake: Mistake, results: Sequence[tuple[str, str, int, str]]
                ) -> tuple[str, bool]:
    """The report of the checks (the first in full, the others by their summary) and whether
    every one named the cause."""
    if not results:
        return "", False
    _, typed, rc, output = results[0]
    lines = [f"$ {typed}   (exit {rc})"]
    lines += [f"    {line}" for line in output.rstrip("\n").splitlines()]
    lines += [f"  {name}: exit {code}: {summary_line(out)}" for name, _, code, out in results[1:]]
    return "\n".join(lines) + "\n", all(named(mistake, code, out)
                                        for _, _, code, out in results)

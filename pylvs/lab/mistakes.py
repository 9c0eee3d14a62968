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

Two more are the notes' lesson 4, keepalived's troubles, made in the two-director lab
(`pylvs lab dr --ha --mistake NAME`, pylvs/lab/failover.py runs them):

- ``no-cleanup``: the MASTER is killed with SIGKILL together with its guard, as keepalived
  killed with -9 is: its VIP stays on its interface, the backup takes the VIP too, and both
  answer ARP for it.
- ``vrrp-strict``: keepalived's ``vrrp_strict``: as MASTER it drops every IP packet to the VIP
  on the input hook; the VIP still answers ARP, but not ping.

The definitions, the steps and the reading of what was seen are pure; the few functions that
look into the lab (``observe``, ``run_checks``, ``who_has``, ``echo``, ``ask_who_has``) say so;
the two-director ones read their trace with ``pcap_frames``, ``decode`` and ``trace_lines``.
"""

from __future__ import annotations

import json
import os
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
    ha: bool = False
    """A mistake of the two-director lab (`pylvs lab dr --ha --mistake NAME`): of the
    directors, not the real servers; ``cause`` is what its report must name."""


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
            "leaves it, so no answer reaches the client: the loop the notes warn about "
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
            "cannot send its SYN-ACK at all (network unreachable), so no handshake ends."),
    Mistake("no-cleanup", "dr", "the MASTER director is killed with SIGKILL together with "
            "its guard, so nothing removes its VIP: what keepalived killed with -9 leaves",
            "nothing removed the killed director's VIP",
            "A VIP is only an address on an interface: it stays until something deletes it. "
            "keepalived deletes its VIPs when it leaves MASTER or stops; killed with SIGKILL "
            "it runs no code, and the address stays on the dead master's interface, whose "
            "kernel goes on answering ARP for it. The backup hears no more adverts, becomes "
            "MASTER after Master_Down_Interval and adds the VIP too: two hosts answer every "
            "ARP request for it. A Linux client keeps the first answer (a second one within "
            "its locktime, 1 s, is ignored), so each fresh ARP is a race between the two, and "
            "the backup's gratuitous ARPs fix only the clients that hear them. What reaches "
            "the dead pylvs director is lost (its steal rules still drop the services' frames "
            "and no process forwards them); under keepalived the kernel's IPVS table outlives "
            "it, so the dead master still forwards, with no health checks and no sync. "
            "keepalived's own answer: started again, it deletes its instances' VIPs before "
            "it enters BACKUP (vrrp_restore_interfaces_startup), then the higher priority "
            "takes the master back with gratuitous ARPs. pylvs's answer is its guard, a "
            "process of its own that removes the VIP when the director dies, however it "
            "dies; only a kill of both at once (the whole process group or cgroup: `systemctl "
            "kill -s KILL`, an OOM kill of the service) leaves the VIP behind, as here.",
            ha=True),
    Mistake("vrrp-strict", "dr", "keepalived's vrrp_strict (global_defs): as MASTER it "
            "installs nftables rules that drop every IP packet to the VIP",
            "vrrp_strict",
            "vrrp_strict makes keepalived follow the VRRP RFCs to the letter. RFC 5798 says a "
            "master that is not the address owner (priority 255) must not accept packets "
            "addressed to the VIP unless Accept_Mode is on; under vrrp_strict accept defaults "
            "to off, and for VRRPv2, which has no accept mode, keepalived resets `accept` "
            "with a warning. It enforces that with a firewall table: nftables `table ip "
            "keepalived`, `ip daddr @vips drop` on the input hook at priority filter - 1 (and "
            "`ip saddr @vips drop` on output). The VIP stays on the interface and still "
            "answers ARP (ARP is not IP, the table never sees it), but every IP packet to "
            "it is dropped before the kernel's ICMP code: ping gets no answer. The kernel's "
            "IPVS hooks LOCAL_IN at priorities 98 and 99, after that filter, so under "
            "keepalived the virtual services on the VIP are cut off too; pylvs reads their "
            "frames at the interface, before netfilter, so in this lab HTTP still works and "
            "only what the director's own kernel answers (ping, a local service on the VIP) "
            "is lost. The fix: no vrrp_strict (the notes' fix), or `accept` with `version "
            "3`. vrrp_strict also ignores authentication: the lab's directors run without.",
            ha=True),
)}


def for_mode(mode: str, ha: bool = False) -> list[str]:
    return [m.name for m in MISTAKES.values() if m.mode == mode and m.ha == ha]


def validate(mode: str, name: str, ha: bool = False) -> Mistake:
    """The mistake ``name`` of a ``mode`` lab (``ha``: of two directors), or ValueError saying
    which ones there are."""
    mistake = MISTAKES.get(name)
    if mistake is None or mistake.mode != mode or mistake.ha != ha:
        labs = dict.fromkeys((m.mode, m.ha) for m in MISTAKES.values())
        known = "; ".join(f"{mode}{' --ha' * ha}: {', '.join(for_mode(mode, ha))}"
                          for mode, ha in labs)
        lab = f"a {mode} lab{' with --ha' * ha}"
        raise ValueError(f"no mistake {name!r} for {lab} (there are {known})")
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


# -- the two-director mistakes: their trace and their observations -----------------------------

Decoded = dict[str, Any]
ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
IPPROTO_VRRP = 112
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9)}


def pcap_frames(data: bytes) -> list[tuple[float, bytes]]:
    """The (time, frame) records of a classic pcap file (micro- or nanosecond, either byte
    order), as tcpdump -w writes them."""
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise ValueError("not a pcap file")
    order, scale = _PCAP_MAGIC[data[:4]]
    frames, offset = [], 24
    while offset + 16 <= len(data):
        seconds, fraction, length, _ = struct.unpack_from(f"{order}IIII", data, offset)
        offset += 16
        frames.append((seconds + fraction / scale, data[offset:offset + length]))
        offset += length
    return frames


def decode(frame: bytes) -> Decoded | None:
    """What the two-director labs look for in a frame: ARP, ICMP echo, TCP's flags and ports,
    VRRP's router id and priority (IPv4 only); None for anything else."""
    if len(frame) < 14:
        return None
    seen: Decoded = {"dst": frame[0:6].hex(":"), "src": frame[6:12].hex(":")}
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == ETH_P_ARP and len(frame) >= 42:
        seen.update(kind="arp", op=struct.unpack_from("!H", frame, 20)[0],
                    sha=frame[22:28].hex(":"), spa=socket.inet_ntoa(frame[28:32]),
                    tpa=socket.inet_ntoa(frame[38:42]))
        return seen
    if ethertype != ETH_P_IP or len(frame) < 34 or frame[14] >> 4 != 4:
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    seen.update(saddr=socket.inet_ntoa(frame[26:30]), daddr=socket.inet_ntoa(frame[30:34]))
    proto = frame[23]
    if proto == socket.IPPROTO_ICMP and len(frame) >= l4 + 1:
        seen.update(kind="icmp", type=frame[l4])
    elif proto == socket.IPPROTO_TCP and len(frame) >= l4 + 14:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        seen.update(kind="tcp", sport=sport, dport=dport, flags=frame[l4 + 13])
    elif proto == IPPROTO_VRRP and len(frame) >= l4 + 3:
        seen.update(kind="vrrp", vrid=frame[l4 + 1], priority=frame[l4 + 2])
    else:
        return None
    return seen


def _tcp_words(flags: int) -> str:
    if flags & TCP_RST:
        return "RST"
    if flags & TCP_SYN:
        return "SYN-ACK" if flags & TCP_ACK else "SYN"
    return ""


def event_text(seen: Decoded, vip: str, names: Mapping[str, str]) -> str | None:
    """One line of the trace for a frame about the VIP (who sent it to whom, and what), or
    None for frames the two-director labs leave out (VRRP included: see vrrp_line)."""
    sender = names.get(seen["src"], seen["src"])
    to = "all" if seen["dst"] == "ff:ff:ff:ff:ff:ff" else names.get(seen["dst"], seen["dst"])
    kind = seen.get("kind")
    what = None
    if kind == "arp" and vip in (seen["spa"], seen["tpa"]):
        if seen["spa"] == seen["tpa"]:
            what = f"gratuitous ARP: {vip} is at {seen['sha']}"
        elif seen["op"] == 1 and seen["tpa"] == vip:
            what = f"ARP who has {vip}? tell {seen['spa']}"
        elif seen["op"] == 2 and seen["spa"] == vip:
            what = f"ARP {vip} is at {seen['sha']} ({names.get(seen['sha'], 'unknown')})"
    elif kind == "icmp" and vip in (seen["saddr"], seen["daddr"]) and \
            seen["type"] in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        word = "request" if seen["type"] == ICMP_ECHO_REQUEST else "reply"
        what = f"ICMP echo {word} {seen['saddr']} → {seen['daddr']}"
    elif kind == "tcp" and vip in (seen["saddr"], seen["daddr"]) and \
            (word := _tcp_words(seen["flags"])):
        what = f"{word} {seen['saddr']}:{seen['sport']} → {seen['daddr']}:{seen['dport']}"
    return None if what is None else f"{sender} → {to}: {what}"


def trace_lines(frames: Sequence[tuple[float, bytes]], vip: str, names: Mapping[str, str]
                ) -> list[str]:
    """The frames about the VIP, one line each, timed from the first frame."""
    start = frames[0][0] if frames else 0.0
    lines = []
    for when, frame in frames:
        seen = decode(frame)
        text = None if seen is None else event_text(seen, vip, names)
        if text is not None:
            lines.append(f"{when - start:7.3f} s  {text}")
    return lines


def vrrp_line(frames: Sequence[tuple[float, bytes]], names: Mapping[str, str]) -> str:
    """Who advertised, at which priority, from when to when (times as trace_lines's)."""
    start = frames[0][0] if frames else 0.0
    spans: dict[tuple[str, int], list[float]] = {}
    for when, frame in frames:
        seen = decode(frame)
        if seen is not None and seen.get("kind") == "vrrp":
            key = (names.get(seen["src"], seen["src"]), seen["priority"])
            spans.setdefault(key, []).append(when - start)
    if not spans:
        return "no VRRP advert"
    return "VRRP adverts: " + "; ".join(
        f"{who}, priority {priority}: {len(times)} from {times[0]:.3f} s to {times[-1]:.3f} s"
        for (who, priority), times in spans.items())


def gratuitous_line(frames: Sequence[tuple[float, bytes]], vip: str,
                    names: Mapping[str, str]) -> str:
    """Who sent gratuitous ARPs for the VIP, how many, in which bursts (a burst: within 1 s)."""
    start = frames[0][0] if frames else 0.0
    bursts: dict[str, list[list[float]]] = {}
    for when, frame in frames:
        seen = decode(frame)
        if seen is None or seen.get("kind") != "arp" or not seen["spa"] == seen["tpa"] == vip:
            continue
        mine = bursts.setdefault(names.get(seen["sha"], seen["sha"]), [])
        if not mine or when - start - mine[-1][0] > 1.0:
            mine.append([])
        mine[-1].append(when - start)
    if not bursts:
        return f"no gratuitous ARP for {vip}"
    return f"gratuitous ARPs for {vip}: " + "; ".join(
        f"{who}, " + " and ".join(f"{len(burst)} at {burst[0]:.3f} s" for burst in mine)
        for who, mine in bursts.items())


def arp_answers(frames: Sequence[tuple[float, bytes]], vip: str,
                names: Mapping[str, str]) -> list[str]:
    """Who answered an ARP request for the VIP (gratuitous ARPs are no answer), each once."""
    who = []
    for _, frame in frames:
        seen = decode(frame)
        if seen is not None and seen.get("kind") == "arp" and seen["op"] == 2 and \
                seen["spa"] == vip and seen["tpa"] != vip:
            who.append(names.get(seen["sha"], seen["sha"]))
    return list(dict.fromkeys(who))


def syn_facts(frames: Sequence[tuple[float, bytes]], vip: str,
              names: Mapping[str, str]) -> list[str]:
    """Where the client's SYNs to the VIP went (by destination MAC) and which got a SYN-ACK."""
    syns: dict[int, str] = {}
    answered: dict[int, str] = {}
    for _, frame in frames:
        seen = decode(frame)
        if seen is None or seen.get("kind") != "tcp":
            continue
        if seen["daddr"] == vip and _tcp_words(seen["flags"]) == "SYN":
            syns.setdefault(seen["sport"], names.get(seen["dst"], seen["dst"]))
        elif seen["saddr"] == vip and _tcp_words(seen["flags"]) == "SYN-ACK":
            answered.setdefault(seen["dport"], names.get(seen["src"], seen["src"]))
    facts = []
    for host in dict.fromkeys(syns.values()):
        ports = [port for port, to in syns.items() if to == host]
        got = [answered[port] for port in ports if port in answered]
        back = f" (SYN-ACK from {', '.join(got)})" if got else ""
        facts.append(f"{len(ports)} SYN{'s' * (len(ports) != 1)} to the VIP sent to {host}'s "
                     f"MAC: {len(got)} answered{back}")
    return facts


def echo_facts(frames: Sequence[tuple[float, bytes]], vip: str,
               names: Mapping[str, str]) -> str:
    """How many echo requests went to the VIP (and to whose MAC), and how many replies came."""
    requests: list[str] = []
    replies = 0
    for _, frame in frames:
        seen = decode(frame)
        if seen is None or seen.get("kind") != "icmp":
            continue
        if seen["daddr"] == vip and seen["type"] == ICMP_ECHO_REQUEST:
            requests.append(names.get(seen["dst"], seen["dst"]))
        elif seen["saddr"] == vip and seen["type"] == ICMP_ECHO_REPLY:
            replies += 1
    to = ", ".join(dict.fromkeys(requests)) or "nobody"
    return (f"{len(requests)} ICMP echo request{'s' * (len(requests) != 1)} to {vip} "
            f"(to {to}'s MAC), {replies} echo repl{'ies' if replies != 1 else 'y'}")


def keepalived_strict_ruleset(vips: Sequence[str]) -> str:
    """What keepalived's vrrp_strict installs as MASTER, as `nft list table ip keepalived`
    shows it (keepalived/vrrp/vrrp_nftables.c: nft_setup_ipv4 and nft_setup_ipv4_vips; the
    chains' priority is vrrp_nf_chain_priority, -1 by default)."""
    return ("table ip keepalived {\n"
            "\tset vips {\n\t\ttype ipv4_addr\n"
            f"\t\telements = {{ {', '.join(vips)} }}\n\t}}\n\n"
            "\tchain out {\n"
            "\t\ttype filter hook output priority filter - 1; policy accept;\n"
            "\t\tip saddr @vips drop\n\t}\n\n"
            "\tchain in {\n"
            "\t\ttype filter hook input priority filter - 1; policy accept;\n"
            "\t\tip daddr @vips drop\n\t}\n"
            "}\n")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, sequence: int, payload: bytes = b"pylvs lab") -> bytes:
    """An ICMP echo request (RFC 792), checksum filled in."""
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, sequence)
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum, ident, sequence) + payload


def echo(target: str, count: int = 3, wait: float = 1.0, gap: float = 0.2) -> int:
    """``count`` ICMP echo requests to ``target``, one every ``gap`` s, and how many got a
    reply within ``wait`` s of the last: a `ping` of our own (raw socket, root), since the
    labs' hosts need not have iputils. Run in the asking host's namespace."""
    ident = os.getpid() & 0xFFFF
    answered: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for sequence in range(count):
            sock.sendto(echo_request(ident, sequence), (target, 0))
            _echo_replies(sock, target, ident, answered, time.monotonic() + gap)
        _echo_replies(sock, target, ident, answered, time.monotonic() + wait)
    return len(answered)


def _echo_replies(sock: socket.socket, target: str, ident: int, answered: set[int],
                  deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet, (source, _) = sock.recvfrom(2048)
        except TimeoutError:
            return
        l4 = (packet[0] & 0x0F) * 4
        if source == target and len(packet) >= l4 + 8 and packet[l4] == ICMP_ECHO_REPLY:
            their_ident, sequence = struct.unpack_from("!HH", packet, l4 + 4)
            if their_ident == ident:
                answered.add(sequence)


_ECHO = ("import sys\nfrom pylvs.lab.mistakes import echo\n"
         "print(echo(sys.argv[1], int(sys.argv[2])))\n")


def ask_echo(lab: Lab, target: str, count: int = 3) -> int:
    """In the lab: the client pings ``target`` ``count`` times; how many were answered."""
    out = lab.run_in(lab.client_ns, [sys.executable, "-c", _ECHO, target, str(count)],
                     capture_output=True, text=True, check=True).stdout
    return int(out)


def ask_who_has(lab: Lab) -> list[str]:
    """In the lab: the client broadcasts one ARP request for the VIP; the MACs that answer."""
    out = lab.run_in(lab.client_ns, [sys.executable, "-c", _WHO_HAS, "eth0", lab.client_ip,
                                     lab.vip], capture_output=True, text=True, check=True).stdout
    return json.loads(out)

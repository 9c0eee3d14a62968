"""The seed's real-server steps for DR and TUN, done on the host (or namespace) this runs in.

A DR real server must accept packets addressed to the VIP, so the VIP sits on ``lo`` as a /32;
and it must never answer ARP for it, or the client's neighbours would learn the real server's MAC
for the VIP and bypass the director. ``arp_ignore=1`` answers ARP only for addresses on the
interface asked; ``arp_announce=2`` never uses the VIP as the source of its own ARP requests.

An IPv6 VIP needs only the /128 on ``lo`` (added ``nodad``): the kernel answers a Neighbor
Solicitation only for an address on the device it arrived on (``ndisc_recv_ns``), and names an
address as the source of its own solicitations only if it is on the sending device
(``ndisc_solicit``): IPv6 has no arp_ignore or arp_announce, and needs none.

A TUN real server unwraps what the director sends by ``--tun-type`` (ipvsadm's, issue 24):
IP-in-IP (the default; ip6ip6, 4in6 or 6in4 by the families), GUE on a UDP port
(``--tun-port``) or GRE. Where the kernel has the modules (ipip, ip6_tunnel and sit; fou; ip_gre)
it does the unwrapping (``decap.kernel_steps``); where it has not, a userspace decapsulator
does (pylvs.lab.decap), and the steps a kernel with them would take are printed too.

``check`` reads this host's state for `pylvs realserver --check` and hands it to
`realserver_check`, which judges it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable

from pylvs.lab import decap
from pylvs.lab import realserver_check as judge

SYSCTL_DIR = "/proc/sys/net/ipv4/conf"
SYSCTL_DIR6 = "/proc/sys/net/ipv6/conf"
CHECKED_SYSCTLS6 = ("disable_ipv6", "accept_dad", "forwarding")
DR_SYSCTLS = (("arp_ignore", 1), ("arp_announce", 2))
CHECKED_SYSCTLS = ("arp_ignore", "arp_announce", "rp_filter")
PROBE_TIMEOUT = 2.0


NO_ARP_IGNORE6 = ("no arp_ignore or arp_announce for IPv6: {ifname} answers a Neighbor "
                  "Solicitation only for its own addresses (ndisc_recv_ns), never for the VIP "
                  "on lo")


def configure_dr(vip: str, interface: str | None = None, undo: bool = False) -> list[str]:
    """Do (or undo) the DR steps; returns one line per step, as a person would have typed it."""
    vip = _check_vip(vip)
    if ":" in vip:
        return _configure_dr6(vip, interface, undo)
    interfaces = ["all", "lo"]
    if interface and interface not in interfaces:
        if not os.path.isdir(os.path.join(SYSCTL_DIR, interface)):
            raise ValueError(f"no such interface: {interface}")
        interfaces.append(interface)
    steps = [_sysctl(ifname, key, 0 if undo else value)
             for ifname in interfaces for key, value in DR_SYSCTLS]
    steps.append(_vip_on_lo(vip, undo))
    return steps


def _configure_dr6(vip: str, interface: str | None, undo: bool) -> list[str]:
    """IPv6: the VIP as a /128 on lo, nothing else (see the module's notes)."""
    if interface and interface != "lo" and not os.path.isdir(
            os.path.join(SYSCTL_DIR6, interface)):
        raise ValueError(f"no such interface (or IPv6 is off on it): {interface}")
    steps = [_vip_on_lo(vip, undo)]
    if not undo:
        steps.append(f"({NO_ARP_IGNORE6.format(ifname=interface or 'every interface')})")
    return steps


def _check_vip(vip: str) -> str:
    """The address in its canonical text (IPv6 compressed, as ip and ipvsadm print it)."""
    try:
        return str(ipaddress.ip_address(vip))
    except ValueError:
        raise ValueError(f"bad VIP {vip!r}: not an IPv4 or IPv6 address") from None


def _check_same_family(vip: str, other: str, what: str) -> str:
    other = _check_vip(other)
    if (":" in other) != (":" in vip):
        raise ValueError(f"{what} {other} is not of the VIP's family ({vip})")
    return other


def _sysctl(ifname: str, key: str, value: int) -> str:
    with open(os.path.join(SYSCTL_DIR, ifname, key), "w") as fh:
        fh.write(f"{value}\n")
    return f"net.ipv4.conf.{ifname}.{key} = {value}"


def _vip_on_lo(vip: str, undo: bool) -> str:
    if ":" in vip:
        argv = ["ip", "-6", "addr", "del" if undo else "add", f"{vip}/128", "dev", "lo",
                *([] if undo else ["nodad"])]
    else:
        argv = ["ip", "addr", "del" if undo else "add", f"{vip}/32", "dev", "lo"]
    done = " ".join(argv)
    if _on_lo(vip) != undo:
        return f"{done} (already {'absent' if undo else 'present'})"
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"{done}: {result.stderr.strip()}")
    return done


def _on_lo(vip: str) -> bool:
    six = ":" in vip
    out = subprocess.run(["ip", "-o", "-6" if six else "-4", "addr", "show", "dev", "lo"],
                         capture_output=True, text=True, check=True).stdout
    return f" {vip}/{128 if six else 32} " in out


def _handle_name(vip: str) -> bytes:
    """The running decapsulator's handle: an abstract unix socket, which belongs to the network
    namespace it is bound in and goes with its process, kill -9 included: no file is left."""
    return f"\0pylvs-tun-{vip}".encode()


def _hold_handle(vip: str) -> socket.socket | None:
    """Bind the handle of this namespace's decapsulator for ``vip``; None if one runs."""
    handle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        handle.bind(_handle_name(vip))
    except OSError:
        handle.close()
        return None
    handle.listen(16)
    handle.setblocking(False)
    return handle


def _answer_probes(handle: socket.socket, description: bytes = b"") -> bool:
    """Accept and close the connections probes (--undo, --check) made to the handle, so its
    queue never fills and blocks the next probe, first telling each what the decapsulator
    unwraps (``description``: ``ipip``, ``gue PORT``, ``gre``); returns False (do not stop)."""
    while True:
        try:
            peer, _ = handle.accept()
        except (BlockingIOError, InterruptedError):
            return False
        with contextlib.suppress(OSError):
            peer.setblocking(False)
            peer.send(description)
        peer.close()


def _running_pid(vip: str) -> int | None:
    """The pid of this namespace's decapsulator for ``vip`` (its handle's peer), or None."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(_handle_name(vip))
        creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[0]
    except OSError:
        return None
    finally:
        probe.close()


def _running_kind(vip: str) -> str | None:
    """What this namespace's decapsulator for ``vip`` unwraps (``ipip``, ``gue PORT``,
    ``gre``), as its handle says; None when none runs (or one too old to say: IP-in-IP)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(_handle_name(vip))
        said = b""
        while chunk := probe.recv(64):
            said += chunk
        return said.decode(errors="replace").strip() or "ipip"
    except OSError:
        return None
    finally:
        probe.close()


def configure_tun_standard(vip: str, undo: bool = False) -> list[str]:
    """The usual TUN real server, where the kernel has ipip: the VIP on tunl0, rp_filter off."""
    vip = _check_vip(vip)
    if ":" in vip:
        return configure_tun_standard6(vip, undo)
    subprocess.run(["ip", "link", "set", "tunl0", "up" if not undo else "down"], check=True,
                   capture_output=True)
    verb = "del" if undo else "add"
    subprocess.run(["ip", "addr", verb, f"{vip}/32", "dev", "tunl0"], capture_output=True)
    steps = [f"ip link set tunl0 {'down' if undo else 'up'}", f"ip addr {verb} {vip}/32 dev tunl0"]
    for ifname in ("all", "tunl0"):
        steps.append(_sysctl(ifname, "rp_filter", 1 if undo else 0))
    return steps


def configure_tun_standard6(vip: str, undo: bool = False) -> list[str]:
    """An IPv6 VIP where the kernel has ip6_tunnel and sit: their catch-all devices ip6tnl0
    (ip6ip6) and sit0 (6in4) up, the VIP on ip6tnl0 as a /128. IPv6 has no rp_filter."""
    state = "down" if undo else "up"
    steps = []
    for device in ("ip6tnl0", "sit0"):
        subprocess.run(["ip", "link", "set", device, state], check=True, capture_output=True)
        steps.append(f"ip link set {device} {state}")
    argv = ["ip", "-6", "addr", "del" if undo else "add", f"{vip}/128", "dev", "ip6tnl0",
            *([] if undo else ["nodad"])]
    subprocess.run(argv, capture_output=True)
    return [*steps, " ".join(argv)]


def configure_gue_standard(vip: str, port: int, undo: bool = False) -> list[str]:
    """GUE where the kernel has fou: a GUE receive port for each outer family (ip-fou(8)),
    then IP-in-IP's usual steps, since fou hands what it unwraps to that handler."""
    steps = []
    for family in ("", "-6 "):
        argv = ["ip", *family.split(), "fou", "del" if undo else "add", "port", str(port),
                *([] if undo else ["gue"])]
        done = subprocess.run(argv, capture_output=True, text=True)
        note = "" if done.returncode == 0 else f"   ({done.stderr.strip() or 'failed'})"
        steps.append(" ".join(argv) + note)
    return [*steps, *configure_tun_standard(vip, undo)]


def configure_gre_standard(vip: str, undo: bool = False) -> list[str]:
    """GRE where the kernel has ip_gre: its catch-all gre0 (and ip6_gre's ip6gre0, if there)
    up, the VIP on gre0, rp_filter off for an IPv4 VIP."""
    state = "down" if undo else "up"
    steps = []
    for device in ("gre0", "ip6gre0"):
        if os.path.isdir(f"/sys/class/net/{device}"):
            subprocess.run(["ip", "link", "set", device, state], check=True, capture_output=True)
            steps.append(f"ip link set {device} {state}")
    verb = "del" if undo else "add"
    if ":" in vip:
        argv = ["ip", "-6", "addr", verb, f"{vip}/128", "dev", "gre0", *([] if undo else
                                                                         ["nodad"])]
        subprocess.run(argv, capture_output=True)
        return [*steps, " ".join(argv)]
    subprocess.run(["ip", "addr", verb, f"{vip}/32", "dev", "gre0"], capture_output=True)
    steps.append(f"ip addr {verb} {vip}/32 dev gre0")
    return [*steps, *(_sysctl(name, "rp_filter", 1 if undo else 0) for name in ("all", "gre0"))]


_KERNEL_SAYS = {
    "ipip": ("the kernel has ipip: using tunl0",
             "the kernel has ip6_tunnel and sit: using ip6tnl0 and sit0"),
    "gue": ("the kernel has fou and ipip: a GUE receive port, then tunl0",
            "the kernel has fou, ip6_tunnel and sit: a GUE receive port, then ip6tnl0 and "
            "sit0"),
    "gre": ("the kernel has ip_gre: using gre0", "the kernel has ip_gre: using gre0"),
}
_USERSPACE_SAYS = {
    "ipip": ("this kernel has no ipip module: decapsulating in userspace",
             "this kernel has no ip6_tunnel or sit module: decapsulating in userspace"),
    "gue": ("this kernel has no fou (or no ipip) module: decapsulating GUE in userspace",
            "this kernel has no fou (or no ip6_tunnel and sit) module: decapsulating GUE in "
            "userspace"),
    "gre": ("this kernel has no ip_gre module: decapsulating GRE in userspace",
            "this kernel has no ip_gre module: decapsulating GRE in userspace"),
}


def run_tun(vip: str, undo: bool, say: Callable[[str], None] = print, tun_type: str = "ipip",
            tun_port: int | None = None) -> int:
    """`pylvs realserver --mode tun [--tun-type gue|gre] [--tun-port N]`: the standard way, or
    a userspace decapsulator that runs in the foreground until Ctrl-C, SIGTERM or ``--undo``."""
    vip = _check_vip(vip)
    port = decap.check_tunnel(tun_type, tun_port)
    six = ":" in vip
    if decap.kernel_has_tunnels(vip, tun_type):
        say(_KERNEL_SAYS[tun_type][six])
        lines = (configure_gue_standard(vip, port, undo) if tun_type == "gue" else
                 configure_gre_standard(vip, undo) if tun_type == "gre" else
                 configure_tun_standard(vip, undo))
        for line in lines:
            say(line)
        return 0
    if undo:
        return _stop_decapsulator(vip, say)
    handle = _hold_handle(vip)
    if handle is None:
        say(f"a decapsulator for {vip} already runs in this namespace (pid "
            f"{_running_pid(vip)}); stop it with --undo")
        return 1
    try:
        worker = decap.Decapsulator(vip, tun_type=tun_type, port=tun_port)
    except BaseException:
        handle.close()
        raise
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say(_USERSPACE_SAYS[tun_type][six])
        for line in worker.steps():
            say(line)
        if tun_type != "ipip":
            say("(a kernel with the modules would do instead:)")
            for line in decap.kernel_steps(vip, tun_type, port):
                say(f"    {line}")
        kind = "" if tun_type == "ipip" else f" --tun-type {tun_type}" + (
            f" --tun-port {port}" if tun_type == "gue" else "")
        say(f"running; stop with Ctrl-C or `pylvs realserver --mode tun{kind} --vip {vip} "
            f"--undo`")
        description = worker.describe().encode()
        worker.run(lambda: stop or _answer_probes(handle, description))
    finally:
        worker.close()
        handle.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped: {dict(worker.counters) or 'no packets'}; device and rp_filter restored")
    return 0


def _stop_decapsulator(vip: str, say: Callable[[str], None]) -> int:
    """Stop this namespace's decapsulator for ``vip``, and only it."""
    pid = _running_pid(vip)
    if pid is None:
        say(f"no decapsulator is running for {vip} here (already undone)")
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _running_pid(vip) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    say(f"stopped the decapsulator for {vip} (pid {pid})")
    return 0


def check(mode: str, vip: str, interface: str | None = None, director: str | None = None,
          tun_type: str = "ipip", tun_port: int | None = None) -> tuple[str, int]:
    """`pylvs realserver --check`: this host's (this namespace's) state judged step by step;
    returns the report and the exit status (0 only when every step is right). ``tun_type``
    and ``tun_port``: what the director sends a TUN real server (--tun-type, --tun-port)."""
    vip = _check_vip(vip)
    if director is not None:
        director = _check_same_family(vip, director, "the director's address")
    if mode != "tun" and (tun_type != "ipip" or tun_port is not None):
        raise ValueError("--tun-type and --tun-port go with --mode tun")
    decap.check_tunnel(tun_type, tun_port)
    verdicts = judge.check(mode, vip, read_state(vip), interface, director, tun_type, tun_port)
    return judge.render(mode, vip, verdicts, tun_type), judge.exit_status(verdicts)


def read_state(vip: str) -> judge.HostState:
    """The sysctls, addresses and routes of this namespace, and its decapsulator for ``vip``."""
    six = ":" in vip
    return judge.HostState(conf=_read_conf(), links=judge.parse_links(_ip_json("addr", "show")),
                           routes=judge.parse_routes(_ip_json("route", "show", "table", "main")),
                           local_routes=judge.parse_routes(_ip_json("route", "show", "table",
                                                                    "local")),
                           decap_pid=_running_pid(vip), decap_kind=_running_kind(vip),
                           ipip_module=decap.kernel_has_ipip(),
                           conf6=_read_conf(SYSCTL_DIR6, CHECKED_SYSCTLS6) if six else {},
                           routes6=judge.parse_routes(_ip_json("-6", "route", "show", "table",
                                                               "main")) if six else (),
                           ip6_tunnel_modules=decap.kernel_has_ip6_tunnels(),
                           fou_module=decap.kernel_has_fou(), gre_module=decap.kernel_has_gre(),
                           fou_ports=judge.parse_fou(_fou_show()))


def _fou_show() -> str:
    """`ip fou show` and `ip -6 fou show` (the IPv6 lines marked ``-6``); empty without fou."""
    out = []
    for family in ([], ["-6"]):
        done = subprocess.run(["ip", *family, "fou", "show"], capture_output=True, text=True)
        if done.returncode == 0:
            out += [f"{line} {' '.join(family)}".strip() for line in done.stdout.splitlines()]
    return "\n".join(out)


def _read_conf(directory: str = SYSCTL_DIR, keys: tuple[str, ...] = CHECKED_SYSCTLS
               ) -> dict[str, dict[str, int]]:
    conf: dict[str, dict[str, int]] = {}
    if not os.path.isdir(directory):  # IPv6 not built in (or ipv6.disable=1)
        return conf
    for ifname in sorted(os.listdir(directory)):
        values = conf.setdefault(ifname, {})
        for key in keys:
            with contextlib.suppress(OSError, ValueError), \
                    open(os.path.join(directory, ifname, key)) as fh:
                values[key] = int(fh.read().strip())
    return conf


def _ip_json(*args: str) -> str:
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True)
    if result.returncode != 0 and "table does not exist" in result.stderr:
        return "[]"  # a namespace whose lo never came up has no local table yet
    if result.returncode != 0:
        raise OSError(f"ip -j {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout

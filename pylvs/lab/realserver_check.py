"""`pylvs realserver --check`: a real server's state in, a verdict per step out. No I/O here.

The state is what the host shows: its ``/proc/sys/net/ipv4/conf/*`` values, ``ip -j addr``,
``ip -j route`` (main and local tables) and whether a TUN decapsulator runs; `realserver.py`
reads it, this module judges it, so the tests give it made-up states.

The kernel's rules judged here (Documentation/networking/ip-sysctl.rst and net/ipv4/arp.c):

- ``arp_ignore`` and ``arp_announce`` of an interface are the larger of ``all`` and the
  interface's own (``IN_DEV_MAXCONF``), and so is ``rp_filter``.
- arp_ignore 1 answers only for addresses on the interface asked, 2 also needs the sender in
  its subnet; 3 stays quiet only for scope-host addresses; 8 answers nothing (not even the
  real server's own address); 0, 4-7 and anything above 8 answer for every local address.
- arp_announce 2 always takes the outgoing interface's own address as the sender of an ARP
  request; 1 may still take the VIP for a target in the VIP's subnet; 0 and anything above 2
  take the source of the packet that needs the ARP (the VIP, for an answer to a client).
- rp_filter 1 (strict) drops a packet whose source is not routed back through the interface it
  arrived on; 0 (off) and 2 or more (loose) let it in.
- An address with a prefix shorter than /32 on ``lo`` makes the kernel add a ``local`` route for
  its whole subnet: the host then takes every address there as its own.

And IPv6's (net/ipv6/ndisc.c, addrconf.c), judged for an IPv6 VIP:

- ``ndisc_recv_ns`` answers a Neighbor Solicitation only for an address on the device it arrived
  on, and ``ndisc_solicit`` names an address as the source of its own solicitation only if it
  is on the sending device: a VIP on ``lo`` is never announced, so IPv6 has no arp_ignore or
  arp_announce and needs none. A VIP on an NDP device (``eth0``) is answered for.
- An address takes part in DAD unless it was added ``nodad`` or ``accept_dad`` is below 1 on
  both ``all`` and its device, or the device speaks no NDP (``lo``, a TUN device); while
  ``tentative`` the host does not take it as its own, and one whose DAD found a duplicate (the
  director holds the VIP too) stays ``dadfailed`` and unusable.
- ``disable_ipv6`` on a device removes its IPv6 addresses and refuses new ones.
- A prefix shorter than /128 on ``lo`` adds a route for the whole prefix through ``lo``: the
  answers to clients in it go into ``lo`` and never leave.
- IPv6 has no rp_filter sysctl: nothing drops an unwrapped packet for its source (unless a
  netfilter rule of its own does).

And the tunnel types (ipvsadm's --tun-type, issue 24): GUE arrives on a UDP port, which
something must take (pylvs's decapsulator for that port, or fou's receive port, `ip fou add
port N gue`, which hands the unwrapped packet to the IP-in-IP handler: tunl0, or ip6tnl0 and
sit0 for an IPv6 VIP); a port nobody takes is answered with ICMP port unreachable. GRE arrives
on protocol 47 (pylvs's decapsulator, or ip_gre's catch-all gre0, which must be up); without
either the kernel answers with ICMP protocol unreachable.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MODES = ("dr", "nat", "tun")
TUN_TYPES = ("ipip", "gue", "gre")
DECAP_DEVICES = ("pylvs-tun0", "tunl0")
DECAP_DEVICES6 = ("pylvs-tun6", "ip6tnl0")
WIDTH = 100


@dataclass(frozen=True)
class Address:
    ip: str
    prefixlen: int
    scope: str = "global"
    flags: tuple[str, ...] = ()
    """IPv6's address flags that matter here: ``nodad``, ``tentative``, ``dadfailed``."""

    def __str__(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class Link:
    name: str
    up: bool = True
    arp: bool = True
    """Whether the device speaks ARP, and so NDP (not lo, not NOARP: a TUN device or tunl0)."""
    addresses: tuple[Address, ...] = ()
    """Its IPv4 addresses."""
    addresses6: tuple[Address, ...] = ()
    """Its IPv6 addresses (link-local ones included)."""


@dataclass(frozen=True)
class Route:
    dst: str
    """``default``, ``a.b.c.d/n`` or ``a.b.c.d`` (a /32)."""
    dev: str = ""
    gateway: str | None = None
    type: str = "unicast"


@dataclass(frozen=True)
class FouPort:
    """A receive port of fou (`ip fou show`): GUE's, or FOU's for one IP protocol."""
    port: int
    kind: str = "gue"
    """``gue`` or ``ipproto N``."""
    family: int = 4
    """The outer family it takes (``ip -6 fou add`` makes an IPv6 one)."""


@dataclass(frozen=True)
class HostState:
    conf: Mapping[str, Mapping[str, int]]
    """ifname (``all`` too) → {"arp_ignore": 1, "arp_announce": 2, "rp_filter": 0}."""
    links: tuple[Link, ...] = ()
    routes: tuple[Route, ...] = ()
    local_routes: tuple[Route, ...] = ()
    decap_pid: int | None = None
    """The pid of this namespace's userspace decapsulator for the VIP, if one runs."""
    ipip_module: bool = False
    conf6: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """ifname (``all`` too) → {"disable_ipv6": 0, "accept_dad": 1, "forwarding": 0}."""
    routes6: tuple[Route, ...] = ()
    ip6_tunnel_modules: bool = False
    decap_kind: str | None = None
    """What the running decapsulator unwraps, as its handle says: ``ipip``, ``gue PORT``,
    ``gre`` (None: none runs, or it did not say, which is IP-in-IP)."""
    fou_module: bool = False
    gre_module: bool = False
    fou_ports: tuple[FouPort, ...] = ()

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def value(self, ifname: str, key: str) -> int:
        return self.conf.get(ifname, {}).get(key, 0)

    def value6(self, ifname: str, key: str) -> int:
        return self.conf6.get(ifname, {}).get(key, 0)


@dataclass(frozen=True)
class Verdict:
    step: str
    ok: bool
    why: str
    fix: tuple[str, ...] = field(default=())


# -- reading `ip -j` ---------------------------------------------------------------------------

ADDRESS_FLAGS6 = ("nodad", "tentative", "dadfailed")


def parse_links(text: str) -> tuple[Link, ...]:
    """``ip -j addr show``: each link, up or not, ARP or not, with its IPv4 and IPv6
    addresses (ip -j gives an IPv6 address's flags as keys set to true)."""
    links = []
    for entry in json.loads(text or "[]"):
        flags = set(entry.get("flags", []))
        info = entry.get("addr_info", [])
        addresses = tuple(Address(a["local"], int(a["prefixlen"]), a.get("scope", "global"))
                          for a in info if a.get("family") == "inet")
        addresses6 = tuple(Address(a["local"], int(a["prefixlen"]), a.get("scope", "global"),
                                   tuple(f for f in ADDRESS_FLAGS6 if a.get(f)))
                           for a in info if a.get("family") == "inet6")
        links.append(Link(entry["ifname"], up="UP" in flags,
                          arp=not flags & {"LOOPBACK", "NOARP"}, addresses=addresses,
                          addresses6=addresses6))
    return tuple(links)


def parse_fou(text: str) -> tuple[FouPort, ...]:
    """``ip fou show`` lines (``port 6080 gue``, ``port 7777 ipproto 47``), those of ``ip -6
    fou show`` ending in ``-6``."""
    ports = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "port" or not words[1].isdigit():
            continue
        kind = "gue" if words[2] == "gue" else " ".join(words[2:4])
        ports.append(FouPort(int(words[1]), kind, 6 if "-6" in words else 4))
    return tuple(ports)


def parse_routes(text: str) -> tuple[Route, ...]:
    """``ip -j route show [table local]``."""
    return tuple(Route(entry["dst"], entry.get("dev", ""), entry.get("gateway"),
                       entry.get("type", "unicast")) for entry in json.loads(text or "[]"))


# -- the verdicts ------------------------------------------------------------------------------

def check(mode: str, vip: str, state: HostState, interface: str | None = None,
          director: str | None = None, tun_type: str = "ipip",
          tun_port: int | None = None) -> list[Verdict]:
    """Each step of ``mode``'s real server for ``vip``, judged on ``state``. ``interface``:
    the one facing the clients' segment (default: every ARP interface with an address);
    ``director``: NAT, the address the default route must go through; ``tun_type`` and
    ``tun_port``: TUN, what the director sends (ipip, gue on that port, gre)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if interface is not None and state.link(interface) is None:
        raise ValueError(f"no such interface: {interface}")
    if tun_type not in TUN_TYPES:
        raise ValueError(f"tunnel type must be one of {', '.join(TUN_TYPES)}, not {tun_type!r}")
    if tun_type == "gue" and tun_port is None:
        raise ValueError("--tun-type gue needs --tun-port: the UDP port the director sends to")
    if ":" in vip:
        return check6(mode, vip, state, interface, director, tun_type, tun_port)
    if mode == "nat":
        return [default_route(state, director)]
    if mode == "dr":
        return [*arp_steps(vip, state, segment_interfaces(state, interface)),
                vip_on_lo(vip, state)]
    unwrap = (decapsulation(vip, state) if tun_type == "ipip" else
              tunnel_decapsulation(vip, state, tun_type, tun_port))
    return [unwrap, vip_on_device(vip, state, tun_type), rp_filter(state, tun_type),
            *tun_arp_steps(vip, state, interface)]


def segment_interfaces(state: HostState, interface: str | None) -> list[str]:
    """Where ARP requests can come from: the named interface, or every ARP link with an
    address."""
    if interface is not None:
        return [interface]
    return [link.name for link in state.links if link.arp and link.addresses]


def arp_steps(vip: str, state: HostState, interfaces: Sequence[str]) -> list[Verdict]:
    steps = []
    for ifname in interfaces:
        steps += [arp_ignore(vip, state, ifname), arp_announce(vip, state, ifname)]
    return steps


def _pair(state: HostState, ifname: str, key: str) -> tuple[int, int, int, str]:
    """The `all` value, the interface's, the larger one the kernel uses, and that in words."""
    a, i = state.value("all", key), state.value(ifname, key)
    return a, i, max(a, i), f"{key} = max(all {a}, {ifname} {i}) = {max(a, i)}"


def _sysctl_fixes(key: str, values: Mapping[str, int], good: set[int], target: int
                  ) -> tuple[str, ...]:
    return tuple(f"sysctl -w net.ipv4.conf.{name}.{key}={target}"
                 for name, value in values.items() if value not in good)


def _means_zero(value: int) -> str:
    return f" ({value} means 0 to the kernel)" if value else ""


def arp_ignore(vip: str, state: HostState, ifname: str) -> Verdict:
    a, i, used, said = _pair(state, ifname, "arp_ignore")
    step = f"arp_ignore on {ifname}"
    vip_scope = next((ad.scope for link in state.links for ad in link.addresses
                      if ad.ip == vip), "global")
    quiet = {1: f"{ifname} answers ARP only for the addresses on {ifname}: not for the VIP",
             2: f"{ifname} answers ARP only for the addresses on {ifname}, to senders in its "
                f"subnet: not for the VIP"}
    if used in quiet:
        return Verdict(step, True, f"{said}: {quiet[used]}")
    if used == 3 and vip_scope == "host":
        return Verdict(step, True, f"{said}: no answer for scope-host addresses, and the VIP "
                                   f"is one")
    fixes = _sysctl_fixes("arp_ignore", {"all": a, ifname: i}, {1, 2}, 1)
    if used == 3:
        why = (f"{said}: 3 keeps quiet only for scope-host addresses, and the VIP is scope "
               f"{vip_scope}: {ifname} answers ARP for it")
    elif used == 8:
        why = (f"{said}: 8 answers no ARP at all, not even for {ifname}'s own address: the "
               f"director cannot find this host's MAC")
    else:
        why = (f"{said}: {ifname} answers ARP for every local address, the VIP on lo included: "
               f"a client or router that asks who has {vip} may get this host's MAC and send to "
               f"it directly, bypassing the director" + _means_zero(used))
    return Verdict(step, False, why, fixes)


def arp_announce(vip: str, state: HostState, ifname: str) -> Verdict:
    a, i, used, said = _pair(state, ifname, "arp_announce")
    step = f"arp_announce on {ifname}"
    if used == 2:
        return Verdict(step, True, f"{said}: the ARP requests {ifname} sends name its own "
                                   f"address as the sender, never the VIP")
    why = (f"{said}: 1 still names the VIP as the sender when the target is in the VIP's "
           f"subnet" if used == 1 else
           f"{said}: when this host asks who has a client before answering it from the VIP, "
           f"its request names the VIP as the sender, and every host that hears it learns "
           f"this host's MAC for {vip}"
           + _means_zero(used))
    return Verdict(step, False, why, _sysctl_fixes("arp_announce", {"all": a, ifname: i},
                                                   {2}, 2))


def _holders(vip: str, state: HostState) -> list[tuple[Link, Address]]:
    return [(link, ad) for link in state.links for ad in link.addresses if ad.ip == vip]


def _loop_routes(state: HostState, vip: str) -> list[str]:
    """`local` routes for a whole subnet on lo that an address there made."""
    return [r.dst for r in state.local_routes if r.type == "local" and r.dev == "lo"
            and "/" in r.dst and not r.dst.startswith("127.")
            and ipaddress.IPv4Address(vip) in ipaddress.IPv4Network(r.dst, strict=False)]


def _narrow(vip: str, holder: Link, address: Address, state: HostState, step: str) -> Verdict:
    """The VIP held with a prefix shorter than /32."""
    net = ipaddress.IPv4Network(str(address), strict=False)
    fix = (f"ip addr del {address} dev {holder.name}", f"ip addr add {vip}/32 dev {holder.name}")
    if holder.name != "lo":
        return Verdict(step, False, f"{address} on {holder.name}: the kernel routes all of {net} "
                                    f"to {holder.name}", fix)
    local = _loop_routes(state, vip)
    made = f"`local {local[0]} dev lo`" if local else f"a `local {net}` route on lo"
    return Verdict(step, False, f"{address} on lo: the kernel made {made}, so this host takes "
                                f"every address in {net} as its own: its answers to the clients "
                                f"and to the director there loop back into itself, and never "
                                f"leave", fix)


def vip_on_lo(vip: str, state: HostState) -> Verdict:
    step = "the VIP on lo as /32"
    holders = _holders(vip, state)
    if not holders:
        return Verdict(step, False, f"this host does not hold {vip}: it takes no packet to the "
                                    f"VIP as its own and drops what the director sends",
                       (f"ip addr add {vip}/32 dev lo",))
    for link, address in holders:
        if address.prefixlen < 32:
            return _narrow(vip, link, address, state, step)
        if link.arp:
            return Verdict(step, False, f"{address} is on {link.name}, not lo: arp_ignore cannot "
                                        f"keep {link.name} quiet about an address of its own",
                           (f"ip addr del {address} dev {link.name}",
                            f"ip addr add {vip}/32 dev lo"))
    where = ", ".join(link.name for link, _ in holders)
    return Verdict(step, True, f"{vip}/32 on {where}: this host takes packets to the VIP as its "
                               f"own, and {where} never answers ARP")


def _decap_device(state: HostState, tun_type: str = "ipip") -> str | None:
    """The device the unwrapped packets arrive on: the decapsulator's, or tunl0 (gre0 for
    GRE; fou hands GUE's to tunl0)."""
    if state.decap_pid is not None and state.link("pylvs-tun0") is not None:
        return "pylvs-tun0"
    kernel = _KERNEL_DEVICE[tun_type][0]
    return kernel if state.link(kernel) is not None else None


_KERNEL_DEVICE = {"ipip": ("tunl0", "ip6tnl0"), "gue": ("tunl0", "ip6tnl0"),
                  "gre": ("gre0", "gre0")}
"""The kernel's device that takes the unwrapped packets of each type, by the VIP's family."""


def decapsulation(vip: str, state: HostState) -> Verdict:
    step = "decapsulation (IP-in-IP)"
    if state.decap_pid is not None:
        return Verdict(step, True, f"pylvs's userspace decapsulator for {vip} runs (pid "
                                   f"{state.decap_pid}): it unwraps IP-in-IP into pylvs-tun0")
    tunl0 = state.link("tunl0")
    if tunl0 is not None and tunl0.up:
        return Verdict(step, True, "tunl0 is up: the kernel's ipip module unwraps IP-in-IP")
    if tunl0 is not None:
        return Verdict(step, False, "tunl0 is down: the kernel drops the director's IP-in-IP "
                                    "packets", ("ip link set tunl0 up",))
    run = f"pylvs realserver --mode tun --vip {vip}"
    fix = (f"modprobe ipip && {run}",) if state.ipip_module else (f"{run}   (in the foreground)",)
    return Verdict(step, False, "nothing here unwraps IP-in-IP (no tunl0 up, no decapsulator for "
                                "the VIP): the director's packets are answered with ICMP "
                                "protocol unreachable and the client gets nothing", fix)


def vip_on_device(vip: str, state: HostState, tun_type: str = "ipip") -> Verdict:
    """TUN: the VIP as /32 on the tunnel's device (or lo), never on an ARP interface."""
    step = "the VIP as /32 on the tunnel device"
    device = _decap_device(state, tun_type) or _KERNEL_DEVICE[tun_type][0]
    holders = _holders(vip, state)
    if not holders:
        return Verdict(step, False, f"this host does not hold {vip}: the unwrapped packets to "
                                    f"the VIP are not its own", (f"ip addr add {vip}/32 dev "
                                                                 f"{device}",))
    for link, address in holders:
        if address.prefixlen < 32:
            return _narrow(vip, link, address, state, step)
        if link.arp:
            return Verdict(step, False, f"{address} is on {link.name}, which answers ARP for it",
                           (f"ip addr del {address} dev {link.name}",
                            f"ip addr add {vip}/32 dev {device}"))
    where = ", ".join(link.name for link, _ in holders)
    return Verdict(step, True, f"{vip}/32 on {where}: the unwrapped packets to the VIP are this "
                               f"host's own")


def rp_filter(state: HostState, tun_type: str = "ipip") -> Verdict:
    device = _decap_device(state, tun_type)
    ifname = device or "all"
    a, i = state.value("all", "rp_filter"), state.value(ifname, "rp_filter")
    used = max(a, i)
    said = (f"rp_filter = max(all {a}, {ifname} {i}) = {used}" if device else
            f"rp_filter = all {a}")
    step = f"rp_filter on {ifname}"
    if used != 1:
        kind = "off" if used == 0 else "loose"
        return Verdict(step, True, f"{said} ({kind}): an unwrapped packet from a client that is "
                                   f"not routed through {ifname} is let in")
    fixes = _sysctl_fixes("rp_filter", {"all": a, ifname: i} if device else {"all": a}, {0}, 0)
    return Verdict(step, False, f"{said} (strict): an unwrapped packet arrives on {ifname} from "
                                f"the client, whose route goes out another interface, so the "
                                f"kernel drops it (TcpExt IPReversePathFilter counts them)",
                   fixes)


def tun_arp_steps(vip: str, state: HostState, interface: str | None) -> list[Verdict]:
    """A TUN real server need not hide the VIP unless a segment of its own is in the VIP's
    subnet (then a neighbour may ask who has the VIP): the DR steps for those interfaces."""
    address = ipaddress.IPv4Address(vip)
    on_segment = [name for name in segment_interfaces(state, interface)
                  if any(address in ipaddress.IPv4Network(str(ad), strict=False)
                         for ad in (state.link(name) or Link(name)).addresses if ad.ip != vip)]
    if on_segment:
        return arp_steps(vip, state, on_segment)
    return [Verdict("ARP for the VIP", True, f"not needed: no segment of this host is in "
                                             f"{vip}'s subnet, so no neighbour asks for it")]


def default_route(state: HostState, director: str | None, six: bool = False) -> Verdict:
    step = "default route via the director"
    routes = state.routes6 if six else state.routes
    default = next((r for r in routes if r.dst == "default"), None)
    via = director or "DIP"
    fix = (f"ip {'-6 ' if six else ''}route replace default via {via}",)
    if default is None or default.gateway is None:
        return Verdict(step, False, "no default route (via a gateway): this host cannot answer "
                                    "the clients, which are outside its subnet", fix)
    found = f"default via {default.gateway} dev {default.dev}"
    if director is None:
        return Verdict(step, True, f"{found}: the answers go through {default.gateway}; give "
                                   f"--director to check that it is the director's inside "
                                   f"address")
    if default.gateway != director:
        return Verdict(step, False, f"{found}: the answers bypass the director {director}, so "
                                    f"they reach the client from this host's own address, "
                                    f"not the VIP, and the client drops them", fix)
    return Verdict(step, True, f"{found}: the answers go back through the director, which "
                               f"puts the VIP back as their source")


# -- IPv6 ------------------------------------------------------------------------------------

def check6(mode: str, vip: str, state: HostState, interface: str | None = None,
           director: str | None = None, tun_type: str = "ipip",
           tun_port: int | None = None) -> list[Verdict]:
    """An IPv6 VIP's steps: what matters is the /128 (on lo for DR, on the tunnel's device
    for TUN), DAD, IPv6 being on, the route back (NAT) and the decapsulation (TUN); NDP needs
    nothing (see the module's notes)."""
    segment = segment_interfaces6(state, interface)
    if mode == "nat":
        return [ipv6_on(state, segment), default_route(state, director, six=True)]
    if mode == "dr":
        return [ipv6_on(state, ["lo", *segment]), vip_on_lo6(vip, state),
                ndp_for_vip(vip, state, segment), *(dad(state, name, vip) for name in segment)]
    unwrap = (decapsulation6(vip, state) if tun_type == "ipip" else
              tunnel_decapsulation(vip, state, tun_type, tun_port))
    return [unwrap, vip_on_device6(vip, state, tun_type), no_rp_filter6(),
            ndp_for_vip(vip, state, segment)]


def segment_interfaces6(state: HostState, interface: str | None) -> list[str]:
    """Where Neighbor Solicitations can come from: the named interface, or every NDP link
    with a global IPv6 address."""
    if interface is not None:
        return [interface]
    return [link.name for link in state.links if link.arp
            and any(ad.scope == "global" for ad in link.addresses6)]


def _holders6(vip: str, state: HostState) -> list[tuple[Link, Address]]:
    want = ipaddress.IPv6Address(vip)
    return [(link, ad) for link in state.links for ad in link.addresses6
            if ipaddress.IPv6Address(ad.ip) == want]


def ipv6_on(state: HostState, names: Sequence[str]) -> Verdict:
    names = list(dict.fromkeys(names))
    off = [name for name in names if state.value6(name, "disable_ipv6")]
    step = f"IPv6 on {', '.join(names)}" if names else "IPv6 on"
    if not state.conf6:
        return Verdict(step, False, "this host has no IPv6 (no /proc/sys/net/ipv6): boot it "
                                    "without ipv6.disable=1")
    if off:
        return Verdict(step, False, f"disable_ipv6 = 1 on {', '.join(off)}: the kernel holds "
                                    f"no IPv6 address there and takes no IPv6 packet",
                       tuple(f"sysctl -w net.ipv6.conf.{name}.disable_ipv6=0" for name in off))
    return Verdict(step, True, f"disable_ipv6 = 0 on {', '.join(names) or 'every device'}")


def _narrow6(vip: str, holder: Link, address: Address, step: str, device: str) -> Verdict:
    net = ipaddress.IPv6Network(str(address), strict=False)
    fix = (f"ip -6 addr del {address} dev {holder.name}",
           f"ip -6 addr add {vip}/128 dev {device} nodad")
    if holder.name == "lo":
        why = (f"{address} on lo: the kernel routes all of {net} through lo, so the answers "
               f"to clients in it go into lo and never leave")
    else:
        why = f"{address} on {holder.name}: the kernel routes all of {net} to {holder.name}"
    return Verdict(step, False, why, fix)


def _not_usable(vip: str, holder: Link, address: Address, step: str, device: str
                ) -> Verdict | None:
    """A VIP that DAD holds back (tentative) or failed (dadfailed), else None."""
    fix = (f"ip -6 addr del {address} dev {holder.name}",
           f"ip -6 addr add {vip}/128 dev {device} nodad")
    if "dadfailed" in address.flags:
        return Verdict(step, False, f"{address} on {holder.name} failed DAD (another host, the "
                                    f"director, holds it): the kernel keeps it unusable", fix)
    if "tentative" in address.flags:
        return Verdict(step, False, f"{address} on {holder.name} is tentative (DAD is not over): "
                                    f"the host does not take packets to it yet", fix)
    return None


def vip_on_lo6(vip: str, state: HostState) -> Verdict:
    step = "the VIP on lo as /128"
    holders = _holders6(vip, state)
    if not holders:
        return Verdict(step, False, f"this host does not hold {vip}: it takes no packet to the "
                                    f"VIP as its own and drops what the director sends",
                       (f"ip -6 addr add {vip}/128 dev lo nodad",))
    for link, address in holders:
        if address.prefixlen < 128:
            return _narrow6(vip, link, address, step, "lo")
        if link.arp:
            return Verdict(step, False, f"{address} is on {link.name}, not lo: {link.name} "
                                        f"answers Neighbor Solicitations for it, so clients "
                                        f"would send straight here and bypass the director",
                           (f"ip -6 addr del {address} dev {link.name}",
                            f"ip -6 addr add {vip}/128 dev lo nodad"))
        if (wrong := _not_usable(vip, link, address, step, "lo")) is not None:
            return wrong
    where = ", ".join(link.name for link, _ in holders)
    return Verdict(step, True, f"{vip}/128 on {where}: this host takes packets to the VIP as "
                               f"its own ({where} does no DAD and answers no Neighbor "
                               f"Solicitation)")


def ndp_for_vip(vip: str, state: HostState, segment: Sequence[str]) -> Verdict:
    """IPv6's answer to arp_ignore/arp_announce: nothing to set, as long as no NDP device
    holds the VIP."""
    step = "NDP for the VIP"
    loud = [link.name for link, _ in _holders6(vip, state) if link.arp]
    if loud:
        return Verdict(step, False, f"{', '.join(loud)} holds {vip}: it answers Neighbor "
                                    f"Solicitations for it (there is no arp_ignore for IPv6: "
                                    f"the VIP must not be on an NDP device)")
    where = ", ".join(segment) or "no interface"
    return Verdict(step, True, f"nothing to set: there is no arp_ignore or arp_announce for "
                               f"IPv6. The kernel answers a Neighbor Solicitation only for an "
                               f"address on the device it arrived on (ndisc_recv_ns), and names "
                               f"an address as the source of its own only if it is on the "
                               f"sending device: {where} stays quiet about the VIP")


def dad(state: HostState, ifname: str, vip: str = "") -> Verdict:
    """This host's own IPv6 addresses on ``ifname`` usable (the VIP, which has no place
    there, is the VIP's step)."""
    a, i = state.value6("all", "accept_dad"), state.value6(ifname, "accept_dad")
    step = f"DAD on {ifname}"
    link = state.link(ifname) or Link(ifname)
    said = (f"accept_dad = max(all {a}, {ifname} {i}) = {max(a, i)}: "
            + ("DAD runs for each new address not added nodad" if max(a, i) >= 1 else
               "no DAD"))
    vip_ip = ipaddress.IPv6Address(vip) if vip else None
    stuck = [ad for ad in link.addresses6 if {"tentative", "dadfailed"} & set(ad.flags)
             and ipaddress.IPv6Address(ad.ip) != vip_ip]
    if stuck:
        what = ", ".join(f"{ad} ({'dadfailed' if 'dadfailed' in ad.flags else 'tentative'})"
                         for ad in stuck)
        return Verdict(step, False, f"{said}; not usable: {what}",
                       tuple(f"ip -6 addr del {ad} dev {ifname}; ip -6 addr add {ad} dev "
                             f"{ifname} nodad" for ad in stuck))
    return Verdict(step, True, f"{said}; this host's IPv6 addresses on {ifname} are usable "
                               f"(none tentative or dadfailed)")


def _decap_device6(state: HostState, tun_type: str = "ipip") -> str | None:
    if state.decap_pid is not None and state.link("pylvs-tun6") is not None:
        return "pylvs-tun6"
    kernel = _KERNEL_DEVICE[tun_type][1]
    return kernel if state.link(kernel) is not None else None


def decapsulation6(vip: str, state: HostState) -> Verdict:
    step = "decapsulation (ip6ip6, 6in4)"
    if state.decap_pid is not None:
        return Verdict(step, True, f"pylvs's userspace decapsulator for {vip} runs (pid "
                                   f"{state.decap_pid}): it unwraps ip6ip6 and 6in4 into "
                                   f"pylvs-tun6")
    tnl = state.link("ip6tnl0")
    if tnl is not None and tnl.up:
        return Verdict(step, True, "ip6tnl0 is up: the kernel's ip6_tunnel module unwraps "
                                   "ip6ip6 (and sit0, if up, 6in4)")
    run = f"pylvs realserver --mode tun --vip {vip}"
    fix = ((f"modprobe ip6_tunnel sit && {run}",) if state.ip6_tunnel_modules else
           (f"{run}   (in the foreground)",))
    return Verdict(step, False, "nothing here unwraps ip6ip6 or 6in4 (no ip6tnl0 up, no "
                                "decapsulator for the VIP): the director's packets are "
                                "answered with ICMP and the client gets nothing", fix)


def vip_on_device6(vip: str, state: HostState, tun_type: str = "ipip") -> Verdict:
    step = "the VIP as /128 on the tunnel device"
    device = _decap_device6(state, tun_type) or _KERNEL_DEVICE[tun_type][1]
    holders = _holders6(vip, state)
    if not holders:
        return Verdict(step, False, f"this host does not hold {vip}: the unwrapped packets to "
                                    f"the VIP are not its own",
                       (f"ip -6 addr add {vip}/128 dev {device} nodad",))
    for link, address in holders:
        if address.prefixlen < 128:
            return _narrow6(vip, link, address, step, device)
        if link.arp:
            return Verdict(step, False, f"{address} is on {link.name}, which answers Neighbor "
                                        f"Solicitations for it",
                           (f"ip -6 addr del {address} dev {link.name}",
                            f"ip -6 addr add {vip}/128 dev {device} nodad"))
        if (wrong := _not_usable(vip, link, address, step, device)) is not None:
            return wrong
    where = ", ".join(link.name for link, _ in holders)
    return Verdict(step, True, f"{vip}/128 on {where}: the unwrapped packets to the VIP are "
                               f"this host's own")


def tunnel_decapsulation(vip: str, state: HostState, tun_type: str,
                         port: int | None) -> Verdict:
    """GUE or GRE (either VIP family): something takes what the director sends and unwraps
    it into a device holding the VIP: pylvs's decapsulator for this type (and port), or the
    kernel's fou port and IP-in-IP devices (GUE), or gre0 (GRE)."""
    six = ":" in vip
    what = f"GUE on UDP port {port}" if tun_type == "gue" else "GRE"
    step = f"decapsulation ({what})"
    want = f"gue {port}" if tun_type == "gue" else "gre"
    run = f"pylvs realserver --mode tun --tun-type {tun_type}" + (
        f" --tun-port {port}" if tun_type == "gue" else "") + f" --vip {vip}"
    if state.decap_pid is not None:
        kind = state.decap_kind or "ipip"
        device = "pylvs-tun6" if six else "pylvs-tun0"
        if kind == want:
            return Verdict(step, True, f"pylvs's userspace decapsulator for {vip} runs (pid "
                                       f"{state.decap_pid}): it unwraps {what} into {device}")
        return Verdict(step, False, f"pylvs's decapsulator for {vip} runs (pid "
                                    f"{state.decap_pid}) but unwraps {_kind_words(kind)}, not "
                                    f"{what}: the director's packets are not its",
                       (f"pylvs realserver --mode tun --vip {vip} --undo",
                        f"{run}   (in the foreground)"))
    if tun_type == "gre":
        return _kernel_gre(vip, state, step, run)
    return _kernel_gue(vip, state, step, run, port or 0)


def _kind_words(kind: str) -> str:
    return {"ipip": "IP-in-IP", "gre": "GRE"}.get(kind) or (
        f"GUE on UDP port {kind.split()[1]}" if kind.startswith("gue ") else kind)


def _kernel_gre(vip: str, state: HostState, step: str, run: str) -> Verdict:
    gre0 = state.link("gre0")
    if gre0 is not None and gre0.up:
        return Verdict(step, True, "gre0 is up: the kernel's ip_gre module unwraps GRE from "
                                   "any director")
    if gre0 is not None:
        return Verdict(step, False, "gre0 is down: the kernel drops the director's GRE "
                                    "packets", ("ip link set gre0 up",))
    fix = ("modprobe ip_gre && ip link set gre0 up",) if state.gre_module else (
        f"{run}   (in the foreground)",)
    return Verdict(step, False, "nothing here unwraps GRE (no gre0, no decapsulator for the "
                                "VIP): the director's packets are answered with ICMP "
                                "protocol unreachable and the client gets nothing", fix)


def _kernel_gue(vip: str, state: HostState, step: str, run: str, port: int) -> Verdict:
    six = ":" in vip
    listening = [p for p in state.fou_ports if p.port == port]
    if not listening:
        others = ", ".join(f"{p.port} ({p.kind}{', IPv6' if p.family == 6 else ''})"
                           for p in state.fou_ports)
        why = (f"fou listens on {others}, not on UDP port {port}" if others else
               f"nothing listens on UDP port {port} (no fou receive port, no decapsulator for "
               f"the VIP)")
        fix = ((f"ip fou add port {port} gue", f"ip -6 fou add port {port} gue")
               if state.fou_module else (f"{run}   (in the foreground)",))
        return Verdict(step, False, f"{why}: the director's GUE packets are answered with "
                                    f"ICMP port unreachable and the client gets nothing", fix)
    wrong = [p for p in listening if p.kind != "gue"]
    if wrong and len(wrong) == len(listening):
        return Verdict(step, False, f"fou's port {port} is {wrong[0].kind} (FOU: no GUE "
                                    f"header), so it takes the GUE header for the packet",
                       (f"ip fou del port {port}", f"ip fou add port {port} gue"))
    device = "ip6tnl0" if six else "tunl0"
    handler = state.link(device)
    families = " and ".join(sorted({"IPv6" if p.family == 6 else "IPv4" for p in listening}))
    if handler is not None and handler.up:
        return Verdict(step, True, f"fou's GUE port {port} ({families} outer) hands what it "
                                   f"unwraps to {device}, which is up")
    fix = (f"ip link set {device} up",) if handler is not None else (
        ("modprobe ip6_tunnel sit && ip link set ip6tnl0 up && ip link set sit0 up",) if six
        else ("modprobe ipip && ip link set tunl0 up",))
    return Verdict(step, False, f"fou's GUE port {port} unwraps, but hands the inner packet to "
                                f"{device}, which is {'down' if handler else 'missing'}: the "
                                f"kernel drops it", fix)


def no_rp_filter6() -> Verdict:
    return Verdict("rp_filter", True, "none for IPv6: the kernel has no IPv6 rp_filter sysctl, "
                                      "so nothing drops an unwrapped packet whose source (the "
                                      "client) is routed out another interface (unless a "
                                      "netfilter rule of this host does)")


# -- the report --------------------------------------------------------------------------------

def exit_status(verdicts: Sequence[Verdict]) -> int:
    return 0 if all(v.ok for v in verdicts) else 1


def render(mode: str, vip: str, verdicts: Sequence[Verdict], tun_type: str = "ipip") -> str:
    kind = f" ({tun_type})" if mode == "tun" and tun_type != "ipip" else ""
    lines = [f"check: this host as a {mode}{kind} real server for {vip}"]
    for v in verdicts:
        head = f"  {'ok   ' if v.ok else 'WRONG'}  {v.step}: "
        lines += textwrap.wrap(v.why, WIDTH, initial_indent=head,
                               subsequent_indent=" " * 11, break_on_hyphens=False)
        lines += [f"           fix: {fix}" for fix in v.fix]
    wrong = [v.step for v in verdicts if not v.ok]
    right = f"all {len(verdicts)} steps right" if len(verdicts) > 1 else "the one step is right"
    lines.append(right if not wrong else
                 f"{len(wrong)} of {len(verdicts)} steps wrong: {', '.join(wrong)}")
    return "\n".join(lines) + "\n"

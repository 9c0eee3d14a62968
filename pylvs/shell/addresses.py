"""Addresses and routes through rtnetlink (pyroute2): the VIPs on the director's interface, the
interface's own addresses, the kernel's route to a real server.

IPv6 too, chosen by the address: a VIP is a /128 with IFA_F_NODAD (held at once, no DAD).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pylvs.shell.interfaces import interface_index

IFA_F_NODAD = 0x02  # <linux/if_addr.h>
_ADDR_ATTR = {socket.AF_INET: "IFA_LOCAL", socket.AF_INET6: "IFA_ADDRESS"}
"""The attribute that holds an interface's own address (IPv6 has no IFA_LOCAL)."""


@dataclass(frozen=True)
class Route:
    interface: str
    gateway: str | None
    """None when the destination is on-link."""
    source: str | None
    """The address the kernel would send from."""


def route(ip: str) -> Route:
    """The kernel's route to ``ip`` (IPv4 or IPv6); OSError (ENETUNREACH, ...) when it has none."""
    with IPRoute() as ipr:
        try:
            (msg,) = ipr.route("get", dst=ip, family=family_of(ip))[:1]
        except NetlinkError as exc:
            raise OSError(exc.code, f"no route to {ip}: {os.strerror(exc.code)}") from None
        (link,) = ipr.get_links(msg.get_attr("RTA_OIF"))[:1]
        return Route(link.get_attr("IFLA_IFNAME"), msg.get_attr("RTA_GATEWAY"),
                     msg.get_attr("RTA_PREFSRC"))


def family_of(ip: str) -> int:
    """AF_INET6 for an IPv6 address text, else AF_INET."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _same(family: int, a: str | None, b: str) -> bool:
    if a is None or family == socket.AF_INET:
        return a == b
    return socket.inet_pton(family, a) == socket.inet_pton(family, b)


def _has_addr(ipr: IPRoute, idx: int, vip: str, prefixlen: int) -> bool:
    family = family_of(vip)
    for msg in ipr.get_addr(index=idx, family=family):
        if _same(family, msg.get_attr(_ADDR_ATTR[family]), vip) and msg["prefixlen"] == prefixlen:
            return True
    return False


def _prefixlen(vip: str, prefixlen: int | None) -> int:
    if prefixlen is not None:
        return prefixlen
    return 128 if family_of(vip) == socket.AF_INET6 else 32


def add_vip(ifname: str, vip: str, prefixlen: int | None = None) -> bool:
    """Add ``vip/prefixlen`` (default /32, or /128 for IPv6, added with IFA_F_NODAD) to
    ``ifname``; True if added, False if it was already there. An IPv6 /128 is added deprecated
    (preferred_lft 0, as keepalived adds one by default): it still answers Neighbor
    Solicitations, but the kernel never picks it as a source (RFC 6724's rule 3), so a tunnel's
    outer source stays the director's own address."""
    prefixlen = _prefixlen(vip, prefixlen)
    extra: dict[str, object] = {}
    if family_of(vip) == socket.AF_INET6:
        extra["flags"] = IFA_F_NODAD
        if prefixlen == 128:
            extra["IFA_CACHEINFO"] = {"ifa_preferred": 0, "ifa_valid": 0xFFFFFFFF,
                                      "cstamp": 0, "tstamp": 0}
    with IPRoute() as ipr:
        idx = interface_index(ifname)
        if _has_addr(ipr, idx, vip, prefixlen):
            return False
        try:
            ipr.addr("add", index=idx, address=vip, prefixlen=prefixlen, **extra)
        except Exception as exc:  # NetlinkError: EEXIST races are "already present"
            if getattr(exc, "code", None) == errno.EEXIST:
                return False
            raise
        return True


def present_vips(ifname: str, vips: Iterable[str]) -> list[str]:
    """The ``vips`` on ``ifname`` at a VIP's own prefix (/32, /128: as add_vip adds them)."""
    with IPRoute() as ipr:
        idx = interface_index(ifname)
        return [vip for vip in vips if _has_addr(ipr, idx, vip, _prefixlen(vip, None))]


def multicast_request(group: str, ifname: str, source: str = "0.0.0.0") -> bytes:
    """struct ip_mreqn for IP_ADD_MEMBERSHIP and IP_MULTICAST_IF on ``ifname``."""
    return struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton(source),
                       interface_index(ifname))


def interface_addresses(ifname: str, family: int = socket.AF_INET) -> list[str]:
    """The addresses of ``family`` (IPv4 by default; AF_INET6 includes link-local) on
    ``ifname``."""
    with IPRoute() as ipr:
        return [msg.get_attr(_ADDR_ATTR[family]) for msg in
                ipr.get_addr(index=interface_index(ifname), family=family)]


def remove_vip(ifname: str, vip: str, prefixlen: int | None = None) -> None:
    """Remove ``vip/prefixlen`` (default /32, or /128 for IPv6) from ``ifname`` if present
    (idempotent)."""
    prefixlen = _prefixlen(vip, prefixlen)
    with IPRoute() as ipr:
        idx = interface_index(ifname)
        if not _has_addr(ipr, idx, vip, prefixlen):
            return
        try:
            ipr.addr("del", index=idx, address=vip, prefixlen=prefixlen)
        except Exception as exc:
            if getattr(exc, "code", None) not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                raise

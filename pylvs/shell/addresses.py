"""Addresses and routes through rtnetlink (pyroute2): the VIPs on the director's interface, the
interface's own addresses, the kernel's route to a real server.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pylvs.shell.interfaces import interface_index


@dataclass(frozen=True)
class Route:
    interface: str
    gateway: str | None
    """None when the destination is on-link."""
    source: str | None
    """The address the kernel would send from."""


def route(ip: str) -> Route:
    """The kernel's route to ``ip``; OSError (ENETUNREACH, ...) when it has none."""
    with IPRoute() as ipr:
        try:
            (msg,) = ipr.route("get", dst=ip)[:1]
        except NetlinkError as exc:
            raise OSError(exc.code, f"no route to {ip}: {os.strerror(exc.code)}") from None
        (link,) = ipr.get_links(msg.get_attr("RTA_OIF"))[:1]
        return Route(link.get_attr("IFLA_IFNAME"), msg.get_attr("RTA_GATEWAY"),
                     msg.get_attr("RTA_PREFSRC"))


def _has_addr(ipr: IPRoute, idx: int, vip: str, prefixlen: int) -> bool:
    for msg in ipr.get_addr(index=idx, family=socket.AF_INET):
        if msg.get_attr("IFA_LOCAL") == vip and msg["prefixlen"] == prefixlen:
            return True
    return False


def add_vip(ifname: str, vip: str, prefixlen: int = 32) -> bool:
    """Add ``vip/prefixlen`` to ``ifname``; True if added, False if it was already there."""
    with IPRoute() as ipr:
        idx = interface_index(ifname)
        if _has_addr(ipr, idx, vip, prefixlen):
            return False
        try:
            ipr.addr("add", index=idx, address=vip, prefixlen=prefixlen)
        except Exception as exc:  # NetlinkError: EEXIST races are "already present"
            if getattr(exc, "code", None) == errno.EEXIST:
                return False
            raise
        return True


def multicast_request(group: str, ifname: str, source: str = "0.0.0.0") -> bytes:
    """struct ip_mreqn for IP_ADD_MEMBERSHIP and IP_MULTICAST_IF on ``ifname``."""
    return struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton(source),
                       interface_index(ifname))


def interface_addresses(ifname: str) -> list[str]:
    """The IPv4 addresses on ``ifname``."""
    with IPRoute() as ipr:
        return [msg.get_attr("IFA_LOCAL") for msg in
                ipr.get_addr(index=interface_index(ifname), family=socket.AF_INET)]


def remove_vip(ifname: str, vip: str, prefixlen: int = 32) -> None:
    """Remove ``vip/prefixlen`` from ``ifname`` if present (idempotent)."""
    with IPRoute() as ipr:
        idx = interface_index(ifname)
        if not _has_addr(ipr, idx, vip, prefixlen):
            return
        try:
            ipr.addr("del", index=idx, address=vip, prefixlen=prefixlen)
        except Exception as exc:
            if getattr(exc, "code", None) not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                raise


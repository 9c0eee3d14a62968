"""An interface's facts in the caller's network namespace: its MAC, MTU and index; for the XDP
fast path, its kind, a veth's peer and the program there (``link_facts``), and its drop
counters (``link_drops``).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pylvs.core.offloaded import Drops, LinkFacts

_SIOCGIFHWADDR = 0x8927
_SIOCGIFMTU = 0x8921
NETNS_RUN = "/run/netns"


def _ifreq(ifname: str, request: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16s16x", ifname.encode())
        try:
            return fcntl.ioctl(s.fileno(), request, req)
        except OSError as exc:
            raise OSError(exc.errno, f"no interface {ifname!r}: {exc.strerror}") from None


def interface_mac(ifname: str) -> bytes:
    """The interface's hardware address (6 bytes), in the caller's network namespace."""
    return _ifreq(ifname, _SIOCGIFHWADDR)[18:24]


def interface_mtu(ifname: str) -> int:
    """The interface's MTU, in the caller's network namespace."""
    return struct.unpack_from("i", _ifreq(ifname, _SIOCGIFMTU), 16)[0]


def interface_index(ifname: str) -> int:
    """The interface's ifindex, in the caller's network namespace."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError as exc:
        raise OSError(exc.errno, f"no interface {ifname!r}: {exc.strerror}") from None



def link_facts(ifname: str) -> LinkFacts:
    """What rtnetlink says of the interface for the fast path: its kind and, for a veth, its
    peer (in whichever network namespace: IFLA_LINK_NETNSID, read there with
    IFLA_IF_NETNSID) and the XDP program on that peer. The caller adds what attaching says."""
    with IPRoute() as ipr:
        link = _get_link(ipr, ifname)
        info = link.get_attr("IFLA_LINKINFO")
        kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
        if kind != "veth":
            return LinkFacts(ifname, kind)
        peer, nsid = link.get_attr("IFLA_LINK"), link.get_attr("IFLA_LINK_NETNSID")
        try:
            other = ipr.link("get", index=peer, **(
                {} if nsid is None else {"IFLA_IF_NETNSID": nsid}))[0]
        except (NetlinkError, OSError):
            return LinkFacts(ifname, kind)
    name = other.get_attr("IFLA_IFNAME") or f"ifindex {peer}"
    where = name if nsid is None else f"{name} in {_netns_name(nsid)}"
    xdp = other.get_attr("IFLA_XDP")
    prog = (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp is not None else 0
    return LinkFacts(ifname, kind, peer=where, peer_xdp=prog)


def _get_link(ipr: IPRoute, ifname: str) -> Any:
    return ipr.link("get", index=interface_index(ifname))[0]


def _netns_name(nsid: int) -> str:
    """The peer's namespace as `ip netns` names it (the nsid otherwise)."""
    with IPRoute() as ipr:
        for name in _named_netns():
            try:
                fd = os.open(f"{NETNS_RUN}/{name}", os.O_RDONLY)
            except OSError:
                continue
            try:
                found = ipr.get_netnsid(fd=fd)
            except (NetlinkError, OSError):
                continue
            finally:
                os.close(fd)
            if found is not None and found.get("nsid") == nsid:
                return f"netns {name}"
    return f"netns id {nsid}"


def _named_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN))
    except OSError:
        return []


def link_drops(names: Iterable[str]) -> dict[str, Drops]:
    """Each interface's RX and TX dropped (IFLA_STATS64); one gone is left out."""
    found = {}
    with IPRoute() as ipr:
        for name in names:
            try:
                stats = _get_link(ipr, name).get_attr("IFLA_STATS64")
            except (NetlinkError, OSError):
                continue
            if stats is not None:
                found[name] = Drops(stats["rx_dropped"], stats["tx_dropped"])
    return found

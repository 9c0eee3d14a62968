"""Next-hop MACs from the kernel's neighbour table (ARP), read and probed over a netlink socket
of the resolver's own, bound in the namespace it was made in.

IPv6 next hops too (NDP), the family chosen by the address text: one kernel table per family.
"""

from __future__ import annotations

import os
import socket
import time

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nlmsg_base,
)
from pyroute2.netlink.rtnl import RTM_GETNEIGH, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from pylvs.shell.interfaces import interface_index

# <linux/neighbour.h>
NUD_NONE = 0x00
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_USE = 0x01
_NUD_VALID = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT


def _mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _key(ip: str) -> str:
    """The text the kernel's table uses for ``ip`` (IPv6 in its canonical, compressed form)."""
    if _family(ip) == socket.AF_INET:
        return ip
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, ip))


class _Rtnl:
    """A minimal rtnetlink client on a socket opened at construction.

    pyroute2's ``IPRoute`` opens its socket per calling thread, in that thread's network
    namespace; the resolver must stay in the namespace it was made in whatever thread calls it,
    so it sends pyroute2-encoded messages over its own socket instead.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)
        self.marshal = MarshalRtnl()
        self.seq = 0

    def request(self, msg: nlmsg_base, msg_type: int, flags: int) -> list[nlmsg_base]:
        self.seq += 1
        seq = self.seq
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self.sock.send(msg.data)
        out: list[nlmsg_base] = []
        while True:
            data = self.sock.recv(1 << 16)
            for reply in self.marshal.parse(data):
                hdr = reply["header"]
                if hdr["sequence_number"] != seq:
                    continue
                if hdr["type"] == NLMSG_DONE:
                    return out
                if hdr["type"] == NLMSG_ERROR:
                    code = reply["error"]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return out
                out.append(reply)
                if not hdr["flags"] & NLM_F_MULTI:
                    return out

    def close(self) -> None:
        self.sock.close()


class NeighbourResolver:
    """Next-hop MACs from the kernel neighbour table (pyroute2), with an ARP (IPv4) or Neighbor
    Solicitation (IPv6) probe when unknown.

    The netlink socket is opened at construction, so the resolver answers for the namespace it was
    made in, from any thread (one thread at a time). ``probe`` asks the kernel itself to resolve
    (RTM_NEWNEIGH with NTF_USE, as ``ip neigh replace IP dev IF use``), falling back to a UDP
    datagram to port 9 (discard) from a socket bound to the interface.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.ifindex = interface_index(ifname)
        self._nl = _Rtnl()
        self._cache: dict[str, bytes] = {}
        self._known: set[str] = set()

    def _table(self, family: int = socket.AF_INET) -> dict[str, bytes]:
        """Valid entries of the interface in the table of ``family``: ip -> MAC."""
        req = ndmsg()
        req["family"] = family
        req["ifindex"] = self.ifindex
        table: dict[str, bytes] = {}
        for msg in self._nl.request(req, RTM_GETNEIGH, NLM_F_DUMP):
            if msg["ifindex"] != self.ifindex or not msg["state"] & _NUD_VALID:
                continue
            dst = msg.get_attr("NDA_DST")
            lladdr = msg.get_attr("NDA_LLADDR")
            if dst and lladdr:
                mac = _mac_bytes(lladdr)
                if len(mac) == 6 and mac != b"\0" * 6:
                    table[dst] = mac
        return table

    def _read(self, ip: str) -> bytes | None:
        return self._table(_family(ip)).get(_key(ip))

    def lookup(self, ip: str) -> bytes | None:
        """The cached MAC, else the kernel's valid (REACHABLE/STALE/DELAY/PROBE/PERMANENT) one."""
        self._known.add(ip)
        mac = self._cache.get(ip)
        if mac is None:
            mac = self._read(ip)
            if mac is not None:
                self._cache[ip] = mac
        return mac

    def probe(self, ip: str) -> None:
        """Make the kernel start resolving ``ip`` on the interface; returns at once."""
        self._known.add(ip)
        family = _family(ip)
        req = ndmsg()
        req["family"] = family
        req["ifindex"] = self.ifindex
        req["flags"] = NTF_USE
        req["state"] = NUD_NONE
        req["attrs"] = [("NDA_DST", ip)]
        try:
            self._nl.request(req, RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
            return
        except OSError:
            pass
        self._send_discard(family, ip)

    def _send_discard(self, family: int, ip: str) -> None:
        """A UDP datagram to port 9 of ``ip`` out of the interface: the kernel resolves first."""
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
                s.setblocking(False)
                s.sendto(b"", (ip, 9) if family == socket.AF_INET else (ip, 9, 0, self.ifindex))
        except OSError:
            pass

    def resolve(self, ip: str, timeout: float = 1.0) -> bytes | None:
        """``lookup``, else ``probe`` and poll the table until ``timeout`` seconds have passed."""
        mac = self.lookup(ip)
        if mac is not None:
            return mac
        deadline = time.monotonic() + timeout
        self.probe(ip)
        delay = 0.005
        while True:
            mac = self.lookup(ip)
            if mac is not None:
                return mac
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)

    def refresh(self) -> dict[str, bytes]:
        """Re-read every IP ever asked about; returns those whose MAC is new or changed.

        An entry the kernel no longer holds as valid is dropped from the cache (not returned).
        """
        changed: dict[str, bytes] = {}
        tables = {family: self._table(family)
                  for family in sorted({socket.AF_INET, *map(_family, self._known)})}
        for ip in self._known:
            mac = tables[_family(ip)].get(_key(ip))
            if mac is None:
                self._cache.pop(ip, None)
            elif self._cache.get(ip) != mac:
                self._cache[ip] = mac
                changed[ip] = mac
        return changed

    def close(self) -> None:
        self._nl.close()

    def __enter__(self) -> NeighbourResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


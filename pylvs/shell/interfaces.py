"""An interface's facts in the caller's network namespace: its MAC, MTU and index.
"""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFHWADDR = 0x8927
_SIOCGIFMTU = 0x8921


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


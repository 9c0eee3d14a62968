"""A TUN real server's decapsulator in userspace, for kernels without the tunnel modules.

IPVS picks a TUN packet's outer header by the real server's family: IPv4 in IPv4 (protocol 4),
IPv6 in IPv6 (ip6ip6, next header 41), IPv4 in IPv6 (4in6, next header 4) and IPv6 in IPv4 (6in4,
protocol 41). A decapsulator serves one VIP, so it takes what can carry a packet of the VIP's
family, whatever the outer one:

- an IPv4 VIP: a raw IPv4 socket on protocol 4 (IP-in-IP) and a raw IPv6 one on next header 4
  (4in6);
- an IPv6 VIP: a raw IPv6 socket on next header 41 (ip6ip6) and a raw IPv4 one on protocol 41
  (6in4).

Because a raw socket took them, the kernel sends no "protocol unreachable" (nor IPv6's
"parameter problem"). The inner packet, addressed to the VIP, is written to a TUN device holding
the VIP (``pylvs-tun0`` for an IPv4 VIP, ``pylvs-tun6`` for an IPv6 one, so a dual-stack host
runs one of each), which hands it to this host's stack as if it had arrived on that device; the
stack answers the client straight from the VIP. For an IPv4 VIP rp_filter must be off on the
device, since the client is not reached through it; IPv6 has no rp_filter. An IPv6 VIP is added
with ``nodad`` (the device does no DAD anyway: it speaks no NDP).

A raw IPv4 socket reads the whole packet, outer header included; a raw IPv6 socket reads the
payload after the outer header and its extension headers: the inner packet itself.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Callable

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
DEVICE = "pylvs-tun0"
DEVICE6 = "pylvs-tun6"
RP_FILTER = "/proc/sys/net/ipv4/conf/{}/rp_filter"
IPPROTO_IPIP, IPPROTO_IPV6 = 4, 41
_H = struct.Struct("!H")
SOCKETS = {
    4: ((socket.AF_INET, IPPROTO_IPIP, "raw socket on IP protocol 4 (IP-in-IP)"),
        (socket.AF_INET6, IPPROTO_IPIP, "raw IPv6 socket on next header 4 (4in6)")),
    6: ((socket.AF_INET6, IPPROTO_IPV6, "raw IPv6 socket on next header 41 (ip6ip6)"),
        (socket.AF_INET, IPPROTO_IPV6, "raw socket on IP protocol 41 (6in4)")),
}
"""What a decapsulator of a VIP of each family listens on, and how its steps say it."""


def family_of(address: str) -> int:
    return 6 if ":" in address else 4


def device_for(vip: str) -> str:
    return DEVICE6 if family_of(vip) == 6 else DEVICE


def kernel_has_ipip() -> bool:
    """The standard way for an IPv4 VIP needs the ipip module (which makes tunl0)."""
    return os.path.isdir("/sys/module/ipip") or os.path.isdir("/sys/class/net/tunl0")


def kernel_has_ip6_tunnels() -> bool:
    """The standard way for an IPv6 VIP needs ip6_tunnel (ip6tnl0: ip6ip6) and sit (sit0:
    6in4)."""
    return all(os.path.isdir(f"/sys/module/{m}") or os.path.isdir(f"/sys/class/net/{d}")
               for m, d in (("ip6_tunnel", "ip6tnl0"), ("sit", "sit0")))


def kernel_has_tunnels(vip: str) -> bool:
    return kernel_has_ip6_tunnels() if family_of(vip) == 6 else kernel_has_ipip()


def inner_packet(data: bytes, inner_family: int) -> bytes | None:
    """``data`` if it is one whole IP packet of ``inner_family`` (its length field agrees with
    its size), else None."""
    if inner_family == 4:
        if len(data) < 20 or data[0] >> 4 != 4 or (data[0] & 0x0F) < 5:
            return None
        return data if _H.unpack_from(data, 2)[0] == len(data) else None
    if len(data) < 40 or data[0] >> 4 != 6:
        return None
    return data if 40 + _H.unpack_from(data, 4)[0] == len(data) else None


def decapsulate(packet: bytes, outer_family: int, inner_family: int) -> bytes | None:
    """The inner packet of what a raw socket of ``outer_family`` read, or None. IPv4's read
    starts at the outer header (protocol 4 or 41 by the inner family); IPv6's is the payload
    already."""
    if outer_family == 6:
        return inner_packet(packet, inner_family)
    proto = IPPROTO_IPIP if inner_family == 4 else IPPROTO_IPV6
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != proto:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = _H.unpack_from(packet, 2)[0]
    if ihl < 20 or total > len(packet) or total < ihl:
        return None
    return inner_packet(bytes(packet[ihl:total]), inner_family)


def destination(inner: bytes) -> bytes:
    """The inner packet's destination address, as bytes."""
    return inner[16:20] if inner[0] >> 4 == 4 else inner[24:40]


class Decapsulator:
    def __init__(self, vip: str, device: str | None = None) -> None:
        self.family = family_of(vip)
        self.vip = socket.inet_pton(socket.AF_INET6 if self.family == 6 else socket.AF_INET,
                                    vip)
        self.vip_text = vip
        self.device = device or device_for(vip)
        self.counters: Counter[str] = Counter()
        self.saved_rp_filter: dict[str, str] = {}
        self.tun = -1
        self.sockets: list[tuple[socket.socket, int, str]] = []
        """(raw socket, its outer family 4 or 6, what the steps say of it)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @property
    def raw(self) -> socket.socket | None:
        """The first raw socket (IP-in-IP's for an IPv4 VIP, ip6ip6's for an IPv6 one)."""
        return self.sockets[0][0] if self.sockets else None

    def _open(self) -> None:
        self.tun = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("16sH", self.device.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(self.tun, TUNSETIFF, ifr)
        _ip("link", "set", self.device, "up")
        if self.family == 6:
            _ip("-6", "addr", "add", f"{self.vip_text}/128", "dev", self.device, "nodad")
        else:
            _ip("addr", "add", f"{self.vip_text}/32", "dev", self.device)
            for name in ("all", self.device):
                self._set_rp_filter(name, "0")
        for af, proto, said in SOCKETS[self.family]:
            try:
                sock = socket.socket(af, socket.SOCK_RAW, proto)
            except OSError:
                if af == socket.AF_INET6 and not self.sockets:
                    raise  # an IPv6 VIP's ip6ip6 socket is not optional
                continue  # IPv6 off on this host: no 4in6 for an IPv4 VIP
            self.sockets.append((sock, 6 if af == socket.AF_INET6 else 4, said))

    def _set_rp_filter(self, name: str, value: str) -> None:
        path = RP_FILTER.format(name)
        with open(path) as fh:
            self.saved_rp_filter.setdefault(name, fh.read().strip())
        with open(path, "w") as fh:
            fh.write(value)

    def steps(self) -> list[str]:
        if self.family == 6:
            address = [f"ip -6 addr add {self.vip_text}/128 dev {self.device} nodad",
                       "no rp_filter to turn off: IPv6 has none"]
        else:
            address = [f"ip addr add {self.vip_text}/32 dev {self.device}",
                       *(f"net.ipv4.conf.{name}.rp_filter = 0" for name in self.saved_rp_filter)]
        return [f"TUN device {self.device} (userspace decapsulation), up", *address,
                *(f"{said} → inner packets to the device" for _, _, said in self.sockets)]

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        outer = {sock: family for sock, family, _ in self.sockets}
        while not should_stop():
            for sock in select.select(list(outer), [], [], 0.2)[0]:
                self.handle(sock.recv(65535), outer[sock])

    def handle(self, packet: bytes, outer_family: int = 4) -> None:
        inner = decapsulate(packet, outer_family, self.family)
        if inner is None:
            self.counters["malformed"] += 1
        elif destination(inner) != self.vip:
            self.counters["not_for_vip"] += 1
        else:
            os.write(self.tun, inner)
            self.counters["decapsulated"] += 1

    def close(self) -> None:
        """Closing the device's descriptor removes it (it was never made persistent)."""
        for sock, _, _ in self.sockets:
            sock.close()
        self.sockets.clear()
        if self.tun >= 0:
            os.close(self.tun)
            self.tun = -1
        for name, value in self.saved_rp_filter.items():
            if os.path.exists(RP_FILTER.format(name)):
                with open(RP_FILTER.format(name), "w") as fh:
                    fh.write(value)
        self.saved_rp_filter.clear()


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")

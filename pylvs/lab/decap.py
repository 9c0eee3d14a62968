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

GUE and GRE (``--tun-type gue|gre``, issue 24) carry a packet of either family in an outer
header of either family (pylvs.core.encap), and this kernel has neither fou nor ip_gre:

- GUE: a UDP socket on the tunnel port for each outer family (the IPv6 one IPV6_V6ONLY, and
  with UDP_NO_CHECK6_RX, since IPVS sends ``--tun-nocsum`` over IPv6 with a UDP checksum of 0,
  RFC 6936's zero checksum for tunnels, which an IPv6 UDP socket drops unless told); the
  kernel checks the UDP checksum when there is one, the socket reads the UDP payload, and the
  GUE header is unwrapped as fou's gue_udp_recv does (a remote-checksum option completes the
  inner checksum). The kernel answers nothing else on that port.
- GRE: a raw socket on protocol 47 of each family (IPv4's reads the outer header too), the
  GRE checksum checked when its C bit is set (gre_parse_header).

Only packets of the VIP's family, addressed to the VIP, reach the device; the rest is counted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Callable

from pylvs.core import encap

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
TUN_TYPES = ("ipip", "gue", "gre")
"""ipvsadm's --tun-type: IP-in-IP (and its IPv6 kin, by the VIP's family), GUE, GRE."""
IPPROTO_GRE = 47
SOL_UDP, UDP_NO_CHECK6_RX = 17, 102
"""linux/udp.h: accept IPv6 UDP datagrams whose checksum is 0 (RFC 6936)."""


def sockets_for(family: int, tun_type: str = "ipip", port: int = 0
                ) -> tuple[tuple[int, int, int, str], ...]:
    """What a decapsulator for a VIP of ``family`` and ``tun_type`` listens on: (address
    family, socket type, protocol, how its steps say it); GUE's on UDP ``port``."""
    if tun_type == "ipip":
        return tuple((af, socket.SOCK_RAW, proto, said) for af, proto, said in SOCKETS[family])
    if tun_type == "gue":
        return ((socket.AF_INET, socket.SOCK_DGRAM, 0,
                 f"UDP socket on port {port} (GUE over IPv4)"),
                (socket.AF_INET6, socket.SOCK_DGRAM, 0,
                 f"UDP socket on port {port} (GUE over IPv6, zero checksums taken)"))
    if tun_type == "gre":
        return ((socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE,
                 "raw socket on IP protocol 47 (GRE)"),
                (socket.AF_INET6, socket.SOCK_RAW, IPPROTO_GRE,
                 "raw IPv6 socket on next header 47 (GRE over IPv6)"))
    raise ValueError(f"tunnel type must be one of {', '.join(TUN_TYPES)}, not {tun_type!r}")


def check_tunnel(tun_type: str, port: int | None) -> int:
    """The tunnel port a decapsulator of ``tun_type`` needs (GUE's, 1..65535; 0 for the
    others, which take none); ValueError with what is wrong."""
    if tun_type not in TUN_TYPES:
        raise ValueError(f"tunnel type must be one of {', '.join(TUN_TYPES)}, not {tun_type!r}")
    if tun_type != "gue":
        if port is not None:
            raise ValueError(f"--tun-port goes with --tun-type gue, not {tun_type}")
        return 0
    if port is None or not 0 < port < 0x10000:
        raise ValueError("--tun-type gue needs --tun-port 1..65535: the UDP port the director "
                         "sends to (ipvsadm's --tun-port)")
    return port


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


def kernel_has_tunnels(vip: str, tun_type: str = "ipip") -> bool:
    """Whether this kernel unwraps ``tun_type`` for ``vip`` itself: IP-in-IP (and its IPv6
    kin) by the VIP's family; GUE needs fou too (it hands the inner packet to that same
    handler); GRE needs ip_gre (gre0)."""
    if tun_type == "gre":
        return kernel_has_gre()
    inner = kernel_has_ip6_tunnels() if family_of(vip) == 6 else kernel_has_ipip()
    return inner and (tun_type != "gue" or kernel_has_fou())


def kernel_has_fou() -> bool:
    """fou: `ip fou add port N gue` makes a GUE receive port."""
    return os.path.isdir("/sys/module/fou")


def kernel_has_gre() -> bool:
    """ip_gre, which makes the catch-all device gre0."""
    return os.path.isdir("/sys/module/ip_gre") or os.path.isdir("/sys/class/net/gre0")


def kernel_steps(vip: str, tun_type: str, port: int = 0) -> list[str]:
    """The usual real server's steps on a kernel that has the modules: the catch-all devices
    the tunnel modules make (tunl0; ip6tnl0 and sit0; gre0 and ip6gre0) take packets from
    any director without a device of one's own, the VIP on one of them, rp_filter off for an
    IPv4 VIP; GUE adds a receive port (ip-fou(8): `ip fou add port N gue`, and `ip -6 fou add`
    for an IPv6 director), which hands what it unwraps to those same devices."""
    six = family_of(vip) == 6
    if tun_type == "gre":
        steps = ["modprobe ip_gre", "modprobe ip6_gre   (for a director that sends over IPv6)",
                 "ip link set gre0 up", "ip link set ip6gre0 up"]
        device = "gre0"
    else:
        steps = ["modprobe ip6_tunnel", "modprobe sit"] if six else ["modprobe ipip"]
        if tun_type == "gue":
            steps = ["modprobe fou", *steps, f"ip fou add port {port} gue",
                     f"ip -6 fou add port {port} gue   (for a director that sends over IPv6)"]
        steps += (["ip link set ip6tnl0 up", "ip link set sit0 up"] if six else
                  ["ip link set tunl0 up"])
        device = "ip6tnl0" if six else "tunl0"
    if six:
        return [*steps, f"ip -6 addr add {vip}/128 dev {device} nodad"]
    return [*steps, f"ip addr add {vip}/32 dev {device}",
            "sysctl -w net.ipv4.conf.all.rp_filter=0",
            f"sysctl -w net.ipv4.conf.{device}.rp_filter=0"]


def outer_ipv4_payload(packet: bytes, proto: int) -> bytes | None:
    """What follows the outer IPv4 header of ``packet`` (as a raw IPv4 socket reads it: the
    whole packet) when its protocol is ``proto``, to its total length; else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != proto:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = _H.unpack_from(packet, 2)[0]
    if ihl < 20 or total > len(packet) or total < ihl:
        return None
    return bytes(packet[ihl:total])


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
    tun_type = "ipip"
    port = 0

    def __init__(self, vip: str, device: str | None = None, tun_type: str = "ipip",
                 port: int | None = None) -> None:
        self.port = check_tunnel(tun_type, port)
        self.tun_type = tun_type
        self.family = family_of(vip)
        self.vip = socket.inet_pton(socket.AF_INET6 if self.family == 6 else socket.AF_INET,
                                    vip)
        self.vip_text = vip
        self.device = device or device_for(vip)
        self.counters: Counter[str] = Counter()
        self.saved_rp_filter: dict[str, str] = {}
        self.tun = -1
        self.sockets: list[tuple[socket.socket, int, str]] = []
        """(raw or UDP socket, its outer family 4 or 6, what the steps say of it)."""
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
        for af, kind, proto, said in sockets_for(self.family, self.tun_type, self.port):
            try:
                sock = self._socket(af, kind, proto)
            except OSError as exc:
                if self.tun_type != "ipip":
                    if af == socket.AF_INET6 and exc.errno == errno.EAFNOSUPPORT:
                        continue  # IPv6 off on this host: no IPv6 outer header here
                    raise  # a GUE port taken, say: the person must know
                if af == socket.AF_INET6 and not self.sockets:
                    raise  # an IPv6 VIP's ip6ip6 socket is not optional
                continue  # IPv6 off on this host: no 4in6 for an IPv4 VIP
            self.sockets.append((sock, 6 if af == socket.AF_INET6 else 4, said))

    def _socket(self, af: int, kind: int, proto: int) -> socket.socket:
        sock = socket.socket(af, kind, proto)
        if kind != socket.SOCK_DGRAM:
            return sock
        try:
            if af == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(SOL_UDP, UDP_NO_CHECK6_RX, 1)
            sock.bind(("::" if af == socket.AF_INET6 else "0.0.0.0", self.port))
        except OSError:
            sock.close()
            raise
        return sock

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
        """One read of a socket of ``outer_family``: the inner packet to the device, when it
        is one whole packet of the VIP's family addressed to the VIP; else counted."""
        if self.tun_type == "ipip":
            inner = decapsulate(packet, outer_family, self.family)
        else:
            inner = self._unwrap(packet, outer_family)
            if inner is None:
                return
        if inner is None:
            self.counters["malformed"] += 1
        elif destination(inner) != self.vip:
            self.counters["not_for_vip"] += 1
        else:
            os.write(self.tun, inner)
            self.counters["decapsulated"] += 1

    def _unwrap(self, packet: bytes, outer_family: int) -> bytes | None:
        """GUE's or GRE's inner packet, checked whole; None when counted already."""
        try:
            if self.tun_type == "gue":  # a UDP socket reads the UDP payload
                family, inner = encap.gue_decapsulate(packet)
            else:
                payload = packet if outer_family == 6 else outer_ipv4_payload(packet,
                                                                              IPPROTO_GRE)
                if payload is None:
                    self.counters["malformed"] += 1
                    return None
                family, inner = encap.gre_decapsulate(payload)
        except encap.NotDecapsulated as refused:
            self.counters[refused.reason] += 1
            return None
        if family != self.family:
            self.counters["other_family"] += 1
            return None
        whole = inner_packet(inner, family)
        if whole is None:
            self.counters["malformed"] += 1
        return whole

    def describe(self) -> str:
        """What it unwraps, as the handle tells probes: ``ipip``, ``gue PORT`` or ``gre``."""
        return f"gue {self.port}" if self.tun_type == "gue" else self.tun_type

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

"""A TUN real server's decapsulator in userspace, for kernels without the ipip module.

A raw socket on IP protocol 4 receives the director's IP-in-IP packets (and, because a raw socket
took them, the kernel sends no "protocol unreachable"); the inner packet, addressed to the VIP,
is written to a TUN device holding the VIP, which hands it to this host's stack as if it had
arrived on that device. The stack answers the client straight from the VIP. rp_filter must be
off on the device, since the client is not reached through it.
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

from pylvs.core.packet import IPPROTO_IPIP, decapsulate_ipip

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
DEVICE = "pylvs-tun0"
RP_FILTER = "/proc/sys/net/ipv4/conf/{}/rp_filter"


def kernel_has_ipip() -> bool:
    """The standard way needs the ipip module (which makes tunl0)."""
    return os.path.isdir("/sys/module/ipip") or os.path.isdir("/sys/class/net/tunl0")


class Decapsulator:
    def __init__(self, vip: str, device: str = DEVICE) -> None:
        self.vip = socket.inet_aton(vip)
        self.vip_text = vip
        self.device = device
        self.counters: Counter[str] = Counter()
        self.saved_rp_filter: dict[str, str] = {}
        self.tun = -1
        self.raw: socket.socket | None = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self.tun = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("16sH", self.device.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(self.tun, TUNSETIFF, ifr)
        _ip("link", "set", self.device, "up")
        _ip("addr", "add", f"{self.vip_text}/32", "dev", self.device)
        for name in ("all", self.device):
            self._set_rp_filter(name, "0")
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)

    def _set_rp_filter(self, name: str, value: str) -> None:
        path = RP_FILTER.format(name)
        with open(path) as fh:
            self.saved_rp_filter.setdefault(name, fh.read().strip())
        with open(path, "w") as fh:
            fh.write(value)

    def steps(self) -> list[str]:
        return [f"TUN device {self.device} (userspace decapsulation), up",
                f"ip addr add {self.vip_text}/32 dev {self.device}",
                *(f"net.ipv4.conf.{name}.rp_filter = 0" for name in self.saved_rp_filter),
                "raw socket on IP protocol 4 (IP-in-IP) → inner packets to the device"]

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        assert self.raw is not None
        while not should_stop():
            if not select.select([self.raw], [], [], 0.2)[0]:
                continue
            self.handle(self.raw.recv(65535))

    def handle(self, packet: bytes) -> None:
        inner = decapsulate_ipip(packet)
        if inner is None:
            self.counters["malformed"] += 1
        elif inner[16:20] != self.vip:
            self.counters["not_for_vip"] += 1
        else:
            os.write(self.tun, inner)
            self.counters["decapsulated"] += 1

    def close(self) -> None:
        """Closing the device's descriptor removes it (it was never made persistent)."""
        if self.raw is not None:
            self.raw.close()
            self.raw = None
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

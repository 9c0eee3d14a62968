"""The seed's DR real-server steps, done on the host (or namespace) this runs in.

A DR real server must accept packets addressed to the VIP, so the VIP sits on ``lo`` as a /32;
and it must never answer ARP for it, or the client's neighbours would learn the real server's MAC
for the VIP and bypass the director. ``arp_ignore=1`` answers ARP only for addresses on the
interface asked; ``arp_announce=2`` never uses the VIP as the source of its own ARP requests.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess

SYSCTL_DIR = "/proc/sys/net/ipv4/conf"
DR_SYSCTLS = (("arp_ignore", 1), ("arp_announce", 2))


def configure_dr(vip: str, interface: str | None = None, undo: bool = False) -> list[str]:
    """Do (or undo) the DR steps; returns one line per step, as a person would have typed it."""
    vip = _check_vip(vip)
    interfaces = ["all", "lo"]
    if interface and interface not in interfaces:
        if not os.path.isdir(os.path.join(SYSCTL_DIR, interface)):
            raise ValueError(f"no such interface: {interface}")
        interfaces.append(interface)
    steps = [_sysctl(ifname, key, 0 if undo else value)
             for ifname in interfaces for key, value in DR_SYSCTLS]
    steps.append(_vip_on_lo(vip, undo))
    return steps


def _check_vip(vip: str) -> str:
    try:
        return str(ipaddress.IPv4Address(vip))
    except ValueError:
        raise ValueError(f"bad VIP {vip!r}: not an IPv4 address") from None


def _sysctl(ifname: str, key: str, value: int) -> str:
    with open(os.path.join(SYSCTL_DIR, ifname, key), "w") as fh:
        fh.write(f"{value}\n")
    return f"net.ipv4.conf.{ifname}.{key} = {value}"


def _vip_on_lo(vip: str, undo: bool) -> str:
    argv = ["ip", "addr", "del" if undo else "add", f"{vip}/32", "dev", "lo"]
    done = " ".join(argv)
    if _on_lo(vip) != undo:
        return f"{done} (already {'absent' if undo else 'present'})"
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"{done}: {result.stderr.strip()}")
    return done


def _on_lo(vip: str) -> bool:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True,
                         text=True, check=True).stdout
    return f" {vip}/32 " in out

"""The VRRP segment of tests/helpers/segment.py in both families: every host also has
2001:db8:50::N/64 and its link-local address (DAD off in the namespaces, so no address waits as
tentative; the bridge's namespace has IPv6 off, a switch of no address), pylvs and keepalived
started with IPv6 instances (VRRPv3 to ff02::12 from the link-local address), and what a host
holds read with `ip -6 addr`."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.segment import SUBNET, VIP, Segment, ip

SUBNET6 = "2001:db8:50::"
VIP6 = f"{SUBNET6}100"
LINK_VIP = "fe80::51"
"""A link-local VIP to list first, as RFC 5798 §5.2.9 wants an IPv6 advert's first address."""


def address6(number: int) -> str:
    return f"{SUBNET6}{number}"


class Segment6(Segment):
    def ns(self, name: str) -> str:
        full = super().ns(name)
        values = (["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
                  if name == "br" else
                  ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        subprocess.run(["ip", "netns", "exec", full, "sysctl", "-qw", *values], check=True,
                       capture_output=True, timeout=10)
        return full

    def host(self, name: str, number: int) -> str:
        ns = super().host(name, number)
        ip("-n", ns, "addr", "add", f"{address6(number)}/64", "dev", "eth0", "nodad")
        return ns

    def link_local(self, name: str) -> str:
        """The host's link-local address on eth0: its VRRP source."""
        out = ip("-n", self.hosts[name], "-6", "addr", "show", "dev", "eth0", "scope", "link")
        found = [word.split("/")[0] for word in out.split("inet6 ")[1:]]
        return next(a for a in found if a != LINK_VIP)

    def holds(self, name: str, vip: str = VIP6) -> bool:
        """Whether the host has ``vip`` on eth0, with any prefix (keepalived keeps a
        virtual_ipaddress's own /len; pylvs adds /128 or /32)."""
        out = ip("-n", self.hosts[name], "-6" if ":" in vip else "-4", "addr", "show", "dev",
                 "eth0")
        return f" {vip}/" in out

    def holds_vip(self, name: str) -> bool:
        return self.holds(name, VIP6)

    def real_server6(self, name: str, number: int, vips: tuple[str, ...] = (VIP6,)) -> None:
        """The DR real server steps for each VIP, then an HTTP server on '::' (both
        families)."""
        self.hosts[name] = self.host(name, number)
        for vip in vips:
            subprocess.run(["ip", "netns", "exec", self.hosts[name], sys.executable, "-m",
                            "pylvs", "realserver", "--mode", "dr", "--vip", vip, "--interface",
                            "eth0"], check=True, capture_output=True, timeout=30)
        self.start(name, [sys.executable, "-m", "pylvs.lab.httpserver", "--name", name,
                          "--port", "80", "--bind", "::"])

    def pylvs6(self, name: str, priority: int, body: str = "", servers: tuple[int, ...] = (11,),
               director: str = "", vrrp: str = "", vips: tuple[str, ...] = (VIP6,)) -> None:
        """pylvs with one IPv6 service and one [vrrp] instance over ``vips`` (VRID 61,
        advert 1 s), or with ``body`` (its own services and instances) instead."""
        if not body:
            body = service6(VIP6, servers)
            listed = ", ".join(f'"{v}"' for v in vips)
            body += (f"[vrrp]\nvirtual_router_id = 61\npriority = {priority}\nadvert_int = 1\n"
                     f"virtual_ipaddress = [{listed}]\n{vrrp}\n")
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as fh:
            fh.write(f'[director]\ninterface = "eth0"\ncontrol_socket = "{self.socket(name)}"\n'
                     f"{director}\n{body}")
        self.start(name, [sys.executable, "-m", "pylvs", "run", path])

    def keepalived6(self, name: str, instances: list[tuple[str, int, int, tuple[str, ...], str]]
                    ) -> None:
        """keepalived --vrrp with one vrrp_instance per (name, vrid, priority, VIPs, extra
        lines), advert 1 s, state BACKUP; the VIPs' family is the instance's."""
        path = os.path.join(self.tmp, f"{name}.conf")
        with open(path, "w") as fh:
            fh.write(f"global_defs {{\n  router_id {name}\n}}\n")
            for iname, vrid, priority, vips, extra in instances:
                listed = "".join(f"    {v}/{128 if ':' in v else 32} dev eth0\n" for v in vips)
                fh.write(f"vrrp_instance {iname} {{\n  state BACKUP\n  interface eth0\n"
                         f"  virtual_router_id {vrid}\n  priority {priority}\n  advert_int 1\n"
                         f"{extra}  virtual_ipaddress {{\n{listed}  }}\n}}\n")
        self.start(name, ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                          "--log-detail", "-f", path, "-p", f"{self.tmp}/{name}.pid",
                          "-r", f"{self.tmp}/{name}-vrrp.pid"])


def service6(vip: str, servers: tuple[int, ...] = (11,), scheduler: str = "rr") -> str:
    """An HTTP service on ``vip`` (either family) with DR real servers of its family."""
    text = (f'[[virtual_server]]\naddress = "{f"[{vip}]" if ":" in vip else vip}:80"\n'
            f'scheduler = "{scheduler}"\n\n')
    for number in servers:
        real = f"[{address6(number)}]" if ":" in vip else f"{SUBNET}.{number}"
        text += f'  [[virtual_server.real_server]]\n  address = "{real}:80"\n\n'
    return text


def segment6_fixture():
    """A fresh Segment6 for one test; its namespaces gone afterwards."""
    made = Segment6()
    try:
        yield made
    finally:
        made.close()
    assert not any(ns in ip("netns", "list") for ns in made.made)


__all__ = ["SUBNET", "SUBNET6", "VIP", "VIP6", "LINK_VIP", "Segment6", "address6", "service6",
           "segment6_fixture"]

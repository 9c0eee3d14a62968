"""The fuzz targets: bytes in; only the refusals each reader promises may come out."""

from __future__ import annotations

from collections.abc import Callable

import schedulers
from forwarders import NextHop
from pylvs.adm import commands, config, ipvsadm, keepalived, ruleset
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import parse
from pylvs.ha import sync, vrrp

VIP = "192.0.2.100"
SERVERS = (("198.51.100.1", "dr"), ("198.51.100.2", "nat"), ("198.51.100.3", "tun"))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def packet(data: bytes) -> None:
    parse(data)


def _director() -> Director:
    services = []
    for proto in ("tcp", "udp"):
        service = VirtualService(proto, VIP, 80, schedulers.get("rr")())
        for address, method in SERVERS:
            service.add_real_server(RealServer(address, 8080 if method == "nat" else 80,
                                               forward=method))
        services.append(service)
    director = Director(services)
    director.add_interface("eth0", b"\x02\x00\x00\x00\x00\x02")
    for address, _ in SERVERS:
        director.set_hop(ip_to_int(address), NextHop(b"\x02\x00\x00\x00\x00\x02",
                                                      b"\x02\x00\x00\x00\x01\x01", "eth0",
                                                      ip_to_int("198.51.100.254"), 1500))
    return director


_DIRECTOR = _director()


def director(data: bytes) -> None:
    """Each input split into frames (first byte: how many; then 2-byte lengths), fed through
    one long-lived director, with and without a partial checksum: every method both ways, ICMP,
    the fast and the general path, and the state the earlier frames left."""
    count, at = (data[0] % 8) + 1 if data else 1, 1
    for i in range(count):
        size = int.from_bytes(data[at:at + 2], "big") if at + 2 <= len(data) else 0
        frame = bytearray(data[at + 2:at + 2 + size])
        at += 2 + size
        out = _DIRECTOR.handle(frame, float(i), csum_partial=bool(i % 2))
        if out is not None:
            assert isinstance(out[0], bytearray | bytes) and out[1] == "eth0"
    _DIRECTOR.tick(float(count))


def adm(data: bytes) -> None:
    """One ipvsadm line on a fresh director: refused by ipvsadm's parser, or applied (a
    refusal of the director is an answer, not an exception)."""
    argv = _text(data).split()
    try:
        ipvsadm.parse(argv)
    except ipvsadm.UsageError:
        return
    rc, _, _ = commands.adm(_director(), argv, 0.0)
    assert rc in (0, ipvsadm.EXIT_USAGE, ipvsadm.EXIT_DIRECTOR)


def restore(data: bytes) -> None:
    """-R input: every line split as ipvsadm splits it, then parsed."""
    for _, _, argv in ruleset.command_lines(_text(data).splitlines()):
        try:
            ipvsadm.parse(argv)
        except ipvsadm.UsageError:
            pass


def toml(data: bytes) -> None:
    try:
        config.parse(_text(data), "fuzz.toml")
    except config.ConfigError:
        pass


def keepalived_conf(data: bytes) -> None:
    try:
        config.build(keepalived.convert(_text(data), "fuzz.conf", interface="eth0").data)
    except config.ConfigError:
        pass


def sync_message(data: bytes) -> None:
    try:
        sync.decode(data)
    except ValueError:
        pass


def vrrp_packet(data: bytes) -> None:
    try:
        vrrp.parse_packet(data)
    except ValueError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "packet": packet, "director": director, "adm": adm, "restore": restore, "toml": toml,
    "keepalived": keepalived_conf, "sync": sync_message, "vrrp": vrrp_packet,
}

"""The director's I/O loop: ring in, core, ring out; set-up and tear-down of the host state.

Start order matters: the nftables steal rules go in before the VIP is added, so the director's
own kernel never answers a service frame; stop removes the VIP first, then the rules. Everything
made here is removed in ``close()``, which runs on SIGINT, SIGTERM and on any failure.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

from forwarders import NextHop
from pylvs import netio
from pylvs.config import Config
from pylvs.control import ControlServer
from pylvs.director import Director
from pylvs.model import int_to_ip, ip_to_int
from pylvs.packet import ETH_HLEN
from pylvs.segment import segment_tcp

log = logging.getLogger("pylvs")

TICK = 1.0
RESOLVE_TIMEOUT = 1.0


class Stop(Exception):
    """Raised from a signal handler to leave the loop through the clean-up path."""


class Engine:
    def __init__(self, config: Config, director: Director | None = None) -> None:
        self.config = config
        self.director = director or Director(config.services)
        self.ifname = config.interface
        self.table = f"pylvs_{os.getpid()}"
        self.sock: netio.PacketSocket | None = None
        self.steal: netio.StealRules | None = None
        self.vips: list[str] = []
        self.resolver: netio.NeighbourResolver | None = None
        self.control: ControlServer | None = None
        self.mac = b""
        self.max_frame = 0

    def start(self) -> None:
        self.mac = netio.interface_mac(self.ifname)
        self.max_frame = ETH_HLEN + netio.interface_mtu(self.ifname)
        self.control = ControlServer(self.config.control_socket, self._adm)
        self.sock = netio.PacketSocket(self.ifname)
        self.steal = netio.StealRules(self.ifname, self.table)
        self.steal.install((s.protocol, s.address, s.port) for s in self.config.services)
        for vip in sorted({s.address for s in self.config.services}):
            if netio.add_vip(self.ifname, vip):
                self.vips.append(vip)
        self.resolver = netio.NeighbourResolver(self.ifname)
        for ip in self.director.real_server_ips():
            self._learn(ip, self.resolver.resolve(int_to_ip(ip), RESOLVE_TIMEOUT))

    def _learn(self, ip: int, mac: bytes | None) -> None:
        if mac is None:
            log.warning("no MAC yet for real server %s; probing", int_to_ip(ip))
            return
        self.director.set_hop(ip, NextHop(self.mac, mac, self.ifname))

    def _refresh_neighbours(self) -> None:
        assert self.resolver is not None
        for ip_text, mac in self.resolver.refresh().items():
            self._learn(ip_to_int(ip_text), mac)
        for ip in self.director.real_server_ips() - self.director.hops.keys():
            mac = self.resolver.lookup(int_to_ip(ip))
            if mac is None:
                self.resolver.probe(int_to_ip(ip))
            else:
                self._learn(ip, mac)

    def _adm(self, argv: list[str]) -> tuple[int, str, str]:
        return self.director.adm(argv, time.monotonic())

    def loop(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        assert self.sock is not None and self.control is not None
        sock, director, control = self.sock, self.director, self.control
        handle, max_frame = director.handle, self.max_frame
        next_tick = time.monotonic() + TICK
        while not should_stop():
            batch = sock.receive(0.1)
            now = time.monotonic()
            for view, status in batch:
                if len(view) > max_frame:
                    self._forward_oversized(view, now)
                    continue
                out = handle(bytearray(view), now, bool(status & netio.TP_STATUS_CSUMNOTREADY))
                if out is not None:
                    sock.send(out)
            if batch:
                sock.flush()
            control.poll()
            if now >= next_tick:
                director.tick(now)
                self._refresh_neighbours()
                next_tick = now + TICK

    def _forward_oversized(self, view: memoryview, now: float) -> None:
        """A GSO super-frame from a local sender: segment it as the NIC would have."""
        assert self.sock is not None
        segments = segment_tcp(view, self.max_frame - ETH_HLEN)
        if not segments:
            self.director.counters["oversized_dropped"] += 1
            return
        self.director.counters["segmented"] += 1
        for segment in segments:
            out = self.director.handle(segment, now, csum_partial=True)
            if out is not None:
                self.sock.send(out)

    def close(self) -> None:
        """Undo start(); safe to call twice and after a partial start."""
        steps: list[Callable[[], None]] = [
            *(lambda v=vip: netio.remove_vip(self.ifname, v) for vip in self.vips),
        ]
        if self.steal is not None:
            steps.append(self.steal.remove)
        for obj in (self.sock, self.resolver, self.control):
            if obj is not None:
                steps.append(obj.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep cleaning; report what could not be undone
                log.error("clean-up step failed: %s", exc)
        self.vips, self.steal, self.sock, self.resolver, self.control = [], None, None, None, None


def run(config: Config) -> int:
    engine = Engine(config)

    def on_signal(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start()
        services = ", ".join(f"{s.protocol} {s.endpoint} ({s.scheduler.name}, "
                             f"{len(s.real_servers)} real servers)" for s in config.services)
        log.info("director up on %s: %s; control socket %s", config.interface, services,
                 config.control_socket)
        engine.loop()
    except Stop as stop:
        log.info("stopping on %s", stop)
    finally:
        engine.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

"""The director's sans-IO core: one frame in, at most one frame out.

Ties together the virtual service lookup, the connection table, the scheduler and the forwarder,
following IPVS's order of work: find the service by (protocol, VIP, port); find the connection,
or schedule a new one (TCP only on SYN without RST); run the state machine; count; refuse TTL ≤ 1;
complete a checksum the sender left partial; rewrite for the connection's real server. Frames that
are not for a virtual service are left alone (None, counted as ``not_service``). Next hops are
learned by the I/O shell and handed in through ``set_hop``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import forwarders
from forwarders import NextHop
from pylvs import ipvsadm
from pylvs.conntrack import INPUT, ConnectionTable, Timeouts
from pylvs.model import VirtualService
from pylvs.packet import IPPROTO_TCP, TCP_RST, TCP_SYN, complete_l4_checksum, parse


class Director:
    def __init__(self, services: Iterable[VirtualService], timeouts: Timeouts | None = None
                 ) -> None:
        self.services: dict[tuple[int, int, int], VirtualService] = {s.key: s for s in services}
        self.table = ConnectionTable(timeouts)
        self.hops: dict[int, NextHop] = {}
        self.counters: Counter[str] = Counter()

    def set_hop(self, ip: int, hop: NextHop) -> None:
        self.hops[ip] = hop

    def real_server_ips(self) -> set[int]:
        return {rs.ip for svc in self.services.values() for rs in svc.real_servers}

    def handle(self, frame: bytearray, now: float, csum_partial: bool = False
               ) -> bytearray | None:
        flow = parse(frame)
        if flow is None:
            self.counters["not_ipv4"] += 1
            return None
        service = self.services.get((flow.proto, flow.daddr, flow.dport))
        if service is None:
            self.counters["not_service"] += 1
            return None
        key = (flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport)
        conn = self.table.get(key)
        if conn is None:
            if flow.proto == IPPROTO_TCP and (flow.tcp_flags & (TCP_SYN | TCP_RST)) != TCP_SYN:
                self.counters["no_connection"] += 1
                return None
            server = service.scheduler.pick(service.real_servers, flow)
            if server is None:
                self.counters["no_destination"] += 1
                return None
            conn = self.table.create(key, service, server, now)
        server = conn.server
        self.table.update(conn, INPUT, flow.tcp_flags, now)
        for stats in (service.stats, server.stats):
            stats.inpkts += 1
            stats.inbytes += flow.ip_len
        if flow.ttl <= 1:
            self.counters["ttl_exceeded"] += 1
            return None
        hop = self.hops.get(server.ip)
        if hop is None:
            self.counters["no_next_hop"] += 1
            return None
        if csum_partial:
            complete_l4_checksum(frame, flow)
        out = forwarders.get(conn.forward).forward(frame, hop)
        if out is not None:
            self.counters["forwarded"] += 1
        return out

    def tick(self, now: float) -> None:
        self.counters["expired"] += self.table.expire(now)

    def adm(self, argv: list[str], now: float) -> tuple[int, str, str]:
        """Run one ipvsadm command line; returns (exit status, stdout, stderr)."""
        try:
            command = ipvsadm.parse(argv)
        except ipvsadm.UsageError as exc:
            return ipvsadm.EXIT_USAGE, "", f"{exc}\n"
        if command.name == "help":
            return 0, ipvsadm.USAGE, ""
        if command.name == "version":
            return 0, ipvsadm.VERSION_LINE + "\n", ""
        if "connection" in command.flags:
            return 0, ipvsadm.render_connections(self.table, now), ""
        if "timeout" in command.flags:
            return 0, ipvsadm.render_timeout(self.table.timeouts), ""
        services = list(self.services.values())
        if command.service is not None:
            found = ipvsadm.find_service(services, command.service)
            if found is None:
                return ipvsadm.EXIT_DIRECTOR, "", "No such service\n"
            services = [found]
        return 0, ipvsadm.render_services(services, command), ""

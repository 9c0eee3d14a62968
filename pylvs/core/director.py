"""The director's sans-IO core: one frame in, at most one frame out.

Ties together the virtual service lookup, the connection table, the scheduler and the forwarder,
following IPVS's order of work: find the service by (protocol, VIP, port); find the connection,
or schedule a new one (TCP only on SYN without RST); run the state machine; count; refuse TTL ≤ 1;
complete a checksum the sender left partial; rewrite for the connection's real server. A NAT real
server's reply is matched by its own 5-tuple and sent back to the MAC the client's frames came
from. No usable real server → ICMP port unreachable; TTL ≤ 1 → ICMP time exceeded, both from the
VIP, as IPVS's icmp_send. Other frames are left alone (None, counted). Next hops are learned by
the I/O shell and handed in through ``set_hop``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import forwarders
from forwarders import NextHop
from pylvs.adm import commands, ipvsadm, layouts
from pylvs.core import icmp
from pylvs.core.conntrack import INPUT, KEY, OUTPUT, Connection, ConnectionTable, Template, Timeouts
from pylvs.core.icmp import DEST_UNREACH, FRAG_NEEDED, PORT_UNREACH, TIME_EXCEEDED, TTL_EXPIRED
from pylvs.core.model import PROTO_NUMBERS, VirtualService, ip_to_int
from pylvs.core.packet import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    TCP_RST,
    TCP_SYN,
    Flow,
    complete_l4_checksum,
    dont_fragment,
    parse,
)

Out = tuple[bytearray, str]
"""A frame to send and the interface to send it on."""
ESTIMATOR_INTERVAL = 2.0


class Director:
    def __init__(self, services: Iterable[VirtualService], timeouts: Timeouts | None = None
                 ) -> None:
        self.services: dict[tuple[int, int, int], VirtualService] = {s.key: s for s in services}
        self.table = ConnectionTable(timeouts)
        self.hops: dict[int, NextHop] = {}
        self.interfaces: dict[str, bytes] = {}
        self.default_interface = ""
        self.counters: Counter[str] = Counter()
        self.path_mtu: dict[int, int] = {}
        """Client address → the MTU a "fragmentation needed" told it (for re-segmenting GSO)."""
        self.nat_endpoints: set[tuple[int, int, int]] = set()
        self.listeners: list[Callable[[], None]] = []
        self.next_estimate = 0.0
        self.changed()

    def add_interface(self, name: str, mac: bytes) -> None:
        """An interface frames arrive on; the first one is the default ingress."""
        self.interfaces[name] = mac
        self.default_interface = self.default_interface or name

    def set_hop(self, ip: int, hop: NextHop) -> None:
        self.hops[ip] = hop

    def real_server_ips(self) -> set[int]:
        return {rs.ip for svc in self.services.values() for rs in svc.real_servers}

    def handle(self, frame: bytearray, now: float, csum_partial: bool = False,
               ingress: str = "") -> Out | None:
        if not csum_partial:
            out = self._established(frame, now)
            if out is not None:
                return out
        return self.handle_general(frame, now, csum_partial, ingress)

    def handle_general(self, frame: bytearray, now: float, csum_partial: bool = False,
                       ingress: str = "") -> Out | None:
        flow = parse(frame)
        if flow is None:
            self.counters["not_ipv4"] += 1
            return None
        ingress = ingress or self.default_interface
        service = self.services.get((flow.proto, flow.daddr, flow.dport))
        if service is None:
            if flow.proto == IPPROTO_ICMP:
                return self._related_icmp(frame, flow, now)
            return self._reply(frame, flow, now, csum_partial)
        key = (flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport)
        conn = self.table.get(key)
        if conn is None:
            if flow.proto == IPPROTO_TCP and (flow.tcp_flags & (TCP_SYN | TCP_RST)) != TCP_SYN:
                self.counters["no_connection"] += 1
                return None
            if self.table.full():
                self.counters["table_full"] += 1
                return None
            template = None
            if service.persistence_timeout:
                template = self._template(service, flow, now)
                server = None if template is None else template.server
            else:
                server = service.scheduler.pick(service.real_servers, flow)
            if server is None:
                self.counters["no_destination"] += 1
                return self._icmp_error(frame, flow, ingress, DEST_UNREACH, PORT_UNREACH)
            conn = self.table.create(key, service, server, now)
            if template is not None:
                self.table.attach(conn, template)
            if conn.forward == "nat":
                conn.return_hop = self._return_hop(frame, ingress)
        elif conn.forward == "nat" and conn.return_hop is None:  # synced from another director
            conn.return_hop = self._return_hop(frame, ingress)
        server = conn.server
        table = self.table
        table.update(conn, INPUT, flow.tcp_flags, now)
        if table.outbox is not None:
            table.count_in(conn)
        for stats in (service.stats, server.stats):
            stats.inpkts += 1
            stats.inbytes += flow.ip_len
        if flow.ttl <= 1:
            self.counters["ttl_exceeded"] += 1
            return self._icmp_error(frame, flow, ingress, TIME_EXCEEDED, TTL_EXPIRED)
        hop = self.hops.get(server.ip)
        if hop is None:
            self.counters["no_next_hop"] += 1
            return None
        forwarder = forwarders.get(conn.forward)
        if flow.ip_len + forwarder.overhead > hop.mtu:
            return self._too_big(frame, flow, ingress, hop.mtu - forwarder.overhead)
        if csum_partial:
            complete_l4_checksum(frame, flow)
        out = forwarder.forward(frame, flow, conn, hop)
        if out is None:
            return None
        self.counters["forwarded"] += 1
        return out, hop.interface

    def _established(self, frame: bytearray, now: float) -> Out | None:
        """The common case at full speed: a frame of an established connection (either way for
        NAT) with a plain 20-byte IP header. Does what the general path does with fewer steps;
        anything else (returns None) takes the general path."""
        if len(frame) < 42 or frame[12:15] != b"\x08\x00E" or frame[20] & 0x3F or frame[21]:
            return None
        proto = frame[23]
        entries = self.table.by_proto.get(proto)
        if entries is None or frame[22] <= 1:
            return None
        key = bytes(frame[26:38])
        conn = entries.get(key)
        inbound = conn is not None
        if not inbound:
            conn = self.table.replies[proto].get(key)
            if conn is None or conn.return_hop is None:
                return None
        ip_len = (frame[16] << 8) | frame[17]
        if ip_len > len(frame) - 14:
            return None
        if proto == IPPROTO_TCP:
            offset = (frame[46] >> 4) * 4 if len(frame) >= 54 else 0
            if offset < 20 or offset > ip_len - 20:
                return None
            flags = frame[47]
        elif ip_len < 28:
            return None
        else:
            flags = 0
        if not inbound:
            return self._fast_reply(frame, conn, key, proto, flags, ip_len, now)
        server = conn.server
        hop = self.hops.get(server.ip)
        forward = conn.forward
        if hop is None or ip_len + (20 if forward == "tun" else 0) > hop.mtu:
            return None
        table = self.table
        table.update(conn, INPUT, flags, now)
        if table.outbox is not None:
            table.count_in(conn)
        stats = conn.service.stats
        stats.inpkts += 1
        stats.inbytes += ip_len
        stats = server.stats
        stats.inpkts += 1
        stats.inbytes += ip_len
        self.counters["forwarded"] += 1
        if forward != "dr":
            saddr, daddr, sport, dport = KEY.unpack(key)
            flow = Flow(proto, saddr, daddr, sport, dport, 34, flags, frame[22], ip_len)
            return forwarders.get(forward).forward(frame, flow, conn, hop), hop.interface
        frame[0:12] = hop.macs
        csum = ((frame[24] << 8) | frame[25]) + 0x100  # RFC 1624: TTL − 1 in the high byte
        frame[22] -= 1
        csum = (csum & 0xFFFF) + (csum >> 16)
        if csum == 0xFFFF:  # the same number; a from-scratch sum of a header is never 0xFFFF
            csum = 0
        frame[24] = csum >> 8
        frame[25] = csum & 0xFF
        return frame, hop.interface

    def _return_hop(self, frame: bytearray, ingress: str) -> NextHop:
        """A NAT reply goes back to the MAC the client's frames came from."""
        return NextHop(self.interfaces.get(ingress, b"\0" * 6), bytes(frame[6:12]), ingress)

    def _fast_reply(self, frame: bytearray, conn: Connection, key: bytes, proto: int,
                    flags: int, ip_len: int, now: float) -> Out | None:
        saddr, daddr, sport, dport = KEY.unpack(key)
        if (proto, daddr, dport) in self.services:
            return None  # addressed to a service: the general path decides, as it would
        self.table.update(conn, OUTPUT, flags, now)
        for stats in (conn.service.stats, conn.server.stats):
            stats.outpkts += 1
            stats.outbytes += ip_len
        self.counters["replied"] += 1
        hop = conn.return_hop
        flow = Flow(proto, saddr, daddr, sport, dport, 34, flags, frame[22], ip_len)
        return forwarders.get(conn.forward).reply(frame, flow, conn, hop), hop.interface

    def _related_icmp(self, frame: bytearray, flow: Flow, now: float) -> Out | None:
        """An ICMP error about a tracked connection: from the client, on to its real server by
        the connection's method; from a NAT real server, back to the client as from the VIP."""
        q = icmp.quoted(frame, flow)
        if q is None:
            self.counters["not_service"] += 1
            return None
        conn = self.table.get((q.proto, q.daddr, q.dport, q.saddr, q.sport))
        inbound = conn is not None and flow.daddr == conn.vaddr
        if not inbound:
            conn = self.table.get_reply((q.proto, q.daddr, q.dport, q.saddr, q.sport))
        if conn is None or not icmp.checksum_ok(frame, flow) or flow.ttl <= 1:
            self.counters["icmp_dropped"] += 1
            return None
        forwarder = forwarders.get(conn.forward)
        if inbound:
            hop = self.hops.get(conn.server.ip)
            if hop is None:
                self.counters["no_next_hop"] += 1
                return None
            if conn.forward == "nat":
                icmp.rewrite_quoted(frame, flow, q, True, conn.server.ip, conn.server.port)
            out = forwarder.forward(frame, flow, conn, hop)
        else:
            if conn.return_hop is None:
                return None
            icmp.rewrite_quoted(frame, flow, q, False, conn.vaddr, conn.vport)
            hop = conn.return_hop
            out = forwarder.reply(frame, flow, conn, hop)
        if out is None:
            return None
        self.counters["icmp_relayed"] += 1
        return out, hop.interface

    def _too_big(self, frame: bytearray, flow: Flow, ingress: str, mtu: int) -> Out | None:
        """DF set: tell the client the usable MTU (its PMTU discovery does the rest); else drop:
        pylvs does not fragment."""
        if not dont_fragment(frame, flow.l3off):
            self.counters["too_big_dropped"] += 1
            return None
        self.counters["frag_needed"] += 1
        self.path_mtu[flow.saddr] = mtu
        return self._icmp_error(frame, flow, ingress, DEST_UNREACH, FRAG_NEEDED, mtu)

    def _template(self, service: VirtualService, flow: Flow, now: float) -> Template | None:
        """ip_vs_sched_persist: the client network's template, scheduled anew when missing or
        when its server was removed; using it re-arms it."""
        key = (flow.proto, flow.saddr & service.netmask, flow.daddr, flow.dport)
        template = self.table.get_template(key)
        if template is not None and not any(s is template.server
                                            for s in service.real_servers):
            self.table.remove_template(template)
            template = None
        if template is None:
            server = service.scheduler.pick(service.real_servers, flow)
            if server is None:
                return None
            return self.table.create_template(key, service, server, now)
        template.expires = now + service.persistence_timeout
        return template

    def _reply(self, frame: bytearray, flow: Flow, now: float, csum_partial: bool
               ) -> Out | None:
        """A NAT real server's answer: back to the client as from VIP:vport."""
        conn = self.table.get_reply((flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport))
        if conn is None or conn.return_hop is None:
            nat = (flow.proto, flow.saddr, flow.sport) in self.nat_endpoints
            self.counters["reply_no_connection" if nat else "not_service"] += 1
            return None
        self.table.update(conn, OUTPUT, flow.tcp_flags, now)
        for stats in (conn.service.stats, conn.server.stats):
            stats.outpkts += 1
            stats.outbytes += flow.ip_len
        if flow.ttl <= 1:
            self.counters["ttl_exceeded"] += 1
            return None
        if csum_partial:
            complete_l4_checksum(frame, flow)
        out = forwarders.get(conn.forward).reply(frame, flow, conn, conn.return_hop)
        if out is None:
            return None
        self.counters["replied"] += 1
        return out, conn.return_hop.interface

    def _icmp_error(self, frame: bytearray, flow: Flow, ingress: str, icmp_type: int,
                    code: int, mtu: int = 0) -> Out | None:
        mac = self.interfaces.get(ingress)
        if mac is None:
            return None
        self.counters["icmp_sent"] += 1
        return icmp.error_frame(frame, flow, icmp_type, code, mac, mtu), ingress

    def tick(self, now: float) -> None:
        self.counters["expired"] += self.table.expire(now)
        if now >= self.next_estimate:
            for service in self.services.values():
                service.stats.estimate()
                for server in service.real_servers:
                    server.stats.estimate()
            self.next_estimate = now + ESTIMATOR_INTERVAL

    def adm(self, argv: list[str], now: float) -> tuple[int, str, str]:
        """Run one ipvsadm command line; returns (exit status, stdout, stderr)."""
        try:
            command = ipvsadm.parse(argv)
            return 0, self.run_command(command, now), ""
        except ipvsadm.UsageError as exc:
            return ipvsadm.EXIT_USAGE, "", f"{exc}\n"
        except ipvsadm.DirectorError as exc:
            return ipvsadm.EXIT_DIRECTOR, "", f"{exc}\n"

    def run_command(self, command: ipvsadm.Command, now: float) -> str:
        name = command.name
        if name == "help":
            return ipvsadm.USAGE
        if name == "version":
            return ipvsadm.VERSION_LINE + "\n"
        if name == "list":
            return self._list(command, now)
        if name == "save":
            return layouts.render_save(self.services.values(), "numeric" in command.options)
        if name == "restore":
            raise ipvsadm.UsageError("-R reads rules from standard input: use pylvs adm -R")
        if name in ("start-daemon", "stop-daemon"):  # pylvs.shell.engine runs it: no socket here
            raise ipvsadm.DirectorError("the sync daemon runs in pylvs run, not in the core")
        if name == "flush":
            commands.flush(self)
        else:
            commands.CHANGES[name](self, command)
        self.changed()
        return ""

    def _list(self, command: ipvsadm.Command, now: float) -> str:
        options = command.options
        if "connection" in options:
            return layouts.render_connections(self.table.listing(), now,
                                              "persistent-conn" in options)
        if "timeout" in options:
            return layouts.render_timeout(self.table.timeouts)
        if "daemon" in options:
            return ""  # no sync daemon in the core (pylvs.shell.engine lists its own)
        services = list(self.services.values())
        if command.service is not None:
            proto, address, port = command.service
            found = self.services.get((PROTO_NUMBERS[proto], ip_to_int(address), port))
            if found is None:
                raise ipvsadm.DirectorError("No such service")
            services = [found]
        return layouts.render_services(services, command)

    def changed(self) -> None:
        """The rules changed: recompute what depends on them, tell the I/O shell."""
        self.nat_endpoints = {(svc.proto, rs.ip, rs.port) for svc in self.services.values()
                              for rs in svc.real_servers if rs.forward == "nat"}
        for listener in self.listeners:
            listener()

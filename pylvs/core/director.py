"""The director's sans-IO core: one frame in, at most one frame out.

Ties together the virtual service lookup, the connection table, the scheduler and the forwarder,
following IPVS's order of work: find the service by (protocol, VIP, port); find the connection,
or schedule a new one (TCP only on SYN without RST); run the state machine; count; refuse TTL ≤ 1;
complete a checksum the sender left partial; rewrite for the connection's real server. A NAT real
server's reply is matched by its own 5-tuple and sent back to the MAC the client's frames came
from. No usable real server → ICMP port unreachable; TTL ≤ 1 → ICMP time exceeded, both from the
VIP, as IPVS's icmp_send. Other frames are left alone (None, counted). Next hops are learned by
the I/O shell and handed in through ``set_hop``.

IPv6 takes the same steps (ip_vs_in's for AF_INET6): its services are keyed with the family
(model.service_key), its connections by 36 bytes; the errors are ICMPv6's, sent only where
icmp6_send may (icmpv6.may_answer), Packet Too Big for any first fragment or whole packet too big
for its hop; a fragment after the first follows its first fragment's connection (fragments).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterable

from pylvs.core import icmp, icmpv6
from pylvs.core.conntrack import (
    INPUT,
    OUTPUT,
    Connection,
    ConnectionTable,
    Template,
    Timeouts,
    pack_key,
)
from pylvs.core.defense import SCAN_SHARE, Defense
from pylvs.core.forwarding import NextHop
from pylvs.core.fragments import Fragments
from pylvs.core.icmp import DEST_UNREACH, FRAG_NEEDED, PORT_UNREACH, TIME_EXCEEDED, TTL_EXPIRED
from pylvs.core.ipv6 import (
    IPPROTO_ICMPV6,
    Flow6,
    complete_l4_checksum6,
    l4_checksum_ok6,
    parse6,
)
from pylvs.core.marks import Marks
from pylvs.core.model import AF_INET6, RealServer, VirtualService, fwmark_key
from pylvs.core.outbox import Count, Outbox
from pylvs.core.packet import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    TCP_RST,
    TCP_SYN,
    Flow,
    complete_l4_checksum,
    parse,
)
from pylvs.core.sysctls import Sysctls
from pylvs.core.tunnel6 import TUNNEL_MIN_MTU, Verdict, mtu_verdict

Out = tuple[bytearray, str]
"""A frame to send and the interface to send it on."""
ESTIMATOR_INTERVAL = 2.0
MAX_RETURN_HOPS = 4096
REPLY_DEST = struct.Struct("!I2xH")
"""A NAT reply's destination address and port, read from its IP destination on."""
FORWARDED, REPLIED = Count.FORWARDED, Count.REPLIED
"""The counts of every frame, bound here: a global is cheaper than an enum's attribute."""
ERRORS6 = {
    (DEST_UNREACH, PORT_UNREACH): (icmpv6.DEST_UNREACH, icmpv6.PORT_UNREACH),
    (TIME_EXCEEDED, TTL_EXPIRED): (icmpv6.TIME_EXCEEDED, icmpv6.HOPLIMIT),
    (DEST_UNREACH, FRAG_NEEDED): (icmpv6.PACKET_TOO_BIG, 0),
}
"""ICMP's errors as IPVS sends them for IPv6 (ip_vs_leave, decrement_ttl,
ensure_mtu_is_adequate)."""
AnyFlow = Flow | Flow6


class Director:
    def __init__(self, services: Iterable[VirtualService], timeouts: Timeouts | None = None
                 ) -> None:
        self.services: dict[tuple[int, int, int], VirtualService] = {s.key: s for s in services}
        self.outbox = Outbox()
        """The one way out: counts, rules changed, offers to the fast path, connections to sync."""
        self.table = ConnectionTable(timeouts, self.outbox)
        self.hops: dict[int, NextHop] = {}
        self.interfaces: dict[str, bytes] = {}
        self.default_interface = ""
        self.counters: Counter[str] = self.outbox.counts
        """The outbox's counts (``Count``), by the name the tests and the shell read."""
        self.path_mtu: dict[int, int] = {}
        """Client address → the MTU a "fragmentation needed" told it (for re-segmenting GSO)."""
        self.nat_endpoints: set[tuple[int, int, int]] = set()
        self.return_hops: dict[tuple[str, bytes], NextHop] = {}
        self.next_estimate = 0.0
        self.sysctls = Sysctls()
        self.defense = Defense(self.sysctls)
        self.scan: list[Connection] = []
        """drop_entry's snapshot of the table, scanned 1/32 a second (``_scan_batch``)."""
        self.scan_next = 0
        self.marks = Marks()
        """The mark rules that give packets to fwmark services (``set_marks``)."""
        self.port_zero = False
        """Whether a port-0 service exists (IPVS's nullsvc_counter): the catch-all look-up."""
        self.fragments = Fragments()
        """IPv6 first fragments' connections, for the fragments after them."""
        self.changed()

    def set_sysctls(self, sysctls: Sysctls) -> None:
        """/proc/sys/net/ipv4/vs/ as a whole (the config's [sysctl] table); the defences read
        the same values."""
        self.sysctls = sysctls
        self.defense = Defense(sysctls)

    def set_marks(self, marks: Marks) -> None:
        """The config's mark rules: what IPVS would read as skb->mark."""
        self.marks = marks

    def set_max_connections(self, limit: int) -> None:
        """New connections beyond ``limit`` are refused (0: no bound), as IPVS's conn_tab
        bound; the table's share of the host's memory is the shell's to work out."""
        self.table.max_connections = limit

    def add_interface(self, name: str, mac: bytes) -> None:
        """An interface frames arrive on; the first one is the default ingress."""
        self.interfaces[name] = mac
        self.default_interface = self.default_interface or name

    def set_hop(self, ip: int, hop: NextHop) -> None:
        self.hops[ip] = hop

    def real_server_ips(self) -> set[int]:
        return {rs.ip for svc in self.services.values() for rs in svc.real_servers}

    def real_server_addresses(self) -> dict[int, str]:
        """Each real server's address as an int (``set_hop``'s key) and as text."""
        return {rs.ip: rs.address for svc in self.services.values() for rs in svc.real_servers}

    def handle(self, frame: bytearray, now: float, csum_partial: bool = False,
               ingress: str = "") -> Out | None:
        if not csum_partial:
            out = self._established(frame, now)
            if out is None and frame[12:14] == b"\x86\xdd":
                out = self._established6(frame, now)
            if out is not None:
                return out
        return self.handle_general(frame, now, csum_partial, ingress)

    def handle_general(self, frame: bytearray, now: float, csum_partial: bool = False,
                       ingress: str = "") -> Out | None:
        flow: AnyFlow | None = parse(frame) or parse6(frame)
        if flow is None:
            self.counters[Count.NOT_PARSED] += 1
            return None
        ingress = ingress or self.default_interface
        af = flow.af
        if af == AF_INET6 and flow.frag_off:
            return self._later_fragment(frame, flow, now, ingress)
        service = self.service_of(flow)
        if service is None:
            if flow.proto == IPPROTO_ICMP or flow.proto == IPPROTO_ICMPV6 and af == AF_INET6:
                return self._related_icmp(frame, flow, now, ingress)
            return self._reply(frame, flow, now, csum_partial)
        conn = self.table.get((flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport), af)
        if conn is None and service.one_packet:
            return self._one_packet(frame, flow, service, now, csum_partial, ingress)
        if conn is None:
            conn = self._schedule(frame, flow, service, now, ingress)
            if not isinstance(conn, Connection):
                return conn
        elif conn.forwarder.masquerades and conn.return_hop is None:  # synced from another
            conn.return_hop = self._return_hop(frame, ingress)
        self._count_in(conn, flow.tcp_flags, flow.ip_len, now)
        if af == AF_INET6 and flow.more_fragments:
            self.fragments.remember(flow, conn, True, now)
        return self._send(frame, flow, conn, csum_partial, ingress)

    def service_of(self, flow: AnyFlow) -> VirtualService | None:
        """ip_vs_service_find: by the packet's mark first (the mark rules'), then by protocol,
        address and port, then the address's port-0 service (IPVS's catch-all)."""
        services, af = self.services, flow.af
        if self.marks and flow.proto != IPPROTO_ICMP and flow.proto != IPPROTO_ICMPV6:
            mark = self.marks.classify(af, flow.proto, flow.daddr, flow.dport)
            if mark:
                service = services.get(fwmark_key(mark, af))
                if service is not None:
                    return service
        key: tuple[int, ...] = (flow.proto, flow.daddr, flow.dport)
        if af == AF_INET6:
            key += (AF_INET6,)
        service = services.get(key)
        if service is None and self.port_zero:
            service = services.get((flow.proto, flow.daddr, 0, *key[3:]))
        return service

    def _later_fragment(self, frame: bytearray, flow: Flow6, now: float, ingress: str
                        ) -> Out | None:
        """An IPv6 fragment after the first, on the way its first fragment went. Counted in
        bytes only: IPVS counts the packet once (it sees it reassembled)."""
        found = self.fragments.find(flow, now)
        if found is None:
            self.counters[Count.FRAGMENT_NO_CONNECTION] += 1
            return None
        conn, inbound = found
        if inbound:
            conn.service.stats.inbytes += flow.payload_len
            conn.server.stats.inbytes += flow.payload_len
            return self._send(frame, flow, conn, False, ingress)
        if conn.return_hop is None or flow.ttl <= 1:
            self.counters[Count.REPLY_NO_CONNECTION] += 1
            return None
        conn.service.stats.outbytes += flow.payload_len
        conn.server.stats.outbytes += flow.payload_len
        hop = conn.return_hop
        out = conn.forwarder.reply(frame, flow, conn, hop)
        if out is None:
            return None
        self.counters[REPLIED] += 1
        return out, hop.interface

    def _send(self, frame: bytearray, flow: AnyFlow, conn: Connection, csum_partial: bool,
              ingress: str) -> Out | None:
        """A client's packet, counted, on to the connection's real server by its method."""
        if flow.ttl <= 1:
            self.counters[Count.TTL_EXCEEDED] += 1
            return self._icmp_error(frame, flow, ingress, TIME_EXCEEDED, TTL_EXPIRED)
        hop = self.hops.get(conn.server.ip)
        if hop is None:
            self.counters[Count.NO_NEXT_HOP] += 1
            return None
        forwarder = conn.forwarder
        outer = forwarder.outer
        if flow.ip_len + forwarder.overhead > hop.mtu or (
                outer and hop.mtu - forwarder.overhead < TUNNEL_MIN_MTU[outer]):
            return self._too_big(frame, flow, ingress, hop.mtu, outer, forwarder.overhead)
        if csum_partial:
            self._complete_checksum(frame, flow)
        out = forwarder.forward(frame, flow, conn, hop)
        if out is None:
            return None
        self.counters[FORWARDED] += 1
        return out, hop.interface

    @staticmethod
    def _complete_checksum(frame: bytearray, flow: AnyFlow) -> None:
        if isinstance(flow, Flow6):
            complete_l4_checksum6(frame, flow)
        else:
            complete_l4_checksum(frame, flow)

    def _schedule(self, frame: bytearray, flow: AnyFlow, service: VirtualService, now: float,
                  ingress: str) -> Connection | Out | None:
        """A new connection, or what to answer instead. TCP only on SYN without RST, or with
        sloppy_tcp on any packet without RST (tcp_conn_schedule)."""
        if flow.proto == IPPROTO_TCP and not self._may_start(flow.tcp_flags):
            self.counters[Count.NO_CONNECTION] += 1
            return None
        if self.defense.drop_rate and self.defense.todrop():
            self.counters[Count.DEFENSE_DROPPED_PACKETS] += 1
            return None
        if self.table.full():
            self.counters[Count.TABLE_FULL] += 1
            return None
        server, template = self._pick(service, flow, now)
        if server is None:
            self.counters[Count.NO_DESTINATION] += 1
            return self._icmp_error(frame, flow, ingress, DEST_UNREACH, PORT_UNREACH)
        conn = self.table.create((flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport),
                                 service, server, now, _destination_port(service, server, flow))
        if template is not None:
            self.table.attach(conn, template)
        if conn.forwarder.masquerades:
            conn.return_hop = self._return_hop(frame, ingress)
        return conn

    def _may_start(self, tcp_flags: int) -> bool:
        if tcp_flags & TCP_RST:
            return False
        return bool(tcp_flags & TCP_SYN or self.sysctls.sloppy_tcp)

    def _pick(self, service: VirtualService, flow: AnyFlow, now: float
              ) -> tuple[RealServer | None, Template | None]:
        """The scheduler's choice, through the client's persistence template if the service
        has persistence."""
        service.scheduler.now = now  # the scheduler's time (lblc/lblcr age entries): no clock
        if not service.persistence_timeout:
            return service.scheduler.pick(service.real_servers, flow), None
        template = self._template(service, flow, now)
        return (None if template is None else template.server), template

    def _one_packet(self, frame: bytearray, flow: AnyFlow, service: VirtualService, now: float,
                    csum_partial: bool, ingress: str) -> Out | None:
        """ipvsadm -o: a connection for this datagram alone (IPVS's IP_VS_CONN_F_ONE_PACKET),
        scheduled, counted and sent, never kept: not listed, not synced, no reply path."""
        if self.defense.drop_rate and self.defense.todrop():
            self.counters[Count.DEFENSE_DROPPED_PACKETS] += 1
            return None
        server, _ = self._pick(service, flow, now)
        if server is None:
            self.counters[Count.NO_DESTINATION] += 1
            return self._icmp_error(frame, flow, ingress, DEST_UNREACH, PORT_UNREACH)
        conn = Connection(flow.proto, pack_key(flow.saddr, flow.sport, flow.daddr, flow.dport,
                                               service.af), service, server, now,
                          _destination_port(service, server, flow))
        for stats in (service.stats, server.stats):
            stats.conns += 1
            stats.inpkts += 1
            stats.inbytes += flow.ip_len
        self.counters[Count.ONE_PACKET] += 1
        return self._send(frame, flow, conn, csum_partial, ingress)

    def _count_in(self, conn: Connection, flags: int, ip_len: int, now: float) -> None:
        """Every client packet of a connection, on either path: state, sync, counters."""
        table = self.table
        table.update(conn, INPUT, flags, now)
        conn.in_pkts += 1
        if table.outbox.sync_due is not None:
            table.count_in(conn)
        stats = conn.service.stats
        stats.inpkts += 1
        stats.inbytes += ip_len
        stats = conn.server.stats
        stats.inpkts += 1
        stats.inbytes += ip_len

    def _count_out(self, conn: Connection, flags: int, ip_len: int, now: float) -> None:
        """Every real server packet of a connection through the director (NAT)."""
        self.table.update(conn, OUTPUT, flags, now)
        stats = conn.service.stats
        stats.outpkts += 1
        stats.outbytes += ip_len
        stats = conn.server.stats
        stats.outpkts += 1
        stats.outbytes += ip_len

    def _established(self, frame: bytearray, now: float) -> Out | None:
        """The common case at full speed: a frame of an established connection (either way for
        NAT) with a plain 20-byte IP header, found by its own 12 address and port bytes. Anything
        else (returns None) takes the general path, which does the same with more steps."""
        if len(frame) < 42 or frame[12:15] != b"\x08\x00E" or frame[20] & 0x3F or frame[21]:
            return None
        proto = frame[23]
        found = self.table.by_frame(proto, bytes(frame[26:38])) if frame[22] > 1 else None
        if found is None:
            return None
        conn, inbound = found
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
            if (proto, *REPLY_DEST.unpack_from(frame, 30)) in self.services:
                return None  # addressed to a service: the general path decides, as it would
            self._count_out(conn, flags, ip_len, now)
            self.counters[REPLIED] += 1
            hop = conn.return_hop
            return conn.forwarder.reply_established(frame, conn, hop, flags, ip_len), \
                hop.interface
        hop = self.hops.get(conn.server.ip)
        forwarder = conn.forwarder
        if hop is None or ip_len + forwarder.overhead > hop.mtu:
            return None
        self._count_in(conn, flags, ip_len, now)
        self.counters[FORWARDED] += 1
        return forwarder.established(frame, conn, hop, flags, ip_len), hop.interface

    def _established6(self, frame: bytearray, now: float) -> Out | None:
        """``_established`` for IPv6: a frame whose header is followed directly by TCP or UDP
        is found by its 36 address and port bytes, and sent by its connection's method without
        the extension-header walk; anything else takes the general path."""
        if len(frame) < 62 or frame[21] <= 1:
            return None
        proto = frame[20]
        found = self.table.by_frame(proto, bytes(frame[22:58]))
        if found is None:
            return None
        conn, inbound = found
        payload_len = (frame[18] << 8) | frame[19]
        if payload_len + 54 > len(frame):
            return None
        if proto == IPPROTO_TCP:
            offset = (frame[66] >> 4) * 4 if len(frame) >= 74 else 0
            if offset < 20 or offset > payload_len:
                return None
            flags = frame[67]
        elif payload_len < 8:
            return None
        else:
            flags = 0
        ip_len = payload_len + 40
        if not inbound:
            daddr, dport = int.from_bytes(frame[38:54], "big"), (frame[56] << 8) | frame[57]
            if (proto, daddr, dport, AF_INET6) in self.services:
                return None  # addressed to a service: the general path decides, as it would
            self._count_out(conn, flags, ip_len, now)
            hop = conn.return_hop
            out = conn.forwarder.reply_established6(frame, conn, hop, flags, payload_len)
            if out is None:
                return None
            self.counters[REPLIED] += 1
            return out, hop.interface
        hop = self.hops.get(conn.server.ip)
        forwarder = conn.forwarder
        if hop is None or ip_len + forwarder.overhead > hop.mtu:
            return None
        self._count_in(conn, flags, ip_len, now)
        out = forwarder.established6(frame, conn, hop, flags, payload_len)
        if out is None:
            return None
        self.counters[FORWARDED] += 1
        return out, hop.interface

    def _return_hop(self, frame: bytearray, ingress: str) -> NextHop:
        """A NAT reply goes back to the MAC the client's frames came from. Connections share
        one hop per (interface, MAC): a few routers' MACs, not one object per connection."""
        key = (ingress, bytes(frame[6:12]))
        hop = self.return_hops.get(key)
        if hop is None:
            if len(self.return_hops) >= MAX_RETURN_HOPS:  # spoofed MACs: start again
                self.return_hops.clear()
            hop = NextHop(self.interfaces.get(ingress, b"\0" * 6), key[1], ingress)
            self.return_hops[key] = hop
        return hop

    def _related_icmp(self, frame: bytearray, flow: AnyFlow, now: float, ingress: str = ""
                      ) -> Out | None:
        """An ICMP error about a tracked connection: from the client, on to its real server by
        the connection's method; from a NAT real server, back to the client as from the VIP;
        from a router about a packet tunnelled to a TUN real server, answered to the client
        (``_tunnel_error``). ICMPv6 informational messages are no one's: left alone."""
        af = flow.af
        if isinstance(flow, Flow):
            tunnelled = icmp.tunnelled(frame, flow)
            if tunnelled is not None and self._tunnels_to(tunnelled):
                return self._tunnel_error(frame, flow, tunnelled, ingress)
        q = icmpv6.quoted6(frame, flow) if isinstance(flow, Flow6) else icmp.quoted(frame, flow)
        if q is None:
            self.counters[Count.NOT_SERVICE] += 1
            return None
        conn = self.table.get((q.proto, q.daddr, q.dport, q.saddr, q.sport), af)
        inbound = conn is not None and flow.daddr == conn.vaddr
        if not inbound:
            conn = self.table.get_reply((q.proto, q.daddr, q.dport, q.saddr, q.sport), af)
        ok = (l4_checksum_ok6(frame, flow) if isinstance(flow, Flow6)
              else icmp.checksum_ok(frame, flow))
        if conn is None or not ok or flow.ttl <= 1:
            self.counters[Count.ICMP_DROPPED] += 1
            return None
        hop = self.hops.get(conn.server.ip) if inbound else conn.return_hop
        if hop is None:
            self.counters[Count.NO_NEXT_HOP if inbound else Count.ICMP_DROPPED] += 1
            return None
        out = conn.forwarder.relay_error(frame, flow, q, conn, hop, inbound)
        if out is None:
            return None
        self.counters[Count.ICMP_RELAYED] += 1
        return out, hop.interface

    def _tunnels_to(self, tunnel: icmp.Tunnelled) -> bool:
        """ip_vs_find_tunnel: a TUN real server of that tunnel type has the quoted packet's
        outer destination as its address and its tunnel port as the UDP port (0 for IP-in-IP
        and GRE). Else the error is not a tunnel's and takes the common path, as there."""
        return any(rs.ip == tunnel.outer_daddr and rs.af != AF_INET6
                   and rs.forwarder.tunnel_type == tunnel.tun_type and rs.tun_port == tunnel.port
                   for service in self.services.values() for rs in service.real_servers)

    def _tunnel_error(self, frame: bytearray, flow: Flow, tunnel: icmp.Tunnelled, ingress: str
                      ) -> Out | None:
        """ip_vs_in_icmp's tunnel case: a router past the director could not take a packet the
        director tunnelled (IP-in-IP, GUE or GRE, IPv4 in IPv4) and told the outer source, a
        local address (the director's on the route to the real server). The packet inside
        finds the connection (client → VIP); the client gets the router's error with its own
        type, code and 4 bytes, from the VIP, quoting the packet as far as the router quoted
        it (icmp_send); "fragmentation needed" carries icmp.tunnel_mtu and is told only to a
        client that sent DF. No connection, a bad checksum: dropped. pylvs keeps no route to
        a TUN client: the answer goes back where the error came from. IPVS has no such case
        for IPv6 (ip_vs_in_icmp_v6)."""
        q = tunnel.inner
        conn = self.table.get((q.proto, q.saddr, q.sport, q.daddr, q.dport))
        hop = self.hops.get(tunnel.outer_daddr)
        mac = self.interfaces.get(ingress)
        if (conn is None or hop is None or hop.src_ip != flow.daddr or mac is None
                or not icmp.checksum_ok(frame, flow)):
            self.counters[Count.ICMP_DROPPED] += 1
            return None
        icmp_type, code, l4 = flow.icmp_type, flow.icmp_code, flow.l4off
        info = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
        if icmp_type == DEST_UNREACH and code == FRAG_NEEDED:
            if not tunnel.dont_fragment:  # the client does no PMTU discovery
                self.counters[Count.ICMP_DROPPED] += 1
                return None
            info = icmp.tunnel_mtu(info & 0xFFFF, hop.mtu, tunnel.header_length)
            self.path_mtu[q.saddr] = info
        inner = bytearray(frame[:flow.l3off]) + frame[q.l3off:tunnel.end]
        quoted = Flow(q.proto, q.saddr, q.daddr, q.sport, q.dport, flow.l3off + q.l4off - q.l3off,
                      0, frame[q.l3off + 8], tunnel.end - q.l3off)
        for stats in (conn.service.stats, conn.server.stats):  # ip_vs_out_stats
            stats.outpkts += 1
            stats.outbytes += quoted.ip_len
        self.counters[Count.ICMP_RELAYED] += 1
        return icmp.error_frame(inner, quoted, icmp_type, code, mac, info=info), ingress

    def _too_big(self, frame: bytearray, flow: AnyFlow, ingress: str, route_mtu: int,
                 outer: int, overhead: int) -> Out | None:
        """ensure_mtu_is_adequate (tunnel6.mtu_verdict): tell the client the usable MTU where
        IPVS would (IPv4 with DF; IPv6, whole or a first fragment), and its PMTU discovery does
        the rest; else drop: pylvs does not fragment."""
        verdict, mtu = mtu_verdict(frame, flow, route_mtu, outer, overhead=overhead)
        if verdict is not Verdict.TOO_BIG and verdict is not Verdict.FRAG_NEEDED:
            self.counters[Count.TOO_BIG_DROPPED] += 1
            return None
        self.counters[Count.FRAG_NEEDED] += 1
        self.path_mtu[flow.saddr] = mtu
        return self._icmp_error(frame, flow, ingress, DEST_UNREACH, FRAG_NEEDED, mtu)

    def _template(self, service: VirtualService, flow: AnyFlow, now: float
                  ) -> Template | None:
        """ip_vs_sched_persist: the client network's template, scheduled anew when missing or
        when its server was removed; using it re-arms it."""
        key = _template_key(service, flow)
        if service.af == AF_INET6:
            key += (AF_INET6,)
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

    def _reply(self, frame: bytearray, flow: AnyFlow, now: float, csum_partial: bool
               ) -> Out | None:
        """A NAT real server's answer: back to the client as from VIP:vport."""
        conn = self.table.get_reply((flow.proto, flow.saddr, flow.sport, flow.daddr, flow.dport),
                                    flow.af)
        if conn is None or conn.return_hop is None:
            nat = (flow.proto, flow.saddr, flow.sport) in self.nat_endpoints
            self.counters[Count.REPLY_NO_CONNECTION if nat else Count.NOT_SERVICE] += 1
            return None
        self._count_out(conn, flow.tcp_flags, flow.ip_len, now)
        if flow.ttl <= 1:
            self.counters[Count.TTL_EXCEEDED] += 1
            return None
        if csum_partial:
            self._complete_checksum(frame, flow)
        if isinstance(flow, Flow6) and flow.more_fragments:
            self.fragments.remember(flow, conn, False, now)
        hop = conn.return_hop
        out = conn.forwarder.reply(frame, flow, conn, hop)
        if out is None:
            return None
        self.counters[REPLIED] += 1
        return out, hop.interface

    def _icmp_error(self, frame: bytearray, flow: AnyFlow, ingress: str, icmp_type: int,
                    code: int, mtu: int = 0) -> Out | None:
        """ICMP's error (the type and code are ICMP's; for IPv6, ERRORS6's), from the VIP."""
        mac = self.interfaces.get(ingress)
        if mac is None:
            return None
        if isinstance(flow, Flow6):
            icmp_type, code = ERRORS6[(icmp_type, code)]
            if not icmpv6.may_answer(flow, icmp_type):
                return None
            self.counters[Count.ICMP_SENT] += 1
            return icmpv6.error_frame6(frame, flow, icmp_type, code, mac, mtu), ingress
        self.counters[Count.ICMP_SENT] += 1
        return icmp.error_frame(frame, flow, icmp_type, code, mac, mtu), ingress

    def tick(self, now: float) -> None:
        self.counters[Count.EXPIRED] += self.table.expire(now)
        if now >= self.next_estimate:
            self.fragments.expire(now)
            for service in self.services.values():
                service.stats.estimate()
                for server in service.real_servers:
                    server.stats.estimate()
            self.next_estimate = now + ESTIMATOR_INTERVAL

    def defend(self, availmem: int, now: float) -> None:
        """Once a second, with the host's free and buffer pages: IPVS's defense_work_handler
        (update_defense_level, then ip_vs_random_dropentry while drop_entry is on)."""
        defense, table = self.defense, self.table
        if defense.update(availmem):
            table.secure = defense.secure
        if not defense.drop_entries:
            self.scan = []
            return
        for conn in defense.doomed(self._scan_batch(), table.timeouts, now):
            if table.by_proto[conn.proto].get(conn.key12) is conn:
                table.remove(conn)
                self.counters[Count.DEFENSE_DROPPED_ENTRIES] += 1

    def drop_connections(self, doomed: Callable[[Connection | Template], bool]) -> int:
        """A real server or service deleted: its connections go at once, counted as IPVS's
        expire_nodest_conn would have (nodest_expired), and its persistence templates with them.
        Returns how many connections went."""
        table = self.table
        gone = [conn for conn in table if doomed(conn)]
        for conn in gone:
            table.remove(conn)
        if gone:
            self.counters[Count.NODEST_EXPIRED] += len(gone)
        for template in [t for t in table.templates.values() if doomed(t)]:
            table.remove_template(template)
        return len(gone)

    def _scan_batch(self) -> list[Connection]:
        """The next 1/32 of the table, from a snapshot taken anew every 32 passes: each entry
        is looked at once in 32 s, as the kernel's random 1/32 of its buckets a second is on
        average, at a cost of 1/32 of the table a second."""
        if self.scan_next >= len(self.scan):
            self.scan = [*self.table.by_proto[6].values(), *self.table.by_proto[17].values()]
            self.scan_next = 0
        step = -(-len(self.scan) // SCAN_SHARE)
        batch = self.scan[self.scan_next:self.scan_next + step]
        self.scan_next += max(1, step)
        return batch

    def changed(self) -> None:
        """The rules changed: recompute what depends on them, tell the I/O shell (through the
        outbox: ``take_rules_changed``)."""
        self.nat_endpoints = {(svc.proto, rs.ip, rs.port) for svc in self.services.values()
                              for rs in svc.real_servers if rs.forwarder.masquerades}
        self.port_zero = any(not svc.port and not svc.fwmark for svc in self.services.values())
        self.outbox.rules_changed = True


def _template_key(service: VirtualService, flow: AnyFlow) -> tuple[int, ...]:
    """ip_vs_sched_persist's template: <proto, client net, 0, vaddr, vport, …> for a service of
    a port; vport 0 for a port-0 service; <IPPROTO_IP, net, 0, mark, 0, …> for a fwmark one
    (the mark in the address's first 32 bits)."""
    snet = flow.saddr & service.netmask
    if service.fwmark:
        return (0, snet, service.fwmark << 96 if service.af == AF_INET6 else service.fwmark, 0)
    return (flow.proto, snet, flow.daddr, flow.dport if service.port else 0)


def _destination_port(service: VirtualService, server: RealServer, flow: AnyFlow) -> int:
    """cp->dport as IPVS sets it: the server's port, or the packet's where the server's is 0;
    through a persistent service, the packet's unless it went to the service's own port
    (ip_vs_sched_persist), so a persistent fwmark service keeps the packet's port."""
    if server.port and (not service.persistence_timeout or flow.dport == service.port):
        return server.port
    return flow.dport

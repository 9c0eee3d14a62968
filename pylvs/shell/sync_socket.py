"""IPVS's connection sync daemon on the wire, its two halves as IPVS runs them.

The master half multicasts the connections the core put in its outbox (pylvs.ha.sync's rule) to
224.0.0.81:8848 with TTL 1 on its interface, in version 1 messages; the backup half listens
there and installs what it hears (pylvs.ha.replica). `[director] sync_daemon = true` runs both, as
keepalived's lvs_sync_daemon does (with workers, each worker sends for itself and the supervisor
listens, handing each connection to the worker its client hashes to): a director with no
traffic sends nothing, so two directors
under VRRP each keep the other's connections, and the one that takes the VIP over finds the
established connections on their real servers. `pylvs adm --start-daemon master|backup` starts
one half. Polled from the loop.

The transport (pylvs.ha.sync.Transport) is another group, port or TTL when given (ipvsadm's
--mcast-group, --mcast-port, --mcast-ttl): an IPv6 group makes both halves IPv6 sockets as
ip_vs_sync.c's make_send_sock and make_receive_sock do for mcast_af AF_INET6 (IPV6_MULTICAST_IF
and IPV6_MULTICAST_HOPS on the interface, loop off, no bind on the sending side; the receiving
side bound to the group and port on the interface, then joined to the group there). Either
family of transport carries entries of both families.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable

from pylvs.core.director import Director
from pylvs.core.model import AF_INET6, canonical
from pylvs.ha import replica, sync
from pylvs.shell import addresses, interfaces

log = logging.getLogger("pylvs")

MASTER_COUNTS = ("sent", "send_failed")
"""The master half's counters: messages sent, and sends the socket refused."""
BACKUP_COUNTS = ("received", "malformed", "other_syncid", "created", "refreshed", "table_full",
                 "unknown_destination")
"""The backup half's: datagrams read, those dropped whole (malformed, another SyncID), and
what became of the connections the others carried (pylvs.ha.replica's counts)."""

DEFAULT_INTERFACE = "eth0"  # ipvsadm's DEF_MCAST_IFN when --mcast-interface is not given
IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, PMTUDISC_DONT = 10, 23, 0  # linux/in.h, linux/in6.h


class SyncHalf:
    role = ""
    counts: tuple[str, ...] = ()
    sock: socket.socket

    def __init__(self, director: Director, interface: str, syncid: int,
                 transport: sync.Transport | None = None) -> None:
        self.director, self.interface, self.syncid = director, interface, syncid
        self.transport = transport or sync.Transport()
        self.counters: Counter[str] = Counter(dict.fromkeys(self.counts, 0))
        """Real counts of real messages (pylvs_sync_* in the metrics), zeros included."""
        self.maxlen = self.transport.sync_maxlen(self.role == "backup",
                                                 interfaces.interface_mtu(interface))
        """start_sync_thread's sync_maxlen: what a master's messages hold at most, and what a
        backup reads of a datagram (a longer one is cut, so its size field no longer matches
        and it is dropped, as the kernel drops it)."""
        self.family = socket.AF_INET6 if self.transport.af == AF_INET6 else socket.AF_INET
        self.destination: tuple[str, int] | tuple[str, int, int, int] = (
            (self.transport.group, self.transport.port, 0, 0) if self.family == socket.AF_INET6
            else (self.transport.group, self.transport.port))
        """get_mcast_sockaddr: the group and port (no scope: the socket's interface is it)."""

    def poll(self, now: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def close_in_child(self) -> None:
        """In a process forked from the director: the half stays the director's."""
        self.sock.close()

    def describe(self) -> str:
        """ipvsadm -L --daemon's line, with the fields a netlink kernel reports (the group as
        inet_ntop writes it)."""
        transport = self.transport
        return (f"{self.role} sync daemon (mcast={self.interface}, syncid={self.syncid}, "
                f"maxlen={self.maxlen}, group={canonical(transport.group)}, "
                f"port={transport.port}, ttl={transport.ttl})")


def _ipv6_mreq(group: str, interface: str) -> bytes:
    """struct ipv6_mreq: the group and the interface's index."""
    return struct.pack("16sI", socket.inet_pton(socket.AF_INET6, group),
                       interfaces.interface_index(interface))


class SyncMaster(SyncHalf):
    role = "master"
    counts = MASTER_COUNTS

    def __init__(self, director: Director, interface: str, syncid: int,
                 transport: sync.Transport | None = None) -> None:
        super().__init__(director, interface, syncid, transport)
        ttl = self.transport.ttl
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                                     interfaces.interface_index(interface))
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
                self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                     addresses.multicast_request(self.transport.group,
                                                                 interface))
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                self.sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        director.outbox.start_sync(sync.should_sync)

    def poll(self, now: float) -> None:
        due = self.director.outbox.take_sync()
        if not due:
            return
        timeouts = self.director.table.timeouts
        conns = [replica.to_wire(conn, timeouts) for conn in due if replica.syncable(conn)]
        for message in sync.encode(conns, self.syncid, self.maxlen):
            try:
                self.sock.sendto(message, self.destination)
                self.counters["sent"] += 1
            except OSError as exc:  # a full buffer or a link down: the next sync repairs
                self.counters["send_failed"] += 1
                log.debug("sync daemon: send failed: %s", exc)

    def close(self) -> None:
        self.director.outbox.stop_sync()
        self.sock.close()


Install = Callable[[list[sync.SyncConn], float], Counter[str]]


class SyncBackup(SyncHalf):
    """``install`` puts what arrived in place: into the director's table by default; a
    supervisor hands each connection to the worker its client hashes to."""
    role = "backup"
    counts = BACKUP_COUNTS

    def __init__(self, director: Director, interface: str, syncid: int,
                 install: Install | None = None, transport: sync.Transport | None = None
                 ) -> None:
        super().__init__(director, interface, syncid, transport)
        self.install: Install = install or (lambda entries, now:
                                            replica.install(director, entries, now))
        group = self.transport.group
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            self.sock.bind(self.destination)
            if self.family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                                     _ipv6_mreq(group, interface))
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                     addresses.multicast_request(group, interface))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def poll(self, now: float) -> None:
        while True:
            try:
                payload = self.sock.recv(self.maxlen)
            except BlockingIOError:
                return
            self.counters["received"] += 1
            try:
                entries = sync.decode(payload, self.syncid)
            except sync.SyncError as exc:
                self.counters["malformed"] += 1
                log.debug("sync daemon: dropped a message: %s", exc)
                continue
            if not entries and sync.other_syncid(payload, self.syncid):
                self.counters["other_syncid"] += 1
                continue
            self.counters.update(self.install(entries, now))

    def close(self) -> None:
        self.sock.close()



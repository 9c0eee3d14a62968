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
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable

from pylvs.core.director import Director
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


class SyncHalf:
    role = ""
    counts: tuple[str, ...] = ()
    sock: socket.socket

    def __init__(self, director: Director, interface: str, syncid: int) -> None:
        self.director, self.interface, self.syncid = director, interface, syncid
        self.counters: Counter[str] = Counter(dict.fromkeys(self.counts, 0))
        """Real counts of real messages (pylvs_sync_* in the metrics), zeros included."""
        self.maxlen = interfaces.interface_mtu(interface) - 28

    def poll(self, now: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def close_in_child(self) -> None:
        """In a process forked from the director: the half stays the director's."""
        self.sock.close()

    def describe(self) -> str:
        """ipvsadm -L --daemon's line, with the fields a netlink kernel reports."""
        return (f"{self.role} sync daemon (mcast={self.interface}, syncid={self.syncid}, "
                f"maxlen={self.maxlen}, group={sync.SYNC_GROUP}, port={sync.SYNC_PORT}, "
                f"ttl={sync.SYNC_TTL})")


class SyncMaster(SyncHalf):
    role = "master"
    counts = MASTER_COUNTS

    def __init__(self, director: Director, interface: str, syncid: int) -> None:
        super().__init__(director, interface, syncid)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             addresses.multicast_request(sync.SYNC_GROUP, interface))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, sync.SYNC_TTL)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.sock.setblocking(False)
        director.outbox.start_sync(sync.should_sync)

    def poll(self, now: float) -> None:
        due = self.director.outbox.take_sync()
        if not due:
            return
        timeouts = self.director.table.timeouts
        conns = [replica.to_wire(conn, timeouts) for conn in due]
        for message in sync.encode(conns, self.syncid, self.maxlen):
            try:
                self.sock.sendto(message, (sync.SYNC_GROUP, sync.SYNC_PORT))
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
                 install: Install | None = None) -> None:
        super().__init__(director, interface, syncid)
        self.install: Install = install or (lambda entries, now:
                                            replica.install(director, entries, now))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        self.sock.bind((sync.SYNC_GROUP, sync.SYNC_PORT))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                             addresses.multicast_request(sync.SYNC_GROUP, interface))
        self.sock.setblocking(False)

    def poll(self, now: float) -> None:
        while True:
            try:
                payload = self.sock.recv(65535)
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



"""IPVS's connection sync daemon on the wire: both halves at once, as IPVS can run them.

The master half multicasts the connections the table put in its outbox (pylvs.sync's rule) to
224.0.0.81:8848 with TTL 1 on the sync interface, in version 1 messages; the backup half
listens there and installs what it hears (pylvs.replica). A director that has no traffic sends
nothing, so two directors under VRRP each keep the other's connections and the one that takes
the VIP over finds the established connections on their real servers. Polled from the loop.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections import Counter

from pylvs import netio, replica, sync
from pylvs.director import Director

log = logging.getLogger("pylvs")

SO_BINDTODEVICE = 25


class SyncDaemon:
    def __init__(self, director: Director, interface: str, syncid: int) -> None:
        self.director = director
        self.interface = interface
        self.syncid = syncid
        self.counters: Counter[str] = Counter()
        index = netio.interface_index(interface)
        mreq = struct.pack("4s4si", socket.inet_aton(sync.SYNC_GROUP),
                           socket.inet_aton("0.0.0.0"), index)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
        self.out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, sync.SYNC_TTL)
        self.out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.out.setblocking(False)
        self.inbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inbound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.inbound.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        self.inbound.bind((sync.SYNC_GROUP, sync.SYNC_PORT))
        self.inbound.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.inbound.setblocking(False)
        director.table.outbox = []
        log.info("sync daemon: master and backup on %s, syncid %d", interface, syncid)

    def fileno(self) -> int:
        return self.inbound.fileno()

    def poll(self, now: float) -> None:
        """Install what arrived; send what is due."""
        while True:
            try:
                payload = self.inbound.recv(65535)
            except BlockingIOError:
                break
            try:
                entries = sync.decode(payload, self.syncid)
            except sync.SyncError as exc:
                self.counters["malformed"] += 1
                log.debug("sync daemon: dropped a message: %s", exc)
                continue
            self.counters.update(replica.install(self.director, entries, now))
        outbox = self.director.table.outbox
        if outbox:
            timeouts = self.director.table.timeouts
            conns = [replica.to_wire(conn, timeouts) for conn in dict.fromkeys(outbox)]
            outbox.clear()
            for message in sync.encode(conns, self.syncid):
                try:
                    self.out.sendto(message, (sync.SYNC_GROUP, sync.SYNC_PORT))
                    self.counters["sent"] += 1
                except OSError as exc:  # a full buffer or a link down: the next sync repairs
                    self.counters["send_failed"] += 1
                    log.debug("sync daemon: send failed: %s", exc)

    def close(self) -> None:
        self.director.table.outbox = None
        self.out.close()
        self.inbound.close()

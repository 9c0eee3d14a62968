"""A director's connections in sync messages and back (sans-IO): what a master sends of a
connection, and how a backup installs what it received, as IPVS's ip_vs_proc_conn does.

A backup creates the connection for its own real server (whose forwarding method stands) with
the state, NOOUTPUT and timeout it was sent (0: the state's own), and counts it active or
inactive as IPVS does; a connection it has already is brought up to date. One whose service or
real server the backup does not have is skipped and counted, as the kernel does. Persistence
templates are not sent (pylvs keeps them per director).

IPv6 connections go as IPv4 ones do, in the kernel's IPv6 entry: the entry's family is the
connection's (its service's), and the backup looks the service up in that family (an IPv6
service's key carries AF_INET6: pylvs.core.model.service_key) and the real server in it too,
as ip_vs_proc_conn's ip_vs_find_dest(type, type, ...) does: IPVS does not sync a connection
whose real server is of another family than its service (it refuses such servers while it
syncs), and neither does ``syncable``.
"""

from __future__ import annotations

from collections import Counter

from pylvs.core.conntrack import ACTIVE_STATES, UDP_STATE, Connection, Timeouts
from pylvs.core.director import Director
from pylvs.core.model import (
    RealServer,
    VirtualService,
    fwmark_key,
    int_to_ip,
    ip_to_int,
    service_key,
)
from pylvs.ha import sync


def syncable(conn: Connection) -> bool:
    """Whether a sync entry can carry the connection: its real server is of its family (one of
    another family, a tunnelled one, has no entry; IPVS never has one while it syncs)."""
    return conn.server.af == conn.af


def to_wire(conn: Connection, timeouts: Timeouts) -> sync.SyncConn:
    """ip_vs_sync_conn's entry: the state's whole timeout, as the kernel sends cp->timeout;
    the addresses in the connection's family."""
    flags = conn.forwarder.conn_flag
    if conn.nooutput:
        flags |= sync.IP_VS_CONN_F_NOOUTPUT
    if not conn.active:
        flags |= sync.IP_VS_CONN_F_INACTIVE
    state = conn.state if conn.proto == 6 else sync.IP_VS_UDP_S_NORMAL
    af = conn.af
    return sync.SyncConn(conn.proto, int_to_ip(conn.caddr, af), conn.cport,
                         int_to_ip(conn.vaddr, af), conn.vport, conn.server.address,
                         conn.dport, state, flags, timeouts.by_state[conn.state], conn.fwmark)


def install(director: Director, entries: list[sync.SyncConn], now: float) -> Counter[str]:
    """Create or refresh the backup's connections; returns what happened, counted."""
    counts: Counter[str] = Counter()
    table = director.table
    for entry in entries:
        service, server = _destination(director, entry)
        if service is None or server is None:
            counts["unknown_destination"] += 1
            continue
        state = entry.state if entry.protocol == 6 else UDP_STATE
        key = (entry.protocol, ip_to_int(entry.caddr), entry.cport, ip_to_int(entry.vaddr),
               entry.vport)
        conn = table.get(key, service.af)
        if conn is None or conn.server is not server:
            if conn is not None:
                table.remove(conn)
            if table.full():
                counts["table_full"] += 1
                continue
            conn = table.create(key, service, server, now, entry.dport)
            counts["created"] += 1
        else:
            counts["refreshed"] += 1
        active = state in ACTIVE_STATES
        server.set_active(conn.active, active)
        conn.active, conn.state, conn.synced_state = active, state, entry.state
        conn.nooutput = bool(entry.flags & sync.IP_VS_CONN_F_NOOUTPUT)
        conn.expires = now + (entry.timeout or table.timeouts.by_state[state])
    return counts


def _destination(director: Director, entry: sync.SyncConn
                 ) -> tuple[VirtualService | None, RealServer | None]:
    """ip_vs_find_dest: the service by the entry's mark, else by its address and port; in it
    the real server of the entry's port, or of port 0 (a fwmark service's servers may have
    none: only NAT's port is the server's own)."""
    service = None
    if entry.fwmark:
        service = director.services.get(fwmark_key(entry.fwmark, entry.af))
    if service is None:
        service = director.services.get(service_key(entry.protocol, entry.vaddr, entry.vport))
    if service is None:
        return None, None
    masq = entry.flags & sync.IP_VS_CONN_F_FWD_MASK == sync.IP_VS_CONN_F_MASQ
    port = entry.dport if not entry.fwmark or masq else 0
    server = service.find_real_server(entry.daddr, port)
    if server is None:
        server = service.find_real_server(entry.daddr, port ^ entry.dport)
    return service, server

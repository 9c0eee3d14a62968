"""Sync of firewall-mark connections: the entry carries the mark and the packet's port, and a
backup finds the service by the mark and the server as ip_vs_find_dest does."""

from __future__ import annotations

import pytest

from pylvs.core.conntrack import Timeouts
from pylvs.ha import replica, sync
from tests.core.test_fwmark import VIPS, fwmark_director, packet


@pytest.mark.parametrize("method", ["dr", "nat"])
def test_a_backup_installs_a_synced_fwmark_connection_on_its_port_0_server(method):
    """ip_vs_proc_conn → ip_vs_find_dest: the service by the entry's mark, the server by its
    port (NAT) or port 0 (others)."""
    master, backup = fwmark_director(method), fwmark_director(method)
    master.handle(packet("203.0.113.5", VIPS[1], 40000, 443), 0.0)
    (conn,) = master.table
    entry = replica.to_wire(conn, Timeouts())
    assert entry.fwmark == 1 and entry.dport == 443
    (decoded,) = sync.decode(sync.encode([entry], 0)[0])
    counts = replica.install(backup, [decoded], 1.0)
    assert counts["created"] == 1
    (copy,) = backup.table
    assert (copy.server.address, copy.dport, copy.fwmark) == (conn.server.address, 443, 1)

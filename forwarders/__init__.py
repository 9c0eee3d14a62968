"""Forwarders: how a frame of a connection reaches its real server: dr (direct routing), nat
(masquerading) and tun (IP-in-IP), LVS's three methods.

The interface, the next hop and the registry are the core's (pylvs.core.forwarding), re-exported
here; this package holds the methods, which register themselves when it is imported (``pylvs``
imports it first thing). Each module is the one home of its method: its names (the config's,
ipvsadm's flag and column, keepalived's ``lb_kind``, IPVS's connection flag), the bytes it adds,
its rewrite of a client's frame (``forward``, and ``established`` for a frame of an established
connection with a plain 20-byte IP header, which needs no parse), its XDP fast path's map entries
(``xdp_entries``), and, for NAT, the rewrite of the real server's answers and of the ICMP errors
about a connection. The connection table binds the real server's forwarder to a connection when
it makes it, as ip_vs_bind_xmit does; the director calls what is bound. Forwarders import only
the core.
"""

from __future__ import annotations

from forwarders import dr, nat, tun  # noqa: F401 - they register themselves
from pylvs.core.forwarding import (
    DEFAULT,
    REGISTRY,
    Forwarder,
    NextHop,
    by_conn_flag,
    by_flag,
    by_lb_kind,
    get,
    names,
    register,
)

__all__ = ["DEFAULT", "REGISTRY", "Forwarder", "NextHop", "by_conn_flag", "by_flag",
           "by_lb_kind", "get", "names", "register"]

"""Forwarders: how a frame of a connection reaches its real server (LVS's DR, NAT, TUN).

Each module is the one home of its method: its names (the config's, ipvsadm's flag and column,
keepalived's ``lb_kind``, IPVS's connection flag), the bytes it adds, its rewrite of a client's
frame (``forward``, and ``established`` for a frame of an established connection with a plain
20-byte IP header, which needs no parse), and, for NAT, the rewrite of the real server's answers
and of the ICMP errors about a connection. The connection table binds the forwarder to a
connection when it makes it, as ip_vs_bind_xmit does; the director calls what is bound.
Forwarders import only the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pylvs.core.packet import Flow, plain_flow

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.icmp import Quoted


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where the rewritten frame goes: MACs on the egress link, and the egress interface."""

    src_mac: bytes
    dst_mac: bytes
    interface: str
    src_ip: int = 0
    """The director's address on the route to the real server (a tunnel's outer source)."""
    mtu: int = 1500
    macs: bytes = field(init=False, repr=False, compare=False)
    """The 12 bytes an Ethernet header starts with on this hop."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "macs", self.dst_mac + self.src_mac)


class Forwarder:
    """One forwarding method. Rewrites work in place and return the frame to send (a new one
    where the frame grows), or None to drop it."""

    name: ClassVar[str]
    """The config's and the table's name of the method."""
    flag: ClassVar[str]
    """ipvsadm's option for it (-g, -m, -i)."""
    label: ClassVar[str]
    """ipvsadm -L's Forward column."""
    lb_kind: ClassVar[str]
    """keepalived's name (lb_kind)."""
    conn_flag: ClassVar[int]
    """IPVS's IP_VS_CONN_F_* forwarding bits, as sync messages carry them."""
    overhead: ClassVar[int] = 0
    """Bytes the method adds to the IP packet: what the MTU check must leave room for."""
    masquerades: ClassVar[bool] = False
    """The real server's answers come back through the director, and ports may be mapped."""
    tunnel_type: ClassVar[str | None] = None
    """ipvsadm's --tun-type of the method, if it tunnels."""

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray | None:
        raise NotImplementedError

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray | None:
        """``forward`` for a frame whose IP header is a plain 20 bytes, not parsed yet."""
        return self.forward(frame, plain_flow(frame, conn.proto, flags, ip_len), conn, hop)

    def reply(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
              ) -> bytearray | None:
        """A real server's answer through the director: only a masquerading method has any."""
        return None

    def reply_established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                          ip_len: int) -> bytearray | None:
        """``reply`` for a frame whose IP header is a plain 20 bytes, not parsed yet."""
        return self.reply(frame, plain_flow(frame, conn.proto, flags, ip_len), conn, hop)

    def relay_error(self, frame: bytearray, flow: Flow, quoted: Quoted, conn: Connection,
                    hop: NextHop, inbound: bool) -> bytearray | None:
        """An ICMP error about ``conn``: from the client (inbound) on to the real server as any
        of its frames; one from the real server has no way back but through a masquerade."""
        return self.forward(frame, flow, conn, hop) if inbound else None


REGISTRY: dict[str, Forwarder] = {}


def register(cls: type[Forwarder]) -> type[Forwarder]:
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> Forwarder:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown forwarding method {name!r} (known: {known})") from None


def names() -> list[str]:
    return sorted(REGISTRY)


def by_flag(flag: str) -> Forwarder:
    return next(f for f in REGISTRY.values() if f.flag == flag)


def by_conn_flag(conn_flag: int) -> Forwarder | None:
    return next((f for f in REGISTRY.values() if f.conn_flag == conn_flag), None)


def by_lb_kind(lb_kind: str) -> Forwarder | None:
    return next((f for f in REGISTRY.values() if f.lb_kind == lb_kind), None)


from forwarders import dr, nat, tun  # noqa: E402,F401  (they register themselves)

DEFAULT = dr.DirectRouting.name
"""ipvsadm's method when none is given (-g)."""

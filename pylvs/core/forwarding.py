"""The forwarding method as the core knows it: the ``Forwarder`` interface, the ``NextHop`` a
rewritten frame goes to, and the registry of methods by name.

A forwarder is how a frame of a connection reaches its real server (LVS's DR, NAT, TUN). The
plug-ins in the ``forwarders`` package implement it and register themselves here (``register``);
``pylvs`` imports that package, so every method is registered before any real server is made.
A real server binds its method by name (``RealServer.forwarder``), and the connection table
binds the real server's to each connection it makes, as ip_vs_bind_xmit does; the director then
calls what is bound, and the XDP fast path takes the map entries the forwarder makes
(``xdp_entries``). The core imports no plug-in: it knows methods only through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pylvs.core.ipv6 import Flow6, plain_flow6
from pylvs.core.packet import Flow, plain_flow
from pylvs.core.tunnel6 import OUTER_NONE

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.fastpath import Entry
    from pylvs.core.icmp import Quoted

DEFAULT = "dr"
"""ipvsadm's method when none is given (-g)."""


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
    outer: ClassVar[int] = OUTER_NONE
    """The family of the outer header it adds (pylvs.core.tunnel6's OUTER_*), if any."""
    server_af: ClassVar[int] = 2
    """The real servers' family this instance is for (``toward``)."""
    tunnel: ClassVar[tuple[str, str]] = ("ipip", "nocsum")
    """The tunnel type and checksum option this instance is for (``toward``), if it tunnels."""

    def __reduce__(self) -> tuple[object, tuple[str, int, tuple[str, str]]]:
        """Copied or pickled (with the real servers that bind it), a method stays the
        registry's one instance (for its real servers' family and tunnel)."""
        return get, (self.name, self.server_af, self.tunnel)

    def toward(self, af: int, tunnel: tuple[str, str] = ("ipip", "nocsum")) -> Forwarder:
        """The method for a real server of family ``af`` (2 or 10) and, where it tunnels,
        ``tunnel`` (type, checksum option): itself, unless the method builds different frames
        for each (a tunnel's outer header)."""
        return self

    def forward(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
                ) -> bytearray | None:
        raise NotImplementedError

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray | None:
        """``forward`` for a frame whose IP header is a plain 20 bytes, not parsed yet."""
        return self.forward(frame, plain_flow(frame, conn.proto, flags, ip_len), conn, hop)

    def established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                     payload_len: int) -> bytearray | None:
        """``forward`` for an IPv6 frame whose header is followed directly by TCP or UDP."""
        return self.forward(frame, plain_flow6(frame, conn.proto, flags, payload_len), conn,
                            hop)

    def reply_established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                           payload_len: int) -> bytearray | None:
        """``reply`` for such an IPv6 frame."""
        return self.reply(frame, plain_flow6(frame, conn.proto, flags, payload_len), conn, hop)

    def reply(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
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

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, Entry]]:
        """The XDP fast path's map entries (pylvs.core.fastpath: key, entry) that forward
        ``conn``'s established frames through ``hop`` with this method's bytes, and for a
        masquerade bring the answers back; ``ifindex`` maps interface names to indexes (the
        caller has checked ``hop.interface`` is among them), ``slot`` is the real server's row
        in the stats map. [] here: no fast path for this method, Python forwards every frame."""
        return []


REGISTRY: dict[str, Forwarder] = {}
"""Name → the one instance of each registered method."""


def register(cls: type[Forwarder]) -> type[Forwarder]:
    """Class decorator: a forwarding method registers itself under its name."""
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str, af: int = 2, tunnel: tuple[str, str] = ("ipip", "nocsum")) -> Forwarder:
    """The method ``name`` toward a real server of family ``af`` (and ``tunnel``)."""
    try:
        return REGISTRY[name].toward(af, tunnel)
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

"""Forwarders: how a frame of a connection reaches its real server (LVS's DR, NAT, TUN).

A forwarder rewrites a frame in place for one connection and one next hop and returns the frame
to send, or None to drop it; ``reply`` does the same for a real server's answer travelling back
through the director (NAT only). Each module registers itself by its config name; the director
binds the forwarder to the connection when it creates it, as ip_vs_bind_xmit does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


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


class Forwarder(Protocol):
    name: ClassVar[str]
    overhead: ClassVar[int]
    """Bytes the method adds to the IP packet: what the MTU check must leave room for."""

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray | None: ...

    def reply(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
              ) -> bytearray | None: ...


REGISTRY: dict[str, Forwarder] = {}


def register(cls: type) -> type:
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


from forwarders import dr, nat, tun  # noqa: E402,F401  (register themselves)

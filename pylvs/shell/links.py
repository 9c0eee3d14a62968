"""A link the director works on: one interface's packet socket and rings, its MAC and MTU, and
the neighbour resolver for the next hops reached through it."""

from __future__ import annotations

from pylvs.core.packet import ETH_HLEN
from pylvs.shell.interfaces import interface_mac, interface_mtu
from pylvs.shell.neighbours import NeighbourResolver
from pylvs.shell.rings import PacketSocket


class Link:
    def __init__(self, name: str) -> None:
        self.name = name
        self.mac = interface_mac(name)
        self.max_frame = ETH_HLEN + interface_mtu(name)
        self.sock = PacketSocket(name)
        self.resolver = NeighbourResolver(name)
        self.sent = False
        """Frames are waiting in the tx ring: ``flush`` sends them."""

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self.sock.send(frame)
        self.sent = True

    def flush(self) -> None:
        if self.sent:
            self.sock.flush()
            self.sent = False

    def close(self) -> None:
        self.sock.close()
        self.resolver.close()

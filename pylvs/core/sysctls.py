"""The knobs of /proc/sys/net/ipv4/vs/ that pylvs has, with the kernel's defaults and bounds.

- the defences against a full table (pylvs.core.defense): amemthresh, am_droprate and the modes
  drop_entry, drop_packet and secure_tcp (0 off, 1 automatic, 2 automatic and on, 3 always on);
- sloppy_tcp: a TCP connection may start on any packet, not only on a SYN without RST
  (tcp_conn_schedule), so a director that an ECMP change hands a flow half way through picks
  its real server again (docs/scale-out.md). There is no sloppy_udp: IPVS schedules every UDP
  datagram that has no connection.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

KNOBS = ("amemthresh", "am_droprate", "drop_entry", "drop_packet", "secure_tcp", "sloppy_tcp")
"""The sysctls, in the order pylvs sysctl lists them."""
MODES = range(4)
MODE_KNOBS = ("drop_entry", "drop_packet", "secure_tcp")


@dataclass
class Sysctls:
    """The values as /proc/sys/net/ipv4/vs/ shows them: the kernel's defaults."""
    amemthresh: int = 1024
    am_droprate: int = 10
    drop_entry: int = 0
    drop_packet: int = 0
    secure_tcp: int = 0
    sloppy_tcp: int = 0

    def check(self, name: str, value: int) -> None:
        """The kernel's bounds: a mode is 0..3 (proc_do_defense_mode), the others ≥ 0 here."""
        if name not in KNOBS:
            raise KeyError(name)
        if name in MODE_KNOBS and value not in MODES:
            raise ValueError(f"{name} is a mode: 0, 1, 2 or 3")
        if value < 0:
            raise ValueError(f"{name} must be ≥ 0")

    def items(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

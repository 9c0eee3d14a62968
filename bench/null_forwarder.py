"""The Python data plane's ceiling: pylvs's own rings and DR rewrite, with no decision at all.

    python3 -m bench.null_forwarder IN_IF OUT_IF DST_MAC VIP

Frames to the VIP arriving on IN_IF (pylvs.shell.rings' TPACKET rings, its socket filter)
leave OUT_IF with the DR rewrite of forwarders/dr.py (MACs, TTL − 1, IP checksum), without a
service lookup, a connection or a scheduler: what bench/dataplane.py compares pylvs's DR, NAT
and TUN decisions with.
"""

from __future__ import annotations

import sys

from forwarders import NextHop
from forwarders.dr import DirectRouting
from pylvs.shell import bpf, rings


def main() -> None:
    in_if, out_if, dst_mac, vip = sys.argv[1:5]
    rx, tx = rings.PacketSocket(in_if), rings.PacketSocket(out_if)
    rx.set_filter(bpf.pack(bpf.program([("udp", vip, 9)])))
    hop = NextHop(tx.mac, bytes.fromhex(dst_mac.replace(":", "")), out_if)
    rewrite = DirectRouting().established
    print("ready", flush=True)
    while True:
        sent = False
        for view, _ in rx.receive(0.1):
            tx.send(rewrite(bytearray(view), None, hop, 0, 0))  # type: ignore[arg-type]
            sent = True
        if sent:
            tx.flush()


if __name__ == "__main__":
    main()

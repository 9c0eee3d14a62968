"""What one writes with scapy: a DR forwarder (the reference the data-plane benchmark compares).

    python -m bench.scapy_forwarder IN_IF OUT_IF DST_MAC VIP

Frames to the VIP arriving on IN_IF leave OUT_IF with the destination MAC rewritten, TTL - 1.
"""

from __future__ import annotations

import sys

from scapy.config import conf
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether


def main() -> None:
    in_if, out_if, dst_mac, vip = sys.argv[1:5]
    listen = conf.L2listen(iface=in_if)
    send = conf.L2socket(iface=out_if)
    src_mac = send.ins.getsockname()[4].hex(":") if hasattr(send, "ins") else None
    print("ready", flush=True)
    while True:
        pkt = listen.recv()
        if pkt is None or IP not in pkt or pkt[IP].dst != vip:
            continue
        pkt[Ether].dst = dst_mac
        if src_mac:
            pkt[Ether].src = src_mac
        pkt[IP].ttl -= 1
        del pkt[IP].chksum
        send.send(pkt)


if __name__ == "__main__":
    main()

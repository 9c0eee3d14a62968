"""Writes the seed corpus (python3 -m fuzz.seeds): real inputs of each kind, a few each."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from fuzz.targets import VIP
from pylvs.ha import sync, vrrp

ROOT = Path(__file__).resolve().parent
CLIENT, RS = "203.0.113.5", "198.51.100.2"


def _eth(packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet)


def frames() -> list[bytes]:
    syn = _eth(IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="S"))
    ack = _eth(IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="A") / b"GET /")
    udp = _eth(IP(src=CLIENT, dst=VIP) / UDP(sport=5353, dport=80) / b"query")
    reply = _eth(IP(src=RS, dst=CLIENT) / TCP(sport=8080, dport=40000, flags="SA"))
    icmp = _eth(IP(src=CLIENT, dst=VIP) / ICMP(type=3, code=3)
                / IP(src=VIP, dst=CLIENT) / TCP(sport=80, dport=40000))
    frag = _eth(IP(src=CLIENT, dst=VIP, flags="MF") / UDP(sport=1, dport=80))
    return [syn, ack, udp, reply, icmp, frag]


def _batch(*items: bytes) -> bytes:
    return bytes([len(items) - 1]) + b"".join(len(f).to_bytes(2, "big") + f for f in items)


def seeds() -> dict[str, list[bytes]]:
    syn, ack, udp, reply, icmp, frag = frames()
    conn = sync.SyncConn(6, CLIENT, 40000, VIP, 80, RS, 8080, 1, 0, 900)
    advert = vrrp.Advert(version=2, vrid=51, priority=100, interval=1.0, addresses=(VIP,))
    example = (ROOT.parent / "examples" / "dr.toml").read_bytes()
    return {
        "packet": frames(),
        "director": [_batch(syn, ack, reply, icmp), _batch(udp, udp, frag), _batch(syn)],
        "adm": [b"-A -t 192.0.2.100:80 -s wrr -p 60", b"-a -t 192.0.2.100:80 -r 10.0.0.1 -m -w 3",
                b"-A -u 192.0.2.100:53 -s rr -o", b"-Ln --stats",
                b"-E -t 192.0.2.100:80 -s mh -b mh-port"],
        "restore": [b"-A -t 192.0.2.7:80 -s rr\n-a -t 192.0.2.7:80 -r 10.0.0.2 -g -w 1\n",
                    b'ipvsadm -A -t 203.0.113.7:80 -s "rr\n# comment\n'],
        "toml": [example, b'[director]\ninterface = "eth0"\n'],
        "keepalived": [b"virtual_server 192.0.2.100 80 {\n lb_algo rr\n lb_kind DR\n"
                       b" real_server 10.0.0.1 80 {\n  weight 2\n }\n}\n"],
        "sync": sync.encode([conn], 0),
        "vrrp": [vrrp.ip_packet(advert.encode("192.0.2.2"), "192.0.2.2")],
    }


def main() -> None:
    for target, items in seeds().items():
        folder = ROOT / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / hashlib.sha1(item).hexdigest()).write_bytes(item)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    main()

"""`pylvs lab ... --explain`: what each part of the lab's report shows, in plain paragraphs.

Each function returns the paragraphs for one part of the report, for the methods the lab's
real servers use; `paragraphs` wraps and indents them so they stand apart from the output.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

WIDTH = 96

REAL_SERVERS = {
    "dr": "Why these steps (DR): the director sends the client's frame on unchanged but for the "
          "MACs, so it still says 'to the VIP'; a real server takes it only if it holds the VIP, "
          "hence the VIP on lo. It must hold it as a /32: a /24 on lo would make the whole "
          "subnet local to it (a loop: it would answer for every neighbour). And it must never "
          "tell the segment it has the VIP, or the client would send to it directly and bypass "
          "the director. arp_ignore=1: answer an ARP request only for an address configured on "
          "the interface it arrived on (the VIP is on lo, the request on eth0: no answer). "
          "arp_announce=2: in its own ARP requests, use the best address of the outgoing "
          "interface (its RIP) as the sender, never the VIP, which would teach the neighbours "
          "the VIP's MAC. The kernel uses the larger of the 'all' value and the interface's, so "
          "both are set.",
    "nat": "Why this step (NAT): the director rewrote the destination to the real server's own "
           "address but kept the client's, so the real server answers the client's address. "
           "That answer must go back through the director, which puts the VIP back as the "
           "source; sent straight to the client it would come from an address the client never "
           "talked to, and be dropped. Hence the default route via the director's inside "
           "address.",
    "tun": "Why these steps (TUN): the director wraps the client's packet in a new IP header to "
           "the real server's own address (IP-in-IP, protocol 4). The real server unwraps it "
           "and finds a packet to the VIP, so it holds the VIP on the tunnel's device; "
           "rp_filter is off there because the unwrapped packet's source, the client, is not "
           "reached through that device. It answers the client directly, from the VIP, "
           "through its own router.",
}

TABLE = ("What -Ln shows: one virtual service (protocol, VIP:port, scheduler) and under it its "
         "real servers. Forward is how the director reaches each one: Route is DR (ipvsadm -g, "
         "'gatewaying': only the MACs change), Masq is NAT (-m, masquerading: addresses "
         "rewritten both ways), Tunnel is TUN (-i, IP-in-IP). Weight is the scheduler's share. "
         "ActiveConn counts the connections in ESTABLISHED state, InActConn every other one "
         "still in the table (being opened, closing or closed and waiting to expire): here the "
         "held connections are active and the finished requests inactive until they expire.")

CONNECTIONS = {
    "dr": "What -Lnc shows: the connection table, one entry per client connection: its state "
          "and the time left before it expires. A DR director sees only the client's half of "
          "each connection (the answers go around it), so it follows IPVS's INPUT-ONLY state "
          "table: the client's FIN moves an entry to FIN_WAIT, and since the server's FIN never "
          "passes the director it waits there until it expires (2 minutes).",
    "tun": "What -Lnc shows: as for DR, the director sees only the client's half (the answers "
           "come back through the router), so a closed connection waits in FIN_WAIT until it "
           "expires (2 minutes).",
    "nat": "What -Lnc shows: the connection table, one entry per client connection: its state "
           "and the time left before it expires. A NAT director sees both halves of each "
           "connection (every answer comes back through it to be rewritten), so after both "
           "FINs an entry goes on to TIME_WAIT, as a host's own TCP would, and expires after "
           "2 minutes.",
}

SOCKETS = ("Why the director holds no socket: it forwards frames, it does not terminate TCP. The "
           "three-way handshake is between the client and the real server, so `ss` shows the "
           "connections in the real servers, from the client's own address, and none in the "
           "director: the seed's netstat check.")


def paragraphs(texts: Iterable[str]) -> str:
    return "".join(textwrap.fill(text, WIDTH, initial_indent="  | ", subsequent_indent="  | ")
                   + "\n" for text in texts)


def real_servers(modes: Iterable[str]) -> str:
    return paragraphs(REAL_SERVERS[m] for m in dict.fromkeys(modes))


def table() -> str:
    return paragraphs([TABLE])


def connections(modes: Iterable[str]) -> str:
    return paragraphs(CONNECTIONS[m] for m in dict.fromkeys(modes))


def sockets() -> str:
    return paragraphs([SOCKETS])

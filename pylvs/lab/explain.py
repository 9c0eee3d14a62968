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

REAL_SERVERS6 = {
    "dr": "Why this one step (DR, IPv6): as in IPv4 the director changes only the MACs (and the "
          "hop limit), so a real server takes the packet only if it holds the VIP: on lo, as "
          "a /128 (a shorter prefix on lo would route the whole prefix into lo, where the "
          "answers to the clients vanish). IPv6 needs no arp_ignore or arp_announce: a Linux "
          "host answers a Neighbor Solicitation only for an address on the device it arrived "
          "on (ndisc_recv_ns), and eth0 never even joins the VIP's solicited-node multicast "
          "group, which only lo joined; its own solicitations name an address of eth0 as the "
          "source, never the VIP on lo. So only the director, which holds the VIP on eth0, "
          "answers for it. The VIP is added nodad: lo does no duplicate address detection "
          "anyway, and on an interface that speaks NDP it would find the director holding the "
          "same address and leave the VIP unusable (dadfailed).",
    "nat": "Why this step (NAT, IPv6): as in IPv4, the director rewrote the destination to the "
           "real server's own address and kept the client's, so the answer must go back "
           "through the director, which puts the VIP back as its source (NAT66): hence the "
           "default route via the director's inside address.",
    "tun": "Why these steps (TUN, IPv6): the director wraps the client's packet in a new IPv6 "
           "header to the real server's own address (ip6ip6, next header 41). The real server "
           "unwraps it, finds a packet to the VIP, and holds the VIP as a /128 on the tunnel's "
           "device. IPv6 has no rp_filter, so nothing there drops a packet from a client routed "
           "through another interface. It answers the client directly, from the VIP, through "
           "its own router.",
}

DUAL_STACK = ("Why two decapsulators (dual stack): IPVS picks the outer header by the real "
              "server's family, whatever the packet's. An IPv4 packet to an IPv6 real server "
              "travels in an IPv6 header (4in6, next header 4) and an IPv6 packet to an IPv4 "
              "real server in an IPv4 header (6in4, protocol 41); IPVS allows a real server of "
              "the other family only with TUN. Each real server holds both VIPs: the IPv4 "
              "one's decapsulator takes IP-in-IP and 4in6 into pylvs-tun0, the IPv6 one's "
              "ip6ip6 and 6in4 into pylvs-tun6.")

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


def real_servers(modes: Iterable[str], families: Iterable[int] = (4,)) -> str:
    """The steps' reasons for each method, in each family (the dual-stack lab's too)."""
    families = tuple(families)
    texts = [(REAL_SERVERS6 if family == 6 else REAL_SERVERS)[m]
             for family in families for m in dict.fromkeys(modes)]
    if len(families) > 1:
        texts.append(DUAL_STACK)
    return paragraphs(texts)


def table() -> str:
    return paragraphs([TABLE])


def connections(modes: Iterable[str]) -> str:
    return paragraphs(CONNECTIONS[m] for m in dict.fromkeys(modes))


def sockets() -> str:
    return paragraphs([SOCKETS])

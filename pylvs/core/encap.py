"""GUE and GRE tunnels (ipvsadm ``--tun-type gue|gre``, issue 24): the packets IPVS sends to a
TUN real server of those types, the MTU they leave, and their unwrapping at the real server.

What IPVS sends (net/netfilter/ipvs/ip_vs_xmit.c, ``ip_vs_tunnel_xmit`` toward an IPv4 real
server, ``ip_vs_tunnel_xmit_v6`` toward an IPv6 one; the outer header's family is the real
server's, whatever the packet's, as for IP-in-IP):

- GUE (``ipvs_gue_encap``): outer IP, protocol or next header 17, then UDP from a source port
  hashed from the inner flow (``udp_flow_src_port(net, skb, 0, 0, false)``) to the real server's
  tunnel port, then the 4-byte GUE header of variant 0: version 0, C clear, Hlen 0, proto/ctype
  4 (an IPv4 packet inside) or 41 (IPv6), flags 0. The UDP checksum (``udp_set_csum`` /
  ``udp6_set_csum``): 0 with ``nocsum`` (over IPv6 too: RFC 6936's zero checksum, which the
  receiving socket must allow), the full checksum with ``csum`` or ``remcsum``, a computed 0
  sent as 0xFFFF.
- ``remcsum`` adds the remote-checksum option only when the packet's own checksum is still
  partial (``skb->ip_summed == CHECKSUM_PARTIAL``: a local sender's, left for the NIC). With a
  full inner checksum (every packet that came from a wire) the GUE header is the plain 4 bytes
  and only the outer UDP checksum is on: ``remcsum`` is then ``csum``. With a partial one, Hlen
  2, flag P (``GUE_FLAG_PRIV``), the private flags word with ``GUE_PFLAG_REMCSUM``, then the
  offsets from the inner packet's start of where the sum starts (its TCP or UDP header) and of
  the checksum field; the inner checksum is left partial for the receiver to complete.
- GRE (``ipvs_gre_encap``, ``gre_build_header``): outer protocol or next header 47, then 4
  bytes (flags 0, protocol 0x0800 or 0x86DD by the inner packet), or 8 with ``csum``: flag C
  (0x8000) and the checksum of the GRE header and everything after it, then 16 reserved bits.
  ``remcsum`` means nothing to GRE (only ``IP_VS_TUNNEL_ENCAP_FLAG_CSUM`` is looked at).
- The outer IP header as for IP-in-IP (``ip_vs_prepare_tunneled_skb``): TOS / traffic class
  ``INET_ECN_encapsulate(inner, inner)`` (CE sent as ECT(0)), TTL / hop limit the inner one's
  after its decrement, the inner IPv4 header's checksum computed again (``ip_send_check``).
  IPv4 outer: DF copied from an IPv4 packet (``sysctl_pmtu_disc``, on by default; an IPv6
  packet's is 0), and the IP ID of ``ip_select_ident(net, skb, NULL)``: 0 when DF is set (no
  socket, ``ignore_df`` not yet set), the caller's counter otherwise (the kernel's is a hashed
  one). IPv6 outer: flow label 0, the payload length of everything after the header
  (``__ip6_local_out`` writes it).

The MTU (``__ip_vs_get_out_rt(_v6)``): the route's less the outer header (20 or 40), less 8 +
4 for GUE (and 8 more for a ``remcsum`` option), less 4 or 8 for GRE; below 68 (an IPv4
route) or 1280 (IPv6) the packet is dropped without a word, else ``ensure_mtu_is_adequate``
(``pylvs.core.tunnel6.mtu_check``'s rules).

The UDP source port. The kernel takes ``skb_get_hash`` (the flow dissector's hash of the
addresses, ports and protocol, siphash under a key drawn at boot, the two directions ordered
alike by ``__flow_hash_consistentify``; 0 becomes 1), then ``hash ^= hash << 16`` and maps it
into the local port range, 32768–60999 by default: ``((hash * (high - low)) >> 32) + low``.
Its key is random, so no one can reproduce its ports; here the hash is BLAKE2s under a fixed
key over the same five fields, ordered the same way, and the mapping is the kernel's: a flow
keeps its port for its life (ECMP and RSS at the real server keep it on one path and one
queue), flows spread over the range. (The kernel's hash of an IPv6 packet with a flow label
stops at the label and can change when the sender re-draws it; a connection's port here is
computed once and never changes.)

The real server's side (``gue_decapsulate``, ``gre_decapsulate``) unwraps what fou's
``gue_udp_recv`` and GRE's ``gre_parse_header`` take: GUE variant 0 data messages (control
messages, unknown flags and a proto/ctype of 0 are dropped; a remote-checksum option has the
inner checksum completed, as ``skb_remcsum_process`` does) and variant 1 (a bare IP packet);
GRE version 0 without routing, its checksum checked when C is set, key and sequence skipped.
No sockets here.
"""

from __future__ import annotations

import hashlib
import struct

from pylvs.core.ipv6 import ETH_P_IPV6, Flow6, decrement_hop_limit
from pylvs.core.packet import (
    ETH_P_IP,
    IP_DF,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Buffer,
    Flow,
    checksum,
    decrement_ttl,
    dont_fragment,
    encapsulate_ipip,
    ip_header_checksum,
    set_macs,
)
from pylvs.core.tunnel6 import (
    OUTER_IPV4,
    OUTER_IPV6,
    OVERHEAD,
    Verdict,
    ecn_encapsulate,
    mtu_check,
    mtu_verdict,
)
from pylvs.core.tunnel6 import (
    tunnel_xmit as ipip_tunnel_xmit,
)

TUN_TYPES = {"ipip": 0, "gue": 1, "gre": 2}
"""ipvsadm's ``--tun-type`` names and include/uapi/linux/ip_vs.h's
IP_VS_CONN_F_TUNNEL_TYPE_IPIP, _GUE, _GRE."""
TUN_FLAGS = {"nocsum": 0, "csum": 1, "remcsum": 2}
"""``--tun-nocsum``, ``--tun-csum``, ``--tun-remcsum``: IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM (0),
_CSUM (1 << 0), _REMCSUM (1 << 1)."""
IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE = 4, 41, 47
UDP_HLEN, GUE_HLEN = 8, 4
GUE_FLAG_PRIV = 0x0001
"""include/net/gue.h: the private flags word is in the options (htons(1 << 0))."""
GUE_PFLAG_REMCSUM = 0x80000000
"""The private flag of the remote-checksum option (htonl(1U << 31))."""
GUE_LEN_PRIV, GUE_PLEN_REMCSUM = 4, 4
GRE_HLEN = 4
GRE_CSUM, GRE_ROUTING, GRE_KEY, GRE_SEQ, GRE_VERSION = 0x8000, 0x4000, 0x2000, 0x1000, 0x0007
LOCAL_PORT_RANGE = (32768, 60999)
"""net.ipv4.ip_local_port_range's default: where udp_flow_src_port maps the hash."""
_HASH_KEY = b"pylvs gue sport"
_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}
_IP4 = struct.Struct("!BBHHHBBHII")
_IP6 = struct.Struct("!IHBB")
_UDP = struct.Struct("!HHHH")
_H = struct.Struct("!H")
_INNER_PROTO = {IPPROTO_IPIP: 4, IPPROTO_IPV6: 6}
_GRE_PROTO = {ETH_P_IP: 4, ETH_P_IPV6: 6}


def _check(tun_type: str, flags: str) -> None:
    if tun_type not in TUN_TYPES:
        raise ValueError(f"tunnel type must be one of {', '.join(TUN_TYPES)}, not {tun_type!r}")
    if flags not in TUN_FLAGS:
        raise ValueError(f"tunnel flags must be one of {', '.join(TUN_FLAGS)}, not {flags!r}")


def header_length(tun_type: str, flags: str = "nocsum", partial: bool = False) -> int:
    """The bytes between the outer IP header and the inner packet: 0 for IP-in-IP, 12 for GUE
    (UDP and GUE; 20 with a ``remcsum`` option, only for a ``partial`` packet), 4 or 8 (``csum``)
    for GRE (gre_calc_hlen)."""
    _check(tun_type, flags)
    if tun_type == "gue":
        extra = GUE_LEN_PRIV + GUE_PLEN_REMCSUM if flags == "remcsum" and partial else 0
        return UDP_HLEN + GUE_HLEN + extra
    if tun_type == "gre":
        return GRE_HLEN + (4 if flags == "csum" else 0)
    return 0


def overhead(tun_type: str, server_family: int, flags: str = "nocsum",
             partial: bool = False) -> int:
    """The bytes the tunnel adds to a packet toward a real server of ``server_family`` (4 or
    6): the outer header (20 or 40) and ``header_length``. The MTU a packet must fit is the
    route's less this (``__ip_vs_get_out_rt(_v6)``)."""
    return OVERHEAD[_outer(server_family)] + header_length(tun_type, flags, partial)


def _outer(server_family: int) -> int:
    if server_family not in (4, 6):
        raise ValueError(f"a real server's family is 4 or 6, not {server_family!r}")
    return OUTER_IPV4 if server_family == 4 else OUTER_IPV6


def tunnel_mtu_check(family: int, size: int, mtu: int, tun_type: str, server_family: int,
                     flags: str = "nocsum", *, partial: bool = False, df: bool = False,
                     first_fragment: bool = True, related_icmp: bool = False,
                     pmtu_disc: bool = True) -> tuple[Verdict, int]:
    """tunnel6.mtu_check for a tunnel of ``tun_type``: the verdict for an inner packet of
    ``family`` and ``size`` bytes on a route of ``mtu`` and the usable MTU (the route's less
    ``overhead``, as an ICMP error carries it). Dropped without a word below 68 / 1280."""
    return mtu_check(family, size, mtu - header_length(tun_type, flags, partial),
                     _outer(server_family), df=df, first_fragment=first_fragment,
                     related_icmp=related_icmp, pmtu_disc=pmtu_disc)


def tunnel_mtu_verdict(frame: Buffer, flow: Flow | Flow6, mtu: int, tun_type: str,
                       server_family: int, flags: str = "nocsum", *, partial: bool = False,
                       pmtu_disc: bool = True) -> tuple[Verdict, int]:
    """``tunnel_mtu_check`` for the packet ``flow`` describes (tunnel6.mtu_verdict's rules:
    DF, fragments, relayed ICMP errors)."""
    return mtu_verdict(frame, flow, mtu - header_length(tun_type, flags, partial),
                       _outer(server_family), pmtu_disc)


# -- the UDP source port -----------------------------------------------------------------------

def flow_hash(flow: Flow | Flow6) -> int:
    """A deterministic 32-bit hash of the inner flow (protocol, addresses, ports), the same
    for both directions, never 0: the stand-in for the kernel's skb_get_hash (see the
    module's notes)."""
    size = 16 if isinstance(flow, Flow6) else 4
    one, two = (flow.saddr, flow.sport), (flow.daddr, flow.dport)
    if two < one:  # __flow_hash_consistentify
        one, two = two, one
    data = (bytes((flow.proto,)) + one[0].to_bytes(size, "big") + two[0].to_bytes(size, "big")
            + struct.pack("!HH", one[1], two[1]))
    value = int.from_bytes(hashlib.blake2s(data, digest_size=4, key=_HASH_KEY).digest(), "big")
    return value or 1


def port_from_hash(value: int, low: int = LOCAL_PORT_RANGE[0],
                   high: int = LOCAL_PORT_RANGE[1]) -> int:
    """udp_flow_src_port's mapping of a 32-bit hash into [low, high)."""
    value ^= (value << 16) & 0xFFFFFFFF
    return ((value * (high - low)) >> 32) + low


def gue_source_port(flow: Flow | Flow6, low: int = LOCAL_PORT_RANGE[0],
                     high: int = LOCAL_PORT_RANGE[1]) -> int:
    """The UDP source port of a connection's GUE packets (``flow``: any of its packets from
    the client): computed once per connection, it never changes."""
    return port_from_hash(flow_hash(flow), low, high)


# -- building ----------------------------------------------------------------------------------

def _inner(frame: Buffer, flow: Flow | Flow6) -> tuple[int, int, int, int]:
    """The inner packet's offset, length, DS field and TTL / hop limit."""
    l3 = flow.l3off
    if isinstance(flow, Flow6):
        return l3, flow.ip_len, (frame[l3] & 0x0F) << 4 | frame[l3 + 1] >> 4, frame[l3 + 7]
    return l3, flow.ip_len, frame[l3 + 1], frame[l3 + 8]


def _outer_header(frame: Buffer, flow: Flow | Flow6, server_family: int, src: int, dst: int,
                  proto: int, payload_len: int, ip_id: int, pmtu_disc: bool) -> bytes:
    """The outer IPv4 or IPv6 header of ``payload_len`` bytes after it, as ip_vs_tunnel_xmit
    and ip_vs_tunnel_xmit_v6 install it."""
    _, _, dsfield, ttl = _inner(frame, flow)
    tos = ecn_encapsulate(dsfield)
    if _outer(server_family) == OUTER_IPV6:
        return (_IP6.pack(0x60000000 | tos << 20, payload_len, proto, ttl)
                + src.to_bytes(16, "big") + dst.to_bytes(16, "big"))
    df = pmtu_disc and not isinstance(flow, Flow6) and dont_fragment(frame, flow.l3off)
    header = bytearray(_IP4.pack(0x45, tos, 20 + payload_len, 0 if df else ip_id & 0xFFFF,
                                 IP_DF if df else 0, ttl, proto, 0, src, dst))
    _H.pack_into(header, 10, checksum(header))
    return bytes(header)


def _frame(frame: Buffer, flow: Flow | Flow6, server_family: int, outer: bytes,
           rest: Buffer) -> bytearray:
    """The link header kept (its EtherType made the outer family's), the outer header, the
    tunnel header and the inner packet (``rest``)."""
    l3 = flow.l3off
    out = bytearray(frame[:l3])
    if l3 >= 2:
        _H.pack_into(out, l3 - 2, ETH_P_IP if server_family == 4 else ETH_P_IPV6)
    out += outer
    out += rest
    return out


def _pseudo_sum(server_family: int, src: int, dst: int, proto: int, length: int) -> int:
    """The unfolded sum of the outer pseudo-header (RFC 768's or RFC 8200 §8.1's)."""
    size = 4 if server_family == 4 else 16
    data = src.to_bytes(size, "big") + dst.to_bytes(size, "big")
    return (sum(struct.unpack(f"!{size}H", data)) + proto + (length >> 16)
            + (length & 0xFFFF))


def udp_checksum(server_family: int, src: int, dst: int, datagram: Buffer) -> int:
    """The full UDP checksum of ``datagram`` (its checksum field as 0) between the outer
    addresses; a computed 0 is sent as 0xFFFF (CSUM_MANGLED_0)."""
    value = checksum(datagram, _pseudo_sum(server_family, src, dst, IPPROTO_UDP,
                                           len(datagram)))
    return value or 0xFFFF


def gue_header(inner_proto: int, remcsum: tuple[int, int] | None = None) -> bytes:
    """GUE variant 0 of a data message carrying ``inner_proto``; with ``remcsum`` (the start of
    the inner checksum's coverage and the checksum field's offset, both from the inner
    packet's start) the private flags and the remote-checksum option, as ipvs_gue_encap."""
    if remcsum is None:
        return bytes((0, inner_proto, 0, 0))
    start, field = remcsum
    return struct.pack("!BBHIHH", (GUE_LEN_PRIV + GUE_PLEN_REMCSUM) >> 2, inner_proto,
                       GUE_FLAG_PRIV, GUE_PFLAG_REMCSUM, start, field)


def _remcsum_offsets(flow: Flow | Flow6) -> tuple[int, int] | None:
    """Where a partial TCP or UDP checksum's coverage starts and where its field is, from the
    inner packet's start; None for a packet without one (a fragment, another protocol)."""
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is None or (isinstance(flow, Flow6) and flow.fragment):
        return None
    start = flow.l4off - flow.l3off
    return start, start + offset


def gue_encapsulate(frame: Buffer, flow: Flow | Flow6, outer_src: int, outer_dst: int,
                    server_family: int, dport: int, flags: str, ip_id: int, *,
                    sport: int | None = None, partial: bool = False,
                    pmtu_disc: bool = True) -> bytearray:
    """The frame's packet (its TTL or hop limit already decremented) inside UDP and GUE to the
    real server's tunnel port ``dport``, from ``outer_src`` to ``outer_dst`` (ints of the
    server's family), as ip_vs_tunnel_xmit(_v6) with a GUE real server. ``sport``: the
    connection's ``gue_source_port`` (computed from ``flow`` when not given). ``partial``: the
    packet's TCP or UDP checksum is still partial (the sender's offload left it), which alone
    makes ``remcsum`` add its option. The link header is kept for the caller to address."""
    _check("gue", flags)
    if not 0 < dport < 0x10000:
        raise ValueError(f"a GUE real server needs a tunnel port 1..65535, not {dport!r} "
                         "(ip_vs_add_dest: tunnel port is zero)")
    l3, length, _, _ = _inner(frame, flow)
    inner = frame[l3:l3 + length]
    remcsum = _remcsum_offsets(flow) if flags == "remcsum" and partial else None
    header = gue_header(IPPROTO_IPV6 if isinstance(flow, Flow6) else IPPROTO_IPIP, remcsum)
    size = UDP_HLEN + len(header) + length
    datagram = bytearray(_UDP.pack(gue_source_port(flow) if sport is None else sport, dport,
                                   size, 0))
    datagram += header
    datagram += inner
    if flags != "nocsum":
        _H.pack_into(datagram, 6, udp_checksum(server_family, outer_src, outer_dst, datagram))
    outer = _outer_header(frame, flow, server_family, outer_src, outer_dst, IPPROTO_UDP, size,
                          ip_id, pmtu_disc)
    return _frame(frame, flow, server_family, outer, datagram)


def gre_header(inner_family: int, flags: str = "nocsum", payload: Buffer = b"") -> bytes:
    """GRE's 4 bytes (flags 0, the inner packet's EtherType), or 8 with ``csum``: flag C, the
    checksum of the header and ``payload`` (gre_build_header), 16 reserved bits."""
    proto = ETH_P_IPV6 if inner_family == 6 else ETH_P_IP
    if flags != "csum":
        return struct.pack("!HH", 0, proto)
    header = bytearray(struct.pack("!HHHH", GRE_CSUM, proto, 0, 0))
    _H.pack_into(header, 4, checksum(bytes(header) + bytes(payload)))
    return bytes(header)


def gre_encapsulate(frame: Buffer, flow: Flow | Flow6, outer_src: int, outer_dst: int,
                    server_family: int, flags: str, ip_id: int, *,
                    pmtu_disc: bool = True) -> bytearray:
    """The frame's packet (its TTL or hop limit already decremented) inside GRE, from
    ``outer_src`` to ``outer_dst``, as ip_vs_tunnel_xmit(_v6) with a GRE real server; the GRE
    checksum with ``csum`` only. The link header is kept for the caller to address."""
    _check("gre", flags)
    l3, length, _, _ = _inner(frame, flow)
    inner = frame[l3:l3 + length]
    header = gre_header(6 if isinstance(flow, Flow6) else 4, flags, inner)
    outer = _outer_header(frame, flow, server_family, outer_src, outer_dst, IPPROTO_GRE,
                          len(header) + length, ip_id, pmtu_disc)
    return _frame(frame, flow, server_family, outer, header + bytes(inner))


def tunnel_xmit(frame: bytearray, flow: Flow | Flow6, tun_type: str, server_family: int,
                src: int, dst: int, macs: bytes, *, port: int = 0, flags: str = "nocsum",
                ip_id: int = 0, sport: int | None = None, partial: bool = False,
                pmtu_disc: bool = True) -> bytearray:
    """The whole of TUN toward a real server of ``server_family`` with ``tun_type`` (``ipip``,
    ``gue``, ``gre``): the inner TTL / hop limit − 1 (the caller checked it is > 1) and, for an
    IPv4 packet, its header checksum computed again; the encapsulation; the hop's 12 MAC bytes
    (dst then src). ``port``, ``sport``, ``partial``: GUE's (``gue_encapsulate``). IP-in-IP is
    packet.encapsulate_ipip's and tunnel6.tunnel_xmit's, unchanged."""
    _check(tun_type, flags)
    if tun_type == "ipip":
        if isinstance(flow, Flow6) or server_family == 6:
            return ipip_tunnel_xmit(frame, flow, server_family, src, dst, macs, ip_id)
        decrement_ttl(frame, flow.l3off)
        out = encapsulate_ipip(frame, flow, src, dst, ip_id)
        set_macs(out, macs[:6], macs[6:12])
        return out
    if isinstance(flow, Flow6):
        decrement_hop_limit(frame, flow)
    else:
        decrement_ttl(frame, flow.l3off)
        _H.pack_into(frame, flow.l3off + 10, ip_header_checksum(frame, flow.l3off))
    if tun_type == "gue":
        out = gue_encapsulate(frame, flow, src, dst, server_family, port, flags, ip_id,
                              sport=sport, partial=partial, pmtu_disc=pmtu_disc)
    else:
        out = gre_encapsulate(frame, flow, src, dst, server_family, flags, ip_id,
                              pmtu_disc=pmtu_disc)
    out[0:12] = macs
    return out


# -- unwrapping at the real server ---------------------------------------------------------------

class NotDecapsulated(ValueError):
    """Why a tunnel packet gives no inner packet: ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def complete_remcsum(inner: bytearray, start: int, field: int, udp: bool = False) -> None:
    """The remote-checksum option's work at the receiver (skb_remcsum_process): the checksum
    of ``inner[start:]``, its field (at ``field``) holding the sender's partial sum, written
    into the field. ``udp``: a computed 0 is written 0xFFFF (0 would mean "no checksum")."""
    value = checksum(inner[start:])
    _H.pack_into(inner, field, 0xFFFF if udp and value == 0 else value)


def _is_udp(packet: Buffer) -> bool:
    """The IP packet carries UDP right after its fixed header (IPv4's protocol, IPv6's next
    header)."""
    if len(packet) > 9 and packet[0] >> 4 == 4:
        return packet[9] == IPPROTO_UDP
    return len(packet) > 6 and packet[0] >> 4 == 6 and packet[6] == IPPROTO_UDP


def gue_decapsulate(payload: Buffer) -> tuple[int, bytes]:
    """The inner packet's family (4 or 6) and bytes of what a GUE port received (the UDP
    payload), as fou's gue_udp_recv; NotDecapsulated otherwise."""
    data = bytes(payload)
    if len(data) < GUE_HLEN:
        raise NotDecapsulated("malformed", "shorter than a GUE header")
    version = data[0] >> 6
    if version == 1:  # variant 1: the IP packet itself, its version says which
        family = data[0] >> 4
        if family not in (4, 6):
            raise NotDecapsulated("malformed", "GUE variant 1 without an IP packet")
        return family, data
    if version != 0:
        raise NotDecapsulated("malformed", f"GUE version {version}")
    if data[0] & 0x20:
        raise NotDecapsulated("control", "a GUE control message")
    optlen = (data[0] & 0x1F) << 2
    end = GUE_HLEN + optlen
    if len(data) < end:
        raise NotDecapsulated("malformed", "GUE options past the datagram")
    proto, flags = data[1], _H.unpack_from(data, 2)[0]
    if flags & ~GUE_FLAG_PRIV:
        raise NotDecapsulated("unknown_flags", f"GUE flags {flags:#06x}")
    inner = bytearray(data[end:])
    if flags & GUE_FLAG_PRIV:
        if optlen < GUE_LEN_PRIV:
            raise NotDecapsulated("malformed", "GUE private flags past its options")
        private = struct.unpack_from("!I", data, GUE_HLEN)[0]
        if private & ~GUE_PFLAG_REMCSUM:
            raise NotDecapsulated("unknown_flags", f"GUE private flags {private:#010x}")
        if private & GUE_PFLAG_REMCSUM:
            if optlen < GUE_LEN_PRIV + GUE_PLEN_REMCSUM:
                raise NotDecapsulated("malformed", "GUE remote checksum past its options")
            start, field = struct.unpack_from("!HH", data, GUE_HLEN + GUE_LEN_PRIV)
            if field + 2 > len(inner) or start > field:
                raise NotDecapsulated("malformed", "GUE remote checksum past the packet")
            complete_remcsum(inner, start, field, _is_udp(inner))
    family = _INNER_PROTO.get(proto)
    if family is None:
        raise NotDecapsulated("not_ip", f"GUE proto/ctype {proto}")
    return family, bytes(inner)


def gre_decapsulate(payload: Buffer) -> tuple[int, bytes]:
    """The inner packet's family (4 or 6) and bytes of a GRE packet (``payload`` from the GRE
    header on), as gre_parse_header: version 0, no routing, the checksum checked when C is
    set, key and sequence number skipped; NotDecapsulated otherwise."""
    data = bytes(payload)
    if len(data) < GRE_HLEN:
        raise NotDecapsulated("malformed", "shorter than a GRE header")
    flags, proto = struct.unpack_from("!HH", data)
    if flags & (GRE_VERSION | GRE_ROUTING):
        raise NotDecapsulated("unsupported", f"GRE flags and version {flags:#06x}")
    end = GRE_HLEN + 4 * sum(bool(flags & bit) for bit in (GRE_CSUM, GRE_KEY, GRE_SEQ))
    if len(data) < end:
        raise NotDecapsulated("malformed", "GRE options past the packet")
    if flags & GRE_CSUM and checksum(data) != 0:
        raise NotDecapsulated("bad_checksum", "GRE checksum")
    family = _GRE_PROTO.get(proto)
    if family is None:
        raise NotDecapsulated("not_ip", f"GRE protocol {proto:#06x}")
    return family, data[end:]

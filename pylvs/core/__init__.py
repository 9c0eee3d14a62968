"""The sans-IO core: frames in, actions out.

packet (offsets, the Flow, checksums), icmp (errors sent and related), model (virtual services,
real servers, counters), conntrack (connections, IPVS's state tables and timeouts), director
(one frame in, at most one out), outbox (the one way out of the core: what the shell drains),
sysctls (IPVS's knobs) and defense (its defences against floods and memory shortage), segment
(what GSO would have done on the wire), ebpf (an eBPF assembler) and fastpath (the XDP program
and its map entries), offloaded (what the fast path forwarded, into IPVS's timers and
counters), and:

- forwarding: the forwarding method's interface (``Forwarder``), the ``NextHop`` and the
  registry the ``forwarders`` plug-ins register into; real servers bind their method here.
- csum_delta: RFC 1624's checksum deltas (NAT's rewrite, the TTL, IP-in-IP's constant outer
  sum), in network order, for the Python short paths and the XDP map entries alike.
- ipv6: IPv6 frames (the header and its extension headers walked as ipv6_find_hdr, the Flow6),
  the pseudo-header checksums and the hop limit.
- icmpv6: the ICMPv6 errors the director sends, when it may, and the packet a relayed one quotes.
- tunnel6: TUN with IPv6 (ip6ip6, 4in6, 6in4) and the MTU verdicts; DR's and NAT66's are ipv6's.
- encap: GUE and GRE tunnels (ipvsadm --tun-type gue|gre): the packets IPVS sends, their MTU,
  the GUE source port, and their unwrapping at the real server.
- fragments: which connection an IPv6 fragment after the first belongs to (its first's).
- marks: the rules that mark packets for firewall-mark services (ipvsadm -f), as iptables'
  MARK would in mangle PREROUTING.
- leftovers: what an earlier run killed with its guard left on the host (VIPs, tables named
  after its pid), which of it a starting director takes as its own and which it removes.

Everything here works on bytes and plain objects: no socket, thread, subprocess, signal or DNS,
no clock of its own (the caller passes ``now``), and nothing of ipvsadm, HA, the shell or the
labs. It knows its plug-ins (the schedulers and the forwarders) through the interfaces they
implement.
"""

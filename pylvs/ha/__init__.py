"""High availability as rules, sans-IO: what keepalived and IPVS's sync daemon decide.

- vrrp: VRRP v2/v3 packets and one router's state machine, RFC 3768/5798 as keepalived runs
  them;
- vrrp_track: keepalived's tracking (vrrp_script rise and fall, tracked interfaces and
  scripts) → an instance's effective priority, or FAULT;
- vrrp_group: the instances together as keepalived's VRRP process runs them: tracking, sync
  groups, notifies;
- vrrp_notify: keepalived's notify scripts: which commands a state change starts, with which
  arguments;
- sync: IPVS's connection sync messages and when a connection is due;
- replica: a master's connections to the wire and a backup's install of them;
- health: keepalived's checker semantics: retries, alpha, quorum, sorry server;
- bgp: when a director announces a VIP over BGP (for a router's ECMP), and the drain on a stop;
- bird: BIRD 2's language as far as a director needs it: its config, the VIP routes, the
  control socket's replies.

Bytes and time in, decisions out: the sockets and processes that carry them are in pylvs.shell
(vrrp_socket, sync_socket, health_probes, track_probes, announcer). Imports the core.
"""

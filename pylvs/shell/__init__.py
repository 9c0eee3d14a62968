"""The I/O shell: sockets, rings, netlink, nftables, processes. Thin: it moves bytes and makes
no decisions of its own. May import everything but the labs.

The running director, a composition of parts with one job each:

- engine: composes the parts and runs the loop; ``run`` (signals, start, drain, close);
- host: the host state (steal rules, VIPs, the guard) and the memory facts limits come from;
- dataplane: links, filter and fanout, next hops, the fast path's glue, the frames through the
  core; links (one interface's rings, MAC, MTU, resolver) and nexthops (each real server's route
  and next hop) are its parts;
- ha_runtime: the health checks, VRRP, BGP, the sync daemon's halves, the metrics server;
- requests: the control requests answered (adm with its roll-back, sysctl, status, reload);
- workers: the supervisor and its forked workers, other compositions of the same parts.

What the parts use: interfaces (an interface's MAC, MTU, index), rings (packet sockets and their
TPACKET rings), nftables (the steal rules), addresses (VIPs, addresses, routes), neighbours (the
neighbour table), bpf and fanout (the classic BPF programs the kernel runs for the director),
offload (the XDP fast path's maps) over xdp (the bpf() system call, XDP attach), control (the
unix socket and the workers' socketpairs) carrying messages (the typed requests and replies),
vrrp_socket, track_probes, sync_socket, health_probes and announcer (the wire of pylvs.ha: VRRP,
its tracked scripts and links, the sync daemon, the checks, BIRD), metrics (the Prometheus
exposition), guard (removes what a killed director left), cleanup (a stop's steps, each tried),
config_file (the config from disk), check (this host's facts for `pylvs check` and `pylvs
run`'s pre-flight, read only), logs and notify (standard error's formats, systemd's notify
socket), and for the command line: adm_client (pylvs adm and the other requests, as a client),
names (host and service names for listings without -n) and top (pylvs top).
"""

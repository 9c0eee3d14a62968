"""The I/O shell: sockets, rings, netlink, nftables, processes. Thin: it moves bytes and makes
no decisions of its own.

netio (packet sockets and rings, steal rules, VIPs, routes, neighbours), bpf and fanout (the
classic BPF programs the kernel runs for the director), engine (the loop: ring in, core, ring
out, and the host state), workers (a supervisor and forked data planes), control (the unix
socket pylvs adm talks to), names (host and service names for listings without -n),
vrrp_socket, sync_socket and health_probes (the wire of pylvs.ha) and guard (removes what a
killed director left). May import everything but the labs.
"""

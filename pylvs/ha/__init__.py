"""High availability as rules, sans-IO: what keepalived and IPVS's sync daemon decide.

vrrp (VRRP v2/v3 packets and the router's state machine, RFC 3768/5798 as keepalived runs
them), sync (IPVS's connection sync messages and when a connection is due), replica (a master's
connections to the wire and a backup's install of them) and health (keepalived's checker
semantics: retries, alpha, quorum, sorry server). Bytes and time in, decisions out: the sockets
that carry them are in pylvs.shell (vrrp_socket, sync_socket, health_probes). Imports the core.
"""

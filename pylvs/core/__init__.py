"""The sans-IO core: frames in, actions out.

packet (offsets, the Flow, checksums), icmp (errors sent and related), model (virtual services,
real servers, counters), conntrack (connections, IPVS's state tables and timeouts), director
(one frame in, at most one out) and segment (what GSO would have done on the wire). Everything
here works on bytes and plain objects: no socket, thread, subprocess, signal or DNS, no clock of
its own (the caller passes ``now``), and nothing of ipvsadm, HA, the shell or the labs. It may use
its plug-ins: the schedulers and the forwarders.
"""

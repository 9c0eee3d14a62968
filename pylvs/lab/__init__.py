"""Labs and the other hosts of LVS: namespaces (topology), the lab's demo and failover runs,
the real servers' HTTP server, the real-server set-up (realserver) and userspace IP-in-IP
decapsulation (decap). Runs processes and builds namespaces; the director itself is pylvs run.
"""

"""Labs and the other hosts of LVS.

- commands: ``pylvs lab`` and ``pylvs realserver``: their arguments checked before anything is
  made;
- topology: a lab of network namespaces: a client, a director and N real servers behind bridges,
  in IPv4, IPv6 or both;
- demo: ``pylvs lab dr`` (nat, tun, mixed; ``--ipv6``; dualstack): a real director in a lab,
  curl requests, the report;
- failover: ``pylvs lab dr --ha``: two directors by VRRP and sync, the master killed mid-download;
- ecmp: ``pylvs lab ecmp``: N directors behind a router's ECMP, each announcing the VIP by BGP;
- nexthops: the ECMP lab's router: BIRD's multipath routes as resilient nexthop groups;
- mistakes: ``--mistake NAME``: the real-server mistakes the course notes warn about, made;
- explain: ``--explain``: what each part of a lab's report shows, in plain paragraphs;
- kept: ``--keep`` and ``pylvs lab down``: a lab left running, and its removal;
- capture: tcpdump on every wire of a lab, and what each host is;
- trace: one connection hop by hop: captured frames in, the trace's hops and text out;
- trace_page: a trace drawn: the topology and a sequence diagram, as a page and an SVG;
- compare: ``pylvs lab compare``: the same request through DR, NAT and TUN, one trace each,
  and the director's rewrite of each in one table; compare_page draws them side by side;
- realserver: the real-server steps for DR and TUN, done on the host this runs in;
- realserver_check: ``pylvs realserver --check``: a real server's state in, a verdict out;
- decap: a TUN real server's decapsulator in userspace (IP-in-IP, ip6ip6, 4in6, 6in4: no
  tunnel modules);
- httpserver: the lab's real server: Python's http.server answering with its own name.

Runs processes and builds namespaces; the director itself is pylvs run. May use everything of
the product; nothing of the product imports the labs but the command line (pylvs.cli).
"""

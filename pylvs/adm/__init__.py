"""The ipvsadm surface and the config, sans-IO: what a person types and reads.

- ipvsadm: argv → Command, its option table, texts and exit codes;
- commands: what each command does to a Director, as ip_vs_ctl.c;
- listing: several data planes' listings as one (each one's snapshot, their union);
- layouts: ipvsadm's output, byte for byte (host and service names come from the caller: no
  DNS here);
- ruleset: -S/-R lines, the changes a reload makes, ipvsadm rules to TOML;
- config: TOML → model; every error names the file, the key and why;
- check: a config against this host's facts (`pylvs check`, `pylvs run`'s pre-flight): ok,
  warn or FAIL under each key, what `pylvs run` would do, a keepalived.conf's routed interface;
- iptables: an iptables, ip6tables or nft MARK line → a mark rule, or why it cannot be kept;
- keepalived: keepalived.conf → a config, with the notes of what does not map;
- keepalived_syntax: keepalived.conf's blocks, comments, ``@ID`` lines and includes, as
  keepalived's parser reads them;
- toml_text: a config written as TOML text that reads back the same (what keepalived's
  conversion writes).

It reads files it is given; no socket, thread or process. Imports the core and ha.
"""

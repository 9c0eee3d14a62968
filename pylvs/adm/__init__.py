"""The ipvsadm surface and the config, sans-IO: what a person types and reads.

ipvsadm (argv → Command, its option table, texts and exit codes), commands (what each command
does to a Director, as ip_vs_ctl.c), layouts (ipvsadm's output, byte for byte; host and service
names come from the caller: no DNS here), ruleset (-S/-R lines, the changes a reload makes,
ipvsadm rules to TOML), config (TOML → model; every error names the file, the key and why) and
keepalived (keepalived.conf → a config, with the notes of what does not map; toml_text writes
it). It reads files it is given; no socket, thread or process.
Imports the core and ha.
"""

"""`pylvs lab dr --ha`: the seed's lesson 4 as a demonstration. Two directors share the VIP by
VRRP and each other's connections by the sync daemon; the master is killed with -9 in the middle
of a client's rate-limited download, and the report shows the backup taking the VIP, the killed
host holding none, and the download arriving whole from the same real server.

`pylvs lab dr --ipv6 --ha`: the same in IPv6, the directors a VRRPv3 pair over IPv6 (link-local
sources, ff02::12, unsolicited Neighbor Advertisements for the /128 VIP). While the sync daemon
carries no IPv6 connection (pylvs.adm.config refuses it), the directors run without it and
agree on the flow instead: ``mh`` (IPVS's Maglev hashing, the same table on both) and
``sloppy_tcp`` (IPVS schedules a connection on any segment, not only a SYN), so the backup
sends the client's next segment to the real server the master had picked, as the ECMP lab's
directors do. With IPv6 sync in the config, the lab syncs as the IPv4 one does.
"""

from __future__ import annotations

import hashlib
import subprocess
import time

from pylvs.adm import config
from pylvs.lab.demo import DirectorProcess, _prepare_real_servers
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import Lab, curl_argv, lab_config
from pylvs.shell import control
from pylvs.shell.messages import Status

DOWNLOAD = 3_000_000
RATE = "400k"
KILL_AFTER = 2.5
WAIT = 15.0


def run(servers: int = 3, scheduler: str = "rr", family: int = 4) -> int:
    with Lab(servers=servers, mode="dr", ha=True, family=family) as lab:
        sync = syncs(lab, scheduler)
        if not sync:
            scheduler = "mh"
        print(f"lab ({lab.label}, ha): client {lab.client_ip}, directors {lab.director_ip} "
              f"(priority 150) and {lab.director2_ip} (priority 100), VIP {lab.vip}, real "
              f"servers {', '.join(lab.server_ips)}")
        print(f"  {lab.where()}")
        if not sync:
            print("  no sync daemon: pylvs's sync daemon carries no IPv6 connection yet, so "
                  "both directors run mh and sloppy_tcp (the backup picks the same real "
                  "server for the client's next segment)")
        lab.setup()
        _prepare_real_servers(lab)
        lab.start_http_servers()
        first = DirectorProcess(lab, director_config(lab, scheduler, 150, sync))
        second = None
        try:
            _until(lambda: _holds_vip(lab, lab.director_ns), "director 1 to become MASTER")
            second = DirectorProcess(lab, director_config(lab, scheduler, 100, sync,
                                                          lab.control_socket2),
                                     lab.director2_ns, lab.control_socket2)
            _until(lambda: "BACKUP" in _status(lab.control_socket2), "director 2 to be BACKUP")
            print(f"\n$ pylvs status   # director 1\n{_status(lab.control_socket)}")
            print(f"$ pylvs status   # director 2\n{_status(lab.control_socket2)}")
            return _demo(lab, first, second, sync)
        finally:
            for director in (second, first):
                if director is not None:
                    director.stop()


def syncs(lab: Lab, scheduler: str) -> bool:
    """Whether the sync daemon takes this lab's services (IPv4's always; IPv6's once
    pylvs.ha.sync carries IPv6 connections): the config says, by refusing them or not."""
    try:
        config.parse(lab_config(lab, scheduler, priority=150))
    except config.ConfigError as exc:
        if exc.key == "director.sync_daemon":
            return False
        raise
    return True


def director_config(lab: Lab, scheduler: str, priority: int, sync: bool,
                    control_socket: str = "") -> str:
    """A director of the pair: VRRP with the sync daemon, or without it mh's agreement and
    sloppy_tcp (see the module's notes)."""
    text = lab_config(lab, scheduler, priority=priority, control_socket=control_socket,
                      sync=sync)
    return text if sync else text + "\n[sysctl]\nsloppy_tcp = 1\n"


def small_receive_buffer(lab: Lab) -> None:
    """The client's TCP receive buffer at most 256 KB: without it the real server could put
    most of the download in flight before the kill, and the failover would prove little."""
    lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
               check=True)


def _demo(lab: Lab, first: DirectorProcess, second: DirectorProcess, sync: bool = True
          ) -> int:
    small_receive_buffer(lab)
    url = lab.url(f"/blob/{DOWNLOAD}")
    print(f"client: curl --limit-rate {RATE} {url}   ({DOWNLOAD:,} bytes)")
    start = time.monotonic()
    curl = lab.popen_in(lab.client_ns, [*curl_argv(url, max_time=90), "--limit-rate", RATE],
                        stdout=subprocess.PIPE)
    time.sleep(KILL_AFTER)
    if sync:
        synced = second.adm("-Lnc")
        print(f"\ndirector 2 already has the connection from its sync daemon:\n"
              f"$ pylvs adm -Lnc\n{synced}")
    else:
        print(f"\ndirector 1 has the connection; director 2, with no sync daemon, has none:\n"
              f"$ pylvs adm -Lnc   # director 1\n{first.adm('-Lnc')}")
    first.proc.kill()
    first.proc.wait()
    killed = time.monotonic()
    print(f"{killed - start:5.2f} s  kill -9 director 1 (the MASTER)")
    took = _until(lambda: _holds_vip(lab, lab.director2_ns), "director 2 to take the VIP")
    print(f"{took - start:5.2f} s  director 2 holds the VIP ({took - killed:.2f} s after the "
          "kill; Master_Down_Interval, 3.61 s, runs from the master's last advert)")
    _until(lambda: not _holds_vip(lab, lab.director_ns), "director 1's host to drop the VIP")
    print("        director 1's host holds no VIP (its guard removed it)")
    body, _ = curl.communicate(timeout=120)
    done = time.monotonic()
    intact = curl.returncode == 0 and hashlib.sha256(body).digest() == \
        hashlib.sha256(blob(DOWNLOAD)).digest()
    print(f"{done - start:5.2f} s  download finished: {len(body):,} bytes, "
          f"{'intact (sha256 matches)' if intact else f'BROKEN (curl exit {curl.returncode})'}")
    print(f"\n$ pylvs status   # director 2\n{_status(lab.control_socket2)}")
    if sync:
        print("HA works: the backup took the VIP and the synced connection, and the client's "
              "transfer went on." if intact else "\nsomething is wrong: see above")
    else:
        print(f"$ pylvs adm -Lnc   # director 2\n{second.adm('-Lnc')}")
        print("HA works: the backup took the VIP and, with sloppy_tcp, scheduled the client's "
              "next segment to the same real server (mh), and the client's transfer went on."
              if intact else "\nsomething is wrong: see above")
    return 0 if intact else 1


def _status(socket_path: str) -> str:
    try:
        return control.ask(socket_path, Status()).stdout
    except OSError:
        return ""


def _holds_vip(lab: Lab, ns: str) -> bool:
    out = lab.run_in(ns, ["ip", f"-{lab.family}", "addr", "show", "dev", "eth0"],
                     capture_output=True, text=True).stdout
    return f"{lab.vip}/{32 if lab.family == 4 else 128}" in out


def _until(predicate, what: str) -> float:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"waited {WAIT:.0f} s for {what}")

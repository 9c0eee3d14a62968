"""`pylvs lab dr --ha`: the seed's lesson 4 as a demonstration. Two directors share the VIP by
VRRP and each other's connections by the sync daemon; the master is killed with -9 in the middle
of a client's rate-limited download, and the report shows the backup taking the VIP, the killed
host holding none, and the download arriving whole from the same real server.

`pylvs lab dr --ipv6 --ha`: the same in IPv6, the directors a VRRPv3 pair over IPv6 (link-local
sources, ff02::12, unsolicited Neighbor Advertisements for the /128 VIP), syncing the IPv6
connection (IPVS's IPv6 sync records) as the IPv4 pair syncs its own.
"""

from __future__ import annotations

import hashlib
import subprocess
import time

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
        print(f"lab ({lab.label}, ha): client {lab.client_ip}, directors {lab.director_ip} "
              f"(priority 150) and {lab.director2_ip} (priority 100), VIP {lab.vip}, real "
              f"servers {', '.join(lab.server_ips)}")
        print(f"  {lab.where()}")
        lab.setup()
        _prepare_real_servers(lab)
        lab.start_http_servers()
        first = DirectorProcess(lab, lab_config(lab, scheduler, priority=150))
        second = None
        try:
            _until(lambda: _holds_vip(lab, lab.director_ns), "director 1 to become MASTER")
            second = DirectorProcess(lab, lab_config(lab, scheduler, priority=100,
                                                     control_socket=lab.control_socket2),
                                     lab.director2_ns, lab.control_socket2)
            _until(lambda: "BACKUP" in _status(lab.control_socket2), "director 2 to be BACKUP")
            print(f"\n$ pylvs status   # director 1\n{_status(lab.control_socket)}")
            print(f"$ pylvs status   # director 2\n{_status(lab.control_socket2)}")
            return _demo(lab, first, second)
        finally:
            for director in (second, first):
                if director is not None:
                    director.stop()


def small_receive_buffer(lab: Lab) -> None:
    """The client's TCP receive buffer at most 256 KB: without it the real server could put
    most of the download in flight before the kill, and the failover would prove little."""
    lab.run_in(lab.client_ns, ["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 262144"],
               check=True)


def _demo(lab: Lab, first: DirectorProcess, second: DirectorProcess) -> int:
    small_receive_buffer(lab)
    url = lab.url(f"/blob/{DOWNLOAD}")
    print(f"client: curl --limit-rate {RATE} {url}   ({DOWNLOAD:,} bytes)")
    start = time.monotonic()
    curl = lab.popen_in(lab.client_ns, [*curl_argv(url, max_time=90), "--limit-rate", RATE],
                        stdout=subprocess.PIPE)
    time.sleep(KILL_AFTER)
    synced = second.adm("-Lnc")
    print(f"\ndirector 2 already has the connection from its sync daemon:\n"
          f"$ pylvs adm -Lnc\n{synced}")
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
    print("HA works: the backup took the VIP and the synced connection, and the client's "
          "transfer went on." if intact else "\nsomething is wrong: see above")
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

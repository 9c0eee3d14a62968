"""VRRP against real keepalived (Debian's, `keepalived --vrrp`) in namespaces of the run: the
two elect by priority in both orders, fail over both ways on kill -9 and preempt back; a killed
pylvs leaves no VIP behind (pylvs.shell.guard). Topology, all on one bridge:

    [client .5]   [d1 pylvs .2]   [d2 keepalived or pylvs .3]      VIP 192.168.50.100
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pylvs.shell import control
from pylvs.shell.messages import Status
from tests.helpers.segment import SUBNET, VIP, Segment, ip, segment_fixture, until

pytestmark = pytest.mark.skipif(shutil.which("keepalived") is None,
                                reason="needs keepalived (scripts/install.sh --test)")

DOWN_INTERVAL = 3 + (256 - 100) / 256  # Master_Down_Interval at priority 100, advert 1 s


segment = pytest.fixture(segment_fixture, name="segment")


def only(segment: Segment, name: str) -> bool:
    return segment.holds_vip(name) and not segment.holds_vip("d2" if name == "d1" else "d1")


def test_pylvs_wins_by_priority_fails_over_to_keepalived_and_preempts_back(segment):
    segment.keepalived("d2", 100)
    until(lambda: segment.holds_vip("d2"))
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))  # a higher priority preempts keepalived's master
    assert "MASTER, priority 150, VIPs held" in segment.status("d1")
    segment.kill("d1")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after pylvs was killed")
    assert took <= DOWN_INTERVAL + 1.0
    assert not segment.holds_vip("d1"), "the killed pylvs host still holds the VIP"
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    assert "Entering BACKUP STATE" in segment.log("d2")


def test_keepalived_wins_by_priority_and_pylvs_takes_over_when_it_dies(segment):
    segment.pylvs("d1", 100)
    until(lambda: segment.holds_vip("d1"))
    segment.keepalived("d2", 150)
    until(lambda: only(segment, "d2"))
    assert "BACKUP, priority 100, VIPs not held" in segment.status("d1")
    segment.kill("d2", everything=True)  # keepalived's VRRP child too: nothing says goodbye
    took = until(lambda: segment.holds_vip("d1"))
    print(f"pylvs took the VIP {took:.2f} s after keepalived was killed")
    assert took <= DOWN_INTERVAL + 1.0
    segment.keepalived("d2", 150)
    until(lambda: segment.holds_vip("d2") and not segment.holds_vip("d1"))
    assert "vrrp: MASTER -> BACKUP" in segment.log("d1")


def test_a_stopped_pylvs_master_hands_over_at_once_with_priority_zero(segment):
    """RFC 3768 §6.4.3: a master leaving sends priority 0; the backup takes over after its
    Skew_Time instead of a whole Master_Down_Interval."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    segment.procs["d1"].send_signal(signal.SIGTERM)
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after pylvs stopped")
    assert took < DOWN_INTERVAL
    assert not segment.holds_vip("d1")


def test_a_master_whose_link_goes_down_is_replaced_and_wins_back_when_it_returns(segment):
    """The seed's way of failing a director: `ip link set eth0 down`."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    ip("-n", segment.hosts["d1"], "link", "set", "eth0", "down")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"keepalived took the VIP {took:.2f} s after the master's link went down")
    ip("-n", segment.hosts["d1"], "link", "set", "eth0", "up")
    until(lambda: segment.holds_vip("d1") and not segment.holds_vip("d2"))
    assert "MASTER, priority 150" in segment.status("d1")


@pytest.mark.parametrize("failure,workers", [("kill -9", 1), ("link down", 1), ("kill -9", 2)])
def test_two_pylvs_directors_keep_a_download_alive_through_a_failure(segment, failure, workers):
    """Issue 7's whole story: VRRP moves the VIP, the sync daemon has already given the backup
    the connection, so the client's transfer goes on to the same real server, intact; the
    master fails as the seed has it fail, killed or with its interface down."""
    import hashlib

    from pylvs.lab.httpserver import blob
    for name, number in (("rs1", 11), ("rs2", 12)):
        segment.real_server(name, number)
    segment.pylvs("d1", 150, (11, 12), sync=True, workers=workers)
    until(lambda: segment.holds_vip("d1"))
    segment.pylvs("d2", 100, (11, 12), sync=True, workers=workers)
    until(lambda: "BACKUP" in segment.status("d2", starting=True))
    size = 3_000_000
    ip("netns", "exec", segment.hosts["client"], "sysctl", "-qw",  # little in flight: see
       "net.ipv4.tcp_rmem=4096 131072 262144")                     # pylvs.lab.failover
    started = time.monotonic()
    curl = subprocess.Popen(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                             "--noproxy", "*", "--max-time", "60", "--limit-rate", "400k",
                             f"http://{VIP}/blob/{size}"], stdout=subprocess.PIPE)
    time.sleep(2.5)
    synced = control.request(segment.socket("d2"), ["-L", "-n", "-c"])[1]
    assert f"{SUBNET}.5:" in synced and "ESTABLISHED" in synced, synced
    if failure == "kill -9":
        segment.kill("d1")
    else:
        ip("-n", segment.hosts["d1"], "link", "set", "eth0", "down")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"the backup took the VIP {took:.2f} s after the master's {failure}")
    assert failure != "kill -9" or not segment.holds_vip("d1")
    body, _ = curl.communicate(timeout=90)
    print(f"the download took {time.monotonic() - started:.1f} s")
    assert curl.returncode == 0 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob(size)).digest()


def neighbour(segment: Segment, ns: str, address: str) -> str:
    out = ip("-n", segment.hosts[ns], "neigh", "show", address)
    return out.split("lladdr ")[1].split()[0] if "lladdr " in out else ""


def test_split_brain_heals_by_priority_with_fresh_gratuitous_arps(segment):
    """reference §8.4: with adverts blocked both become MASTER and hold the VIP; once they flow
    again the lower priority steps down and the winner re-sends adverts and gratuitous ARPs, so
    the client's stale ARP entry moves back to it."""
    segment.keepalived("d2", 100)
    segment.pylvs("d1", 150)
    until(lambda: only(segment, "d1"))
    block = ("table netdev pylvs_test_block {\n  chain in {\n    type filter hook ingress "
             'device "eth0" priority 0;\n    ip protocol vrrp drop\n  }\n}\n')
    subprocess.run(["ip", "netns", "exec", segment.hosts["d2"], "nft", "-f", "-"], input=block,
                   text=True, check=True)
    until(lambda: segment.holds_vip("d1") and segment.holds_vip("d2"))  # split brain
    d1_mac = netio_mac(segment, "d1")
    d2_mac = netio_mac(segment, "d2")
    # the client learns the VIP from whichever answers: make it the wrong one, d2
    ip("-n", segment.hosts["client"], "neigh", "replace", VIP, "lladdr", d2_mac, "dev", "eth0",
       "nud", "stale")
    subprocess.run(["ip", "netns", "exec", segment.hosts["d2"], "nft", "delete", "table",
                    "netdev", "pylvs_test_block"], check=True)
    until(lambda: only(segment, "d1"))
    until(lambda: neighbour(segment, "client", VIP) == d1_mac)
    assert "received higher priority" in segment.log("d2") or "Entering BACKUP" in \
        segment.log("d2")


def netio_mac(segment: Segment, name: str) -> str:
    out = ip("-n", segment.hosts[name], "link", "show", "eth0")
    return out.split("link/ether ")[1].split()[0]


@pytest.mark.parametrize("variant", ["VRRPv3", "unicast"])
def test_keepalived_interop_in_vrrpv3_and_with_unicast_peers(segment, variant):
    if variant == "VRRPv3":
        ours, theirs = "version = 3", "  version 3\n"
    else:
        ours = f'unicast_peers = ["{SUBNET}.3"]'
        theirs = f"  unicast_src_ip {SUBNET}.3\n  unicast_peer {{\n    {SUBNET}.2\n  }}\n"
    segment.keepalived("d2", 100, theirs)
    until(lambda: segment.holds_vip("d2"))
    segment.pylvs("d1", 150, vrrp=ours)
    until(lambda: only(segment, "d1"))
    segment.kill("d1")
    took = until(lambda: segment.holds_vip("d2"))
    print(f"{variant}: keepalived took the VIP {took:.2f} s after pylvs was killed")
    assert not segment.holds_vip("d1")


# -- several instances, tracking, FAULT and notifies (keepalived's semantics) -------------------

VIP2 = "192.168.50.101"


def holds(segment: Segment, name: str, vip: str) -> bool:
    out = ip("-n", segment.hosts[name], "-4", "addr", "show", "dev", "eth0")
    return f"{vip}/32" in out


def start_pylvs(segment: Segment, name: str, body: str, director: str = "") -> None:
    """pylvs with ``body`` (its [[virtual_server]], [vrrp] ... tables) after its [director]."""
    path = os.path.join(segment.tmp, f"{name}.toml")
    with open(path, "w") as fh:
        fh.write(f'[director]\ninterface = "eth0"\ncontrol_socket = "{segment.socket(name)}"\n'
                 f"{director}\n{body}")
    segment.start(name, [sys.executable, "-m", "pylvs", "run", path])


def start_keepalived(segment: Segment, name: str, instances: list[tuple[str, int, int, str]]
                     ) -> None:
    """keepalived with one vrrp_instance per (name, vrid, priority, VIP), advert 1 s."""
    path = os.path.join(segment.tmp, f"{name}.conf")
    with open(path, "w") as fh:
        fh.write(f"global_defs {{\n  router_id {name}\n}}\n")
        for iname, vrid, priority, vip in instances:
            fh.write(f"vrrp_instance {iname} {{\n  state BACKUP\n  interface eth0\n"
                     f"  virtual_router_id {vrid}\n  priority {priority}\n  advert_int 1\n"
                     f"  virtual_ipaddress {{\n    {vip}/32 dev eth0\n  }}\n}}\n")
    segment.start(name, ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                         "--log-detail", "-f", path, "-p", f"{segment.tmp}/{name}.pid",
                         "-r", f"{segment.tmp}/{name}-vrrp.pid"])


def service(vip: str, server: int) -> str:
    return (f'[[virtual_server]]\naddress = "{vip}:80"\nscheduler = "rr"\n\n'
            f'  [[virtual_server.real_server]]\n  address = "{SUBNET}.{server}:80"\n\n')


def curl(segment: Segment, vip: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                           "--noproxy", "*", "--max-time", "3", f"http://{vip}/"],
                          capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def scrape(segment: Segment, name: str) -> str:
    """The director's Prometheus exposition, read from inside its namespace."""
    return subprocess.run(["ip", "netns", "exec", segment.hosts[name], "curl", "-sS",
                           "--noproxy", "*", "http://127.0.0.1:9300/metrics"],
                          capture_output=True, text=True, timeout=10).stdout


def test_two_instances_on_one_director_each_vip_follows_its_own_priorities(segment):
    """keepalived's model: each vrrp_instance owns its VIPs and elects on its own. pylvs wins
    VI_A (150 > 100) and loses VI_B (50 < 100) to keepalived; with keepalived gone it holds both;
    when keepalived returns it preempts VI_B back and VI_A stays. The director forwards the
    service of the VIP it is MASTER for."""
    segment.real_server("rs1", 11)
    start_keepalived(segment, "d2", [("VI_A", 51, 100, VIP), ("VI_B", 52, 100, VIP2)])
    until(lambda: holds(segment, "d2", VIP) and holds(segment, "d2", VIP2))
    start_pylvs(segment, "d1", service(VIP, 11) + service(VIP2, 11) +
                f'[[vrrp]]\nname = "VI_A"\nvirtual_router_id = 51\npriority = 150\n'
                f'virtual_ipaddress = ["{VIP}"]\n\n'
                f'[[vrrp]]\nname = "VI_B"\nvirtual_router_id = 52\npriority = 50\n'
                f'virtual_ipaddress = ["{VIP2}/32"]\n', 'metrics = "127.0.0.1:9300"\n')
    until(lambda: holds(segment, "d1", VIP) and not holds(segment, "d2", VIP))
    status = segment.status("d1")
    assert "MASTER, priority 150, VIPs held [VI_A" in status, status
    assert "BACKUP, priority 50, VIPs not held [VI_B" in status, status
    assert holds(segment, "d2", VIP2) and not holds(segment, "d1", VIP2)
    assert curl(segment, VIP) == "rs1"  # forwarded by d1, MASTER of VI_A
    segment.kill("d2", everything=True)
    until(lambda: holds(segment, "d1", VIP2))
    assert "MASTER, priority 50, VIPs held [VI_B" in segment.status("d1")
    start_keepalived(segment, "d2", [("VI_A", 51, 100, VIP), ("VI_B", 52, 100, VIP2)])
    until(lambda: holds(segment, "d2", VIP2) and not holds(segment, "d1", VIP2))
    assert holds(segment, "d1", VIP) and not holds(segment, "d2", VIP)
    assert "vrrp: VI_B: MASTER -> BACKUP" in segment.log("d1")
    exposition = scrape(segment, "d1")
    for line in ('pylvs_vrrp_state{instance="VI_A",interface="eth0",state="MASTER"} 1.0',
                 'pylvs_vrrp_state{instance="VI_B",interface="eth0",state="BACKUP"} 1.0',
                 'pylvs_vrrp_transitions_total{instance="VI_B",to="MASTER"} 1.0',
                 'pylvs_vrrp_transitions_total{instance="VI_B",to="BACKUP"} 2.0',
                 'pylvs_vrrp_transitions_total{instance="VI_A",to="MASTER"} 1.0'):
        assert line in exposition, exposition


def tracked(segment: Segment, flag: str, weight: int, notes: str) -> str:
    return (service(VIP, 11) +
            f'[vrrp_script.chk_flag]\nscript = "test -e {flag}"\ninterval = 0.2\n'
            f"weight = {weight}\n\n"
            f'[vrrp]\nvirtual_router_id = 51\npriority = 150\ntrack_script = ["chk_flag"]\n'
            f'notify_master = "echo master >> {notes}"\n'
            f'notify_backup = "echo backup >> {notes}"\n'
            f'notify_fault = "echo fault >> {notes}"\n'
            f'notify = "echo >> {notes}.all"\n')


def lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return fh.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def test_a_failing_track_script_puts_pylvs_in_fault_and_keepalived_takes_the_vip(segment):
    """keepalived's weight-0 vrrp_script: failing → FAULT (the master says priority 0 and drops
    its VIPs, so the peer takes over after its skew time); OK again → BACKUP, then MASTER by
    preempting with the higher priority. notify_master/notify_fault and the generic notify
    (INSTANCE <name> <STATE> <priority>) write to the test's files."""
    flag, notes = os.path.join(segment.tmp, "flag"), os.path.join(segment.tmp, "notes")
    open(flag, "w").close()
    start_keepalived(segment, "d2", [("VI_1", 51, 100, VIP)])
    start_pylvs(segment, "d1", tracked(segment, flag, 0, notes))
    until(lambda: only(segment, "d1"))
    # FAULT (init) until the script's first say, not notified; then BACKUP and MASTER are
    until(lambda: lines(notes) == ["backup", "master"])
    os.remove(flag)
    until(lambda: segment.holds_vip("d2") and not segment.holds_vip("d1"))
    status = segment.status("d1")
    assert "FAULT, priority 150, VIPs not held" in status and "failing: script chk_flag" in \
        status, status
    (described,) = control.ask(segment.socket("d1"), Status()).data["vrrp"]  # status --json
    assert (described["name"], described["state"], described["failing"]) == (
        "VI_1", "FAULT", [{"kind": "script", "name": "chk_flag", "weight": 0}])
    until(lambda: lines(notes) == ["backup", "master", "fault"])
    open(flag, "w").close()
    until(lambda: only(segment, "d1"))
    until(lambda: lines(notes) == ["backup", "master", "fault", "backup", "master"])
    assert lines(f"{notes}.all") == [f"INSTANCE VI_1 {state} 150" for state in
                                     ("BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER")]
    assert "Entering BACKUP STATE" in segment.log("d2")


def test_a_negative_script_weight_lowers_the_priority_and_keepalived_preempts(segment):
    """keepalived's weight < 0: added while the script fails. 150 - 60 = 90 < 100: keepalived
    preempts, pylvs stays BACKUP (not FAULT) until the script is OK and 150 preempts back."""
    flag, notes = os.path.join(segment.tmp, "flag"), os.path.join(segment.tmp, "notes")
    open(flag, "w").close()
    start_keepalived(segment, "d2", [("VI_1", 51, 100, VIP)])
    start_pylvs(segment, "d1", tracked(segment, flag, -60, notes))
    until(lambda: only(segment, "d1"))
    os.remove(flag)
    until(lambda: only(segment, "d2"))
    status = segment.status("d1")
    assert "BACKUP, priority 90, VIPs not held" in status, status
    assert "failing: script chk_flag (weight -60)" in status
    open(flag, "w").close()
    until(lambda: only(segment, "d1"))
    assert "MASTER, priority 150" in segment.status("d1")
    assert "fault" not in lines(notes)


def test_a_sync_group_follows_its_member_into_fault_and_out(segment):
    """keepalived's vrrp_sync_group: VI_B tracks nothing, but when VI_A's script fails the
    group goes to FAULT together and keepalived takes both VIPs; both come back together."""
    flag, notes = os.path.join(segment.tmp, "flag"), os.path.join(segment.tmp, "notes")
    open(flag, "w").close()
    start_keepalived(segment, "d2", [("VI_A", 51, 100, VIP), ("VI_B", 52, 100, VIP2)])
    start_pylvs(segment, "d1", service(VIP, 11) +
                f'[vrrp_script.chk_flag]\nscript = "test -e {flag}"\ninterval = 0.2\n\n'
                f'[[vrrp]]\nname = "VI_A"\nvirtual_router_id = 51\npriority = 150\n'
                f'virtual_ipaddress = ["{VIP}"]\ntrack_script = ["chk_flag"]\n\n'
                f'[[vrrp]]\nname = "VI_B"\nvirtual_router_id = 52\npriority = 150\n'
                f'virtual_ipaddress = ["{VIP2}"]\n\n'
                f'[[vrrp_sync_group]]\nname = "G1"\ngroup = ["VI_A", "VI_B"]\n'
                f'notify = "echo >> {notes}"\n')
    both = (VIP, VIP2)
    until(lambda: all(holds(segment, "d1", v) and not holds(segment, "d2", v) for v in both))
    os.remove(flag)
    until(lambda: all(holds(segment, "d2", v) and not holds(segment, "d1", v) for v in both))
    status = segment.status("d1")
    assert status.count("FAULT, priority 150, VIPs not held") == 2, status
    open(flag, "w").close()
    until(lambda: all(holds(segment, "d1", v) and not holds(segment, "d2", v) for v in both))
    assert lines(notes)[-3:] == ["GROUP G1 FAULT 0", "GROUP G1 BACKUP 0", "GROUP G1 MASTER 0"]

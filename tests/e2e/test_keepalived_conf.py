"""A keepalived.conf run as it is by `pylvs run`, in namespaces of the run: an LVS
virtual_server (DR, TCP_CHECK) in a lab, curl through the VIP, a killed real server taken out by
its check; and two vrrp_instances plus the virtual_server against a real keepalived peer
(Debian's, `keepalived --vrrp`) holding the same instances at a lower priority."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from pylvs.lab.topology import Lab
from pylvs.shell import control
from pylvs.shell.messages import Reload, Status
from tests.helpers.segment import SUBNET, VIP, Segment, ip, segment_fixture, until

LAB_CONF = """! keepalived.conf as an LVS user writes it
global_defs {{
   router_id lab
   notification_email {{
     root@localhost
   }}
}}

virtual_server {vip} 80 {{
    delay_loop 0.5
    lb_algo rr
    lb_kind DR
    protocol TCP

{servers}}}
"""
SERVER = """    real_server {address} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 0.5
            retry 0
            delay_before_retry 0.2
        }}
    }}
"""


def start_director(lab: Lab, path: str, *args: str) -> subprocess.Popen:
    """`pylvs run FILE` in the lab's director; its control socket the lab's (PYLVS_SOCKET,
    keepalived.conf having no place for one)."""
    log = open(f"{path}.log", "w")  # noqa: SIM115 - the process writes it
    proc = lab.popen_in(lab.director_ns, [sys.executable, "-m", "pylvs", "run", path, *args],
                        stdout=log, stderr=subprocess.STDOUT,
                        env={**os.environ, "PYLVS_SOCKET": lab.control_socket})
    log.close()
    lab.processes.append(proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, read(f"{path}.log")
        try:
            control.request(lab.control_socket, ["-L", "-n"], timeout=1.0)
            return proc
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the director did not answer:\n{read(f'{path}.log')}")


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def listed(lab: Lab) -> list[str]:
    out = control.request(lab.control_socket, ["-L", "-n"])[1]
    return [line.split()[1].split(":")[0] for line in out.splitlines()
            if line.strip().startswith("->") and line.split()[1][0].isdigit()]


def test_a_keepalived_conf_runs_and_its_tcp_check_takes_out_a_dead_server(tmp_path):
    lab = Lab(servers=3, mode="dr")
    try:
        lab.setup()
        lab.configure_real_servers()
        lab.start_http_servers(80)
        path = str(tmp_path / "keepalived.conf")
        with open(path, "w") as fh:
            fh.write(LAB_CONF.format(vip=lab.vip, servers="".join(
                SERVER.format(address=a) for a in lab.server_ips)))
        start_director(lab, path, "--interface", lab.director_if)
        until(lambda: sorted(listed(lab)) == sorted(lab.server_ips))
        assert Counter(lab.curl("/").strip() for _ in range(6)) == Counter(
            {"rs1": 2, "rs2": 2, "rs3": 2})
        log = read(f"{path}.log")
        assert "line 4: global_defs: `notification_email` is not carried over" in log
        lab.processes[0].kill()  # rs1's HTTP server
        lab.processes[0].wait()
        until(lambda: lab.server_ips[0] not in listed(lab))
        assert set(Counter(lab.curl("/").strip() for _ in range(6))) == {"rs2", "rs3"}
        with open(path, "w") as fh:  # `pylvs reload` reads it again as a keepalived.conf
            fh.write(LAB_CONF.format(vip=lab.vip, servers="".join(
                SERVER.format(address=a) for a in lab.server_ips[1:])).replace(
                "weight 1", "weight 3"))
        reply = control.ask(lab.control_socket, Reload())
        assert reply.rc == 0, reply.stderr
        assert f"-e -t {lab.vip}:80 -r {lab.server_ips[1]}:80 -g -w 3" in reply.stdout
        assert Counter(line.split()[3] for line in control.request(
            lab.control_socket, ["-L", "-n"])[1].splitlines()
            if line.strip().startswith("-> 192")) == Counter({"3": 2})
    finally:
        lab.close()


PEER = """global_defs {{
  router_id {name}
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int 1
  authentication {{
    auth_type PASS
    auth_pass pylvs
  }}
  virtual_ipaddress {{
    {vip1}/32 dev eth0
  }}
}}
vrrp_instance VI_2 {{
  state BACKUP
  interface eth0
  virtual_router_id 52
  priority {priority}
  advert_int 1
  virtual_ipaddress {{
    {vip2}/32 dev eth0
  }}
}}
"""
SERVICE = """virtual_server {vip1} 80 {{
  delay_loop 1
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server {rs} 80 {{
    TCP_CHECK {{
      connect_timeout 1
    }}
  }}
}}
"""
VIP2 = f"{SUBNET}.101"


def holds(segment: Segment, name: str, vip: str) -> bool:
    return f"{vip}/32" in ip("-n", segment.hosts[name], "-4", "addr", "show", "dev", "eth0")


@pytest.mark.skipif(not os.path.exists("/usr/sbin/keepalived"),
                    reason="needs keepalived (scripts/install.sh --test)")
def test_two_instances_and_a_virtual_server_against_a_keepalived_peer(segment, monkeypatch):
    segment.real_server("rs1", 11)
    peer = os.path.join(segment.tmp, "d2.conf")
    with open(peer, "w") as fh:
        fh.write(PEER.format(name="d2", priority=100, vip1=VIP, vip2=VIP2))
    segment.start("d2", ["keepalived", "--vrrp", "--dont-fork", "--log-console",
                         "--log-detail", "-f", peer, "-p", f"{segment.tmp}/d2.pid",
                         "-r", f"{segment.tmp}/d2-vrrp.pid"])
    until(lambda: holds(segment, "d2", VIP) and holds(segment, "d2", VIP2))
    mine = os.path.join(segment.tmp, "d1.conf")
    with open(mine, "w") as fh:
        fh.write(PEER.format(name="d1", priority=150, vip1=VIP, vip2=VIP2)
                 + SERVICE.format(vip1=VIP, rs=f"{SUBNET}.11"))
    monkeypatch.setenv("PYLVS_SOCKET", segment.socket("d1"))
    segment.start("d1", [sys.executable, "-m", "pylvs", "run", mine])
    until(lambda: all(holds(segment, "d1", v) and not holds(segment, "d2", v)
                      for v in (VIP, VIP2)), 20)
    status = control.ask(segment.socket("d1"), Status()).stdout
    assert status.count("MASTER, priority 150") == 2, status
    answer = subprocess.run(["ip", "netns", "exec", segment.hosts["client"], "curl", "-sS",
                             "--noproxy", "*", "--max-time", "10", f"http://{VIP}/"],
                            capture_output=True, text=True, timeout=20)
    assert answer.stdout.strip() == "rs1", answer.stderr
    segment.kill("d1")
    until(lambda: holds(segment, "d2", VIP) and holds(segment, "d2", VIP2))
    assert not holds(segment, "d1", VIP) and not holds(segment, "d1", VIP2)


segment = pytest.fixture(segment_fixture, name="segment")

"""A director killed together with its guard (``systemctl kill -s KILL``, an OOM kill of the
cgroup: keepalived killed with -9 leaves the same) leaves its VIP and its steal table; the next
start takes the VIP as its own and removes the dead run's table, as keepalived's start removes
its VIPs, and leaves another live director's table alone (pylvs.core.leftovers)."""

from __future__ import annotations

import ipaddress
import os
import signal
import time

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import lab_config
from pylvs.shell.host import alive


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(child) for child in fh.read().split()]
    return found


def _kill_with_guard(director: DirectorProcess) -> None:
    """SIGKILL to the director and its children (its guard) at once: nothing cleans up."""
    children = _children(director.proc.pid)
    assert children, "the director has no guard"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    director.proc.kill()
    director.proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children)


def test_a_restart_after_kill_9_takes_the_vip_and_removes_only_the_dead_runs_table(make_lab):
    dr = make_lab(2, "rr")
    lab, first = dr.lab, dr.director
    assert first is not None
    config = lab_config(lab, "rr")
    other_vip = str(ipaddress.ip_address(lab.vip) + 1)
    other = DirectorProcess(lab, lab_config(lab, "rr", control_socket=lab.control_socket2)
                            .replace(f'"{lab.vip}:', f'"{other_vip}:'),
                            control_socket=lab.control_socket2)

    def addresses() -> str:
        return lab.run_in(lab.director_ns, ["ip", "-4", "-o", "addr", "show", "dev",
                                            lab.director_if], capture_output=True, text=True,
                          check=True).stdout

    def tables() -> list[str]:
        out = lab.run_in(lab.director_ns, ["nft", "list", "tables", "netdev"],
                         capture_output=True, text=True, check=True).stdout
        return [line.split()[-1] for line in out.splitlines()]

    try:
        dead, live = f"pylvs_{first.proc.pid}", f"pylvs_{other.proc.pid}"
        _kill_with_guard(first)
        first.stop()
        assert f"{lab.vip}/32" in addresses() and dead in tables() and live in tables()
        again = dr.director = DirectorProcess(lab, config)
        said = again.output()
        assert (f"VIP {lab.vip} was on {lab.director_if} already (left by an earlier run?): "
                f"held as this director's") in said
        assert (f"removing nftables table {dead}: its director (pid {first.proc.pid}) is gone "
                f"without cleaning up") in said
        assert live not in said
        assert sorted(tables()) == sorted([live, f"pylvs_{again.proc.pid}"])
        assert dr.answers(4) == {"rs1": 2, "rs2": 2}
        assert again.stop() == 0
        assert f"{lab.vip}/32" not in addresses()
        assert tables() == [live] and f"{other_vip}/32" in addresses()
        assert other.proc.poll() is None and "TCP" in other.adm("-Ln")
    finally:
        other.stop()

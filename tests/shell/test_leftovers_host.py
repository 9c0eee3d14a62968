"""An earlier run's leftovers met by a starting director (pylvs.shell.host), against a real
kernel: the director's side of the veth pair (tests.helpers.veth) holds the leftovers; the
BIRD folders are made in a temporary folder that stands for /run."""

from __future__ import annotations

import logging
import os
import socket
import subprocess

import pytest

from pylvs.shell import host
from pylvs.shell.host import HostState
from tests.helpers.veth import DIR_IP, NEEDS_NAMESPACES, VIP, in_ns, ip

pytestmark = NEEDS_NAMESPACES

OTHER = "198.51.100.77"
"""An address on the interface that no config names."""


def _tables(ns: str, family: str = "netdev") -> list[str]:
    out = ip("netns", "exec", ns, "nft", "list", "tables", family)
    return [line.split()[-1] for line in out.splitlines()]


def _nft(ns: str, *argv: str) -> None:
    ip("netns", "exec", ns, "nft", *argv)


def _addresses(ns: str) -> str:
    return ip("-n", ns, "-4", "addr", "show", "dev", "vd")


@pytest.fixture
def dead_pids() -> list[int]:
    """Pids of processes that ran and were reaped."""
    pids = []
    for _ in range(3):
        proc = subprocess.Popen(["true"])
        proc.wait()
        pids.append(proc.pid)
    return pids


@pytest.fixture
def live_pid():
    """Another process that runs (another director, as far as its table's name says)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "RUN", str(tmp_path))
    return tmp_path


def test_tables_of_dead_directors_go_and_a_live_ones_stay(topo, dead_pids, live_pid, run_dir,
                                                          caplog):
    dead, own = dead_pids[0], os.getpid()
    mine = [f"pylvs_{dead}", f"pylvs_{dead}_inside", f"pylvs_{live_pid}", f"pylvs_{own}",
            "keep_me", "pylvs_x"]
    for table in mine:
        _nft(topo.d, "add", "table", "netdev", table)
    _nft(topo.d, "add", "table", "ip", f"pylvs_{dead}")  # not a family pylvs makes
    with caplog.at_level(logging.WARNING, logger="pylvs"):
        in_ns(topo.d, host.remove_dead_leftovers, own)
    assert sorted(_tables(topo.d)) == sorted([f"pylvs_{live_pid}", f"pylvs_{own}", "keep_me",
                                              "pylvs_x"])
    assert _tables(topo.d, "ip") == [f"pylvs_{dead}"]
    assert (f"removing nftables table pylvs_{dead}: its director (pid {dead}) is gone without "
            f"cleaning up") in caplog.text
    assert f"pylvs_{live_pid}" not in caplog.text


def test_bird_folders_of_dead_directors_go_unless_their_bird_still_runs(topo, dead_pids,
                                                                       live_pid, run_dir,
                                                                       caplog):
    gone, running = dead_pids[1], dead_pids[2]
    for pid in (gone, running, live_pid):
        folder = run_dir / f"pylvs-{pid}-bird"
        folder.mkdir()
        for name in ("bird.conf", "bird.log", "vips.conf"):
            (folder / name).write_text("")
    still = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a BIRD that outlived it
    still.bind(str(run_dir / f"pylvs-{running}-bird" / "bird.ctl"))
    still.listen(1)
    (run_dir / "pylvs-other.sock").write_text("")
    try:
        with caplog.at_level(logging.WARNING, logger="pylvs"):
            in_ns(topo.d, host.remove_dead_leftovers, os.getpid())
    finally:
        still.close()
    assert sorted(os.listdir(run_dir)) == sorted([f"pylvs-{running}-bird",
                                                  f"pylvs-{live_pid}-bird", "pylvs-other.sock"])
    assert f"removing {run_dir}/pylvs-{gone}-bird" in caplog.text
    assert f"pid {running}, gone) still runs on {run_dir}/pylvs-{running}-bird" in caplog.text


def test_a_configured_vip_left_on_the_interface_is_held_and_goes_on_stop(topo, run_dir,
                                                                          caplog):
    ip("-n", topo.d, "addr", "add", f"{VIP}/32", "dev", "vd")
    ip("-n", topo.d, "addr", "add", f"{OTHER}/32", "dev", "vd")
    state = HostState("vd", "vd", lambda: ([], [], []))
    with caplog.at_level(logging.WARNING, logger="pylvs"):
        in_ns(topo.d, state.follow, [("tcp", VIP, 80)], [], {VIP}, {VIP})
    assert state.vips == [VIP]
    assert f"VIP {VIP} was on vd already (left by an earlier run?): held as this " \
           f"director's" in caplog.text
    in_ns(topo.d, state.close)
    held = _addresses(topo.d)
    assert f"{VIP}/32" not in held and f"{OTHER}/32" in held and f"{DIR_IP}/24" in held
    assert f"pylvs_{os.getpid()}" not in _tables(topo.d)


def test_a_backup_removes_the_configured_vip_it_finds_as_keepalived_starts(topo, run_dir,
                                                                           caplog):
    ip("-n", topo.d, "addr", "add", f"{VIP}/32", "dev", "vd")
    state = HostState("vd", "vd", lambda: ([], [], []))
    with caplog.at_level(logging.WARNING, logger="pylvs"):
        in_ns(topo.d, state.follow, [("tcp", VIP, 80)], [], set(), {VIP})
    assert state.vips == [] and f"{VIP}/32" not in _addresses(topo.d)
    assert f"VIP {VIP} was on vd already (left by an earlier run?): removing it" in caplog.text
    in_ns(topo.d, state.close)


def test_the_interfaces_own_address_is_never_taken_for_a_vip(topo, run_dir):
    """A config whose VIP is the director's own address (held as a /24, not a VIP's /32)."""
    state = HostState("vd", "vd", lambda: ([], [], []))
    in_ns(topo.d, state.follow, [("tcp", DIR_IP, 80)], [], set(), {DIR_IP})
    assert state.vips == [] and f"{DIR_IP}/24" in _addresses(topo.d)
    in_ns(topo.d, state.close)


def test_a_vip_added_after_start_that_is_there_already_is_held(topo, run_dir, caplog):
    state = HostState("vd", "vd", lambda: ([], [], []))
    in_ns(topo.d, state.follow, [("tcp", VIP, 80)], [], set(), {VIP})  # a BACKUP
    ip("-n", topo.d, "addr", "add", f"{VIP}/32", "dev", "vd")
    with caplog.at_level(logging.WARNING, logger="pylvs"):
        in_ns(topo.d, state.follow, [("tcp", VIP, 80)], [], {VIP}, {VIP})  # MASTER
    assert state.vips == [VIP]
    assert f"VIP {VIP} was on vd already: held as this director's" in caplog.text
    in_ns(topo.d, state.close)
    assert f"{VIP}/32" not in _addresses(topo.d)

"""The engine's loop outlives what the host throws at its housekeeping, and its control
requests (no root needed: the engine is not started)."""

from __future__ import annotations

import logging

import pytest

import schedulers
from pylvs.adm import commands, ipvsadm
from pylvs.adm.config import Config, load
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.sysctls import Sysctls
from pylvs.shell.engine import Engine
from pylvs.shell.messages import Reload, Reply, Status, Stop, Sysctl
from pylvs.shell.requests import apply, render_counts


def _engine() -> Engine:
    service = VirtualService("tcp", "127.0.0.1", 80, schedulers.get("rr")())
    service.add_real_server(RealServer("127.0.0.1", 80))
    return Engine(Config("lo", services=[service]))


def test_a_failing_step_is_counted_and_logged_and_the_loop_goes_on(caplog):
    engine = _engine()

    def netlink_gone() -> None:
        raise OSError(19, "No such device")

    with caplog.at_level(logging.ERROR, logger="pylvs"):
        engine.guarded("refreshing neighbours and routes", netlink_gone)
        engine.guarded("refreshing neighbours and routes", netlink_gone)
    assert engine.counters()["host_errors"] == 2
    assert "refreshing neighbours and routes failed; the director goes on" in caplog.text
    assert "No such device" in caplog.text


def test_stop_still_ends_the_loop():
    def interrupted() -> None:
        raise Stop("SIGTERM")

    with pytest.raises(Stop):
        _engine().guarded("serving the control socket", interrupted)


def test_sysctl_shows_writes_and_refuses_as_sysctl_does():
    engine = _engine()
    listing = engine.handle(Sysctl()).stdout
    assert listing.splitlines() == [
        "net.ipv4.vs.amemthresh = 1024", "net.ipv4.vs.am_droprate = 10",
        "net.ipv4.vs.drop_entry = 0", "net.ipv4.vs.drop_packet = 0", "net.ipv4.vs.secure_tcp = 0",
        "net.ipv4.vs.sloppy_tcp = 0"]
    assert engine.handle(Sysctl("net.ipv4.vs.drop_entry", 1)) == Reply(
        0, "net.ipv4.vs.drop_entry = 1\n")
    assert engine.handle(Sysctl("drop_entry")).stdout == "net.ipv4.vs.drop_entry = 1\n"
    refused = engine.handle(Sysctl("secure_tcp", 7))
    assert (refused.rc, refused.stderr) == (
        255, 'sysctl: setting key "net.ipv4.vs.secure_tcp": Invalid argument\n')
    missing = engine.handle(Sysctl("net.ipv4.vs.sloppy_sctp"))
    assert missing.rc == 255 and "cannot stat /proc/sys/net/ipv4/vs/sloppy_sctp" in missing.stderr
    assert engine.director.defense.sysctls.secure_tcp == 0


def test_status_carries_the_table_and_the_counters():
    engine = _engine()
    engine.director.counters["forwarded"] += 3
    reply = engine.handle(Status())
    assert reply.data == {"connections": 0, "max_connections": 0, "counters": {"forwarded": 3},
                          "sync": None,  # no sync daemon half runs
                          "offload": {"mode": "auto", "python": ""}}  # not started: none tried
    assert "connections 0 (max 0)\ncounters: forwarded 3\n" in reply.stdout
    assert "offload auto: every frame through Python\n" in reply.stdout


def test_a_reload_applies_the_sysctls_the_file_changed(tmp_path):
    path = tmp_path / "director.toml"
    path.write_text(_CONFIG)
    engine = Engine(load(path))
    engine.handle(Sysctl("drop_entry", 3))  # by hand: kept while the file does not change it
    path.write_text(_CONFIG + "[sysctl]\nsecure_tcp = 1\namemthresh = 2048\n")
    reply = engine.handle(Reload())
    assert reply.rc == 0 and reply.stdout.splitlines() == [
        "net.ipv4.vs.amemthresh = 2048", "net.ipv4.vs.secure_tcp = 1"]
    assert engine.director.defense.sysctls == Sysctls(amemthresh=2048, drop_entry=3,
                                                      secure_tcp=1)


_CONFIG = """[director]
interface = "lo"

[[virtual_server]]
address = "127.0.0.1:80"

  [[virtual_server.real_server]]
  address = "127.0.0.2:80"
"""


def test_a_change_the_host_cannot_follow_leaves_the_rules_as_they_were(caplog):
    """The host (nftables, netlink) refuses: the command is refused and rolled back."""
    director = Director([])
    for argv in ("-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -w 3",
                 "-A -u 10.0.0.1:53 -s sh"):
        assert apply(director, ipvsadm.parse(argv.split())).rc == 0
    before = commands.adm(director, ["-Sn"], 0.0)
    kept = director.services[(6, ip_to_int("10.0.0.1"), 80)].real_servers[0]

    def nftables_refuses() -> None:
        raise OSError(22, "nft: Invalid argument")

    with caplog.at_level(logging.ERROR, logger="pylvs"):
        for argv in ("-a -t 10.0.0.1:80 -r 10.0.1.2:80", "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -w 9",
                     "-D -u 10.0.0.1:53", "-E -t 10.0.0.1:80 -s wlc", "--set 5 6 7", "-C"):
            reply = apply(director, ipvsadm.parse(argv.split()), follow=nftables_refuses)
            assert reply.rc == 255 and "the rules stay as they were" in reply.stderr, argv
            assert commands.adm(director, ["-Sn"], 0.0) == before, argv
            if argv != "-C":  # what did not change is the same object, with its connections
                assert director.services[(6, ip_to_int("10.0.0.1"), 80)].real_servers[0] is kept
    assert director.table.timeouts.triple() == (900, 120, 300)
    assert "the host could not follow" in caplog.text


def test_a_reload_keeps_a_dead_server_out_instead_of_adding_it_back(tmp_path):
    """The file names a server its check found dead: the reload leaves it out (before, it
    was added back, then taken out again by the check: bench/soak.py)."""
    path = tmp_path / "director.toml"
    checked = _CONFIG.replace("[[virtual_server]]\n", "[[virtual_server]]\ncheck = { type = "
                              '"tcp", interval = 3600, delay_before_retry = 3600 }\n')
    path.write_text(checked + '\n  [[virtual_server.real_server]]\n  address = "127.0.0.3:80"\n')
    engine = Engine(load(path))
    engine.ha.start_checks(engine.requests.adm_line)
    try:
        engine.config.health[0].servers[0].alive = False  # as if its check had failed
        engine.ha.apply_health()
        path.write_text(path.read_text().replace('"127.0.0.3:80"', '"127.0.0.3:80"\n  weight = 2'))
        reply = engine.handle(Reload())
        assert reply.rc == 0 and reply.stdout == "-e -t 127.0.0.1:80 -r 127.0.0.3:80 -g -w 2\n"
        assert [s.alive for s in engine.config.health[0].servers] == [False, True]
    finally:
        engine.ha.stop_checks()


def test_status_text_shows_the_sync_daemons_counts_while_one_runs():
    counts = {"connections": 2, "max_connections": 9, "counters": {}, "sync": None}
    assert "sync daemon" not in render_counts(counts)
    counts["sync"] = {"sent": 4, "received": 1}
    assert render_counts(counts).endswith("sync daemon: received 1, sent 4\n")


def test_bgp_asks_the_engine_what_it_serves_from_the_start():
    """Also when [bgp] comes with a reload: the HA runtime never has a stale view of its own."""
    engine = _engine()
    services, serving = engine.ha.served()
    assert [s.endpoint for s in services] == ["127.0.0.1:80"] and serving
    engine.set_master(False, frozenset())  # VRRP's word: stand by, hold nothing
    assert engine.ha.served() == ([], False)

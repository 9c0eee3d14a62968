"""pylvs.ha.health: keepalived's checker retries, alpha, inhibit_on_failure, quorum with
hysteresis and the sorry server (check_tcp.c's retry logic, ipwrapper.c perform_svr_state and
update_quorum_state), with no socket."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.adm import ruleset
from pylvs.core.model import RealServer, VirtualService
from pylvs.ha.health import CheckSpec, ServerHealth, ServiceHealth, render_status

VIP = "192.0.2.100"
RIPS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]


def spec(**given) -> CheckSpec:
    return CheckSpec.with_defaults("tcp", **{"interval": 10, **given})


def test_keepalived_defaults_per_checker():
    http, tcp, misc = (CheckSpec.with_defaults(k) for k in ("http", "tcp", "misc"))
    assert (http.interval, http.timeout, http.retry, http.delay_before_retry) == (60, 5, 1, 3)
    assert (tcp.retry, tcp.delay_before_retry) == (1, 1)
    assert (misc.retry, misc.timeout) == (0, 60)  # misc_timeout defaults to delay_loop
    assert http.status_ok(200) and http.status_ok(299) and not http.status_ok(302)
    assert CheckSpec("http", status=(302,)).status_ok(302)


@pytest.mark.parametrize("retry", [0, 1, 3])
def test_down_after_retry_plus_one_failures_each_delay_before_retry_apart(retry):
    server = ServerHealth(RealServer(RIPS[0], 80), spec(retry=retry, delay_before_retry=2))
    for n in range(retry):
        assert server.result(False, "refused", float(n)) is False
        assert server.alive and server.due == n + 2
    assert server.result(False, "refused", 9.0) is True
    assert not server.alive and server.due == 19.0 and server.since == 9.0


def test_one_success_brings_a_server_back_and_resets_the_retries():
    server = ServerHealth(RealServer(RIPS[0], 80), spec(retry=1), alive=False)
    assert server.result(True, "connected", 5.0) is True and server.alive
    assert server.result(False, "refused", 6.0) is False  # the first failure is retried
    assert server.result(True, "connected", 7.0) is False
    assert server.result(False, "refused", 8.0) is False and server.alive


def test_the_latency_is_the_last_timed_probes_kept_through_untimed_failures():
    server = ServerHealth(RealServer(RIPS[0], 80), spec(retry=1))
    assert server.latency is None  # nothing timed yet: no made-up value
    server.result(True, "connected in 2.5 ms", 1.0, 0.0025)
    server.result(False, "no answer in 5 s", 2.0)
    assert server.latency == 0.0025
    server.result(False, "HTTP 500 in 7.0 ms (not accepted)", 3.0, 0.007)
    assert server.latency == 0.007 and not server.alive


def make(inhibit=False, alpha=False, quorum=1, hysteresis=0, sorry=None, weights=(1, 1, 1)):
    live = VirtualService("tcp", VIP, 80, schedulers.get("rr")())
    checked = []
    for rip, weight in zip(RIPS, weights, strict=True):
        live.add_real_server(RealServer(rip, 80, weight=weight))
        checked.append(ServerHealth(RealServer(rip, 80, weight=weight), spec(),
                                    inhibit=inhibit, alive=not alpha))
    health = ServiceHealth(live.key, "TCP " + live.endpoint, checked, quorum, hysteresis, sorry)
    health.start()
    return live, health


def table(service: VirtualService) -> dict[str, int]:
    return {rs.address: rs.weight for rs in service.real_servers}


def test_a_dead_server_leaves_the_table_and_comes_back_with_its_weight():
    live, health = make(weights=(3, 2, 1))
    health.servers[0].alive = False
    assert table(health.desired(live)) == {RIPS[1]: 2, RIPS[2]: 1}
    assert ruleset.diff([live], [health.desired(live)]) == [
        ["-d", "-t", f"{VIP}:80", "-r", f"{RIPS[0]}:80"]]


def test_inhibit_on_failure_keeps_it_at_weight_zero():
    live, health = make(inhibit=True)
    health.servers[1].alive = False
    assert table(health.desired(live)) == {RIPS[0]: 1, RIPS[1]: 0, RIPS[2]: 1}
    assert ruleset.diff([live], [health.desired(live)]) == [
        ["-e", "-t", f"{VIP}:80", "-r", f"{RIPS[1]}:80", "-g", "-w", "0"]]


def test_alpha_starts_every_server_down_and_the_quorum_lost():
    live, health = make(alpha=True)
    assert table(health.desired(live)) == {} and not health.quorum_up


def test_servers_the_checks_do_not_know_stay():
    live, health = make()
    live.add_real_server(RealServer("198.51.100.9", 80, weight=7))
    for server in health.servers:
        server.alive = False
    assert table(health.desired(live)) == {"198.51.100.9": 7}


def test_quorum_with_hysteresis_and_the_sorry_server():
    """update_quorum_state: lost below quorum − hysteresis, won back at quorum + hysteresis;
    while lost the sorry server replaces the alive servers."""
    live, health = make(quorum=3, hysteresis=1, sorry=("198.51.100.200", 80), weights=(2, 1, 1))
    a, b, c = health.servers
    b.alive = False  # live 3: still up (3 ≥ 3 − 1)
    assert not health.update_quorum() and health.quorum_up
    c.alive = False  # live 2: 2 ≥ 2, still up
    assert not health.update_quorum() and health.quorum_up
    a.alive, b.alive = False, True  # live 1 < 2: lost
    assert health.update_quorum() and not health.quorum_up
    assert table(health.desired(live)) == {"198.51.100.200": 1}
    a.alive = True  # live 3 < 4: not yet back
    assert not health.update_quorum() and table(health.desired(live)) == {"198.51.100.200": 1}
    c.alive = True  # live 4 ≥ 4: back, sorry server gone
    assert health.update_quorum() and health.quorum_up
    assert table(health.desired(live)) == {RIPS[0]: 2, RIPS[1]: 1, RIPS[2]: 1}


def test_no_live_weight_loses_the_quorum_whatever_the_hysteresis():
    live, health = make(quorum=1, hysteresis=5)
    for server in health.servers:
        server.alive = False
    assert health.update_quorum() and not health.quorum_up


def test_status_names_every_check_and_its_last_result():
    live, health = make()
    health.servers[0].result(False, "Connection refused", 1.0)
    health.servers[0].result(False, "Connection refused", 2.0)
    text = render_status([health], 5.0)
    assert text.splitlines()[0].startswith(f"TCP {VIP}:80  quorum up (live weight 2")
    assert f"-> {RIPS[0]}:80" in text and "DOWN for 3s  checks 2  last: Connection refused" in text
    assert render_status([], 0.0) == "no health checks configured\n"


def test_an_alive_server_configured_at_weight_zero_stays_in_the_table():
    """keepalived keeps a quiesced (weight 0) real server that passes its check; found by
    bench/soak.py, where `-w 0` in the config deleted the server and its connections."""
    live, health = make(weights=(0, 2, 1))
    assert table(health.desired(live)) == {RIPS[0]: 0, RIPS[1]: 2, RIPS[2]: 1}
    assert ruleset.diff([live], [health.desired(live)]) == []
    health.servers[0].alive = False
    assert table(health.desired(live)) == {RIPS[1]: 2, RIPS[2]: 1}


def test_a_reload_carries_what_the_checks_found():
    old_live, old = make()
    old.servers[1].alive, old.servers[2].failures = False, 1
    old.servers[2].due, old.servers[0].latency = 42.0, 0.003
    _, new = make(weights=(1, 5, 1))
    new.carry(old)
    assert [s.alive for s in new.servers] == [True, False, True]
    assert [s.latency for s in new.servers] == [0.003, None, None]
    assert new.servers[2].failures == 1 and new.servers[2].due == 42.0
    assert new.servers[1].weight == 5  # the file's weight, the check's verdict

"""`[director] workers = 2` end to end: two worker processes share the director's interfaces
through PACKET_FANOUT; the supervisor answers `pylvs adm` with their union. Labs as in the other
e2e tests (namespaces of the run, real `pylvs run`, real HTTP servers, real curl)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time


def worker_pids(run) -> list[int]:
    out = run.director.output()
    return [int(pid) for pid in re.findall(r"worker \d+ up \(pid (\d+)\)", out)]


def stopped_counters(output: str) -> dict[int, dict[str, int]]:
    """The counters each worker logged when it stopped."""
    found = {}
    for index, counters in re.findall(r"worker (\d+) stopped: (.*)", output):
        found[int(index)] = {k: int(v) for k, v in
                             (item.rsplit(" ", 1) for item in counters.split(", ") if item)}
    return found


def conns(listing: str) -> dict[str, tuple[int, int]]:
    """-Ln: real server → (ActiveConn, InActConn)."""
    return {row.split()[1]: (int(row.split()[4]), int(row.split()[5]))
            for row in listing.splitlines() if row.strip().startswith("->") and ":" in row
            and row.split()[1][0].isdigit()}


def test_dr_with_two_workers_balances_and_lists_the_union(make_lab):
    run = make_lab(3, "rr", workers=2)
    answers = run.answers(30)
    assert sum(answers.values()) == 30 and set(answers) == {"rs1", "rs2", "rs3"}
    rows = run.director.adm("-Lnc").splitlines()
    assert rows[0] == "IPVS connection entries" and rows.count(rows[1]) == 1
    sources = {row.split()[3] for row in rows[2:]}
    assert len(sources) == 30, rows  # every curl's connection, whichever worker took it
    by_server = conns(run.director.adm("-Ln"))
    assert sum(a + i for a, i in by_server.values()) == 30
    assert {ip: a + i for ip, (a, i) in by_server.items()} == {
        f"{ip}:80": answers[name] for name, ip in zip(run.lab.server_names,
                                                      run.lab.server_ips, strict=True)}
    stats = run.director.adm("-Ln", "--stats").splitlines()
    assert stats[3].split()[2] == "30", stats  # Conns of the service: the workers' sum
    run.director.stop()
    counters = stopped_counters(run.director.final_output)
    assert sorted(counters) == [0, 1]
    assert all(c.get("forwarded", 0) > 0 for c in counters.values()), counters


def test_nat_replies_meet_the_worker_of_their_connection(make_lab):
    """Every reply must reach the worker that holds its connection, or no curl would finish."""
    run = make_lab(3, "rr", mode="nat", workers=2)
    answers = run.answers(24)
    assert sum(answers.values()) == 24 and set(answers) == {"rs1", "rs2", "rs3"}
    stats = run.director.adm("-Ln", "--stats").splitlines()
    assert int(stats[3].split()[3]) > 0 and int(stats[3].split()[4]) > 0  # InPkts, OutPkts
    run.director.stop()
    counters = stopped_counters(run.director.final_output)
    assert all(c.get("replied", 0) > 0 for c in counters.values()), counters
    assert not any(c.get("no_connection", 0) for c in counters.values()), counters


def test_a_rule_change_reaches_every_worker(make_lab):
    run = make_lab(3, "rr", workers=2)
    vip, quiesced = run.lab.vip, run.lab.server_ips[0]
    run.director.adm("-e", "-t", f"{vip}:80", "-r", f"{quiesced}:80", "-w", "0")
    assert "rs1" not in run.answers(20)
    run.director.adm("-d", "-t", f"{vip}:80", "-r", f"{run.lab.server_ips[1]}:80")
    assert run.answers(10) == {"rs3": 10}
    assert f"{quiesced}:80" in run.director.adm("-Ln")


def test_a_killed_worker_is_started_again_and_all_stop_with_the_director(make_lab):
    run = make_lab(2, "rr", workers=2)
    first = worker_pids(run)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while len(worker_pids(run)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = worker_pids(run)
    assert len(pids) == 3, run.director.output()
    assert "worker 0 (pid %d) died" % first[0] in run.director.output()
    assert sum(run.answers(10).values()) == 10
    run.director.stop()
    for pid in pids[1:]:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived the director"
    tables = subprocess.run(["ip", "netns", "exec", run.lab.director_ns, "nft", "list",
                             "tables"], capture_output=True, text=True).stdout
    assert "pylvs" not in tables


HOLD = """
import concurrent.futures, http.client, sys
held = [http.client.HTTPConnection(sys.argv[1], 80, timeout=2) for _ in range(int(sys.argv[2]))]
ports = []
for c in held:
    c.request("GET", "/")
    ports.append(c.sock.getsockname()[1])
    print(ports[-1], c.getresponse().read().decode().strip(), flush=True)
sys.stdin.readline()
def again(c):
    try:
        c.request("GET", "/")
        return c.getresponse().read().decode().strip()
    except Exception as exc:
        return "ERROR:" + type(exc).__name__
with concurrent.futures.ThreadPoolExecutor(len(held)) as pool:
    for port, answer in zip(ports, pool.map(again, held)):
        print(port, answer, flush=True)
"""


def test_when_a_worker_dies_the_other_keeps_its_connections(make_lab):
    """The kernel moves the last fanout member into a dead one's place; the supervisor follows
    with the program's order, so the surviving worker's clients keep reaching it."""
    from pylvs.shell.fanout import client_hash
    run = make_lab(2, "rr", workers=2)
    lab = run.lab
    client = lab.popen_in(lab.client_ns, [sys.executable, "-c", HOLD, lab.vip, "16"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = dict(client.stdout.readline().split() for _ in range(16))
        slots = {port: client_hash(lab.client_ip, int(port), False) % 2 for port in first}
        assert set(slots.values()) == {0, 1}
        os.kill(worker_pids(run)[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(worker_pids(run)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(run)) == 3, run.director.output()
        client.stdin.write("\n")
        client.stdin.flush()
        second = dict(client.stdout.readline().split() for _ in range(16))
    finally:
        client.kill()
        client.wait()
    kept = {port: answer for port, answer in second.items() if slots.get(port) == 1}
    lost = {port: answer for port, answer in second.items() if slots.get(port) == 0}
    assert kept and all(answer == first[port] for port, answer in kept.items()), (kept, first)
    assert lost and all(answer.startswith("ERROR") for answer in lost.values()), lost

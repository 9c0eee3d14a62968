"""Live changes on a running director while real curl-like traffic flows through it: add,
quiesce and delete real servers with `pylvs adm`, restore rules with -R, reload the config."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.helpers.http_stream import STREAM


def pylvs(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          input=stdin, timeout=30)


def test_add_quiesce_delete_and_reload_during_a_stream(make_lab):
    run = make_lab(4, "rr")
    lab, sock, vip = run.lab, run.lab.control_socket, run.lab.vip
    rs = dict(zip(lab.server_names, lab.server_ips, strict=True))
    # start with three servers: rs4 is up but not in the table
    assert pylvs("adm", "--socket", sock, "-d", "-t", f"{vip}:80", "-r", rs["rs4"]).returncode == 0
    stream = lab.popen_in(lab.client_ns, [sys.executable, "-c", STREAM, "16", vip],
                          stdout=subprocess.PIPE, text=True)
    marks = {}
    time.sleep(3)
    marks["add"] = time.time()
    assert pylvs("adm", "--socket", sock, "-a", "-t", f"{vip}:80", "-r", rs["rs4"]).returncode == 0
    time.sleep(3)
    marks["quiesce"] = time.time()
    assert pylvs("adm", "--socket", sock, "-e", "-t", f"{vip}:80", "-r", rs["rs2"],
                 "-w", "0").returncode == 0
    time.sleep(3)
    marks["delete"] = time.time()
    assert pylvs("adm", "--socket", sock, "-d", "-t", f"{vip}:80", "-r", rs["rs1"]).returncode == 0
    time.sleep(3)
    marks["reload"] = time.time()
    reload = pylvs("reload", "--socket", sock)  # the file still has rs1..rs4 at weight 1
    assert reload.returncode == 0, reload.stderr
    assert f"-a -t {vip}:80 -r {rs['rs1']}:80 -g -w 1" in reload.stdout
    assert f"-e -t {vip}:80 -r {rs['rs2']}:80 -g -w 1" in reload.stdout
    out, _ = stream.communicate(timeout=30)
    answers = [(float(t), name) for t, name in (line.split() for line in out.splitlines())]

    def between(start: str | None, end: str | None) -> set[str]:
        lo = marks[start] + 0.5 if start else 0
        hi = marks[end] if end else float("inf")
        return {name for t, name in answers if lo <= t < hi}

    errors = [(t, name) for t, name in answers if name.startswith("ERROR")]
    assert all(marks["delete"] - 0.5 <= t <= marks["delete"] + 3.5 for t, _ in errors), errors
    assert len(answers) > 100
    assert between(None, "add") == {"rs1", "rs2", "rs3"}
    assert between("add", "quiesce") == {"rs1", "rs2", "rs3", "rs4"}
    assert between("quiesce", "delete") == {"rs1", "rs3", "rs4"}
    window = [(round(t - marks["delete"], 2), n) for t, n in answers
              if marks["delete"] <= t < marks["reload"]]
    # after the delete, only rs3 and rs4 answer (rs1 is gone, rs2 quiesced) until the reload
    served = between("delete", "reload") - {n for _, n in errors}
    assert served and served <= {"rs3", "rs4"}, window
    assert between("reload", None) == {"rs1", "rs2", "rs3", "rs4"}


def test_restore_from_a_saved_rule_set_and_errors_from_the_cli(make_lab):
    run = make_lab(2, "rr")
    sock, vip = run.lab.control_socket, run.lab.vip
    saved = pylvs("adm", "--socket", sock, "-S", "-n").stdout
    listing = pylvs("adm", "--socket", sock, "-Ln").stdout
    assert pylvs("adm", "--socket", sock, "-C").returncode == 0
    assert pylvs("adm", "--socket", sock, "-Ln").stdout.count("\n") == 3
    restored = pylvs("adm", "--socket", sock, "-R", stdin=saved)
    assert restored.returncode == 0, restored.stderr
    assert pylvs("adm", "--socket", sock, "-Ln").stdout == listing
    assert run.answers(4) == {"rs1": 2, "rs2": 2}
    again = pylvs("adm", "--socket", sock, "-A", "-t", f"{vip}:80")
    assert (again.returncode, again.stderr) == (255, "Service already exists\n")
    bad = pylvs("adm", "--socket", sock, "-a", "-t", f"{vip}:80")
    assert (bad.returncode, bad.stderr) == (
        2, "You need to supply the 'real-server' option for the 'add-server' command\n")


def test_sighup_reloads_and_a_bad_file_is_refused_keeping_the_table(make_lab):
    run = make_lab(2, "rr")
    sock, vip = run.lab.control_socket, run.lab.vip
    rs1 = run.lab.server_ips[0]
    assert pylvs("adm", "--socket", sock, "-e", "-t", f"{vip}:80", "-r", rs1,
                 "-w", "7").returncode == 0
    run.director.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while " 7 " in pylvs("adm", "--socket", sock, "-Ln").stdout and time.time() < deadline:
        time.sleep(0.1)
    listing = pylvs("adm", "--socket", sock, "-Ln").stdout
    assert f"  -> {rs1 + ':80':<28} Route   1 " in listing
    with open(run.director.config_path, "a") as fh:
        fh.write("\n[[virtual_server]]\naddress = \"not-an-address\"\n")
    refused = pylvs("reload", "--socket", sock)
    assert refused.returncode == 1
    assert "reload refused, the running rules stay" in refused.stderr
    assert "virtual_server[1].address" in refused.stderr
    assert pylvs("adm", "--socket", sock, "-Ln").stdout == listing



def test_a_server_added_while_running_takes_its_first_connection_at_once(make_lab):
    """A real server the director has never seen (rs3 given a second address) is asked for
    its MAC when it is added, as the kernel would queue the SYN meanwhile (arp_queue): no
    frame of its first connection is dropped for want of a next hop."""
    run = make_lab(3, "rr")
    lab, sock, vip = run.lab, run.lab.control_socket, run.lab.vip
    fresh = lab.server_ips[2].rsplit(".", 1)[0] + ".213"
    lab.run_in(lab.server_ns[2], ["ip", "addr", "add", f"{fresh}/24", "dev", "eth0"], check=True)
    assert pylvs("adm", "--socket", sock, "-a", "-t", f"{vip}:80", "-r", fresh).returncode == 0
    assert run.answers(4)["rs3"] == 2
    status = json.loads(pylvs("status", "--socket", sock, "--json").stdout)
    assert status["counters"].get("no_next_hop", 0) == 0, status["counters"]

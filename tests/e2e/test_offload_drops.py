"""The fast path's safety net (issue 26): a director on veths whose peers have no XDP program
(the usual container setup: the kernel drops every frame the program sends into such a link),
offload = "xdp", one UDP flow. The director sees the drops in its own links' counters, says so
in its log with the fix, counts them in pylvs status, and takes the link's connections back to
Python: the flow keeps flowing, and nearly every datagram sent after that arrives.

DR sends back out the link it came in on (XDP_TX: the link's TX dropped); NAT redirects from
the outside link into the inside one (the outside link's RX dropped).

And the default, offload = "auto", which keeps the program off such links (a lab as `pylvs
lab` builds it: Python, saying why) and puts it on links whose peer has an XDP program, where
the frames of senders on this host, whose checksums are partial, still go through Python."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.httpserver import blob
from pylvs.lab.topology import _ATTACH_PASS, IFACE, Lab, curl_argv, lab_config

RATE = 10_000
"""Datagrams a second: within what the Python path forwards on this machine kind."""
RECEIVER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 9))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
sock.settimeout(0.1)
counts = {b"1": 0, b"2": 0}
print("listening", flush=True)
written = 0.0
while True:
    try:
        data = sock.recv(64)
        counts[data[:1]] = counts.get(data[:1], 0) + 1
    except TimeoutError:
        pass
    if time.monotonic() - written > 0.2:
        with open(sys.argv[1], "w") as fh:
            fh.write(f"{counts[b'1']} {counts[b'2']}")
        written = time.monotonic()
"""
SENDER = """
import socket, sys, time
phase, seconds, rate, vip = sys.argv[1].encode(), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 40000))
sent, start = 0, time.monotonic()
while (now := time.monotonic()) - start < seconds:
    while sent < (now - start) * rate:
        sock.sendto(phase + b"x" * 17, (vip, 9))
        sent += 1
    time.sleep(0.001)
print(sent)
"""


def _config(lab: Lab) -> str:
    server = lab.server_ips[0]
    return (f'[director]\ninterface = "{lab.director_if}"\n'
            f'inside_interface = "{lab.director_inside_if}"\n'
            f'control_socket = "{lab.control_socket}"\noffload = "xdp"\n\n'
            f'[[virtual_server]]\naddress = "{lab.vip}:9"\nprotocol = "udp"\n'
            f'scheduler = "rr"\nforward = "{lab.mode}"\n\n'
            f'  [[virtual_server.real_server]]\n  address = "{server}:9"\n')


def _send(lab: Lab, phase: int, seconds: float) -> int:
    out = lab.run_in(lab.client_ns, [sys.executable, "-c", SENDER, str(phase), str(seconds),
                                     str(RATE), lab.vip], capture_output=True, text=True,
                     check=True).stdout
    return int(out)


def _received(path: str) -> tuple[int, int]:
    time.sleep(0.5)  # the receiver writes its counts every 0.2 s
    with open(path) as fh:
        first, second = fh.read().split()
    return int(first), int(second)


def _status(lab: Lab) -> dict:
    return json.loads(subprocess.run(
        [sys.executable, "-m", "pylvs", "status", "--json", "--socket", lab.control_socket],
        capture_output=True, text=True, timeout=30, check=True).stdout)


@pytest.fixture
def lab(request):
    made = Lab(servers=1, mode=request.param)
    try:
        made.setup()
        made.configure_real_servers()
        for ns in (made.client_ns, *made.server_ns):  # full checksums: the program's frames
            made.run_in(ns, ["ethtool", "-K", IFACE, "tx", "off"], check=True,
                        capture_output=True)
        yield made
    finally:
        made.close()


@pytest.mark.parametrize(("lab", "withdrawn", "how", "counted_on"),
                         [("dr", "eth0", "TX dropped", "eth0"),
                          ("nat", "eth1", "RX dropped on eth0", "eth0")], indirect=["lab"])
def test_a_link_that_drops_the_fast_paths_frames_goes_back_to_python(lab, withdrawn, how,
                                                                     counted_on, tmp_path):
    counts = str(tmp_path / "received")
    receiver = lab.popen_in(lab.server_ns[0], [sys.executable, "-c", RECEIVER, counts],
                            stdout=subprocess.PIPE, text=True)
    lab.processes.append(receiver)
    assert receiver.stdout.readline().strip() == "listening"
    director = DirectorProcess(lab, _config(lab))
    try:
        said = director.output()
        assert "warning: XDP fast path on" in said and "has no XDP program" in said, said
        first = _send(lab, 1, 4.0)  # the drops, seen over two ticks, then Python's
        deadline = time.monotonic() + 10
        while "its connections go back to Python" not in director.output():
            assert time.monotonic() < deadline, director.output()
            time.sleep(0.2)
        second = _send(lab, 2, 2.0)
        got_first, got_second = _received(counts)
        assert 0 < got_first < first  # some dropped, some forwarded by Python after
        assert got_second >= 0.95 * second, (got_second, second)
        status = _status(lab)
        links = status["offload"]["links"]
        link = links[withdrawn]
        assert not link["fast"] and links[counted_on]["dropped"] > 0, status
        assert how in link["reason"] and "attach an XDP program to" in link["reason"]
        assert status["counters"]["xdp_links_withdrawn"] == 1
        assert status["counters"]["forwarded"] >= got_second
        log = director.output()
        assert f"XDP fast path: {withdrawn} dropped" in log and how in log, log
    finally:
        director.stop()


@pytest.fixture
def web_lab():
    made = Lab(servers=2, mode="dr")
    try:
        made.setup()
        made.configure_real_servers()
        made.start_http_servers(80)
        yield made
    finally:
        made.close()


def _transfers(lab: Lab) -> None:
    """A download and an upload of 4 MB through the director, intact."""
    size = 4 << 20
    got = lab.run_in(lab.client_ns, curl_argv(f"http://{lab.vip}/blob/{size}", max_time=60),
                     capture_output=True, check=True).stdout
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob(size)).digest()
    body = os.urandom(size)
    sent = subprocess.run(["ip", "netns", "exec", lab.client_ns, "curl", "-sS", "--noproxy",
                           "*", "--max-time", "60", "--data-binary", "@-",
                           f"http://{lab.vip}/sha256"], input=body, capture_output=True,
                          timeout=90)
    assert sent.stdout.strip().decode() == hashlib.sha256(body).hexdigest(), sent.stderr


def test_auto_leaves_a_plain_lab_to_python_and_says_why(web_lab):
    director = DirectorProcess(web_lab, lab_config(web_lab, "rr"))  # no offload key: auto
    try:
        _transfers(web_lab)
        status = _status(web_lab)["offload"]
        assert status["mode"] == "auto" and "has no XDP program" in status["python"]
        shown = web_lab.run_in(web_lab.director_ns, ["ip", "link", "show", IFACE],
                               capture_output=True, text=True, check=True).stdout
        assert "prog/xdp" not in shown
        assert 'offload = "auto": every frame through Python (eth0: a veth whose peer ' \
            "(director in netns" in director.output()
    finally:
        director.stop()


def test_auto_takes_a_ready_link_and_partial_checksums_still_go_through_python(web_lab):
    """Senders on this host keep their TX checksum offload: their frames reach the program
    with partial checksums, which it leaves to Python to complete."""
    web_lab.run_in(web_lab.bridge_ns, [sys.executable, "-c", _ATTACH_PASS, "director"],
                   check=True, capture_output=True)
    director = DirectorProcess(web_lab, lab_config(web_lab, "rr"))
    try:
        assert "XDP fast path on eth0: a veth whose peer (director in netns" in \
            director.output()
        _transfers(web_lab)
        status = _status(web_lab)["offload"]
        assert status["links"]["eth0"]["fast"] and status["partial"] > 1000, status
    finally:
        director.stop()

"""Names for listings without -n (pylvs.shell.names). Real lookups only of loopback, which
/etc/hosts answers; a documentation address that no resolver answers is played by a resolver
that never returns, or looked up for real in a network namespace of its own with loopback
alone, so no query leaves this host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from pylvs.shell import names

NAMELESS = "192.0.2.7"


def test_loopback_has_its_hosts_name():
    assert names.hosts(["127.0.0.1"], timeout=2.0) == {"127.0.0.1": "localhost"}


def test_services_by_port_and_protocol():
    assert names.services(["80/tcp", "53/udp", "65000/tcp", "x/tcp", "80/nope"]) == {
        "80/tcp": "http", "53/udp": "domain"}


def test_an_address_without_an_answer_stays_a_number_within_the_timeout():
    never = threading.Event()

    def resolve(address):
        if address == NAMELESS:
            never.wait(5)  # a resolver that does not answer
        return socket.gethostbyaddr(address)[0]

    start = time.monotonic()
    found = names.hosts([NAMELESS, "127.0.0.1"], timeout=0.2, resolve=resolve)
    assert time.monotonic() - start < 0.5
    assert found == {"127.0.0.1": "localhost"}
    never.set()


def test_a_resolver_error_is_no_name():
    def refuse(address):
        raise socket.herror(1, "Unknown host")

    assert names.hosts([NAMELESS], resolve=refuse) == {}


def test_many_addresses_share_the_pool():
    def slow(address):
        time.sleep(0.1)
        return f"host-{address.rsplit('.', 1)[1]}"

    addresses = [f"192.0.2.{i}" for i in range(1, 13)]
    start = time.monotonic()
    found = names.hosts(addresses, timeout=0.5, resolve=slow, pool=4)
    assert found == {a: f"host-{a.rsplit('.', 1)[1]}" for a in addresses}
    assert time.monotonic() - start < 1.0  # three rounds of four (0.3 s), not twelve (1.2 s)


def test_lookup_is_hosts_and_services():
    assert names.lookup(["127.0.0.1", "127.0.0.1"], ["80/tcp"]) == (
        {"127.0.0.1": "localhost"}, {"80/tcp": "http"})


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare for a network namespace of its own")
def test_a_real_lookup_of_a_nameless_address_falls_back_with_no_network():
    code = ("import time; from pylvs.shell import names; t = time.monotonic(); "
            f"print(names.hosts([{NAMELESS!r}, '127.0.0.1'], timeout=0.3), "
            "time.monotonic() - t < 0.6)")
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=30,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.stdout.strip() == "{'127.0.0.1': 'localhost'} True", result.stderr

"""Host and service names for a listing without -n, found by the process that asks for the
listing (`pylvs adm`), never in the director's loop.

Addresses get reverse DNS (``socket.gethostbyaddr``) from a small pool of daemon threads, each
address given ``timeout`` seconds of a thread: one that has no answer by then stays a number,
as in ipvsadm when the resolver has none, and a lookup still hanging does not keep the process
from exiting. Ports get the services database (``socket.getservbyport``).
"""

from __future__ import annotations

import math
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable

from pylvs.adm.commands import Lookup

RESOLVE_TIMEOUT = 0.3
POOL_SIZE = 4

Resolve = Callable[[str], str]


def _reverse(address: str) -> str:
    return socket.gethostbyaddr(address)[0]


def lookup(addresses: Iterable[str], ports: Iterable[str],
           timeout: float = RESOLVE_TIMEOUT) -> Lookup:
    """(hosts, services): the names found for a listing, as pylvs.adm.commands takes them."""
    return hosts(addresses, timeout), services(ports)


def hosts(addresses: Iterable[str], timeout: float = RESOLVE_TIMEOUT,
          resolve: Resolve = _reverse, pool: int = POOL_SIZE) -> dict[str, str]:
    """Address → host name, for those answered in time; at most ``timeout`` × the rounds the
    pool needs."""
    todo = list(dict.fromkeys(addresses))
    if not todo:
        return {}
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for address in todo:
        pending.put(address)
    found: dict[str, str] = {}
    answered = [0]
    done = threading.Condition()

    def work() -> None:
        while True:
            try:
                address = pending.get_nowait()
            except queue.Empty:
                return
            name = _name(resolve, address)
            with done:
                if name and name != address:
                    found[address] = name
                answered[0] += 1
                done.notify()

    threads = min(pool, len(todo))
    for _ in range(threads):
        threading.Thread(target=work, name="pylvs-names", daemon=True).start()
    deadline = time.monotonic() + timeout * math.ceil(len(todo) / threads)
    with done:
        done.wait_for(lambda: answered[0] == len(todo), max(0.0, deadline - time.monotonic()))
        return dict(found)


def _name(resolve: Resolve, address: str) -> str | None:
    try:
        return resolve(address)
    except (OSError, UnicodeError):  # herror, gaierror: no name
        return None


def services(ports: Iterable[str]) -> dict[str, str]:
    """"port/protocol" → service name, for those the services database has."""
    found = {}
    for key in ports:
        port, _, protocol = key.partition("/")
        try:
            found[key] = socket.getservbyport(int(port), protocol)
        except (OSError, ValueError, OverflowError):
            continue
    return found

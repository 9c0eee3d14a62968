"""The open-loop client of the scheduler laboratory.

    python3 -m bench.schedlab.client --target VIP:PORT --rate R --duration D
        --sources A,B,... [--seed N] [--timeout S] --out PATH

Requests are sent on a Poisson schedule drawn up front (``schedule``), never after answers:
a slow server cannot slow the sending down and hide itself (coordinated omission). Each request
is a new TCP connection from one of the source addresses; its latency counts from the time it
was *scheduled*, so any lateness of the sender is charged to the request, and that lateness
(the pacing error: actual send − scheduled) is measured and reported.

Prints ``start T`` (T: the schedule's time 0 in this machine's monotonic clock, a moment after
it is ready) and writes to PATH, as JSON, ``{"start": T, "records": [[offset_s, source,
lag_ms, latency_ms, server, error], ...]}``: server is the name the answer carried ("" if
none), error "" or what went wrong (timeout, reset, refused, bad, or an errno name).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import os
import random
import resource
import selectors
import socket
import time

LEAD = 0.2
"""Seconds from ready to the schedule's time 0."""
IP_BIND_ADDRESS_NO_PORT = 24
"""Linux: the port is chosen at connect, so 4-tuples, not ports, must be unique."""
REQUEST = b"GET / HTTP/1.0\r\nHost: schedlab\r\nUser-Agent: schedlab\r\n\r\n"

Record = tuple[float, int, float, float, str, str]
"""(scheduled offset s, source index, lag ms, latency ms, server, error)."""


def schedule(rate: float, duration: float, sources: int, seed: int) -> list[tuple[float, int]]:
    """Poisson arrivals at ``rate`` per second over [0, duration): (offset, source index),
    the source drawn uniformly; the same for the same arguments."""
    rng = random.Random(seed)
    plan: list[tuple[float, int]] = []
    t = rng.expovariate(rate) if rate > 0 else duration
    while t < duration:
        plan.append((t, rng.randrange(sources)))
        t += rng.expovariate(rate)
    return plan


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def body_name(answer: bytes) -> str:
    """The server's name from an HTTP answer ("" unless a 200 with a one-line body)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        return ""
    return body.decode(errors="replace").strip()


class Request:
    __slots__ = ("due", "offset", "source", "lag", "sock", "data")

    def __init__(self, due: float, offset: float, source: int, lag: float,
                 sock: socket.socket) -> None:
        self.due, self.offset, self.source, self.lag, self.sock = due, offset, source, lag, sock
        self.data = b""


class Client:
    """One thread, one epoll: cheaper per request than asyncio's streams, so the sender stays
    on time on a busy machine."""

    def __init__(self, host: str, port: int, sources: list[str], timeout: float) -> None:
        self.host, self.port, self.sources, self.timeout = host, port, sources, timeout
        self.records: list[Record] = []
        self.selector = selectors.DefaultSelector()
        self.deadlines: list[tuple[float, int, Request]] = []
        self.open = 0

    def send(self, start: float, offset: float, source: int) -> None:
        due = start + offset
        lag = time.monotonic() - due
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        request = Request(due, offset, source, lag, sock)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.sources[source], 0))
            code = sock.connect_ex((self.host, self.port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
        except OSError as exc:
            self.finish(request, "", _error_name(exc))
            return
        self.selector.register(sock, selectors.EVENT_WRITE, request)
        heapq.heappush(self.deadlines, (due + self.timeout, id(request), request))
        self.open += 1

    def finish(self, request: Request, server: str, error: str) -> None:
        latency = time.monotonic() - request.due
        if request.sock.fileno() >= 0:
            if self.selector.get_map().get(request.sock) is not None:
                self.selector.unregister(request.sock)
                self.open -= 1
            request.sock.close()
        if not error and latency > self.timeout:
            server, error = "", "timeout"
        self.records.append((request.offset, request.source, request.lag * 1e3, latency * 1e3,
                             server, error))

    def ready(self, request: Request, mask: int) -> None:
        sock = request.sock
        try:
            if mask & selectors.EVENT_WRITE:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                sock.send(REQUEST)
                self.selector.modify(sock, selectors.EVENT_READ, request)
                return
            chunk = sock.recv(65536)
        except OSError as exc:
            self.finish(request, "", _error_name(exc))
            return
        if chunk:
            request.data += chunk
            return
        server = body_name(request.data)
        self.finish(request, server, "" if server else "bad")

    def expire(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            request = heapq.heappop(self.deadlines)[2]
            if request.sock.fileno() >= 0:
                self.finish(request, "", "timeout")

    def run(self, plan: list[tuple[float, int]], start: float) -> None:
        index = 0
        while index < len(plan) or self.open:
            now = time.monotonic()
            while index < len(plan) and start + plan[index][0] <= now:
                self.send(start, *plan[index])
                index += 1
            self.expire(now)
            wake = [start + plan[index][0]] if index < len(plan) else []
            if self.deadlines:
                wake.append(self.deadlines[0][0])
            wait = max(0.0, min(wake) - time.monotonic()) if wake else 0.0
            for key, mask in self.selector.select(wait):
                self.ready(key.data, mask)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    client = Client(host, int(port), args.sources.split(","), args.timeout)
    plan = schedule(args.rate, args.duration, len(client.sources), args.seed)
    start = time.monotonic() + LEAD
    print(f"start {start:.6f}", flush=True)
    client.run(plan, start)
    with open(args.out, "w") as fh:
        json.dump({"start": start, "records": client.records}, fh)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.schedlab.client")
    parser.add_argument("--target", required=True, help="VIP:PORT")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--sources", required=True, help="source addresses, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _raise_fd_limit()
    run(parse(argv))


if __name__ == "__main__":
    main()

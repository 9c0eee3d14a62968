"""One real server of the scheduler laboratory: HTTP whose service time follows a distribution.

    python3 -m bench.schedlab.server --name rs1 [--mean-ms 20] [--distribution exp]
        [--concurrency 4] [--pause-every 2 --pause-for 0.3] [--seed 1] [--port 80]

Each connection carries one request (HTTP/1.0: closed after the answer) whose body is the
server's name. ``concurrency`` requests are served at once (workers); the others wait in a queue,
first come first served. Serving one takes a time drawn from the distribution ("exp", "lognormal"
with sigma 1, "const") of mean ``mean_ms``, times the speed factor. Pauses: during
[epoch + k·every, epoch + k·every + for), k = 1, 2, ..., nothing is served (a request in service
stands still until the pause ends).

Control, one command a line on stdin: ``epoch T`` (the run's start, in this machine's monotonic
clock: the pauses count from it), ``factor F`` (service times × F from now on). End of stdin
(the bench went away) or SIGTERM stops it. Prints ``serving`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import resource
import signal
import sys
import threading
from dataclasses import dataclass

READ_TIMEOUT = 10.0


def draw(rng: random.Random, distribution: str, mean_ms: float) -> float:
    """One service time in ms of mean ``mean_ms``."""
    if distribution == "exp":
        return rng.expovariate(1.0 / mean_ms)
    if distribution == "lognormal":  # sigma 1: the mean is exp(mu + 1/2)
        return rng.lognormvariate(math.log(mean_ms) - 0.5, 1.0)
    if distribution == "const":
        return mean_ms
    raise ValueError(f"unknown distribution {distribution!r} (exp, lognormal, const)")


def finish_time(start: float, service: float, epoch: float, every: float,
                pause: float) -> float:
    """When a request that enters service at ``start`` and needs ``service`` seconds of it is
    done, the server standing still in each pause [epoch + k·every, + pause), k ≥ 1."""
    if every <= 0 or pause <= 0:
        return start + service
    t, left = start, service
    while True:
        k = math.floor((t - epoch) / every)
        if k >= 1 and t < epoch + k * every + pause:
            t = epoch + k * every + pause  # in a pause: wait for its end
            continue
        next_pause = epoch + (k + 1) * every
        if t + left <= next_pause:
            return t + left
        left -= next_pause - t
        t = next_pause


@dataclass
class Speed:
    factor: float = 1.0
    epoch: float = 0.0


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.name
        self.rng = random.Random(args.seed)
        self.speed = Speed(epoch=asyncio.get_running_loop().time())
        self.workers = asyncio.Semaphore(args.concurrency)
        body = (self.name + "\n").encode()
        self.answer = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                await reader.readuntil(b"\r\n\r\n")
            async with self.workers:
                await self.serve()
            writer.write(self.answer)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        service = draw(self.rng, self.args.distribution, self.args.mean_ms) / 1000.0
        done = finish_time(now, service * self.speed.factor, self.speed.epoch,
                           self.args.pause_every, self.args.pause_for)
        await asyncio.sleep(done - now)

    def command(self, line: str) -> None:
        words = line.split()
        if len(words) == 2 and words[0] == "factor":
            self.speed.factor = float(words[1])
        elif len(words) == 2 and words[0] == "epoch":
            self.speed.epoch = float(words[1])
        elif words:
            print(f"{self.name}: unknown command {line.strip()!r}", file=sys.stderr)


def _read_stdin(loop: asyncio.AbstractEventLoop, server: Server, stop: asyncio.Event) -> None:
    """The control: a thread reading stdin, handing each line to the loop."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(server.command, line)
    loop.call_soon_threadsafe(stop.set)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    listener = await asyncio.start_server(server.handle, args.bind, args.port, backlog=4096,
                                          reuse_address=True)
    threading.Thread(target=_read_stdin, args=(loop, server, stop), daemon=True).start()
    print("serving", flush=True)
    async with listener:
        await stop.wait()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.schedlab.server")
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--mean-ms", type=float, default=20.0)
    parser.add_argument("--distribution", default="exp", choices=("exp", "lognormal", "const"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pause-every", type=float, default=0.0)
    parser.add_argument("--pause-for", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _raise_fd_limit()
    asyncio.run(main_async(parse(argv)))


if __name__ == "__main__":
    main()

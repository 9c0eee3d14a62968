"""keepalived.conf's virtual_server blocks, read into pylvs services (``pylvs config
from-keepalived``), with keepalived's defaults: NAT when no method is given, wlc, TCP, weight 1,
360 s for a bare ``persistence_timeout``. What is not carried over is listed, never dropped in
silence: health checkers, vrrp blocks, fwmark and group services, sorry servers and the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import forwarders
import schedulers
from pylvs.core.model import RealServer, VirtualService

DEFAULT_PERSISTENCE = 360
DEFAULT_LB_KIND = "NAT"  # keepalived's, when a virtual_server names none
_TOKEN = re.compile(r'"[^"]*"|[{}]|[^\s{}"]+')


@dataclass
class Block:
    keyword: str
    args: list[str]
    children: list[Block] = field(default_factory=list)
    line: int = 0


def parse_blocks(text: str) -> list[Block]:
    """keepalived's syntax: `keyword args... [{ ... }]`, one per line, # and ! comments."""
    root = Block("", [])
    stack = [root]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"[#!]", raw, maxsplit=1)[0]
        words = [t.strip('"') for t in _TOKEN.findall(line)]
        while words:
            if words[0] == "}":
                if len(stack) == 1:
                    raise ValueError(f"line {number}: '}}' without a block to close")
                stack.pop()
                words = words[1:]
                continue
            opens = "{" in words
            head = words[:words.index("{")] if opens else words
            rest = words[len(head) + 1:] if opens else []
            block = Block(head[0], head[1:], line=number) if head else None
            if block is not None:
                stack[-1].children.append(block)
            if opens:
                stack.append(block or Block("", [], line=number))
            words = rest
    if len(stack) != 1:
        raise ValueError(f"a block opened on line {stack[-1].line} is never closed")
    return root.children


def import_services(text: str) -> tuple[list[VirtualService], list[str]]:
    """The services, and one note for each thing that was not carried over."""
    services: list[VirtualService] = []
    dropped: list[str] = []
    for block in parse_blocks(text):
        if block.keyword != "virtual_server":
            dropped.append(f"line {block.line}: {block.keyword} {' '.join(block.args)}".strip())
        elif len(block.args) != 2 or block.args[0] in ("fwmark", "group"):
            dropped.append(f"line {block.line}: virtual_server {' '.join(block.args)} "
                           "(only address and port services are supported)")
        else:
            services.append(_service(block, dropped))
    return services, dropped


def _service(block: Block, dropped: list[str]) -> VirtualService:
    address, port = block.args[0], _port(block.args[1], block.line)
    options = {b.keyword: b for b in block.children}
    protocol = _arg(options.get("protocol"), "TCP").lower()
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"line {block.line}: protocol {protocol!r} (TCP or UDP)")
    scheduler = _scheduler(options, block)
    method = _method(options.get("lvs_method") or options.get("lb_kind"), DEFAULT_LB_KIND)
    timeout = 0
    if "persistence_timeout" in options:
        timeout = int(_arg(options["persistence_timeout"], str(DEFAULT_PERSISTENCE)))
    netmask = _arg(options.get("persistence_granularity"), "255.255.255.255")
    service = VirtualService(protocol, address, port, scheduler, method, timeout, netmask)
    known = {"protocol", "lvs_sched", "lb_algo", "lvs_method", "lb_kind", "persistence_timeout",
             "persistence_granularity", "real_server", *schedulers.get("sh").FLAGS,
             *schedulers.get("mh").FLAGS}
    for child in block.children:
        if child.keyword == "real_server":
            service.add_real_server(_server(child, method, port, dropped))
        elif child.keyword not in known:
            dropped.append(f"line {child.line}: {child.keyword} (in virtual_server "
                           f"{address} {port})")
    service.scheduler.update(service.real_servers)
    return service


def _scheduler(options: dict[str, Block], block: Block) -> schedulers.Scheduler:
    name = _arg(options.get("lvs_sched") or options.get("lb_algo"), "wlc")
    flags = [k for k in options if k.startswith(("sh-", "mh-"))]
    try:
        scheduler = schedulers.get(name)(flags)
    except (schedulers.UnknownScheduler, ValueError) as exc:
        raise ValueError(f"line {block.line}: {exc}") from None
    scheduler.spec = name
    return scheduler


def _server(block: Block, default_method: str, service_port: int,
             dropped: list[str]) -> RealServer:
    if len(block.args) != 2:
        raise ValueError(f"line {block.line}: real_server needs an address and a port")
    options = {b.keyword: b for b in block.children}
    method = _method(options.get("lvs_method") or options.get("lb_kind"),
                     forwarders.get(default_method).lb_kind)
    port = _port(block.args[1], block.line) if forwarders.get(method).masquerades else service_port
    server = RealServer(block.args[0], port, weight=int(_arg(options.get("weight"), "1")),
                        forward=method,
                        upper_threshold=int(_arg(options.get("uthreshold"), "0")),
                        lower_threshold=int(_arg(options.get("lthreshold"), "0")))
    for child in block.children:
        if child.keyword not in ("weight", "lvs_method", "lb_kind", "uthreshold", "lthreshold"):
            dropped.append(f"line {child.line}: {child.keyword} (in real_server "
                           f"{' '.join(block.args)}; health checks are not imported)")
    return server


def _method(block: Block | None, default_lb_kind: str) -> str:
    text = _arg(block, default_lb_kind).upper()
    method = forwarders.by_lb_kind(text)
    if method is None:
        raise ValueError(f"line {block.line if block else 0}: unknown lvs_method {text!r}")
    return method.name


def _arg(block: Block | None, default: str) -> str:
    return block.args[0] if block is not None and block.args else default


def _port(text: str, line: int) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"line {line}: port {text!r} is not in 1..65535")
    return int(text)

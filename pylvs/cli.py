"""`pylvs run | check | adm | reload | status | sysctl | top | config | realserver | lab`: the
command line. Each subcommand is parsed here and handed to its home: the director
(pylvs.shell.engine), the config test and `pylvs run`'s pre-flight (pylvs.shell.check),
the control socket's client (pylvs.shell.adm_client), the labs and real-server steps
(pylvs.lab.commands).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pylvs.adm import config as config_mod
from pylvs.adm import ipvsadm
from pylvs.lab import commands as lab_commands
from pylvs.shell import adm_client, logs
from pylvs.shell.messages import Reload, Status, Sysctl

DEFAULT_CONFIG = "/etc/pylvs/pylvs.toml"
"""`pylvs run` without a file (docs/operating.md; examples/pylvs.toml is the one to copy)."""
log = logging.getLogger("pylvs")
TALK_TO_DIRECTOR = ("reload", "status", "sysctl", "top")
"""The subcommands with --socket: without it, the director is found (adm_client.choose)."""
SOCKET_HELP = (f"the director's control socket (default: ${adm_client.ENV_SOCKET}, else "
               f"{config_mod.DEFAULT_CONTROL_SOCKET} if a director listens there, else the one "
               f"director running with a {adm_client.RUN_DIR}/pylvs*.sock)")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.config == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
        log.error("no config file at %s, the default path (copy examples/pylvs.toml there, "
                  "or name one: pylvs run FILE)", DEFAULT_CONFIG, extra={"file": DEFAULT_CONFIG})
        return 2
    from pylvs.shell import config_file
    try:
        config, notes, where = config_file.load_placed(args.config, args.format,
                                                       args.interface or "")
    except config_mod.ConfigError as exc:
        for note in getattr(exc, "notes", []):
            log.warning("%s: %s", exc.source, note)
        log.error("bad config: %s", exc,
                  extra={"file": exc.source, "key": exc.key, "reason": exc.reason})
        return 2
    for note in notes:
        log.warning("%s: %s", args.config, note)
    if config.source_format == "keepalived" and os.environ.get(adm_client.ENV_SOCKET):
        # keepalived.conf has no place for it
        config.control_socket = os.environ[adm_client.ENV_SOCKET]
    if args.offload:
        config.offload = args.offload
    if args.metrics:
        try:
            config_mod.split_address(args.metrics)
        except ValueError as exc:
            log.error("bad --metrics: %s", exc)
            return 2
        config.metrics = args.metrics
    from pylvs.shell import check, engine, workers
    if not check.preflight(config, where):  # before anything touches the network
        return 2
    try:
        return engine.run(workers.build(config))
    except (OSError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1


def _cmd_check(args: argparse.Namespace) -> int:
    """`pylvs check`: the config against this host, changing nothing (pylvs.shell.check)."""
    if args.config == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
        print(f"pylvs check: no config file at {DEFAULT_CONFIG}, the default path (name one: "
              "pylvs check FILE)", file=sys.stderr)
        return 2
    from pylvs.shell import check
    return check.run(args.config, args.format, args.interface or "",
                     os.environ.get(adm_client.ENV_SOCKET, ""))


def _cmd_reload(args: argparse.Namespace) -> int:
    return adm_client.send(args.socket, Reload())


def _cmd_status(args: argparse.Namespace) -> int:
    return adm_client.send(args.socket, Status(), as_json=args.json)


def _cmd_sysctl(args: argparse.Namespace) -> int:
    """sysctl(8)'s way with /proc/sys/net/ipv4/vs/: NAME shows, -w NAME=VALUE writes."""
    if args.setting is None:
        return adm_client.send(args.socket, Sysctl())
    name, sep, value = args.setting.partition("=")
    if bool(sep) != args.write:
        print(f"pylvs sysctl: {'-w needs NAME=VALUE' if args.write else 'NAME=VALUE needs -w'}",
              file=sys.stderr)
        return 2
    if sep and not value.strip().isdigit():
        print(f'sysctl: setting key "{name}": Invalid argument', file=sys.stderr)
        return 255
    return adm_client.send(args.socket, Sysctl(name.strip(), int(value) if sep else None))


def _cmd_config(args: argparse.Namespace) -> int:
    if args.source == "from-keepalived":
        return _from_keepalived(args)
    from pylvs.adm import ruleset
    try:
        with open(args.file) if args.file != "-" else sys.stdin as fh:
            text = fh.read()
        services = ruleset.from_ipvsadm(text)
    except (OSError, ValueError) as exc:
        print(f"pylvs config: {args.file}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(ruleset.to_toml(services, args.interface or "eth0"))
    return 0


def _from_keepalived(args: argparse.Namespace) -> int:
    """The whole keepalived.conf as pylvs TOML; the notes on stderr; checked as `pylvs run`
    would load it before a line is written."""
    from pylvs.shell import config_file
    try:
        conversion, _ = config_file.convert(config_file.read(args.file), args.file,
                                            args.interface or "")
    except config_mod.ConfigError as exc:
        for note in getattr(exc, "notes", []):
            print(f"pylvs config: {note}", file=sys.stderr)
        print(f"pylvs config: {exc}", file=sys.stderr)
        return 1
    for note in conversion.notes:
        print(f"pylvs config: {note}", file=sys.stderr)
    sys.stdout.write(conversion.toml())
    return 0


def _cmd_top(args: argparse.Namespace) -> int:
    from pylvs.shell import top
    return top.run(args.socket, once=args.once, interval=args.interval)


def _top_parser(sub: argparse._SubParsersAction) -> None:
    """`pylvs top`: the live view (pylvs.shell.top)."""
    top = sub.add_parser("top", help="a live view of the services and real servers: rates, "
                         "connections, weights, health, drops")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    top.add_argument("--socket", help=SOCKET_HELP)
    top.set_defaults(func=_cmd_top)


def _check_parser(sub: argparse._SubParsersAction) -> None:
    """`pylvs check`: as `keepalived -t` or `nginx -t`."""
    check = sub.add_parser("check", help="test a config against this host without running it "
                           "or changing anything: a line per check, then what `pylvs run` "
                           "would do (exit 0, or 2 when it would refuse the config)")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG,
                       help=f"pylvs TOML or a keepalived.conf (default: {DEFAULT_CONFIG})")
    check.add_argument("--format", choices=("auto", "toml", "keepalived"), default="auto",
                       help="the config file's syntax (default: told by its content)")
    check.add_argument("--interface", help="keepalived.conf: the director's interface, as "
                       "`pylvs run --interface`")
    check.set_defaults(func=_cmd_check)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pylvs", description="A userspace LVS director.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the director in the foreground (the config: "
                         f"{DEFAULT_CONFIG} unless named)")
    run.add_argument("config", nargs="?", default=DEFAULT_CONFIG,
                     help=f"the config file: pylvs TOML or a keepalived.conf (default: "
                     f"{DEFAULT_CONFIG})")
    run.add_argument("--log-format", choices=logs.FORMATS, default="auto",
                     help="standard error's log lines: text (a timestamp each), journal "
                     "(systemd's <N> priority prefix, no timestamp), json (one object a "
                     "line); auto: journal under systemd (JOURNAL_STREAM), else text")
    run.add_argument("--format", choices=("auto", "toml", "keepalived"), default="auto",
                     help="the config file's syntax (default: told by its content)")
    run.add_argument("--interface", help="keepalived.conf: the director's interface when no "
                     "vrrp_instance's virtual_ipaddress holds the services' addresses (default: "
                     "the one most real servers are routed through, said at start)")
    run.add_argument("--offload", choices=config_mod.OFFLOADS,
                     help="auto: established connections forwarded by an XDP program on "
                     "the links where it works, Python elsewhere (the config's default); xdp: "
                     "on every link; none: every frame in Python (default: the config's "
                     "[director] offload)")
    run.add_argument("--metrics", metavar="ADDR",
                     help="serve the Prometheus exposition on ADDRESS:PORT (127.0.0.1:9300, "
                     "say; default: the config's [director] metrics)")
    run.set_defaults(func=_cmd_run)
    _check_parser(sub)
    sub.add_parser("adm", help="ipvsadm syntax against the running director "
                   "([--socket PATH] ARGS...)", add_help=False)
    reload = sub.add_parser("reload", help="make the running director re-read its config file")
    status = sub.add_parser("status", help="the running director's health checks, VRRP state, "
                            "connections and counters")
    status.add_argument("--json", action="store_true", help="connections and counters as JSON")
    sysctl = sub.add_parser("sysctl", help="IPVS's knobs (net.ipv4.vs.*: the defences, "
                            "sloppy_tcp), as sysctl(8)")
    sysctl.add_argument("-w", "--write", action="store_true", help="write NAME=VALUE")
    sysctl.add_argument("setting", nargs="?", help="NAME or NAME=VALUE (net.ipv4.vs.NAME)")
    for command, func in ((reload, _cmd_reload), (status, _cmd_status),
                          (sysctl, _cmd_sysctl)):
        command.add_argument("--socket", help=SOCKET_HELP)
        command.set_defaults(func=func)
    _top_parser(sub)
    conf = sub.add_parser("config", help="write a pylvs config from ipvsadm -S or keepalived.conf")
    conf.add_argument("source", choices=["from-ipvsadm", "from-keepalived"])
    conf.add_argument("file", help="the file to read (- for standard input)")
    conf.add_argument("--interface", help="[director] interface to write (from-ipvsadm: "
                      "default eth0; from-keepalived: default the interface of the "
                      "vrrp_instance holding the services' addresses)")
    conf.set_defaults(func=_cmd_config)
    rs = sub.add_parser("realserver", help="configure this host as a real server")
    rs.add_argument("--mode", choices=["dr", "nat", "tun"], default="dr")
    rs.add_argument("--vip", required=True, help="the VIP, IPv4 or IPv6 (an IPv6 VIP needs "
                    "only its /128 on lo: there is no arp_ignore for IPv6)")
    rs.add_argument("--interface", help="interface for arp_ignore/arp_announce (default: all); "
                    "IPv6: the one --check looks at for DAD")
    rs.add_argument("--undo", action="store_true", help="undo the steps")
    rs.add_argument("--check", action="store_true",
                    help="change nothing: read this host's state and say of each step whether "
                    "it is right, why, and the fix (exit status 0 only when all are right)")
    rs.add_argument("--director", metavar="ADDR",
                    help="with --check --mode nat: the director's inside address, which the "
                    "default route must go through (of the VIP's family)")
    rs.add_argument("--tun-type", choices=["ipip", "gue", "gre"], default="ipip",
                    help="with --mode tun: what the director sends, as ipvsadm's --tun-type "
                    "(default ipip: IP-in-IP, ip6ip6, 4in6 or 6in4 by the families); gue and "
                    "gre are unwrapped in userspace where the kernel has no fou or ip_gre")
    rs.add_argument("--tun-port", type=int, metavar="PORT",
                    help="with --tun-type gue: the UDP port the director sends to (ipvsadm's "
                    "--tun-port)")
    rs.set_defaults(func=lab_commands.realserver)
    lab = sub.add_parser("lab", help="build a lab in network namespaces and demonstrate a mode")
    lab.add_argument("mode", nargs="?", default="dr",
                     choices=["dr", "nat", "tun", "mixed", "dualstack", "ecmp", "compare",
                              "down"],
                     help="the forwarding method; compare: the same request through DR, NAT "
                     "and TUN, captured, one page with the three paths side by side and the "
                     "director's rewrite of each in one table (--out DIR); dualstack: an IPv4 "
                     "and an IPv6 VIP in one config, TUN real servers of both families, each "
                     "VIP tunnelled to its own family on port 80 and to the other (4in6, 6in4) "
                     "on 8080; ecmp: N DR "
                     "directors behind a router's ECMP, announcing the VIP over BGP (BIRD); "
                     "down: remove a lab kept with --keep")
    lab.add_argument("name", nargs="?", help="down: the kept lab's prefix (default: every one)")
    lab.add_argument("--ipv6", action="store_true",
                     help="dr, nat, tun, mixed: the same lab in IPv6 (2001:db8:1::/64, the VIP "
                     "2001:db8:1::100, curl -6; --trace shows NDP and the hop limit); ecmp: "
                     "the VIP 2001:db8:10:100::1 announced as a /128 over BGP sessions over "
                     "IPv6")
    lab.add_argument("--tun-type", choices=["ipip", "gue", "gre"], default="ipip",
                     help="tun, mixed: how the director tunnels to the TUN real servers, as "
                     "ipvsadm's --tun-type (gue: UDP port 6080); they unwrap it in userspace")
    lab.add_argument("--servers", type=int, default=3)
    lab.add_argument("--directors", type=int, default=3,
                     help="ecmp: how many directors (1..8)")
    lab.add_argument("--no-bfd", dest="bfd", action="store_false",
                     help="ecmp: BGP without BFD (failure found by the hold timer, 3 s)")
    lab.add_argument("--requests", type=int, default=9)
    lab.add_argument("--scheduler", default="rr")
    lab.add_argument("--ha", action="store_true",
                     help="two directors (VRRP, connection sync); kill the master mid-download")
    lab.add_argument("--trace", nargs="?", const="", metavar="DIR",
                     help="capture every wire (pcaps in DIR, default a fresh one under /tmp) "
                     "and show the first connection hop by hop")
    lab.add_argument("--out", metavar="DIR",
                     help="compare: where the pcaps, the traces and compare.html go (made if "
                     "missing; default a fresh directory under /tmp)")
    lab.add_argument("--keep", action="store_true",
                     help="leave the lab running after the report (remove: pylvs lab down)")
    lab.add_argument("--explain", action="store_true",
                     help="explain what each part of the report shows")
    lab.add_argument("--mistake", metavar="NAME",
                     help="the real servers make a mistake the course notes warn about, and the "
                     "report shows what breaks and what `pylvs realserver --check` names: "
                     "dr: arp (no ARP sysctls), netmask (the VIP on lo as /24); "
                     "tun: rp_filter (strict); nat: route (no default route via the director); "
                     "dr --ha, the directors' own (the notes' lesson 4): no-cleanup (a director "
                     "killed without cleaning up keeps the VIP), vrrp-strict (the VIP stops "
                     "answering ping)")
    lab.set_defaults(func=lab_commands.lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["adm"]:
        return adm_client.adm(argv[1:])
    args = _parser().parse_args(argv)
    logs.setup(getattr(args, "log_format", "auto"), args.verbose)
    if args.command in TALK_TO_DIRECTOR and args.socket is None:
        args.socket = adm_client.socket_for(None, argv, args.command, note=args.command != "top")
        if args.socket is None:
            return ipvsadm.EXIT_DIRECTOR
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

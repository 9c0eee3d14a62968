"""`pylvs run | adm | reload | status | sysctl | top | config | realserver | lab`: the command
line.

`pylvs adm` checks its argv as ipvsadm does, then sends it to the running director; for a
listing without -n it first asks the director what the listing would name, and looks the names
up here (pylvs.shell.names), so the director's loop never waits on DNS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace

from pylvs.adm import config as config_mod
from pylvs.adm import ipvsadm
from pylvs.shell import logs
from pylvs.shell.messages import AdmLine, Reload, Request, Status, Sysctl

ENV_SOCKET = "PYLVS_SOCKET"
DEFAULT_CONFIG = "/etc/pylvs/pylvs.toml"
"""`pylvs run` without a file (docs/operating.md; examples/pylvs.toml is the one to copy)."""
log = logging.getLogger("pylvs")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.config == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
        log.error("no config file at %s, the default path (copy examples/pylvs.toml there, "
                  "or name one: pylvs run FILE)", DEFAULT_CONFIG, extra={"file": DEFAULT_CONFIG})
        return 2
    from pylvs.shell import config_file
    try:
        config, notes = config_file.load(args.config, args.format, args.interface or "")
    except config_mod.ConfigError as exc:
        for note in getattr(exc, "notes", []):
            log.warning("%s: %s", exc.source, note)
        log.error("bad config: %s", exc,
                  extra={"file": exc.source, "key": exc.key, "reason": exc.reason})
        return 2
    for note in notes:
        log.warning("%s: %s", args.config, note)
    if config.source_format == "keepalived" and os.environ.get(ENV_SOCKET):
        config.control_socket = os.environ[ENV_SOCKET]  # keepalived.conf has no place for it
    if args.offload:
        config.offload = args.offload
    if args.metrics:
        try:
            config_mod.split_address(args.metrics)
        except ValueError as exc:
            log.error("bad --metrics: %s", exc)
            return 2
        config.metrics = args.metrics
    from pylvs.shell import engine, workers
    try:
        return engine.run(workers.build(config))
    except (OSError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1


def _socket_path(argv: list[str]) -> tuple[str, list[str]] | None:
    socket_path = os.environ.get(ENV_SOCKET, config_mod.DEFAULT_CONTROL_SOCKET)
    if argv[:1] == ["--socket"]:
        if len(argv) < 2:
            return None
        socket_path, argv = argv[1], argv[2:]
    return socket_path, argv


def adm(argv: list[str]) -> int:
    found = _socket_path(argv)
    if found is None:
        print("pylvs adm: --socket needs a PATH", file=sys.stderr)
        return ipvsadm.EXIT_USAGE
    socket_path, argv = found
    try:
        command = ipvsadm.parse(argv)
    except ipvsadm.UsageError as exc:
        print(exc, file=sys.stderr)
        return ipvsadm.EXIT_USAGE
    if command.name == "help":
        sys.stdout.write(ipvsadm.USAGE)
        return 0
    if command.name == "version":
        print(ipvsadm.VERSION_LINE)
        return 0
    if command.name == "restore":
        return _restore(socket_path, sys.stdin)
    return _send(socket_path, AdmLine(argv), named=_names_itself(command))


def _names_itself(command: ipvsadm.Command) -> bool:
    """A listing of services or -S without -n: addresses and ports by name, as ipvsadm's."""
    options = command.options
    if "numeric" in options:
        return False
    return command.name == "save" or (
        command.name == "list" and not options & {"connection", "timeout", "daemon"})


def _send(socket_path: str, request: Request, named: bool = False, as_json: bool = False
          ) -> int:
    from pylvs.shell import control
    try:
        if named and isinstance(request, AdmLine):
            request = replace(request, names=_lookup(socket_path))
        reply = control.ask(socket_path, request)
    except control.DirectorNotRunning as exc:
        print(f"pylvs adm: {exc}", file=sys.stderr)
        return ipvsadm.EXIT_DIRECTOR
    except (OSError, ValueError) as exc:
        print(f"pylvs adm: cannot talk to the director on {socket_path}: {exc}", file=sys.stderr)
        return ipvsadm.EXIT_DIRECTOR
    if as_json:
        print(json.dumps(reply.data, indent=2, sort_keys=True))
        return reply.rc
    sys.stdout.write(reply.stdout)
    sys.stderr.write(reply.stderr)
    return reply.rc


def _lookup(socket_path: str) -> tuple[dict[str, str], dict[str, str]]:
    from pylvs.shell import control, names
    addresses, ports = control.endpoints(socket_path)
    return names.lookup(addresses, ports)


def _restore(socket_path: str, lines: Iterable[str]) -> int:
    """ipvsadm -R: one command per line (a leading `ipvsadm` is allowed); stops at an error."""
    from pylvs.adm.ruleset import command_lines
    for _, _, argv in command_lines(lines):
        try:
            ipvsadm.parse(argv)
        except ipvsadm.UsageError as exc:
            print(exc, file=sys.stderr)
            return ipvsadm.EXIT_USAGE
        rc = _send(socket_path, AdmLine(argv))
        if rc != 0:
            return rc
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    return _send(args.socket, Reload())


def _cmd_status(args: argparse.Namespace) -> int:
    return _send(args.socket, Status(), as_json=args.json)


def _cmd_sysctl(args: argparse.Namespace) -> int:
    """sysctl(8)'s way with /proc/sys/net/ipv4/vs/: NAME shows, -w NAME=VALUE writes."""
    if args.setting is None:
        return _send(args.socket, Sysctl())
    name, sep, value = args.setting.partition("=")
    if bool(sep) != args.write:
        print(f"pylvs sysctl: {'-w needs NAME=VALUE' if args.write else 'NAME=VALUE needs -w'}",
              file=sys.stderr)
        return 2
    if sep and not value.strip().isdigit():
        print(f'sysctl: setting key "{name}": Invalid argument', file=sys.stderr)
        return 255
    return _send(args.socket, Sysctl(name.strip(), int(value) if sep else None))


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


def _cmd_realserver(args: argparse.Namespace) -> int:
    if args.check:
        return _check_realserver(args)
    if args.director is not None:
        print("pylvs realserver: --director goes with --check", file=sys.stderr)
        return 2
    if args.mode == "nat":
        print("pylvs realserver: a NAT real server needs only its default route via the "
              "director's inside address (ip route replace default via DIP)", file=sys.stderr)
        return 2
    from pylvs.lab import realserver
    if args.mode == "tun":
        try:
            return realserver.run_tun(args.vip, args.undo, lambda line: print(line, flush=True))
        except (ValueError, OSError) as exc:
            print(f"pylvs realserver: {exc}", file=sys.stderr)
            return 1
    try:
        steps = realserver.configure_dr(args.vip, args.interface, undo=args.undo)
    except (ValueError, OSError) as exc:
        print(f"pylvs realserver: {exc}", file=sys.stderr)
        return 1
    for line in steps:
        print(line)
    return 0


def _check_realserver(args: argparse.Namespace) -> int:
    """--check: each step judged on this host's state; 0 only when all are right."""
    if args.undo:
        print("pylvs realserver: --check reads, --undo changes: one at a time", file=sys.stderr)
        return 2
    from pylvs.lab import realserver
    try:
        report, rc = realserver.check(args.mode, args.vip, args.interface, args.director)
    except ValueError as exc:
        print(f"pylvs realserver --check: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pylvs realserver --check: cannot read this host's state: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report)
    return rc


def _lab_ecmp(args: argparse.Namespace) -> int:
    from pylvs.lab import ecmp
    if args.ha or args.trace is not None or args.keep or args.explain or args.mistake:
        print("pylvs lab: ecmp takes --directors, --servers and --no-bfd only", file=sys.stderr)
        return 2
    if not shutil.which("bird"):
        print("pylvs lab: ecmp needs BIRD 2 (apt-get install bird2; ./scripts/install.sh "
              "installs it)", file=sys.stderr)
        return 2
    try:
        return ecmp.run(args.directors, args.servers, args.bfd)
    except ValueError as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
        return 2


def _cmd_lab(args: argparse.Namespace) -> int:
    import schedulers
    try:
        schedulers.get(args.scheduler)
    except schedulers.UnknownScheduler as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
        return 2
    if args.mistake is not None and (failed := _mistake_refused(args)):
        return failed
    if os.geteuid() != 0:
        print("pylvs lab: needs root to build network namespaces", file=sys.stderr)
        return 1
    from pylvs.lab import demo, failover
    if args.mode == "ecmp":
        return _lab_ecmp(args)
    if args.ha and (args.mode != "dr" or args.trace is not None or args.keep or args.explain):
        print("pylvs lab: --ha builds a DR lab, without --trace, --keep or --explain "
              "(pylvs lab dr --ha)",
              file=sys.stderr)
        return 2
    if args.trace is not None and not shutil.which("tcpdump"):
        print("pylvs lab: --trace needs tcpdump (apt-get install tcpdump)", file=sys.stderr)
        return 2
    if args.mode == "down":
        return _lab_down(args.name)
    if args.name is not None:
        print(f"pylvs lab: unexpected argument {args.name!r}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    trace_dir, fresh = _trace_dir(args.trace)
    try:
        if args.ha:
            return failover.run(servers=args.servers, scheduler=args.scheduler)
        return demo.run(args.mode, servers=args.servers, requests=args.requests,
                        scheduler=args.scheduler, trace_dir=trace_dir, keep=args.keep,
                        explain=args.explain, mistake=args.mistake)
    except KeyboardInterrupt:
        print("pylvs lab: interrupted; the lab was removed", file=sys.stderr)
        failed = 130
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"pylvs lab: {exc}; the lab was removed", file=sys.stderr)
        failed = 1
    except BaseException:
        if fresh and trace_dir is not None:
            shutil.rmtree(trace_dir, ignore_errors=True)
        raise
    if fresh and trace_dir is not None:
        shutil.rmtree(trace_dir, ignore_errors=True)  # half a trace in a directory of our own
    return failed


def _mistake_refused(args: argparse.Namespace) -> int:
    """--mistake NAME fits one mode, and not --ha: 2 with why, else 0."""
    from pylvs.lab import mistakes
    try:
        mistakes.validate(args.mode, args.mistake)
    except ValueError as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
        return 2
    if args.ha:
        print("pylvs lab: --mistake runs a lab of one director, without --ha", file=sys.stderr)
        return 2
    return 0


def _lab_down(prefix: str | None) -> int:
    """Remove the kept lab ``prefix``, or every kept lab."""
    from pylvs.lab import kept
    prefixes = [prefix] if prefix else kept.kept_labs()
    if not prefixes:
        print("pylvs lab down: no lab is kept on this host")
        return 0
    for name in prefixes:
        try:
            done = kept.down(name)
        except FileNotFoundError:
            print(f"pylvs lab down: no kept lab {name} (known: "
                  f"{', '.join(kept.kept_labs()) or 'none'})", file=sys.stderr)
            return 1
        print(f"removed the lab {name}: " + "; ".join(done))
    return 0


def _trace_dir(arg: str | None) -> tuple[str | None, bool]:
    """--trace DIR: that directory, made if missing; --trace alone: a fresh one under /tmp.
    Returns the directory and whether this run made it fresh."""
    if arg is None:
        return None, False
    if arg == "":
        import tempfile
        return tempfile.mkdtemp(prefix="pylvs-trace-", dir="/tmp"), True
    os.makedirs(arg, exist_ok=True)
    return os.path.abspath(arg), False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_top(args: argparse.Namespace) -> int:
    from pylvs.shell import top
    return top.run(args.socket, once=args.once, interval=args.interval)


def _top_parser(sub: argparse._SubParsersAction) -> None:
    """`pylvs top`: the live view (pylvs.shell.top)."""
    top = sub.add_parser("top", help="a live view of the services and real servers: rates, "
                         "connections, weights, health, drops")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    top.add_argument("--socket", default=os.environ.get(ENV_SOCKET,
                                                        config_mod.DEFAULT_CONTROL_SOCKET))
    top.set_defaults(func=_cmd_top)


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
                     "vrrp_instance's virtual_ipaddress holds the services' addresses")
    run.add_argument("--offload", choices=config_mod.OFFLOADS,
                     help="xdp: established connections forwarded by an XDP program; none: "
                     "every frame in Python (default: the config's [director] offload)")
    run.add_argument("--metrics", metavar="ADDR",
                     help="serve the Prometheus exposition on ADDRESS:PORT (127.0.0.1:9300, "
                     "say; default: the config's [director] metrics)")
    run.set_defaults(func=_cmd_run)
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
        command.add_argument("--socket", default=os.environ.get(
            ENV_SOCKET, config_mod.DEFAULT_CONTROL_SOCKET))
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
    rs.add_argument("--vip", required=True)
    rs.add_argument("--interface", help="interface for arp_ignore/arp_announce (default: all)")
    rs.add_argument("--undo", action="store_true", help="undo the steps")
    rs.add_argument("--check", action="store_true",
                    help="change nothing: read this host's state and say of each step whether "
                    "it is right, why, and the fix (exit status 0 only when all are right)")
    rs.add_argument("--director", metavar="ADDR",
                    help="with --check --mode nat: the director's inside address, which the "
                    "default route must go through")
    rs.set_defaults(func=_cmd_realserver)
    lab = sub.add_parser("lab", help="build a lab in network namespaces and demonstrate a mode")
    lab.add_argument("mode", nargs="?", default="dr",
                     choices=["dr", "nat", "tun", "mixed", "ecmp", "down"],
                     help="the forwarding method; ecmp: N DR directors behind a router's ECMP, "
                     "announcing the VIP over BGP (BIRD); down: remove a lab kept with --keep")
    lab.add_argument("name", nargs="?", help="down: the kept lab's prefix (default: every one)")
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
    lab.add_argument("--keep", action="store_true",
                     help="leave the lab running after the report (remove: pylvs lab down)")
    lab.add_argument("--explain", action="store_true",
                     help="explain what each part of the report shows")
    lab.add_argument("--mistake", metavar="NAME",
                     help="the real servers make a mistake the course notes warn about, and the "
                     "report shows what breaks and what `pylvs realserver --check` names: "
                     "dr: arp (no ARP sysctls), netmask (the VIP on lo as /24); "
                     "tun: rp_filter (strict); nat: route (no default route via the director)")
    lab.set_defaults(func=_cmd_lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["adm"]:
        return adm(argv[1:])
    args = _parser().parse_args(argv)
    logs.setup(getattr(args, "log_format", "auto"), args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""`pylvs realserver` and `pylvs lab`: what the command line's arguments ask of the labs and of a
real server, checked (what goes with what, root, the tools each needs) before anything is made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys


def realserver(args: argparse.Namespace) -> int:
    if args.check:
        return _check_realserver(args)
    if args.director is not None:
        print("pylvs realserver: --director goes with --check", file=sys.stderr)
        return 2
    if args.mode == "nat":
        six = "-6 " if ":" in args.vip else ""
        print(f"pylvs realserver: a NAT real server needs only its default route via the "
              f"director's inside address (ip {six}route replace default via DIP)",
              file=sys.stderr)
        return 2
    from pylvs.lab import realserver
    tun_type, tun_port = getattr(args, "tun_type", "ipip"), getattr(args, "tun_port", None)
    if args.mode != "tun" and (tun_type != "ipip" or tun_port is not None):
        print("pylvs realserver: --tun-type and --tun-port go with --mode tun", file=sys.stderr)
        return 2
    if args.mode == "tun":
        try:
            return realserver.run_tun(args.vip, args.undo, lambda line: print(line, flush=True),
                                      tun_type, tun_port)
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
        report, rc = realserver.check(args.mode, args.vip, args.interface, args.director,
                                      getattr(args, "tun_type", "ipip"),
                                      getattr(args, "tun_port", None))
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
        print("pylvs lab: ecmp takes --directors, --servers, --no-bfd and --ipv6 only",
              file=sys.stderr)
        return 2
    if not shutil.which("bird"):
        print("pylvs lab: ecmp needs BIRD 2 (apt-get install bird2; ./scripts/install.sh "
              "installs it)", file=sys.stderr)
        return 2
    try:
        return ecmp.run(args.directors, args.servers, args.bfd, 6 if args.ipv6 else 4)
    except ValueError as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
        return 2


def lab(args: argparse.Namespace) -> int:
    import schedulers
    try:
        schedulers.get(args.scheduler)
    except schedulers.UnknownScheduler as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
        return 2
    if failed := _family_refused(args):
        return failed
    if args.mistake is not None and (failed := _mistake_refused(args)):
        return failed
    if os.geteuid() != 0:
        print("pylvs lab: needs root to build network namespaces", file=sys.stderr)
        return 1
    from pylvs.lab import demo, failover
    if args.mode == "ecmp":
        return _lab_ecmp(args)
    if args.mode == "compare" or getattr(args, "out", None) is not None:
        from pylvs.lab import compare
        return compare.command(args)
    if args.ha and (args.mode != "dr" or args.keep or (args.mistake is None and (
            args.trace is not None or args.explain))):
        print("pylvs lab: --ha builds a DR lab, without --keep, and without --trace or "
              "--explain but for its --mistake labs (pylvs lab dr --ha [--mistake no-cleanup|"
              "vrrp-strict])",
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
    if args.tun_type != "ipip" and (args.mode not in ("tun", "mixed") or args.ha):
        print("pylvs lab: --tun-type goes with the tun and mixed labs (their TUN real servers)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    trace_dir, fresh = _trace_dir(args.trace)
    try:
        if args.ha:
            return failover.run(servers=args.servers, scheduler=args.scheduler,
                                family=6 if args.ipv6 else 4, mistake=args.mistake,
                                trace_dir=trace_dir, explain=args.explain)
        return demo.run(args.mode, servers=args.servers, requests=args.requests,
                        scheduler=args.scheduler, trace_dir=trace_dir, keep=args.keep,
                        explain=args.explain, mistake=args.mistake,
                        family=6 if args.ipv6 else 4, tun_type=args.tun_type)
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


def _family_refused(args: argparse.Namespace) -> int:
    """--ipv6 fits dr, nat, tun, mixed and ecmp (dr with --ha too), without --mistake: 2 with
    why, else 0."""
    if not args.ipv6:
        return 0
    if args.mode in ("down", "dualstack"):
        why = ("has both families already" if args.mode == "dualstack"
               else "removes a kept lab, any")
        print(f"pylvs lab: --ipv6 goes with dr, nat, tun, mixed and ecmp ({args.mode} {why})",
              file=sys.stderr)
        return 2
    if args.mistake:
        print("pylvs lab: the --mistake labs are IPv4's: without --ipv6", file=sys.stderr)
        return 2
    return 0


def _mistake_refused(args: argparse.Namespace) -> int:
    """--mistake NAME fits one mode, with --ha (the directors' mistakes) or without (the real
    servers'): 2 with why, else 0."""
    from pylvs.lab import mistakes
    try:
        mistakes.validate(args.mode, args.mistake, ha=args.ha)
    except ValueError as exc:
        print(f"pylvs lab: {exc}", file=sys.stderr)
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

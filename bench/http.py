"""HTTP through the DR lab: wrk against real nginx servers, three ways, in the same run.

    python3 -m bench.http [--seconds 5] [--connections 32] [--json PATH]

- direct: wrk straight to one real server (what one server gives);
- pylvs DR: wrk to the VIP, pylvs balancing 3 real servers, answers returning directly;
- nginx stream: an nginx `stream` proxy in the director's namespace (a terminating L4 proxy, both
  directions through it) in front of the same 3 servers;
- then pylvs DR with `offload = "xdp"` (the lab made ready for it: checksum offload off on its
  hosts, so direct is measured again that way).

Small responses (a name) and 1 MB ones; requests/s and Gbit/s. Needs nginx with its stream
module and wrk (`scripts/install.sh --bench`). Everything runs in the lab's namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import tempfile
from datetime import date

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import Lab, lab_config

BIG = 1024 * 1024
PROXY_PORT = 8080
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def nginx_conf(root: str, tmp: str, body: str, module: str = "") -> str:
    return (f"{module}user root;\nworker_processes 1;\ndaemon off;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log;\nevents {{ worker_connections 4096; }}\n{body}\n")


def server_conf(root: str, tmp: str) -> str:
    return nginx_conf(root, tmp, (
        "http {\n  access_log off;\n  sendfile on;\n"
        f"  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};\n"
        f"  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n"
        f"  server {{ listen 80; root {root}; }}\n}}"))


def proxy_conf(servers: list[str], tmp: str) -> str:
    upstream = "".join(f"    server {ip}:80;\n" for ip in servers)
    return nginx_conf("", tmp, (
        f"stream {{\n  upstream real {{\n{upstream}  }}\n"
        f"  server {{ listen {PROXY_PORT}; proxy_pass real; }}\n}}"),
        module=f"load_module {STREAM_MODULE};\n")


def wrk(lab: Lab, url: str, seconds: float, connections: int) -> tuple[float, float]:
    """(requests/s, Gbit/s) from wrk's summary."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]
    out = lab.run_in(lab.client_ns, argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()
    scale = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[unit]
    return rps, float(value) * scale * 8 / 1e9


def run_director(lab: Lab, offload: str, targets: dict[str, str],
                 results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    director = DirectorProcess(lab, lab_config(lab, "rr", offload=offload))
    try:
        for name, base in targets.items():
            small = wrk(lab, f"{base}/small", args.seconds, args.connections)
            big = wrk(lab, f"{base}/big", args.seconds, args.connections)
            results[name] = {"small_rps": small[0], "big_rps": big[0], "big_gbit": big[1]}
    finally:
        director.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.http builds network namespaces: run it as root")
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, dict[str, float]] = {}
    with Lab(servers=3) as lab, tempfile.TemporaryDirectory(prefix="pylvs-http-") as tmp:
        lab.setup()
        lab.configure_real_servers()
        for ns, name in zip(lab.server_ns, lab.server_names, strict=True):
            root = os.path.join(tmp, name)
            os.makedirs(root)
            with open(os.path.join(root, "small"), "w") as fh:
                fh.write(name + "\n")
            with open(os.path.join(root, "big"), "wb") as fh:
                fh.write(os.urandom(BIG))
            conf = os.path.join(root, "nginx.conf")
            with open(conf, "w") as fh:
                fh.write(server_conf(root, root))
            lab.processes.append(lab.popen_in(ns, ["nginx", "-c", conf]))
        proxy = os.path.join(tmp, "proxy.conf")
        with open(proxy, "w") as fh:
            fh.write(proxy_conf(lab.server_ips, tmp))
        lab.processes.append(lab.popen_in(lab.director_ns, ["nginx", "-c", proxy]))
        targets = {"direct (one server)": f"http://{lab.server_ips[0]}",
                   "pylvs DR (3 servers)": f"http://{lab.vip}",
                   "nginx stream proxy (3 servers)": f"http://{lab.director_ip}:{PROXY_PORT}"}
        run_director(lab, "none", targets, results, args)
        lab.ready_for_xdp()  # checksum offload off on the hosts: direct again, for reference
        run_director(lab, "xdp", {"direct, tx checksum off": targets["direct (one server)"],
                                  "pylvs DR, offload xdp": targets["pylvs DR (3 servers)"]},
                     results, args)
    print(f"{'path':<32}{'small req/s':>13}{'1 MB req/s':>12}{'1 MB Gbit/s':>13}")
    for name, row in results.items():
        print(f"{name:<32}{row['small_rps']:>13,.0f}{row['big_rps']:>12,.0f}"
              f"{row['big_gbit']:>13.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "seconds": args.seconds,
                       "connections": args.connections, "results": results}, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

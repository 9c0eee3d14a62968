"""Firewall-mark services end to end (issue 24): a real `pylvs run` whose config has a
``fwmark = 1`` service and ``[[mark]]`` rules (one written as fields, one as the iptables line
the ipvsadm man page would use), real curl from several client addresses, real Python servers
(HTTP, and HTTPS with a certificate `openssl` made), in both offload modes.

- DR with persistence: each client stays on one real server across both ports (the fwmark
  template <IP, client, 0, mark 1, 0> covers every port the rules name, as IPVS's does), both
  servers are used, and -Lnc shows the template as ``IP ... 0.0.0.1:0``.
- NAT whose real servers have no port, a rule of a port range, two workers: each answer comes
  from the port the client asked.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from pylvs.lab.demo import DirectorProcess
from pylvs.lab.topology import Lab

OFFLOADS = ["none", "xdp"]
"""The data path both ways: every frame in Python, or established flows in XDP."""
CLIENTS = [f"192.168.1.{n}" for n in range(21, 29)]
"""Client source addresses beside the lab client's own .5."""

SERVER = """
import http.server, ssl, sys, threading
name, cert, key, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"{name} {self.connection.getsockname()[1]}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

for spec in specs:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(spec.rstrip("s"))), Handler)
    if spec.endswith("s"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving", flush=True)
threading.Event().wait()
"""
"""A real server answering "NAME PORT" (the port the connection reached) on each port given:
"443s" is HTTPS."""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate and its key, made by openssl."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = str(where / "cert.pem"), str(where / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=pylvs-fwmark"], check=True,
                   capture_output=True)
    return cert, key


class FwmarkLab:
    """A lab of ``mode`` with two real servers serving ``specs``, extra client addresses, and a
    director run with ``services`` and ``marks`` (TOML)."""

    def __init__(self, mode: str, offload: str, certificate: tuple[str, str],
                 specs: list[str], services: str, marks: str, workers: int = 1) -> None:
        self.lab = Lab(servers=2, mode=mode)
        self.director: DirectorProcess | None = None
        try:
            self.lab.setup()
            self.lab.configure_real_servers()
            for ns, name in zip(self.lab.server_ns, self.lab.server_names, strict=True):
                self._serve(ns, name, certificate, specs)
            for address in CLIENTS:
                self.lab.run_in(self.lab.client_ns, ["ip", "addr", "add", f"{address}/24",
                                                     "dev", "eth0"], check=True)
            if offload == "xdp":
                self.lab.ready_for_xdp()
            self.director = DirectorProcess(self.lab, self._config(offload, workers) + services
                                            + marks)
        except BaseException:
            self.close()
            raise

    def _serve(self, ns: str, name: str, certificate: tuple[str, str], specs: list[str]) -> None:
        proc = self.lab.popen_in(ns, [sys.executable, "-c", SERVER, name, *certificate, *specs],
                                 stdout=subprocess.PIPE, text=True)
        self.lab.processes.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"

    def _config(self, offload: str, workers: int) -> str:
        lab = self.lab
        return "\n".join(["[director]", f'interface = "{lab.director_if}"',
                          f'inside_interface = "{lab.director_inside_if}"',
                          f'control_socket = "{lab.control_socket}"',
                          f'offload = "{offload}"', f"workers = {workers}", ""]) + "\n"

    def get(self, source: str, url: str) -> str:
        """``url`` from the client address ``source``: the answer, "NAME PORT"."""
        done = self.lab.run_in(self.lab.client_ns, [
            "curl", "-sS", "-k", "--noproxy", "*", "--max-time", "10", "--interface", source,
            url], capture_output=True, text=True)
        assert done.returncode == 0, f"{url} from {source}: {done.stderr}\n" + (
            self.director.output() if self.director is not None else "")
        return done.stdout.strip()

    def close(self) -> None:
        try:
            if self.director is not None:
                self.director.stop()
        finally:
            self.lab.close()


def _servers(*addresses: str) -> str:
    """Real servers as TOML, without a port: the packet's is kept (IPVS's port 0)."""
    return "".join(f'\n  [[virtual_server.real_server]]\n  address = "{address}"\n'
                   for address in addresses)


DR_SERVICE = """
[[virtual_server]]
fwmark = 1
scheduler = "rr"
persistence_timeout = 300
forward = "dr"
"""

DR_MARKS = """
[[mark]]
destination = "192.168.1.100/32"
protocol = "tcp"
ports = [80]
mark = 1

[[mark]]
"""
IPTABLES = ("iptables -A PREROUTING -t mangle -d 192.168.1.100/32 -p tcp --dport 443 "
            "-j MARK --set-mark 1")
"""The ipvsadm(8) man page's way to mark, copied into the config as it is."""
DR_MARKS += f'iptables = "{IPTABLES}"\n'


def _assert_taken(fw: FwmarkLab, offload: str, rules: list[str]) -> None:
    """The director holds the VIP the mark rules name, steals what they name and filters its
    sockets by them; with offload = "xdp", its fast path is on."""
    lab = fw.lab
    ruleset = lab.run_in(lab.director_ns, ["nft", "list", "ruleset"], capture_output=True,
                         text=True, check=True).stdout
    assert all(rule in ruleset for rule in rules), ruleset
    held = lab.run_in(lab.director_ns, ["ip", "-4", "addr", "show", "dev", lab.director_if],
                      capture_output=True, text=True, check=True).stdout
    assert f" {lab.vip}/" in held, held
    assert fw.director is not None
    said = fw.director.output()
    assert ("XDP fast path on" in said) == (offload == "xdp")
    assert "no socket filter" not in said and "Traceback" not in said, said


@pytest.fixture
def make_fwmark_lab(certificate):
    made: list[FwmarkLab] = []

    def make(mode: str, offload: str, specs: list[str], services: str, marks: str,
             workers: int = 1) -> FwmarkLab:
        made.append(FwmarkLab(mode, offload, certificate, specs, services, marks, workers))
        return made[-1]

    yield make
    for lab in made:
        lab.close()


@pytest.mark.parametrize("offload", OFFLOADS)
def test_persistence_keeps_each_client_on_one_server_across_http_and_https(make_fwmark_lab,
                                                                          offload):
    fw = make_fwmark_lab("dr", offload, ["80", "443s"],
                         DR_SERVICE + _servers("192.168.1.11", "192.168.1.12"), DR_MARKS)
    vip = fw.lab.vip
    _assert_taken(fw, offload, [f"ip daddr {vip} tcp dport 80 drop",
                                f"ip daddr {vip} tcp dport 443 drop"])
    chosen: dict[str, str] = {}
    for source in CLIENTS:
        answers = [fw.get(source, url) for url in (f"http://{vip}/", f"https://{vip}/",
                                                   f"http://{vip}/", f"https://{vip}/")]
        names = {answer.split()[0] for answer in answers}
        assert len(names) == 1, (source, answers)  # one server for both ports
        assert [answer.split()[1] for answer in answers] == ["80", "443", "80", "443"]
        chosen[source] = names.pop()
    assert set(chosen.values()) == {"rs1", "rs2"}, chosen
    assert fw.director is not None
    rows = [line.split() for line in fw.director.adm("-Lnc").splitlines()[2:]]
    templates = [row for row in rows if row[0] == "IP"]
    address = dict(zip(fw.lab.server_names, fw.lab.server_ips, strict=True))
    assert {(row[3].rsplit(":", 1)[0], row[4], row[5].rsplit(":", 1)[0]) for row in templates} \
        == {(source, "0.0.0.1:0", address[chosen[source]]) for source in CLIENTS}, rows
    assert all(row[3].endswith(":0") and row[5].endswith(":0") for row in templates)
    virtuals = Counter(row[4] for row in rows if row[0] == "TCP")
    assert virtuals == {f"{vip}:80": 2 * len(CLIENTS), f"{vip}:443": 2 * len(CLIENTS)}, rows


NAT_SERVICE = """
[[virtual_server]]
fwmark = 2
scheduler = "rr"
forward = "nat"
"""

NAT_MARKS = """
[[mark]]
destination = "192.168.1.100"
protocol = "tcp"
ports = [80, "8000-8099"]
mark = 2
"""


@pytest.mark.parametrize("offload", OFFLOADS)
def test_nat_servers_of_port_zero_answer_from_the_port_asked(make_fwmark_lab, offload):
    """Two workers: the fanout program sends a rule's port range, and its replies, to one."""
    fw = make_fwmark_lab("nat", offload, ["80", "8080"],
                         NAT_SERVICE + _servers("10.0.0.11", "10.0.0.12"), NAT_MARKS, workers=2)
    vip = fw.lab.vip
    _assert_taken(fw, offload, [f"ip daddr {vip} tcp dport 8000-8099 drop",
                                "ip saddr 10.0.0.12 ip daddr != 10.0.0.1 tcp sport 8000-8099 drop"])
    answers = [fw.get(source, f"http://{vip}:{port}/") for source in CLIENTS[:4]
               for port in (80, 8080)]
    assert [answer.split()[1] for answer in answers] == ["80", "8080"] * 4
    assert {answer.split()[0] for answer in answers} == {"rs1", "rs2"}  # rr in each worker
    assert fw.director is not None
    rows = [line.split() for line in fw.director.adm("-Lnc").splitlines()[2:]]
    assert {(row[4].rsplit(":", 1)[1], row[5].rsplit(":", 1)[1]) for row in rows} == {
        ("80", "80"), ("8080", "8080")}, rows

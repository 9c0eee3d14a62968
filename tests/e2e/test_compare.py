"""`pylvs lab compare` as a user runs it: the pcaps it leaves, read here with scapy apart from
the trace's own dissector, show what the director did to the client's SYN in each method (DR:
the MACs and the TTL; NAT: the destination address; TUN: a new outer header, the inner packet
as it came but for its TTL), and the page's table says the same. Needs root (tests/e2e's
conftest skips the module otherwise, saying why)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from tests.helpers.labs import running_lab

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None,
                                reason="pylvs lab compare needs tcpdump (apt-get install tcpdump)")

METHODS = ("dr", "nat", "tun")
GUE_PORT = 6080


def run_compare(directory: Path, *argv: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", "compare", *argv, "--out",
                             str(directory)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", result.stdout, re.M).group(1)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns  # the lab went; the files stay
    assert f"compare written to {directory}: compare.html" in result.stdout
    return result.stdout


class Page(HTMLParser):
    """compare.html's table cells (their data-*) and the diagram of each method's section."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict[str, str]] = {}
        self.diagrams: list[str] = []
        self.method = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "path":
            self.method = a["data-method"]
        elif tag == "svg" and "sequence" in (a.get("class") or ""):
            self.diagrams.append(self.method)
        elif tag == "td" and "data-field" in a:
            self.cells[(a["data-method"], a["data-packet"], a["data-field"])] = a


def read_page(directory: Path) -> Page:
    page = Page()
    page.feed((directory / "compare.html").read_text())
    return page


def layer3(frame):
    return frame[IP] if IP in frame else frame[IPv6]


def hop_limit(ip) -> int:
    return ip.ttl if isinstance(ip, IP) else ip.hlim


def inner(frame):
    """The packet a TUN director wrapped: past IP-in-IP (ip6ip6), or past GUE's UDP and its
    4-byte header."""
    outer = layer3(frame)
    if UDP in outer and outer[UDP].dport == GUE_PORT:
        data = bytes(outer[UDP].payload)[4:]
        return IP(data) if data[0] >> 4 == 4 else IPv6(data)
    return outer.payload


def tcp_of(frame):
    """The TCP segment of a frame, inside GUE too (scapy stops at UDP 6080); None without."""
    if IP not in frame and IPv6 not in frame:
        return None
    if UDP in layer3(frame) and layer3(frame)[UDP].dport == GUE_PORT:
        return inner(frame)[TCP] if TCP in inner(frame) else None
    return frame[TCP] if TCP in frame else None


def copies(directory: Path, manifest: dict, packet: str) -> tuple:
    """The director's copies of ``packet`` (SYN, SYN-ACK) of the method's connection: the one
    it took and the one it sent on (pcaps of its wires), or None when it never saw it."""
    port = int(manifest["connection"]["client"].rsplit(":", 1)[1])
    director = manifest["hosts"]["director"]["interfaces"]
    flags = "S" if packet == "SYN" else "SA"
    taken = sent = None
    for ifname, mac in director.items():
        path = directory / f"director-{ifname}.pcap"
        for frame in (rdpcap(str(path)) if path.exists() else []):
            segment = tcp_of(frame)
            if segment is None or segment.flags != flags or port not in (segment.sport,
                                                                         segment.dport):
                continue
            if frame[Ether].src == mac:
                sent = sent or frame
            else:
                taken = taken or frame
    return taken, sent


def from_pcaps(before, after) -> dict[str, tuple[str, str]]:
    """Each of the table's fields of the two copies, as scapy reads them (inner header)."""
    a, b = layer3(before), inner(after) if "outer" in tunnelled(after) else layer3(after)
    return {"eth.src": (before[Ether].src, after[Ether].src),
            "eth.dst": (before[Ether].dst, after[Ether].dst),
            "ip.src": (a.src, b.src), "ip.dst": (a.dst, b.dst),
            "tcp.sport": (str(a[TCP].sport), str(b[TCP].sport)),
            "tcp.dport": (str(a[TCP].dport), str(b[TCP].dport)),
            "ttl": (str(hop_limit(a)), str(hop_limit(b)))}


def tunnelled(frame) -> str:
    outer = layer3(frame)
    proto = outer.proto if isinstance(outer, IP) else outer.nh
    return "outer" if proto in (4, 41) or (UDP in outer and outer[UDP].dport == GUE_PORT) \
        else ""


def same_apart_from_ttl(a, b) -> None:
    """Two IP packets alike but for the TTL (hop limit), one less, and the checksums."""
    assert hop_limit(b) == hop_limit(a) - 1
    for name in ("src", "dst", "id", "tos", "flags", "frag", "proto", "len") if isinstance(
            a, IP) else ("src", "dst", "fl", "tc", "nh", "plen"):
        assert getattr(a, name) == getattr(b, name), name
    ta, tb = a[TCP], b[TCP]
    assert (ta.sport, ta.dport, ta.seq, ta.ack, ta.flags, ta.window, ta.options,
            bytes(ta.payload)) == (tb.sport, tb.dport, tb.seq, tb.ack, tb.flags, tb.window,
                                   tb.options, bytes(tb.payload))


def check_syn(method: str, taken, sent, manifest: dict) -> set[str]:
    """What the pcaps show the director did to the SYN; returns the fields it changed."""
    rs = manifest["connection"]["real_server"].rsplit(":", 1)[0].strip("[]")
    vip = manifest["connection"]["vip"].rsplit(":", 1)[0].strip("[]")
    assert taken[Ether].src != sent[Ether].src and taken[Ether].dst != sent[Ether].dst
    if method == "dr":  # the MACs, and the TTL as IPVS's DR does (ip_vs_xmit's decrement)
        same_apart_from_ttl(layer3(taken), layer3(sent))
        assert sent[Ether].dst in manifest["hosts"]["rs1"]["mac"]
    elif method == "nat":
        a, b = layer3(taken), layer3(sent)
        assert (a.dst, b.dst) == (vip, rs) and a.src == b.src
        assert b[TCP].dport == int(manifest["connection"]["real_server"].rsplit(":", 1)[1])
        assert (a[TCP].seq, a[TCP].flags, hop_limit(b)) == (b[TCP].seq, b[TCP].flags,
                                                            hop_limit(a) - 1)
    else:  # a new outer header to the real server; inside, the SYN as it came, TTL − 1
        assert tunnelled(sent) and layer3(sent).dst == rs
        own = {a.split("/")[0] for a in manifest["hosts"]["director"]["ip"]} - {vip}
        assert layer3(sent).src in own  # the director's own address, not the VIP
        same_apart_from_ttl(layer3(taken), inner(sent))
    fields = from_pcaps(taken, sent)
    changed = {name for name, (a, b) in fields.items() if a != b}
    return changed | ({"outer"} if tunnelled(sent) else set())


def check_table(page: Page, method: str, packet: str, taken, sent) -> set[str]:
    """The page's cells for the director's copies agree with the pcaps; returns the fields
    the page marks changed."""
    cells = {field: td for (m, p, field), td in page.cells.items()
             if (m, p) == (method, packet)}
    ttl = "ip.ttl" if "ip.ttl" in cells else "ip.hlim"
    for name, (before, after) in from_pcaps(taken, sent).items():
        td = cells[ttl if name == "ttl" else name]
        assert (td["data-before"], td["data-after"]) == (before, after), (method, name, td)
    outer = cells["outer"]
    if tunnelled(sent):
        assert outer["data-before"] == "none" and outer["data-changed"] == "true"
        assert f"outer {layer3(sent).src} → {layer3(sent).dst} " in outer["data-after"]
    else:
        assert outer["data-after"] == "none" and outer["data-changed"] == "false"
    assert cells["other"]["data-changed"] == "false"
    marked = {f for f, td in cells.items() if td.get("data-changed") == "true"}
    return {"ttl" if f == ttl else f for f in marked}


@pytest.mark.parametrize("argv", [(), ("--ipv6", "--tun-type", "gue")],
                         ids=["ipv4-ipip", "ipv6-gue"])
def test_the_page_says_what_the_pcaps_show_the_director_did(tmp_path, argv):
    out = run_compare(tmp_path, *argv)
    assert (tmp_path / "compare.txt").read_text() in out
    page = read_page(tmp_path)
    assert page.diagrams == list(METHODS)
    for method in METHODS:
        manifest = json.loads((tmp_path / f"trace-{method}.json").read_text())
        assert manifest["mode"] == method
        taken, sent = copies(tmp_path, manifest, "SYN")
        assert taken is not None and sent is not None, f"{method}: no SYN through the director"
        changed = check_syn(method, taken, sent, manifest)
        assert check_table(page, method, "SYN", taken, sent) == changed
        assert {"dr": {"eth.src", "eth.dst", "ttl"},
                "nat": {"eth.src", "eth.dst", "ip.dst", "ttl"},
                "tun": {"eth.src", "eth.dst", "ttl", "outer"}}[method] == changed
        taken, sent = copies(tmp_path, manifest, "SYN-ACK")
        if method == "nat":  # back through the director: the source RIP becomes the VIP
            assert check_table(page, method, "SYN-ACK", taken, sent) == {
                "eth.src", "eth.dst", "ip.src", "ttl"}
        else:  # the director never sees the answer, and the page says so
            assert taken is None and sent is None
            assert all("absent" in td["class"] for (m, p, _), td in page.cells.items()
                       if (m, p) == (method, "SYN-ACK"))


def test_headless_chromium_draws_the_three_diagrams(tmp_path):
    run_compare(tmp_path)
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("needs chromium (scripts/install.sh --test)")
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={profile}", "--dump-dom",
                          f"file://{tmp_path / 'compare.html'}"],
                         capture_output=True, text=True, timeout=60).stdout
    parsed = Page()
    parsed.feed(dom)
    assert parsed.diagrams == list(METHODS)
    assert dom.count('class="arrow"') >= 3 * 4  # each diagram: SYN, SYN-ACK, request, response
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--user-data-dir={profile}", "--window-size=1600,1800",
                    f"--screenshot={shot}", f"file://{tmp_path / 'compare.html'}"],
                   capture_output=True, timeout=60, check=True)
    assert shot.stat().st_size > 50_000


def test_interrupted_compare_leaves_no_lab_no_tcpdump_and_no_fresh_directory():
    def fresh_dirs() -> set[str]:
        return {d for d in os.listdir("/tmp") if d.startswith("pylvs-compare-")}

    before = fresh_dirs()
    proc, seen = running_lab("compare", until=1)
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", seen, re.M).group(1)
    (fresh,) = fresh_dirs() - before
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; the lab was removed" in err
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns
    processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert f"/tmp/{fresh}/" not in processes
    assert fresh_dirs() == before

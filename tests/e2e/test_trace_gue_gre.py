"""`pylvs lab tun --tun-type gue|gre --trace DIR` as a user runs it (issue 24): the printed
trace names the outer UDP and GUE header (port 6080) or the GRE header on the director → real
server hop, and what it says agrees with the real server's pcap, read here with scapy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

GUE_PORT = 6080


def run_trace(tun_type: str, family: int, directory: str) -> tuple[str, dict]:
    argv = [sys.executable, "-m", "pylvs", "lab", "tun", "--tun-type", tun_type, "--servers",
            "2", "--requests", "2", "--trace", directory] + (["--ipv6"] if family == 6 else [])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", result.stdout, re.M).group(1)
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout
    with open(os.path.join(directory, "trace.json")) as fh:
        return result.stdout, json.load(fh)


def syn_block(out: str) -> list[str]:
    """The printed trace's SYN: its wire lines and what it says (a router's ARP may split it
    into "SYN" and "SYN (continued)")."""
    lines = out[out.index("\ntrace (tun"):].splitlines()
    block: list[str] = []
    for start, line in enumerate(lines):
        if line in ("SYN", "SYN (continued)"):
            block += lines[start + 1:lines.index("", start)]
    return block


@pytest.mark.parametrize(("tun_type", "family"), [("gue", 4), ("gre", 4), ("gue", 6),
                                                  ("gre", 6)])
def test_the_trace_names_the_gue_or_gre_header_hop_by_hop(tun_type, family, tmp_path):
    out, manifest = run_trace(tun_type, family, str(tmp_path))
    assert (tmp_path / "trace.txt").read_text() in out
    connection = manifest["connection"]
    rs = connection["real_server_host"]
    rip = connection["real_server"].rsplit(":", 1)[0].strip("[]")
    inner_proto = 4 if family == 4 else 41
    block = syn_block(out)
    wires = [line for line in block if " ms  " in line]
    says = [line.removeprefix("  => ") for line in block if line.startswith("  => ")]
    director_sends = next(line for line in wires if " director eth0 sends " in line)
    rs_gets = next(line for line in wires if f" {rs} eth0 " in line and " gets " in line)
    proto = "proto" if family == 4 else "nh"
    if tun_type == "gue":
        assert re.search(rf"{proto} 17, udp \*\d+ → \*{GUE_PORT}, \*gue proto {inner_proto}\]",
                         director_sends), director_sends
        assert re.search(rf"{proto} 17, udp \d+ → {GUE_PORT}, gue proto {inner_proto}\]",
                         rs_gets), rs_gets
        assert re.search(rf"^the director wrapped the packet in a new IPv{family} header "
                         rf"\S+ → {re.escape(rip)}, UDP \d+ → {GUE_PORT} \(no checksum\) and "
                         rf"a GUE header \(protocol {inner_proto}\) and sent it to router",
                         says[0]), says[0]
        assert any(say.startswith(f"{rs} unwraps the GUE packet (UDP to its port {GUE_PORT}, "
                                  f"the GUE header of protocol {inner_proto} off)")
                   for say in says), says
    else:
        ether = "0x0800" if family == 4 else "0x86DD"
        assert f"{proto} 47, *gre proto {ether}]" in director_sends, director_sends
        assert f"{proto} 47, gre proto {ether}]" in rs_gets, rs_gets
        what = "IP protocol" if family == 4 else "next header"
        assert re.search(rf"^the director wrapped the packet in a new IPv{family} header \S+ → "
                         rf"{re.escape(rip)} \({what} 47\) and a GRE header \(protocol "
                         rf"{ether}\) and sent it to router", says[0]), says[0]
        assert any(say.startswith(f"{rs} unwraps the GRE packet (the GRE header of protocol "
                                  f"{ether} off)") for say in says), says
    # the trace's fields against the real server's own capture
    syn = next(h for h in manifest["hops"] if h["packet"] == "SYN")
    at_rs = syn["wires"][-1]
    assert (at_rs["host"], at_rs["direction"]) == (rs, "received")
    f = at_rs["fields"]
    assert f["outer.dst"] == rip and f["ip.dst"] == connection["vip"].rsplit(":", 1)[0].strip(
        "[]")
    outer_ip = IP if family == 4 else IPv6
    frames = [p for p in rdpcap(str(tmp_path / at_rs["wire"]))
              if outer_ip in p and abs(float(p.time) - at_rs["time"]) < 1e-6]
    assert len(frames) == 1
    outer = frames[0][outer_ip]
    if tun_type == "gue":
        assert f["outer.proto"] == 17 and f["gue.proto"] == inner_proto
        assert (frames[0][UDP].sport, frames[0][UDP].dport) == (f["outer.udp.sport"], GUE_PORT)
        assert bytes(frames[0][UDP].payload)[:4] == bytes((0, inner_proto, 0, 0))
    else:
        assert f["outer.proto"] == 47 and f["gre.csum"] is False
        assert (outer.proto if family == 4 else outer.nh) == 47
        assert bytes(outer.payload)[:4] == (b"\x00\x00\x08\x00" if family == 4 else
                                            b"\x00\x00\x86\xdd")
    page = (tmp_path / "trace.svg").read_text()
    label = f"SYN in GUE (UDP {GUE_PORT})" if tun_type == "gue" else "SYN in GRE"
    assert f"<title>{label} [" in page

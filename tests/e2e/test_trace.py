"""`pylvs lab MODE --trace DIR` as a user runs it: real captures on every wire, read back
here with tcpdump, tshark and scapy, independently of the trace's own dissector."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from tests.helpers.labs import running_lab


def run_trace(mode: str, directory: str) -> tuple[str, dict]:
    result = subprocess.run([sys.executable, "-m", "pylvs", "lab", mode, "--servers", "2",
                             "--requests", "2", "--trace", directory],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", result.stdout, re.M).group(1)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns  # the lab went; the trace stays
    with open(os.path.join(directory, "trace.json")) as fh:
        return result.stdout, json.load(fh)


def syns(path: str, client: str) -> list:
    """The traced connection's SYN as it is in one pcap (inner header for TUN)."""
    port = int(client.split(":")[1])
    return [f for f in rdpcap(path) if TCP in f and f[TCP].flags == "S"
            and f[TCP].sport == port]


def server_wire(manifest: dict) -> str:
    host = manifest["connection"]["real_server_host"]
    return next(c["file"] for c in manifest["captures"] if c["host"] == host)


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_trace_pcaps_show_what_each_method_rewrites(mode, tmp_path):
    out, manifest = run_trace(mode, str(tmp_path))
    assert (tmp_path / "trace.txt").read_text() in out
    connection = manifest["connection"]
    rs_host, (rip, rport) = connection["real_server_host"], connection["real_server"].split(":")
    rs_mac = manifest["hosts"][rs_host]["mac"][0]
    vip = connection["vip"].split(":")[0]
    for capture in manifest["captures"]:
        path = str(tmp_path / capture["file"])
        dump = subprocess.run(["tcpdump", "-r", path, "-n", "-c", "1"], capture_output=True,
                              text=True)
        assert dump.returncode == 0 and "link-type EN10MB" in dump.stderr, dump.stderr
        if shutil.which("tshark"):
            assert subprocess.run(["tshark", "-r", path, "-c", "1"], capture_output=True
                                  ).returncode == 0
    at_rs = syns(str(tmp_path / server_wire(manifest)), connection["client"])
    assert at_rs, "the SYN never reached the real server's wire"
    frame = at_rs[0]
    assert frame[Ether].dst == rs_mac
    if mode == "dr":
        assert frame[IP].dst == vip and frame[IP].proto == 6
    elif mode == "nat":
        assert (frame[IP].dst, frame[TCP].dport) == (rip, int(rport))
    else:
        assert frame[IP].proto == 4 and frame[IP].dst == rip
        assert frame[IP].payload.dst == vip
    synack = next(h for h in manifest["hops"] if h["packet"] == "SYN-ACK")
    hosts_crossed = [w["host"] for w in synack["wires"]]
    assert hosts_crossed[0] == rs_host and hosts_crossed[-1] == "client"
    at_client = synack["wires"][-1]["fields"]
    assert at_client["ip.src"] == vip
    if mode == "nat":
        assert "director" in hosts_crossed
    else:
        assert "director" not in hosts_crossed
        _never_on_director_wires(manifest, tmp_path, vip)
    if mode == "dr":
        assert at_client["eth.src"] == rs_mac


def _never_on_director_wires(manifest: dict, directory, vip: str) -> None:
    """No SYN-ACK from the VIP crosses any of the director's wires (DR and TUN)."""
    for capture in manifest["captures"]:
        if capture["host"] == "director":
            frames = rdpcap(str(directory / capture["file"]))
            assert not [f for f in frames if TCP in f and f[TCP].flags == "SA"
                        and f[IP].src == vip]


def test_trace_json_agrees_with_the_pcaps(tmp_path):
    _, manifest = run_trace("dr", str(tmp_path))
    assert manifest["mode"] == "dr"
    assert {h["role"] for h in manifest["hosts"].values()} == {"client", "director",
                                                               "real_server"}
    assert [h["packet"] for h in manifest["hops"] if h["kind"] == "tcp"] == [
        "SYN", "SYN-ACK", "request", "response", "FIN from the client", "FIN from the server"]
    frames = {c["file"]: rdpcap(str(tmp_path / c["file"])) for c in manifest["captures"]}
    for hop in manifest["hops"]:
        for seen in hop["wires"]:
            f = seen["fields"]
            match = [p for p in frames[seen["wire"]] if abs(float(p.time) - seen["time"]) < 1e-6
                     and p[Ether].src == f["eth.src"] and p[Ether].dst == f["eth.dst"]]
            assert match, f"{hop['packet']} on {seen['wire']} at {seen['time']} is not there"
            if "ip.src" in f:
                assert (match[0][IP].src, match[0][IP].dst) in {
                    (f["ip.src"], f["ip.dst"]), (f.get("outer.src"), f.get("outer.dst"))}


def test_headless_chromium_shows_every_host_and_hop_of_the_page(tmp_path):
    """trace.html offline in Debian's chromium: its script ran (the hop list is built from the
    embedded data), every host and hop is on it; trace.svg and its PNG are there too."""
    _, manifest = run_trace("nat", str(tmp_path))
    browser = shutil.which("chromium")
    assert browser, "needs chromium (scripts/install.sh --test)"
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={profile}", "--dump-dom",
                          f"file://{tmp_path / 'trace.html'}"],
                         capture_output=True, text=True, timeout=60).stdout
    assert dom.count('class="hop-item"') == len(manifest["hops"])
    for host in {w["host"] for hop in manifest["hops"] for w in hop["wires"]}:
        assert f'data-host="{host}"' in dom
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--user-data-dir={profile}", "--window-size=1100,1400",
                    f"--screenshot={shot}", f"file://{tmp_path / 'trace.html'}"],
                   capture_output=True, timeout=60, check=True)
    assert shot.stat().st_size > 10_000
    assert (tmp_path / "trace.png").stat().st_size > 5_000
    svg = (tmp_path / "trace.svg").read_text()
    assert svg.count('class="arrow"') >= len([h for h in manifest["hops"] if h["kind"] == "tcp"])


def test_interrupted_trace_leaves_no_tcpdump_and_no_fresh_directory():
    def fresh_dirs() -> set[str]:
        return {d for d in os.listdir("/tmp") if d.startswith("pylvs-trace-")}

    before = fresh_dirs()
    proc, seen = running_lab("dr", "--servers", "1", "--requests", "1000", "--trace", until=2)
    prefix = re.search(r"^  namespaces (pylvs-[0-9a-f]+)-\* ", seen, re.M).group(1)
    (fresh,) = fresh_dirs() - before  # it is capturing into a directory of its own
    processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert f"-w /tmp/{fresh}/" in processes  # its tcpdumps, as ps names them
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns
    processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert f"/tmp/{fresh}/" not in processes  # no tcpdump left
    assert fresh_dirs() == before

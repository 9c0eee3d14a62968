"""pylvs.ha.bird: the config BIRD 2 is started with, the routes file, and the control socket's
replies (BIRD's cli protocol: `CODE-text` goes on, `CODE text` ends, ` text` continues)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pylvs.ha import bird
from pylvs.ha.bgp import Bgp, Neighbor

SPEC = Bgp(65001, (Neighbor("10.0.0.1", 65000), Neighbor("10.0.0.2", 65002, "s3cret")),
           hold_time=3, bfd=True, bfd_interval=0.05, bfd_multiplier=4)


def test_routes_are_blackhole_host_routes():
    assert bird.routes(["10.0.100.1", "10.0.100.2"]) == (
        "route 10.0.100.1/32 blackhole;\nroute 10.0.100.2/32 blackhole;\n")
    assert bird.routes([]) == ""


def test_config_exports_only_the_vips_with_next_hop_self_to_each_neighbour():
    text = bird.config(SPEC, "10.0.0.11", "/run/x/vips.conf")
    assert "router id 10.0.0.11;" in text
    assert 'include "/run/x/vips.conf";' in text
    assert text.count("protocol bgp peer") == 2
    assert "neighbor 10.0.0.2 as 65002;" in text and 'password "s3cret";' in text
    assert "hold time 3;" in text and "keepalive time 1;" in text
    assert "min rx interval 50 ms; min tx interval 50 ms;" in text and "multiplier 4;" in text
    assert text.count("bfd on;") == 2
    assert text.count(f'export where proto = "{bird.STATIC_PROTOCOL}";') == 2
    assert text.count("import none;") == 2 and text.count("next hop self;") == 2


def test_no_bfd_protocol_without_bfd():
    text = bird.config(Bgp(65001, (Neighbor("10.0.0.1", 65000),)), "10.0.0.11", "/r")
    assert "bfd" not in text and "hold time 90;" in text and "keepalive time 30;" in text


@pytest.mark.skipif(not shutil.which("bird"), reason="needs BIRD 2 (apt-get install bird2)")
def test_bird_itself_accepts_the_config(tmp_path):
    routes = tmp_path / "vips.conf"
    routes.write_text(bird.routes(["10.0.100.1"]))
    conf = tmp_path / "bird.conf"
    conf.write_text(bird.config(SPEC, "10.0.0.11", str(routes)))
    result = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _reply(*lines: str) -> bird.Reply:
    out, code = [], 0
    for line in lines:
        code, text, last = bird.reply_line(line, code)
        out.append((code, text))
        assert last == (line is lines[-1])
    return bird.Reply(out)


def test_show_protocols_gives_the_bgp_sessions():
    reply = _reply("2002-Name       Proto      Table      State  Since         Info",
                   "1002-device1    Device     ---        up     04:19:11.528  ",
                   " pylvs_vips Static     master4    up     04:19:11.528  ",
                   " peer1      BGP        ---        up     04:19:12.733  Established   ",
                   " peer2      BGP        ---        start  04:19:12.733  Active        "
                   "Socket: Connection refused",
                   "0000 ")
    sessions = bird.sessions(reply)
    assert [(s.name, s.state, s.established) for s in sessions] == [
        ("peer1", "up", True), ("peer2", "start", False)]
    assert sessions[1].info.startswith("Active") and reply.ok


def test_codes_from_8000_are_errors():
    assert not _reply("9001 syntax error, unexpected CF_SYM_UNDEFINED").ok
    assert _reply("0002-Reading configuration from /r/bird.conf", "0003 Reconfigured").ok

"""pylvs.ha.bird for IPv6 VIPs (issue 23): /128 static routes in a static protocol of their own
(``ipv6`` channel), an ``ipv6`` channel on each session to an IPv6 neighbour, both families on
a dual-stack director; BIRD 2 itself parses each config (`bird -p`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pylvs.ha import bird
from pylvs.ha.bgp import Bgp, Neighbor

V4, V6 = Neighbor("10.0.0.1", 65000), Neighbor("2001:db8:10::1", 65000, "s3cret")
SIX = Bgp(65001, (V6,), router_id="10.0.0.11", hold_time=3, bfd=True)
DUAL = Bgp(65001, (V4, V6), hold_time=3)
NEEDS_BIRD = pytest.mark.skipif(not shutil.which("bird"),
                                reason="needs BIRD 2 (apt-get install bird2)")


def _block(text: str, opening: str) -> str:
    """The lines of ``text`` from ``opening`` to its closing ``}`` at the start of a line."""
    lines = text.splitlines()
    start = lines.index(opening)
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end + 1])


def test_an_ipv6_vip_is_a_blackhole_128():
    assert bird.routes(["2001:db8:10:100::1", "2001:db8:10:100::2"]) == (
        "route 2001:db8:10:100::1/128 blackhole;\nroute 2001:db8:10:100::2/128 blackhole;\n")


def test_an_ipv6_only_director_has_only_the_ipv6_static_protocol_and_channel():
    text = bird.config(SIX, "10.0.0.11", "", "/run/x/vips6.conf")
    assert "router id 10.0.0.11;" in text  # a 32-bit number, also with no IPv4 anywhere
    assert _block(text, "protocol static pylvs_vips6 {") == (
        'protocol static pylvs_vips6 {\n  ipv6;\n  include "/run/x/vips6.conf";\n}')
    assert "pylvs_vips {" not in text and "ipv4" not in text
    peer = _block(text, "protocol bgp peer1 {")
    assert "  neighbor 2001:db8:10::1 as 65000;" in peer and "  bfd on;" in peer
    assert peer.endswith('  ipv6 {\n    import none;\n    export where proto = "pylvs_vips6";\n'
                         '    next hop self;\n  };\n}')


def test_a_dual_stack_director_sends_each_family_over_the_sessions_of_that_family():
    text = bird.config(DUAL, "10.0.0.11", "/r/vips.conf", "/r/vips6.conf")
    assert 'protocol static pylvs_vips {\n  ipv4;\n  include "/r/vips.conf";\n}' in text
    assert 'protocol static pylvs_vips6 {\n  ipv6;\n  include "/r/vips6.conf";\n}' in text
    over4, over6 = _block(text, "protocol bgp peer1 {"), _block(text, "protocol bgp peer2 {")
    assert "neighbor 10.0.0.1 as 65000;" in over4 and "neighbor 2001:db8:10::1" in over6
    assert '  ipv4 {\n    import none;\n    export where proto = "pylvs_vips";' in over4
    assert "ipv6" not in over4 and "ipv4" not in over6
    assert '  ipv6 {\n    import none;\n    export where proto = "pylvs_vips6";' in over6
    assert 'password "s3cret";' in over6


def test_an_ipv4_only_config_is_what_it_was_before_ipv6():
    spec = Bgp(65001, (V4,), hold_time=3)
    assert bird.config(spec, "10.0.0.11", "/r/vips.conf", "/r/vips6.conf") == (
        "router id 10.0.0.11;\nprotocol device { scan time 10; }\n"
        'protocol static pylvs_vips {\n  ipv4;\n  include "/r/vips.conf";\n}\n'
        "protocol bgp peer1 {\n  local as 65001;\n  neighbor 10.0.0.1 as 65000;\n"
        "  hold time 3;\n  keepalive time 1;\n  connect retry time 1;\n"
        "  error wait time 1, 10;\n  ipv4 {\n    import none;\n"
        '    export where proto = "pylvs_vips";\n    next hop self;\n  };\n}\n')


def test_an_ipv6_neighbour_without_an_ipv6_routes_file_is_a_mistake_of_the_caller():
    with pytest.raises(ValueError, match="ipv6 neighbour needs the ipv6 routes file"):
        bird.config(SIX, "10.0.0.11", "/r/vips.conf")


@NEEDS_BIRD
@pytest.mark.parametrize("spec", [SIX, DUAL], ids=["ipv6", "dual-stack"])
def test_bird_itself_accepts_the_config(tmp_path, spec):
    routes, routes6 = tmp_path / "vips.conf", tmp_path / "vips6.conf"
    routes.write_text(bird.routes(["10.0.100.1"]))
    routes6.write_text(bird.routes(["2001:db8:10:100::1", "2001:db8:10:100::2"]))
    conf = tmp_path / "bird.conf"
    conf.write_text(bird.config(spec, "10.0.0.11", str(routes), str(routes6)))
    result = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@NEEDS_BIRD
def test_bird_refuses_an_ipv6_route_in_the_ipv4_static_protocol(tmp_path):
    """Why each family has its own file: a static protocol has one channel."""
    routes = tmp_path / "vips.conf"
    routes.write_text(bird.routes(["2001:db8:10:100::1"]))
    conf = tmp_path / "bird.conf"
    conf.write_text(bird.config(DUAL, "10.0.0.11", str(routes), str(routes)))
    result = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode != 0

"""trace.html and trace.svg from a trace (pylvs.lab.trace_page), on the DR trace the dissection
tests build from scapy frames: well-formed SVG, an arrow per sender and taker of each frame, the
rewritten ones marked, every host and hop on the page, nothing fetched from elsewhere."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from pylvs.lab import trace_page
from tests.helpers.traces import dr_trace

SVG = "{http://www.w3.org/2000/svg}"


def test_the_diagram_has_an_arrow_from_each_sender_to_each_taker():
    built = dr_trace()
    root = ET.fromstring(trace_page.sequence_svg(built))
    drawn = root.findall(f"{SVG}g[@class='arrow']")
    expected = [(a["src"], a["dst"]) for a in trace_page.arrows(built)]
    assert len(drawn) == len(expected) > 0
    syn = next(h for h in built["hops"] if h["packet"] == "SYN")
    hosts = [w["host"] for w in syn["wires"]]
    assert ("client", "director") in expected and ("director", hosts[-1]) in expected
    rewritten = [g for g in drawn if "changed" in g.find(f"{SVG}title").text]
    assert rewritten and all("eth.dst" in g.find(f"{SVG}title").text for g in rewritten)
    assert trace_page.hosts_in_order(built)[:2] == ["client", "director"]


def test_the_page_is_self_contained_and_names_every_host_and_hop():
    built = dr_trace()
    page = trace_page.page(built)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network, no CDN
    for host in trace_page.hosts_in_order(built):
        assert f'data-host="{host}"' in page
    data = json.loads(re.search(r'<script id="trace-data" type="application/json">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert [h["packet"] for h in data["hops"]] == [h["packet"] for h in built["hops"]]
    ET.fromstring(trace_page.topology_svg(built))


def test_text_from_the_capture_cannot_break_out_of_the_page():
    built = dr_trace()
    built["hops"][0]["packet"] = "</script><script>alert(1)</script>"
    page = trace_page.page(built)
    assert page.count("</script>") == 2  # the data's and the code's own ends, nothing earlier
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in trace_page.sequence_svg(built)

"""`--explain`'s paragraphs: each part of the report, for the methods a lab uses."""

from __future__ import annotations

from pylvs.lab import explain


def test_paragraphs_are_wrapped_and_marked_apart_from_the_output():
    text = explain.table()
    lines = text.splitlines()
    assert all(line.startswith("  | ") and len(line) <= explain.WIDTH for line in lines)
    joined = " ".join(line[4:] for line in lines)
    for words in ("Route is DR", "Masq is NAT", "Tunnel is TUN", "ActiveConn counts the "
                  "connections in ESTABLISHED state, InActConn every other one"):
        assert words in joined


def test_each_method_once_in_the_order_of_the_real_servers():
    text = explain.connections(["dr", "nat", "tun", "dr"])
    joined = " ".join(line[4:] for line in text.splitlines())
    assert joined.count("FIN_WAIT") == 2 and joined.count("TIME_WAIT") == 1
    assert joined.index("INPUT-ONLY") < joined.index("TIME_WAIT")


def test_real_server_steps_say_why_arp_ignore_arp_announce_and_the_32():
    joined = " ".join(line[4:] for line in explain.real_servers(["dr"]).splitlines())
    assert "arp_ignore=1: answer an ARP request only for an address configured on the" in joined
    assert "arp_announce=2" in joined and "/32" in joined and "/24 on lo" in joined
    assert "larger of the 'all' value and the interface's" in joined

"""The classic BPF program: its shape (jumps, ends) and the rules it encodes; the kernel test
that it filters is in test_rings."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from pylvs.shell import bpf
from tests.helpers.fanout import run


def test_every_jump_lands_on_an_instruction_and_the_program_ends_with_drop_accept():
    code = bpf.program([("tcp", "192.0.2.100", 80), ("udp", "192.0.2.100", 53)],
                       [("tcp", "10.0.0.1", 8080)])
    assert code[-2:] == [(bpf.RET_K, 0, 0, 0), (bpf.RET_K, 0, 0, bpf.ACCEPT_LEN)]
    for i, (op, jt, jf, _) in enumerate(code):
        if op in (bpf.JEQ_K, bpf.JSET_K):
            assert i + 1 + jt < len(code) and i + 1 + jf < len(code)
    ports = [k for op, _, _, k in code if op == bpf.JEQ_K and k in (80, 53, 8080)]
    assert ports == [80, 53, 8080]
    assert len(bpf.pack(code)) == 8 * len(code)


def test_no_rules_drops_everything_after_the_header_checks():
    code = bpf.program([])
    assert code[4:] == [(bpf.RET_K, 0, 0, 0), (bpf.RET_K, 0, 0, bpf.ACCEPT_LEN)]


def test_too_many_rules_is_refused_not_miscompiled():
    with pytest.raises(ValueError, match="too many rules"):
        bpf.program([("tcp", "192.0.2.100", port) for port in range(1, 200)])


def _frame(packet) -> bytes:
    return bytes(Ether() / packet)


def test_ipv6_frames_to_a_vip_or_from_a_nat_server_pass_whatever_follows_the_header():
    """Extension headers and fragments included: the director sorts them."""
    code = bpf.program([("tcp", "2001:db8::100", 80), ("tcp", "192.0.2.100", 80)],
                       [("tcp", "fd00::7", 8080)])
    passed = [IPv6(src="2001:db8:1::5", dst="2001:db8::100") / TCP(dport=80),
              IPv6(src="2001:db8:1::5", dst="2001:db8::100") / IPv6ExtHdrFragment(offset=8)
              / (b"x" * 16),
              IPv6(src="fd00::7", dst="2001:db8:1::5") / TCP(sport=8080),
              IP(src="203.0.113.5", dst="192.0.2.100") / TCP(dport=80)]
    kept = [IPv6(src="2001:db8:1::5", dst="2001:db8::101") / TCP(dport=80),
            IPv6(src="fd00::8", dst="2001:db8:1::5") / TCP(sport=8080),
            IP(src="203.0.113.5", dst="192.0.2.101") / TCP(dport=80)]
    assert [run(code, _frame(p), absolute=True) for p in passed] == [bpf.ACCEPT_LEN] * 4
    assert [run(code, _frame(p), absolute=True) for p in kept] == [0] * 3


def test_an_ipv4_only_filter_is_ipv4s_alone():
    rules = [("tcp", "192.0.2.100", 80)]
    assert bpf.program(rules) == bpf.program4(rules)

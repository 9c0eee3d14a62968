"""The classic BPF program: its shape (jumps, ends) and the rules it encodes; the kernel test
that it filters is in test_rings."""

from __future__ import annotations

import pytest

from pylvs.shell import bpf


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

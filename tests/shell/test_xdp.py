"""pylvs.shell.xdp against the kernel: maps through bpf(), a program from pylvs.core.ebpf loaded,
attached to a veth in a namespace of this run, seen dropping and counting real datagrams, then
detached; a program the verifier refuses comes back with its log."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from pylvs.core.ebpf import (
    ADD,
    DW,
    JEQ,
    JGT,
    JNE,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R10,
    XDP_DROP,
    XDP_PASS,
    Assembler,
    B,
    H,
    Helper,
    W,
)
from pylvs.shell import xdp
from tests.helpers.veth import DIR_IP, in_ns, udp_socket

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf() and namespaces")
PORT = 9999


def test_a_map_holds_updates_lookups_keys_and_deletes():
    counts = xdp.Map(xdp.BPF_MAP_TYPE_HASH, 4, 8, 16, "test")
    try:
        for key in range(3):
            counts.update(struct.pack("<I", key), struct.pack("<Q", key * 10))
        assert counts.lookup(struct.pack("<I", 2)) == struct.pack("<Q", 20)
        assert counts.lookup(struct.pack("<I", 7)) is None
        assert sorted(counts.keys()) == sorted(struct.pack("<I", k) for k in range(3))
        assert counts.delete(struct.pack("<I", 1)) and not counts.delete(struct.pack("<I", 1))
        with pytest.raises(ValueError):
            counts.update(b"\0" * 3, b"\0" * 8)
    finally:
        counts.close()


def test_batches_update_and_read_many_entries_in_one_call():
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, 8, 16, 10_000, "batch", xdp.BPF_F_NO_PREALLOC)
    try:
        items = [(struct.pack("<Q", i), struct.pack("<QQ", i, i * i)) for i in range(9000)]
        conns.update_many(items)
        assert sorted(conns.items(chunk=1000)) == sorted(items)
        assert conns.lookup(struct.pack("<Q", 4242)) == struct.pack("<QQ", 4242, 4242 ** 2)
        with pytest.raises(ValueError):
            conns.update_many([(b"short", b"\0" * 16)])
    finally:
        conns.close()


def drop_and_count(counter: xdp.Map) -> bytes:
    """XDP: UDP to PORT is counted in counter[0] and dropped; every other frame passes."""
    asm = Assembler()
    asm.ldx(W, R2, R1, 0).ldx(W, R3, R1, 4)                      # data, data_end
    asm.mov(R4, R2).alu_imm(ADD, R4, 42).jmp_reg(JGT, R4, R3, "pass")
    asm.ldx(H, R5, R2, 12).jmp_imm(JNE, R5, 0x0008, "pass")       # IPv4 (read little-endian)
    asm.ldx(B, R5, R2, 23).jmp_imm(JNE, R5, 17, "pass")           # UDP
    asm.ldx(H, R5, R2, 36).jmp_imm(JNE, R5, socket.htons(PORT), "pass")
    asm.st_imm(W, R10, -4, 0).mov(R2, R10).alu_imm(ADD, R2, -4).ld_map_fd(R1, counter.fd)
    asm.call(Helper.map_lookup_elem).jmp_imm(JEQ, R0, 0, "drop")
    asm.mov_imm(R1, 1).atomic_add(DW, R0, 0, R1)
    asm.label("drop").ret(XDP_DROP)
    asm.label("pass").ret(XDP_PASS)
    return asm.assemble()


def test_an_attached_program_drops_and_counts_real_frames_until_detached(topo):  # noqa: F811
    counter = in_ns(topo.d, xdp.Map, xdp.BPF_MAP_TYPE_ARRAY, 4, 8, 1, "count")
    program = xdp.Program(drop_and_count(counter), "drop_count")
    receiver = in_ns(topo.d, udp_socket, PORT)
    sender = in_ns(topo.p, udp_socket)
    receiver.settimeout(0.5)
    try:
        in_ns(topo.d, xdp.attach, "vd", program)
        assert in_ns(topo.d, xdp.attached, "vd") > 0
        for _ in range(5):
            sender.sendto(b"dropped", (DIR_IP, PORT))
        time.sleep(0.3)
        assert struct.unpack("<Q", counter.lookup(b"\0" * 4))[0] == 5
        with pytest.raises(TimeoutError):
            receiver.recv(64)
        in_ns(topo.d, xdp.detach, "vd")
        assert in_ns(topo.d, xdp.attached, "vd") == 0
        sender.sendto(b"through", (DIR_IP, PORT))
        assert receiver.recv(64) == b"through"
    finally:
        for closing in (sender, receiver, program, counter):
            closing.close()


def test_a_refused_program_brings_the_verifiers_log():
    unchecked = Assembler().ldx(W, R2, R1, 0).ldx(B, R0, R2, 0).exit()  # no bounds check
    with pytest.raises(xdp.BpfError) as refused:
        xdp.Program(unchecked.assemble(), "unchecked")
    assert "invalid access to packet" in refused.value.log
    assert "loading program unchecked" in str(refused.value)

"""The eBPF assembler's bytes, against struct bpf_insn encodings from linux/filter.h's macros
(BPF_MOV64_IMM, BPF_LDX_MEM, BPF_LD_MAP_FD, BPF_JMP_IMM, BPF_ATOMIC_OP, BPF_EXIT_INSN)."""

from __future__ import annotations

import pytest

from pylvs.core import ebpf
from pylvs.core.ebpf import (
    DW,
    JEQ,
    JGT,
    R0,
    R1,
    R2,
    R3,
    R10,
    XDP_DROP,
    XDP_PASS,
    Assembler,
    AssemblyError,
    Helper,
    W,
)


def test_mov_imm_and_exit():
    # BPF_MOV64_IMM(BPF_REG_0, 2); BPF_EXIT_INSN()
    assert Assembler().ret(XDP_PASS).assemble() == bytes.fromhex(
        "b700000002000000" "9500000000000000")


def test_loads_stores_and_the_register_byte():
    asm = (Assembler().ldx(W, R2, R1, 4)           # r2 = *(u32 *)(r1 + 4): 0x61, dst 2 src 1
           .stx(DW, R10, -8, R3)                   # *(u64 *)(r10 - 8) = r3: 0x7b
           .st_imm(W, R10, -12, -1)                # *(u32 *)(r10 - 12) = -1: 0x62
           .atomic_add(DW, R0, 16, R1))            # lock *(u64 *)(r0 + 16) += r1: 0xdb
    assert asm.assemble() == bytes.fromhex(
        "6112040000000000" "7b3af8ff00000000" "620af4ffffffffff" "db10100000000000")


def test_a_map_fd_load_takes_two_slots():
    # BPF_LD_MAP_FD(BPF_REG_1, 7): opcode 0x18, src BPF_PSEUDO_MAP_FD, then the high half
    code = Assembler().ld_map_fd(R1, 7).assemble()
    assert code == bytes.fromhex("1811000007000000" "0000000000000000")


def test_jumps_resolve_labels_forward_and_back():
    asm = Assembler()
    asm.label("top").jmp_imm(JGT, R2, 14, "drop")  # +2: over the next two
    asm.mov_imm(R0, XDP_PASS).exit()
    asm.label("drop").mov_imm(R0, XDP_DROP)
    asm.jmp_imm(JEQ, R0, 0, "top").exit()          # back: 5 - 0 - 1 → -5
    code = asm.assemble()
    assert code[0:8] == bytes.fromhex("25020200" "0e000000")
    assert code[32:40] == bytes.fromhex("1500fbff" "00000000")


def test_calls_name_the_kernels_helper_numbers():
    assert Assembler().call(Helper.map_lookup_elem).assemble() == bytes.fromhex(
        "8500000001000000")
    assert (Helper.redirect, Helper.ktime_get_ns, Helper.xdp_adjust_head) == (23, 5, 44)


def test_byte_order_conversion():
    # BPF_ENDIAN(BPF_TO_BE, BPF_REG_3, 16): 0xdc
    assert Assembler().endian(R3, 16).assemble() == bytes.fromhex("dc03000010000000")
    with pytest.raises(AssemblyError):
        Assembler().endian(R3, 24)


def test_what_cannot_be_encoded_is_refused():
    with pytest.raises(AssemblyError, match="unknown label"):
        Assembler().ja("nowhere").assemble()
    with pytest.raises(AssemblyError, match="defined twice"):
        Assembler().label("a").label("a")
    with pytest.raises(AssemblyError, match="16 bits"):
        Assembler().ldx(W, R0, R1, 1 << 15)
    with pytest.raises(AssemblyError, match="32 or 64"):
        Assembler().atomic_add(ebpf.B, R0, 0, R1)

"""A small eBPF assembler: named registers, helpers and jumps to labels, out to the bytes the
kernel's bpf(BPF_PROG_LOAD) takes (linux/bpf.h's struct bpf_insn, little-endian hosts).

    asm = Assembler()
    asm.ldx(W, R2, R1, 0)          # r2 = ctx->data
    asm.jmp_imm(JGT, R3, 14, "drop")
    asm.mov_imm(R0, XDP_PASS).exit()
    asm.label("drop").mov_imm(R0, XDP_DROP).exit()
    code = asm.assemble()          # bytes, 8 per instruction (16 for a 64-bit load)

Jumps name labels; ``assemble`` resolves them (forward or back) and refuses an unknown or
too-far one. A map is loaded by its fd with ``ld_map_fd`` (BPF_PSEUDO_MAP_FD). Pure bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class Reg(IntEnum):
    R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg
FP = R10
"""The read-only frame pointer: the stack is the 512 bytes below it."""

# instruction classes and fields (linux/bpf_common.h, linux/bpf.h)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
"""Access sizes: 4, 2, 1 and 8 bytes."""
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
K, X = 0x00, 0x08
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
TO_LE, TO_BE = 0x00, 0x08
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
PSEUDO_MAP_FD = 1

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)


class Helper(IntEnum):
    """The kernel helpers used here, by their numbers in enum bpf_func_id."""
    map_lookup_elem = 1
    map_update_elem = 2
    map_delete_elem = 3
    ktime_get_ns = 5
    redirect = 23
    csum_diff = 28
    xdp_adjust_head = 44
    redirect_map = 51
    xdp_get_buff_len = 188


_INSN = struct.Struct("<BBhi")


@dataclass(frozen=True)
class Insn:
    """One struct bpf_insn; ``target`` is the label a jump goes to, resolved by assemble()."""
    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str = ""

    def encode(self, off: int | None = None) -> bytes:
        return _INSN.pack(self.opcode, (self.src << 4) | self.dst,
                          self.off if off is None else off, self.imm)


class AssemblyError(ValueError):
    pass


class Assembler:
    """Instructions appended in order; every method returns the assembler, so steps chain."""

    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self.labels: dict[str, int] = {}

    def __len__(self) -> int:
        """In instruction slots: a 64-bit load takes two."""
        return len(self.insns)

    def emit(self, insn: Insn) -> Assembler:
        self.insns.append(insn)
        return self

    def label(self, name: str) -> Assembler:
        if name in self.labels:
            raise AssemblyError(f"label {name!r} defined twice")
        self.labels[name] = len(self.insns)
        return self

    # ALU: 64-bit by default, 32-bit with alu32=True
    def alu_imm(self, op: int, dst: Reg, imm: int, alu32: bool = False) -> Assembler:
        return self.emit(Insn((ALU if alu32 else ALU64) | op | K, dst, 0, 0, _s32(imm)))

    def alu_reg(self, op: int, dst: Reg, src: Reg, alu32: bool = False) -> Assembler:
        return self.emit(Insn((ALU if alu32 else ALU64) | op | X, dst, src))

    def mov_imm(self, dst: Reg, imm: int) -> Assembler:
        return self.alu_imm(MOV, dst, imm)

    def mov(self, dst: Reg, src: Reg) -> Assembler:
        return self.alu_reg(MOV, dst, src)

    def endian(self, dst: Reg, bits: int, to: int = TO_BE) -> Assembler:
        """Byte order of the low ``bits`` (16, 32, 64) of dst: to big-endian on this host."""
        if bits not in (16, 32, 64):
            raise AssemblyError(f"endian conversion of {bits} bits")
        return self.emit(Insn(ALU | END | to, dst, 0, 0, bits))

    def ld_imm64(self, dst: Reg, imm: int, src: int = 0) -> Assembler:
        """A 64-bit constant (two slots); src=PSEUDO_MAP_FD makes imm a map's fd."""
        low, high = imm & 0xFFFFFFFF, (imm >> 32) & 0xFFFFFFFF
        self.emit(Insn(LD | DW | IMM, dst, src, 0, _s32(low)))
        return self.emit(Insn(0, 0, 0, 0, _s32(high)))

    def ld_map_fd(self, dst: Reg, fd: int) -> Assembler:
        return self.ld_imm64(dst, fd, PSEUDO_MAP_FD)

    def ldx(self, size: int, dst: Reg, src: Reg, off: int) -> Assembler:
        """dst = *(size *)(src + off)"""
        return self.emit(Insn(LDX | size | MEM, dst, src, _s16(off)))

    def stx(self, size: int, dst: Reg, off: int, src: Reg) -> Assembler:
        """*(size *)(dst + off) = src"""
        return self.emit(Insn(STX | size | MEM, dst, src, _s16(off)))

    def st_imm(self, size: int, dst: Reg, off: int, imm: int) -> Assembler:
        """*(size *)(dst + off) = imm"""
        return self.emit(Insn(ST | size | MEM, dst, 0, _s16(off), _s32(imm)))

    def atomic_add(self, size: int, dst: Reg, off: int, src: Reg) -> Assembler:
        """*(size *)(dst + off) += src, atomically (W or DW)."""
        if size not in (W, DW):
            raise AssemblyError("atomic add is 32 or 64 bits")
        return self.emit(Insn(STX | size | ATOMIC, dst, src, _s16(off), ADD))

    def jmp_imm(self, op: int, dst: Reg, imm: int, target: str) -> Assembler:
        return self.emit(Insn(JMP | op | K, dst, 0, 0, _s32(imm), target))

    def jmp_reg(self, op: int, dst: Reg, src: Reg, target: str) -> Assembler:
        return self.emit(Insn(JMP | op | X, dst, src, 0, 0, target))

    def ja(self, target: str) -> Assembler:
        return self.emit(Insn(JMP | JA, target=target))

    def call(self, helper: Helper) -> Assembler:
        return self.emit(Insn(JMP | CALL, imm=int(helper)))

    def exit(self) -> Assembler:
        return self.emit(Insn(JMP | EXIT))

    def ret(self, value: int) -> Assembler:
        return self.mov_imm(R0, value).exit()

    def assemble(self) -> bytes:
        out = []
        for pc, insn in enumerate(self.insns):
            if not insn.target:
                out.append(insn.encode())
                continue
            where = self.labels.get(insn.target)
            if where is None:
                raise AssemblyError(f"jump to unknown label {insn.target!r}")
            off = where - pc - 1
            if not -(1 << 15) <= off < 1 << 15:
                raise AssemblyError(f"jump to {insn.target!r} is too far ({off})")
            out.append(insn.encode(off))
        return b"".join(out)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _s16(value: int) -> int:
    if not -(1 << 15) <= value < 1 << 15:
        raise AssemblyError(f"offset {value} does not fit 16 bits")
    return value

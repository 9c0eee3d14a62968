"""eBPF in the kernel from Python: the bpf() system call through ctypes (maps, programs with the
verifier's log), and an XDP program attached to an interface over rtnetlink (IFLA_XDP).

Programs come from pylvs.core.ebpf as bytes; nothing here decides what they do. ``features``
reads what the kernel says an interface's driver can do with XDP (the netdev generic netlink
family's xdp-features, Linux ≥ 6.3). Every map and
program is a file descriptor owned by its object here: ``close()`` (or the end of the process)
frees it, and ``detach`` takes a program off its interface.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, \
    BPF_MAP_GET_NEXT_KEY, BPF_PROG_LOAD = range(6)
BPF_PROG_TEST_RUN = 10
BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH = 24, 26
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH = 1, 2, 9
BPF_PROG_TYPE_XDP = 6
BPF_ANY = 0
BPF_F_NO_PREALLOC = 1
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 2, 4
_ATTR_SIZE = 128
LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """bpf() refused; ``log`` is the verifier's account when a program was refused."""

    def __init__(self, code: int, what: str, log: str = "") -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}" + (f"\n{log}" if log else ""))
        self.log = log


def _bpf(cmd: int, attr: ctypes.Array, what: str, log: str = "") -> int:
    result = _libc.syscall(_NR_BPF, cmd, attr, _ATTR_SIZE)
    if result < 0:
        code = ctypes.get_errno()
        raise BpfError(code, what, log() if callable(log) else log)
    return result


def _attr(fmt: str, *values: object) -> ctypes.Array:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, attr, 0, *values)
    return attr


def _address(buffer: ctypes.Array) -> int:
    return ctypes.addressof(buffer)


class Map:
    """A BPF map of fixed-size keys and values."""

    def __init__(self, map_type: int, key_size: int, value_size: int, max_entries: int,
                 name: str = "pylvs", flags: int = 0) -> None:
        self.key_size, self.value_size = key_size, value_size
        attr = _attr("=IIIIIII16s", map_type, key_size, value_size, max_entries, flags, 0, 0,
                     name.encode()[:15])
        self.fd = _bpf(BPF_MAP_CREATE, attr, f"creating map {name}")

    def _elem(self, cmd: int, key: bytes, value: ctypes.Array | None, flags: int,
              what: str) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"key of {len(key)} bytes, map keys are {self.key_size}")
        key_buf = ctypes.create_string_buffer(key, self.key_size)
        attr = _attr("=IIQQQ", self.fd, 0, _address(key_buf),
                     0 if value is None else _address(value), flags)
        _bpf(cmd, attr, what)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise ValueError(f"value of {len(value)} bytes, map values are {self.value_size}")
        self._elem(BPF_MAP_UPDATE_ELEM, key, ctypes.create_string_buffer(value, len(value)),
                   flags, "map update")

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        try:
            self._elem(BPF_MAP_LOOKUP_ELEM, key, value, 0, "map lookup")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return value.raw

    def delete(self, key: bytes) -> bool:
        try:
            self._elem(BPF_MAP_DELETE_ELEM, key, None, 0, "map delete")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def update_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """Several entries in one call (BPF_MAP_UPDATE_BATCH, Linux ≥ 5.6)."""
        if not items:
            return
        keys = b"".join(key for key, _ in items)
        values = b"".join(value for _, value in items)
        if len(keys) != len(items) * self.key_size or len(values) != len(items) * \
                self.value_size:
            raise ValueError("keys or values of the wrong size")
        key_buf = ctypes.create_string_buffer(keys, len(keys))
        value_buf = ctypes.create_string_buffer(values, len(values))
        attr = _attr("=QQQQIIQQ", 0, 0, _address(key_buf), _address(value_buf), len(items),
                     self.fd, BPF_ANY, 0)
        _bpf(BPF_MAP_UPDATE_BATCH, attr, "map batch update")

    def items(self, chunk: int = 4096) -> list[tuple[bytes, bytes]]:
        """Every entry, a chunk per call (BPF_MAP_LOOKUP_BATCH)."""
        out: list[tuple[bytes, bytes]] = []
        keys = ctypes.create_string_buffer(chunk * self.key_size)
        values = ctypes.create_string_buffer(chunk * self.value_size)
        token_in, token_out = ctypes.create_string_buffer(8), ctypes.create_string_buffer(8)
        first = True
        while True:
            attr = _attr("=QQQQIIQQ", 0 if first else _address(token_in), _address(token_out),
                         _address(keys), _address(values), chunk, self.fd, 0, 0)
            try:
                _bpf(BPF_MAP_LOOKUP_BATCH, attr, "map batch lookup")
                done = False
            except BpfError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                done = True
            count = struct.unpack_from("=I", attr, 32)[0]
            raw_keys, raw_values = keys.raw, values.raw
            out += [(raw_keys[i * self.key_size:(i + 1) * self.key_size],
                     raw_values[i * self.value_size:(i + 1) * self.value_size])
                    for i in range(count)]
            if done:
                return out
            ctypes.memmove(token_in, token_out, 8)
            first = False

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        following = ctypes.create_string_buffer(self.key_size)
        current: ctypes.Array | None = None
        while True:
            attr = _attr("=IIQQ", self.fd, 0, 0 if current is None else _address(current),
                         _address(following))
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr, "map keys")
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    return out
                raise
            out.append(following.raw)
            current = ctypes.create_string_buffer(following.raw, self.key_size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Program:
    """A loaded XDP program; a refusal raises BpfError with the verifier's log."""

    def __init__(self, code: bytes, name: str = "pylvs", prog_type: int = BPF_PROG_TYPE_XDP
                 ) -> None:
        if len(code) % 8:
            raise ValueError("eBPF code is a whole number of 8-byte instructions")
        insns = ctypes.create_string_buffer(code, len(code))
        license_ = ctypes.create_string_buffer(b"GPL")
        log = ctypes.create_string_buffer(LOG_SIZE)
        attr = _attr("=IIQQIIQII16s", prog_type, len(code) // 8, _address(insns),
                     _address(license_), 1, LOG_SIZE, _address(log), 0, 0, name.encode()[:15])
        self.fd = _bpf(BPF_PROG_LOAD, attr, f"loading program {name}",
                       lambda: log.value.decode(errors="replace").strip())

    def run(self, frame: bytes) -> tuple[int, bytes]:
        """BPF_PROG_TEST_RUN: the program on one frame in the kernel, attached nowhere; its
        verdict and the frame as it left it (a redirect is only a verdict here)."""
        data_in = ctypes.create_string_buffer(frame, len(frame))
        data_out = ctypes.create_string_buffer(len(frame) + 256)
        attr = _attr("=IIIIQQII", self.fd, 0, len(frame), len(data_out), _address(data_in),
                     _address(data_out), 1, 0)
        _bpf(BPF_PROG_TEST_RUN, attr, "test run")
        verdict, _, size_out = struct.unpack_from("=III", attr, 4)
        return verdict, data_out.raw[:size_out]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def attach(ifname: str, program: Program, flags: int = XDP_FLAGS_DRV_MODE) -> None:
    """The program on the interface's receive path (native mode by default: veth has it)."""
    _set_xdp(ifname, program.fd, flags)


def detach(ifname: str, flags: int = XDP_FLAGS_DRV_MODE) -> None:
    _set_xdp(ifname, -1, flags)


def attached(ifname: str) -> int:
    """The id of the XDP program on the interface, 0 for none."""
    with IPRoute() as ipr:
        link = ipr.link("get", index=_index(ipr, ifname))[0]
    xdp = link.get_attr("IFLA_XDP")
    return (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp is not None else 0


def _set_xdp(ifname: str, fd: int, flags: int) -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=_index(ipr, ifname), xdp_fd=fd, xdp_flags=flags)


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no interface {ifname}")
    return found[0]


class _NetdevDev(genlmsg):
    """The netdev family's dev attributes (Documentation/netlink/specs/netdev.yaml)."""
    nla_map = (("NETDEV_A_DEV_UNSPEC", "none"), ("NETDEV_A_DEV_IFINDEX", "uint32"),
               ("NETDEV_A_DEV_PAD", "none"), ("NETDEV_A_DEV_XDP_FEATURES", "uint64"),
               ("NETDEV_A_DEV_XDP_ZC_MAX_SEGS", "uint32"),
               ("NETDEV_A_DEV_XDP_RX_METADATA_FEATURES", "uint64"),
               ("NETDEV_A_DEV_XSK_FEATURES", "uint64"))


_NETDEV_CMD_DEV_GET = 1


def features(ifname: str) -> int | None:
    """The interface's xdp-features (NETDEV_XDP_ACT_*); None where the kernel has no netdev
    family to ask (before 6.3) or does not answer."""
    sock = GenericNetlinkSocket()
    try:
        sock.bind("netdev", _NetdevDev)
        msg = _NetdevDev()
        msg["cmd"], msg["version"] = _NETDEV_CMD_DEV_GET, 1
        with IPRoute() as ipr:
            msg["attrs"] = [("NETDEV_A_DEV_IFINDEX", _index(ipr, ifname))]
        reply = sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST)
        return reply[0].get_attr("NETDEV_A_DEV_XDP_FEATURES")
    except (NetlinkError, OSError):
        return None
    finally:
        sock.close()

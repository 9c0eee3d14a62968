"""The facts `pylvs check` reads (pylvs.shell.check), from a real kernel: the veth pair's
director namespace (tests.helpers.veth), read only; and the control socket's three states."""

from __future__ import annotations

import io
import os
import socket

import pytest

from pylvs.adm import check as decide
from pylvs.adm.config import parse
from pylvs.shell import check
from tests.helpers.veth import DIR_IP, NEEDS_NAMESPACES, PEER_IP, in_ns, ip

CONFIG = ('[director]\ninterface = "vd"\ncontrol_socket = "{socket}"\n'
          '[[virtual_server]]\naddress = "198.51.100.100:80"\n'
          '  [[virtual_server.real_server]]\n  address = "' + PEER_IP + ':80"\n'
          '  [[virtual_server.real_server]]\n  address = "203.0.113.9:80"\n')


def test_the_control_socket_free_alive_or_without_its_directory(tmp_path):
    path = str(tmp_path / "pylvs.sock")
    assert check.control_socket(path) == "free"
    assert check.control_socket(str(tmp_path / "none" / "pylvs.sock")) == "no directory"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        assert check.control_socket(path) == "alive"
    assert check.control_socket(path) == "free" and os.path.exists(path)  # left as it was


def test_missing_capabilities_are_read_from_proc():
    assert check.missing_caps() == (() if os.geteuid() == 0 else tuple(check.CAPS))


def needs_namespaces(test):
    for mark in NEEDS_NAMESPACES:
        test = mark(test)
    return test


@pytest.fixture
def director(topo, tmp_path):
    return topo, parse(CONFIG.format(socket=tmp_path / "pylvs.sock"))


@needs_namespaces
def test_the_facts_of_the_director_namespace(director):
    topo, config = director
    before = ip("-n", topo.d, "addr"), ip("-n", topo.d, "-d", "link")
    facts = in_ns(topo.d, check.gather, config)
    assert facts.links["vd"].up and f"{DIR_IP}/24" in facts.links["vd"].addresses
    assert facts.links["vd"].kind == "veth" and "lo" in facts.links
    assert facts.routes[PEER_IP] == decide.Route("vd", None, DIR_IP)
    assert facts.routes["203.0.113.9"] == "Network is unreachable"
    assert facts.control_socket == "free"
    assert facts.xdp == ""  # offload "auto": the program and maps load, attached nowhere
    assert (ip("-n", topo.d, "addr"), ip("-n", topo.d, "-d", "link")) == before


@needs_namespaces
def test_pylvs_check_prints_a_line_per_check_then_the_plan(director, tmp_path):
    topo, _ = director
    path = tmp_path / "lb.toml"
    path.write_text(CONFIG.format(socket=tmp_path / "pylvs.sock"))
    out = io.StringIO()
    assert in_ns(topo.d, check.run, str(path), "auto", "", "", out) == 0
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("ok    director.interface: vd: veth, up, mtu 1500")
    assert lines[2] == (f"ok    virtual_server[0].real_server[0]: {PEER_IP} (dr) on-link "
                        f"through vd, from {DIR_IP}")
    assert lines[3].startswith("warn  virtual_server[0].real_server[1]: no route to 203.0.113.9")
    assert "  add to vd: 198.51.100.100/32" in lines
    assert lines[-1] == f"{path}: no problems (1 warning): `pylvs run` would start as above"
    path.write_text(path.read_text().replace('"vd"', '"vdd"'))
    out = io.StringIO()
    assert in_ns(topo.d, check.run, str(path), "auto", "", "", out) == 2
    assert ("FAIL  director.interface: no interface 'vdd' on this host (it has: lo, vd); did you "
            "mean 'vd'?") in out.getvalue()

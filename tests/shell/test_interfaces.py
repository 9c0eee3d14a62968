"""An interface's facts (pylvs.shell.interfaces), against a real kernel: two namespaces joined by a
veth pair (tests.helpers.veth)."""

from __future__ import annotations

import pytest

from pylvs.shell import interfaces
from tests.helpers.veth import NEEDS_NAMESPACES, in_ns, ip

pytestmark = NEEDS_NAMESPACES


def test_interface_facts(topo):
    mac = topo.mac(topo.d, "vd")
    assert len(mac) == 6 and mac != b"\0" * 6
    shown = ip("-n", topo.d, "link", "show", "vd")
    assert mac.hex(":") in shown
    assert in_ns(topo.d, interfaces.interface_index, "vd") > 1
    with pytest.raises(OSError):
        in_ns(topo.d, interfaces.interface_mac, "nosuchdev0")

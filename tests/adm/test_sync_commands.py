"""ip_vs_ctl.c's rule for real servers of another family while a sync daemon runs (issue 23):
ip_vs_genl_set_cmd refuses -a and -e of one (EINVAL, libipvs's "Invalid operation" text, exit
status 255), tunnelled or not, after the service lookup; the sync daemon's start is refused
while one exists (tests/shell/test_sync_socket.py, ip_vs_genl_new_daemon)."""

from __future__ import annotations

import pytest

from pylvs.adm import commands, ipvsadm
from pylvs.core.director import Director
from pylvs.core.model import service_key

VIP6 = "2001:db8::100"
INVALID = "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"


def adm(director: Director, line: str, syncing: bool = False) -> tuple[int, str, str]:
    return commands.answer(director, ipvsadm.parse(line.split()), 0.0, syncing=syncing)


def _director() -> Director:
    director = Director([])
    for line in (f"-A -t [{VIP6}]:80", f"-a -t [{VIP6}]:80 -r [2001:db8:2::1]:80 -i",
                 "-A -t 192.0.2.100:80", "-a -t 192.0.2.100:80 -r 198.51.100.1 -g"):
        assert adm(director, line)[0] == 0, line
    return director


@pytest.mark.parametrize("line", [
    f"-a -t [{VIP6}]:80 -r 198.51.100.7 -i",
    "-a -t 192.0.2.100:80 -r [2001:db8:2::7]:80 -i",
])
def test_a_tunnelled_real_server_of_the_other_family_is_refused_while_syncing(line):
    director = _director()
    assert adm(director, line, syncing=True) == (255, "", INVALID)
    assert commands.mixed_family_dests(director) == 0
    assert adm(director, line)[0] == 0  # without a sync daemon IPVS takes it
    assert commands.mixed_family_dests(director) == 1


def test_editing_one_is_refused_too_and_it_stays_as_it_was():
    director = _director()
    assert adm(director, f"-a -t [{VIP6}]:80 -r 198.51.100.7 -i -w 3")[0] == 0
    assert adm(director, f"-e -t [{VIP6}]:80 -r 198.51.100.7 -i -w 5", syncing=True) == (
        255, "", INVALID)
    server = director.services[service_key(6, VIP6, 80)].find_real_server("198.51.100.7", 80)
    assert server is not None and server.weight == 3
    assert adm(director, f"-d -t [{VIP6}]:80 -r 198.51.100.7", syncing=True)[0] == 0


def test_the_service_is_looked_up_first_and_same_family_servers_pass():
    """ESRCH (Service not defined) comes before the family check; a server of the service's
    family is added and edited as ever while syncing."""
    director = _director()
    assert adm(director, "-a -t [2001:db8::99]:80 -r 198.51.100.7 -i", syncing=True) == (
        255, "", "Service not defined\n")
    assert adm(director, f"-a -t [{VIP6}]:80 -r [2001:db8:2::2]:80 -g", syncing=True)[0] == 0
    assert adm(director, f"-e -t [{VIP6}]:80 -r [2001:db8:2::2]:80 -g -w 4",
               syncing=True)[0] == 0
    assert adm(director, "-a -t 192.0.2.100:80 -r 198.51.100.2 -g", syncing=True)[0] == 0

"""Rule sets as TOML, as ipvsadm lines, and the difference a reload applies."""

from __future__ import annotations

from pylvs.adm.commands import adm
from pylvs.adm.config import parse
from pylvs.adm.ruleset import diff, from_ipvsadm, to_toml
from pylvs.core.director import Director

BASE = """
[director]
interface = "eth0"

[[virtual_server]]
address = "192.0.2.100:80"
scheduler = "wrr"

  [[virtual_server.real_server]]
  address = "10.0.0.1"
  weight = 3

  [[virtual_server.real_server]]
  address = "10.0.0.2"

[[virtual_server]]
address = "192.0.2.100:53"
protocol = "udp"
scheduler = "rr"

  [[virtual_server.real_server]]
  address = "10.0.0.9"
"""


def saved(services) -> str:
    return adm(Director(services), ["-S", "-n"], 0.0)[1]


def test_diff_touches_only_what_changed():
    old = parse(BASE).services
    new_text = (BASE.replace("weight = 3", "weight = 5")
                .replace('address = "10.0.0.2"', 'address = "10.0.0.3"')
                .replace('scheduler = "rr"', 'scheduler = "rr"\npersistence_timeout = 60'))
    new = parse(new_text).services
    assert diff(old, new) == [
        ["-d", "-t", "192.0.2.100:80", "-r", "10.0.0.2:80"],
        ["-e", "-t", "192.0.2.100:80", "-r", "10.0.0.1:80", "-g", "-w", "5"],
        ["-a", "-t", "192.0.2.100:80", "-r", "10.0.0.3:80", "-g", "-w", "1"],
        ["-E", "-u", "192.0.2.100:53", "-s", "rr", "-p", "60"]]
    assert diff(old, parse(BASE).services) == []
    director = Director(parse(BASE).services)
    for argv in diff(old, new):
        assert adm(director, argv, 0.0)[0] == 0
    assert saved(director.services.values()) == saved(new)


def test_toml_and_ipvsadm_round_trip():
    services = parse(BASE).services
    assert saved(parse(to_toml(services)).services) == saved(services)
    assert saved(from_ipvsadm(saved(services))) == saved(services)


def test_from_ipvsadm_names_the_bad_line():
    try:
        from_ipvsadm("-A -t 192.0.2.1:80 -s rr\n-a -t 192.0.2.1:80 -r nohost\n")
    except ValueError as exc:
        assert "line 2" in str(exc) and "illegal real server address" in str(exc)
    else:
        raise AssertionError("no error")


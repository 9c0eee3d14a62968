"""Rule sets as TOML, as ipvsadm lines, and the difference a reload applies."""

from __future__ import annotations

import subprocess
import sys

from pylvs.adm.commands import adm
from pylvs.adm.config import parse
from pylvs.adm.keepalived import import_services
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


KEEPALIVED = """
! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL
}
virtual_server 192.168.1.100 80 {
    delay_loop 6
    lb_algo wrr
    persistence_timeout
    persistence_granularity 255.255.255.0
    protocol TCP
    real_server 192.168.1.12 8080 {
        weight 3
        uthreshold 100
        lthreshold 10
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 192.168.1.13 80 {
        lb_kind DR
    }
}
virtual_server fwmark 7 {
    lb_algo wlc
}
"""


def test_keepalived_import_with_its_defaults():
    (service,), dropped = import_services(KEEPALIVED)
    assert saved([service]) == (
        "-A -t 192.168.1.100:80 -s wrr -p 360 -M 255.255.255.0\n"
        "-a -t 192.168.1.100:80 -r 192.168.1.12:8080 -m -w 3\n"   # NAT when none is given
        "-a -t 192.168.1.100:80 -r 192.168.1.13:80 -g -w 1\n")
    nat = service.find_real_server("192.168.1.12", 8080)
    assert (nat.upper_threshold, nat.lower_threshold) == (100, 10)
    assert [d.split(":")[1].strip() for d in dropped] == [
        "global_defs", "delay_loop (in virtual_server 192.168.1.100 80)",
        "TCP_CHECK (in real_server 192.168.1.12 8080; health checks are not imported)",
        "virtual_server fwmark 7 (only address and port services are supported)"]


def test_config_command_writes_toml_that_pylvs_reads(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(KEEPALIVED)
    result = subprocess.run([sys.executable, "-m", "pylvs", "config", "from-keepalived",
                             str(path), "--interface", "eth1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "not carried over: line 3: global_defs" in result.stderr
    config = parse(result.stdout)
    assert config.interface == "eth1" and saved(config.services) == saved(
        import_services(KEEPALIVED)[0])
    bad = tmp_path / "bad.conf"
    bad.write_text("virtual_server 1.2.3.4 80 {\n  lb_algo nosuch\n}\n")
    result = subprocess.run([sys.executable, "-m", "pylvs", "config", "from-keepalived",
                             str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "line 1" in result.stderr and "nosuch" in result.stderr

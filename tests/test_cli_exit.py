"""Exit statuses of `pylvs check` and `pylvs run` for what this host lacks (issue 26): a
misspelt interface is a config error, exit 2 naming the file and the key, which the systemd
unit does not restart (RestartPreventExitStatus=2, tests/test_examples.py). Nothing here
changes the host: `pylvs run` refuses before it touches the network, so no root is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pylvs import cli

MISSPELT = ('[director]\ninterface = "pylvs-absent0"\ncontrol_socket = "{dir}/pylvs.sock"\n'
            '[[virtual_server]]\naddress = "192.0.2.1:80"\n'
            '  [[virtual_server.real_server]]\n  address = "127.0.0.2:80"\n')


def pylvs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def misspelt(tmp_path):
    path = tmp_path / "lb.toml"
    path.write_text(MISSPELT.format(dir=tmp_path))
    return path


def test_check_refuses_a_missing_interface_naming_the_key(misspelt):
    result = pylvs("check", str(misspelt))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAIL  director.interface: no interface 'pylvs-absent0' on this host" in result.stdout
    assert result.stdout.splitlines()[-1] == (f"{misspelt}: 1 problem (1 warning): `pylvs run` "
                                              "would refuse it (exit 2)")


def test_run_refuses_it_as_a_config_error_before_touching_the_network(misspelt):
    result = pylvs("run", "--log-format", "json", str(misspelt))
    assert result.returncode == 2, result.stderr
    errors = [json.loads(line) for line in result.stderr.splitlines()
              if json.loads(line)["level"] == "error"]
    assert [(e["file"], e["key"]) for e in errors] == [(str(misspelt), "director.interface")]
    assert errors[0]["message"].startswith(f"bad config: {misspelt}: director.interface: no "
                                           "interface 'pylvs-absent0' on this host")
    assert not os.path.exists(misspelt.parent / "pylvs.sock")  # no control socket made


def test_a_keepalived_confs_missing_interface_names_its_line(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("vrrp_instance VI_1 {\n  interface pylvs-absent0\n  virtual_router_id 51\n"
                    "  virtual_ipaddress {\n    192.0.2.1\n  }\n}\n"
                    "virtual_server 192.0.2.1 80 {\n  protocol TCP\n"
                    "  real_server 127.0.0.2 80 {\n  }\n}\n")
    for command in ("check", "run"):
        result = subprocess.run([sys.executable, "-m", "pylvs", command, str(path)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYLVS_SOCKET": str(tmp_path / "s.sock")})
        assert result.returncode == 2, result.stdout + result.stderr
        assert "line 1: vrrp_instance VI_1 (vrrp[0].interface): no interface 'pylvs-absent0'" \
            in result.stdout + result.stderr


def test_check_of_a_bad_file_and_of_a_good_one(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[director]\ninterface = "lo"\n[[virtual_server]]\naddress = "192.0.2.1:80"\n'
                   'scheduler = "fastest"\n')
    result = pylvs("check", str(bad))
    assert result.returncode == 2
    assert f"FAIL  {bad}: virtual_server[0].scheduler: unknown scheduler 'fastest'" in \
        result.stdout
    good = tmp_path / "good.toml"
    good.write_text(MISSPELT.format(dir=tmp_path).replace("pylvs-absent0", "lo"))
    result = pylvs("check", str(good))
    assert result.returncode == 0, result.stdout
    assert "ok    director.interface: lo: " in result.stdout
    assert "pylvs run would:\n  read frames on lo (clients), 1 process\n" in result.stdout


@pytest.mark.skipif(os.path.exists(cli.DEFAULT_CONFIG), reason=f"this host has a "
                    f"{cli.DEFAULT_CONFIG}")
def test_check_without_a_file_names_the_default_path():
    result = pylvs("check")
    assert result.returncode == 2 and cli.DEFAULT_CONFIG in result.stderr
    assert "test a config against this host" in " ".join(pylvs("--help").stdout.split())

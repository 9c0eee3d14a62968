"""The command line as a user meets it: exit codes and messages, no root needed."""

from __future__ import annotations

import subprocess
import sys


def _pylvs(*argv: str, env_socket: str | None = None) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ)
    if env_socket:
        env["PYLVS_SOCKET"] = env_socket
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=60, env=env)


def test_bad_config_names_file_key_reason_and_exits_2(tmp_path):
    config = tmp_path / "lb.toml"
    config.write_text('[director]\ninterface = "pylvs-absent0"\n[[virtual_server]]\n'
                      'address = "192.0.2.1:80"\nscheduler = "fastest"\n')
    result = _pylvs("run", str(config))
    assert result.returncode == 2
    assert f"{config}: virtual_server[0].scheduler: unknown scheduler 'fastest'" in result.stderr


def test_adm_without_director_is_a_clear_error(tmp_path):
    sock = str(tmp_path / "none.sock")
    result = _pylvs("adm", "--socket", sock, "-Ln")
    assert result.returncode == 255
    assert "no pylvs director is running" in result.stderr and sock in result.stderr


def test_adm_usage_error_exits_2_without_a_director(tmp_path):
    result = _pylvs("adm", "-Ln", "--timeout", "-c", env_socket=str(tmp_path / "x.sock"))
    assert result.returncode == 2
    assert "conflicts with" in result.stderr


def test_adm_help_and_version():
    assert "pylvs adm -L" in _pylvs("adm", "-h").stdout
    assert _pylvs("adm", "-v").stdout.startswith("ipvsadm v1.31")


def test_realserver_rejects_bad_vip():
    result = _pylvs("realserver", "--mode", "dr", "--vip", "300.1.1.1")
    assert result.returncode != 0
    assert "300.1.1.1" in result.stderr

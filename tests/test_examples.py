"""The operator's files under examples/: the systemd unit (checked by systemd's own
`systemd-analyze verify`, in a root of its own so this host's units and binaries play no part)
and pylvs.toml, the file the unit and `pylvs run` without a file read."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from pylvs import cli
from pylvs.adm.config import load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UNIT = EXAMPLES / "pylvs.service"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_default_config_in_the_foreground_and_reloads_on_sighup():
    service = unit()["Service"]
    assert service["Type"] == "notify"  # pylvs.shell.notify says READY=1 itself
    assert service["ExecStart"] == f"pylvs run {cli.DEFAULT_CONFIG}"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad config: tests/test_cli.py
    assert set(service["CapabilityBoundingSet"].split()) == {
        "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_BIND_SERVICE"}
    assert "sudo" not in UNIT.read_text()


def test_the_example_config_is_the_default_paths_and_loads():
    text = (EXAMPLES / "pylvs.toml").read_text()
    assert text.startswith(f"# {cli.DEFAULT_CONFIG}:")
    config = load(EXAMPLES / "pylvs.toml")
    assert config.services and config.health and config.metrics == "127.0.0.1:9300"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_config_loads(name):
    """dr, nat, tun (tests/adm/test_config.py), dualstack (tests/adm/test_config_ipv6.py)."""
    assert load(EXAMPLES / name).services


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on ``text`` as /etc/systemd/system/pylvs.service of a root made
    here: systemd's own units (for the targets it names), a stand-in pylvs on systemd's
    search path and the kill of ExecReload."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for command in ("usr/local/bin/pylvs", "bin/kill"):
        (root / command).parent.mkdir(parents=True, exist_ok=True)
        (root / command).write_text("#!/bin/sh\n")
        (root / command).chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/pylvs.service").write_text(text)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "pylvs.service"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
                    reason="needs systemd-analyze (Debian's systemd; scripts/install.sh --test)")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path):
    found = verify(tmp_path, UNIT.read_text())
    assert (found.returncode, found.stdout + found.stderr) == (0, "")
    broken = verify(tmp_path / "broken", UNIT.read_text().replace("Type=notify", "Type=notfy"))
    assert "Failed to parse service type" in broken.stderr  # what it says of a mistake

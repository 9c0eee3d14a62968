"""Scheduler plug-ins: named as module:Class in the config, or found by entry point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import schedulers
from pylvs.adm.config import ConfigError, parse
from pylvs.core import model, packet
from pylvs.core.model import RealServer

CONFIG = ('[director]\ninterface = "eth0"\n[[virtual_server]]\naddress = "192.0.2.100:80"\n'
          'scheduler = "{}"\n[[virtual_server.real_server]]\naddress = "198.51.100.1"\n'
          '[[virtual_server.real_server]]\naddress = "198.51.100.2"\n')


def test_a_plug_in_needs_only_the_schedulers_package():
    assert (schedulers.RealServer, schedulers.Flow) == (model.RealServer, packet.Flow)
    example = Path(__file__).resolve().parents[2] / "examples" / "fewest_total.py"
    imported = {node.module for node in ast.walk(ast.parse(example.read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "collections.abc", "schedulers"}


def test_module_class_spec_loads_the_readme_example():
    (service,) = parse(CONFIG.format("examples.fewest_total:FewestTotal")).services
    servers = service.real_servers
    servers[0].stats.conns = 5
    assert service.scheduler.name == "fewest"
    assert service.scheduler.pick(servers, None) is servers[1]


@pytest.mark.parametrize("spec,reason", [
    ("examples.fewest_total:Nope", "unknown scheduler"),
    ("no_such_package.mod:X", "unknown scheduler"),
    ("pylvs.core.model:RealServer", "is not a subclass of schedulers.Scheduler"),
    (".2.100:8\ufffds0[", "unknown scheduler"),  # found by fuzz/ (adm): a relative import
    ("examples..x:Y", "unknown scheduler"),
    ("examples.fewest_total:", "unknown scheduler"),
])
def test_bad_specs_are_named(spec, reason):
    with pytest.raises(ConfigError) as err:
        parse(CONFIG.format(spec), "lb.toml")
    assert err.value.key == "virtual_server[0].scheduler" and reason in err.value.reason


def test_entry_point_group_is_searched(tmp_path, monkeypatch):
    dist = tmp_path / "fewest_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fewest-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pylvs.schedulers]\nfewest_ep = examples.fewest_total:FewestTotal\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = schedulers.get("fewest_ep")
    assert cls.__name__ == "FewestTotal"
    assert cls().pick([RealServer("198.51.100.1", 80)], None).address == "198.51.100.1"

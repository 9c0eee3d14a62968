"""The folders say what a file may touch (docs/layout.md), read from the sources with ast: no
module of the product is imported here.

- pylvs/core, pylvs/adm, pylvs/ha, schedulers, forwarders: no I/O module (sockets, threads,
  processes, signals, netlink, DNS, and ``time``: a sans-IO module is given the time);
- pylvs/core imports no other part of pylvs, nor the forwarders (it knows the forwarding
  methods through pylvs.core.forwarding, where they register): only the schedulers, its
  plug-ins by name; schedulers and forwarders import only the core; ha the core; adm the core
  and ha (the health and VRRP specs a config holds); shell anything but the labs and the
  command line;
- pylvs/lab may use everything of the product; nothing of the product imports the labs but
  pylvs.cli, the command line, which may import everything;
- nothing in the product imports bench or tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("pylvs", "schedulers", "forwarders")
IO_MODULES = {"socket", "subprocess", "threading", "concurrent", "asyncio", "multiprocessing",
              "select", "selectors", "mmap", "ctypes", "fcntl", "signal", "os", "shutil",
              "http", "urllib", "ssl", "pyroute2", "scapy", "time"}
SANS_IO = ("pylvs.core", "pylvs.adm", "pylvs.ha", "schedulers", "forwarders")
MAY_IMPORT = {
    "pylvs.core": ("pylvs.core", "schedulers"),
    "forwarders": ("forwarders", "pylvs.core"),
    "schedulers": ("schedulers", "pylvs.core"),
    "pylvs.ha": ("pylvs.ha", "pylvs.core", "forwarders", "schedulers"),
    "pylvs.adm": ("pylvs.adm", "pylvs.ha", "pylvs.core", "forwarders", "schedulers"),
    "pylvs.shell": ("pylvs.shell", "pylvs.adm", "pylvs.ha", "pylvs.core", "forwarders",
                    "schedulers"),
    "pylvs.lab": ("pylvs.lab", "pylvs.shell", "pylvs.adm", "pylvs.ha", "pylvs.core",
                  "forwarders", "schedulers"),
    "pylvs.cli": ("pylvs.cli", "pylvs.lab", "pylvs.shell", "pylvs.adm", "pylvs.ha", "pylvs.core",
                  "forwarders", "schedulers"),
    # any other module at the top of pylvs (__init__, __main__): everything but the labs
    "pylvs": ("pylvs.cli", "pylvs.shell", "pylvs.adm", "pylvs.ha", "pylvs.core", "forwarders",
              "schedulers"),
}
NEVER = ("bench", "tests")


def _within(name: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def imported(source: str, module: str) -> list[tuple[int, str]]:
    """Every module a source imports (relative imports resolved against ``module``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
    return found


def violations(module: str, source: str) -> list[str]:
    """What ``module`` (dotted name) imports that its folder forbids."""
    wrong = []
    rule = next((MAY_IMPORT[p] for p in sorted(MAY_IMPORT, key=len, reverse=True)
                 if _within(module, (p,))), None)
    seen: set[str] = set()
    for line, name in imported(source, module):
        top = name.split(".")[0]
        where = f"{module}:{line} imports {name}"
        if where in seen:
            continue
        seen.add(where)
        if _within(module, SANS_IO) and top in IO_MODULES:
            wrong.append(f"{where}: an I/O module in a sans-IO folder")
        elif top in NEVER:
            wrong.append(f"{where}: the product never imports {top}")
        elif rule is not None and top in PRODUCT and name != "pylvs":
            area = ".".join(name.split(".")[:2]) if top == "pylvs" else top
            if not _within(area, rule):
                wrong.append(f"{where}: not allowed from {module.rsplit('.', 1)[0]}")
    return wrong


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((name, path))
    return found


def test_every_folder_of_the_product_is_covered():
    folders = {name.rsplit(".", 1)[0] for name, path in modules() if path.name != "__init__.py"}
    assert {"pylvs.core", "pylvs.adm", "pylvs.ha", "pylvs.shell", "pylvs.lab", "schedulers",
            "forwarders"} <= folders
    assert not {f for f in folders if f.startswith("pylvs.")} - {
        "pylvs.core", "pylvs.adm", "pylvs.ha", "pylvs.shell", "pylvs.lab"}


@pytest.mark.parametrize("name,path", modules(), ids=[name for name, _ in modules()])
def test_imports_follow_the_layout(name, path):
    assert violations(name, path.read_text()) == []


def test_each_subpackage_says_its_rule():
    for package in ("core", "adm", "ha", "shell", "lab"):
        doc = ast.get_docstring(ast.parse((ROOT / "pylvs" / package / "__init__.py").read_text()))
        assert doc, f"pylvs/{package}/__init__.py has no docstring saying what it may touch"


@pytest.mark.parametrize("module,source", [
    ("pylvs.core.director", "import socket\n"),
    ("pylvs.core.packet", "from concurrent.futures import ThreadPoolExecutor\n"),
    ("pylvs.core.director", "from pylvs.adm import ipvsadm\n"),
    ("pylvs.core.conntrack", "from pylvs.adm.layouts import Names\n"),
    ("pylvs.core.conntrack", "def f():\n    from pylvs.ha import sync\n"),
    ("pylvs.core.director", "from ..shell import rings\n"),
    ("pylvs.core.director", "from ..lab.demo import run\n"),
    ("forwarders.dr", "from pylvs.shell.rings import PacketSocket\n"),
    ("schedulers.rr", "import pylvs.adm.ipvsadm\n"),
    ("pylvs.ha.vrrp", "import socket\n"),
    ("pylvs.adm.layouts", "import socket\n"),
    ("pylvs.shell.engine", "from bench import dataplane\n"),
    ("pylvs.core.conntrack", "import time\n"),
    ("pylvs.core.director", "from time import monotonic\n"),
    ("pylvs.core.director", "from pylvs.shell import engine\n"),
    ("pylvs.shell.engine", "from pylvs.lab import demo\n"),
    ("pylvs.shell.control", "from pylvs import cli\n"),
    ("pylvs.adm.commands", "from ..lab import kept\n"),
    ("pylvs.__main__", "from pylvs.lab import demo\n"),
    ("schedulers.lblc", "import time\n"),
    ("pylvs.core.director", "import forwarders\n"),
    ("pylvs.core.model", "from forwarders.nat import NatForwarder\n"),
])
def test_the_check_catches(module, source):
    assert violations(module, source)


@pytest.mark.parametrize("module,source", [
    ("pylvs.core.model", "from schedulers import Scheduler\nfrom pylvs.core import icmp\n"),
    ("forwarders.nat", "from pylvs.core.packet import checksum\n"),
    ("pylvs.adm.commands", "from pylvs.core.director import Director\n"),
    ("pylvs.shell.engine", "import socket\nfrom pylvs.adm import ipvsadm\n"),
    ("pylvs.lab.demo", "import subprocess\nfrom pylvs.shell import control\n"),
    ("pylvs.lab.kept", "import time\nimport schedulers\nfrom pylvs.core.model import Service\n"),
    ("pylvs.cli", "from pylvs.lab.commands import main\nfrom pylvs.shell import engine\n"),
    ("pylvs.__main__", "from pylvs.cli import main\n"),
    ("pylvs.shell.engine", "import time\n"),
])
def test_the_check_allows(module, source):
    assert violations(module, source) == []


CORE_OBJECTS = {"director", "table", "conn", "connection", "server", "rs", "svc", "service",
                "stats", "template", "hop", "outbox", "scheduler", "defense"}
"""The names the shell gives the core's objects (Director, ConnectionTable, Connection, ...)."""


def core_writes(source: str) -> list[int]:
    """Lines that assign to an attribute (or an item of one) of a core object, as the shell
    names them: ``conn.expires = ``, ``self.director.table.x = ``, ``director.counters[k] += ``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Subscript):
                    part = part.value
                if not isinstance(part, ast.Attribute):
                    continue
                chain = part.value
                names = []
                while isinstance(chain, ast.Attribute):
                    names.append(chain.attr)
                    chain = chain.value
                if isinstance(chain, ast.Name):
                    names.append(chain.id)
                if CORE_OBJECTS & set(names):
                    lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize("name,path", [(n, p) for n, p in modules() if n.startswith("pylvs.shell")],
                         ids=[n for n, _ in modules() if n.startswith("pylvs.shell")])
def test_the_shell_writes_no_core_object(name, path):
    assert core_writes(path.read_text()) == [], f"{name} writes into a core object"


@pytest.mark.parametrize("source", [
    "conn.expires = 3\n", "self.director.table.max_connections = 1\n",
    "director.counters['x'] += 1\n", "server.stats.inpkts += 2\n",
])
def test_the_write_check_catches(source):
    assert core_writes(source)


def test_the_write_check_allows_the_shells_own():
    assert core_writes("self.links[name] = link\nself.master, self.held = m, h\n") == []

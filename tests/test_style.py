"""The repository's style, checked by the tests: ruff passes (its rules are pyproject.toml's), and
each package's ``__init__`` docstring names every module of the package, so that the docstrings
stay the map of the folder (read from the sources with ast: nothing of the product is imported).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pylvs/core", "pylvs/adm", "pylvs/ha", "pylvs/shell", "pylvs/lab", "schedulers",
            "forwarders")


def _ruff() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_passes():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (the [test] extra has it: scripts/install.sh --test)")
    done = subprocess.run([*ruff, "check", "--no-cache", str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ruff check failed:\n{done.stdout}{done.stderr}"


def modules_of(package: str) -> list[str]:
    """The package's modules and subpackages, by name (its __init__ aside)."""
    folder = ROOT / package
    names = [p.stem for p in folder.glob("*.py") if p.name != "__init__.py"]
    names += [p.parent.name for p in folder.glob("*/__init__.py")]
    return sorted(names)


def named(name: str, text: str) -> bool:
    """``name`` is in ``text`` as a word of its own (``vrrp`` is not in ``vrrp_track``)."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def unnamed(package: str) -> list[str]:
    """The modules of ``package`` its __init__ docstring does not name as a word."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    return [name for name in modules_of(package)
            if not named(name, doc)]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_docstring_names_its_modules(package):
    assert modules_of(package), f"{package} has no module"
    missing = unnamed(package)
    assert not missing, (f"{package}/__init__.py's docstring does not name "
                         f"{', '.join(missing)}: one short line each, what it holds")


def test_the_docstring_check_reads_words():
    assert not named("vrrp", "vrrp_track (tracking) and vrrp_group")
    assert not named("nat", "NAT, and the natural order")
    assert named("vrrp", "vrrp (the state machine), sync")
    assert named("conntrack", "model, conntrack.")

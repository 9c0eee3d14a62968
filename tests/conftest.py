"""Shared by the end-to-end tests: a lab in namespaces with a real `pylvs run` in it."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.register_assert_rewrite("tests.helpers")

from tests.helpers.labs import LabRun  # noqa: E402 - after the rewrite hook, which it needs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every module in tests/e2e builds namespaces: skip it, saying why, where that cannot work."""
    if os.geteuid() != 0:
        reason = "end-to-end tests build network namespaces: run as root"
    elif not all(shutil.which(t) for t in ("ip", "nft", "curl", "ss")):
        reason = "needs iproute2, nftables and curl (scripts/install.sh)"
    else:
        return
    for item in items:
        if item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def make_lab():
    made: list[LabRun] = []

    def make(servers: int = 3, scheduler: str = "rr", weights: list[int] | None = None,
             mode: str = "dr", server_port: int = 80, persistence: int = 0,
             workers: int = 1, service_keys: tuple[str, ...] = (), tables: str = "",
             offload: str = "none", family: int = 4, tun_type: str = "ipip") -> LabRun:
        """``tables``: more TOML tables for the director's config ([sysctl], say)."""
        made.append(LabRun(mode, servers, scheduler, weights, server_port, persistence,
                           workers, service_keys, tables, offload, family, tun_type))
        return made[-1]

    yield make
    for run in made:
        run.close()

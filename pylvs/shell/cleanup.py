"""Undoing what a run made: each step tried, a failure logged, and the next step run all the
same (a stop must remove everything it can)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("pylvs")


def clean(step: Callable[[], object], what: str = "clean-up step") -> None:
    """Run ``step``; what it raises is logged as ``what`` failing, never raised."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - keep cleaning; report what could not be undone
        log.error("%s failed: %s", what, exc)

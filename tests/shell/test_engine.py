"""The engine's loop outlives what the host throws at its housekeeping (no root needed: the
engine is not started)."""

from __future__ import annotations

import logging

import pytest

import schedulers
from pylvs.adm.config import Config
from pylvs.core.model import RealServer, VirtualService
from pylvs.shell.engine import Engine
from pylvs.shell.messages import Stop


def _engine() -> Engine:
    service = VirtualService("tcp", "127.0.0.1", 80, schedulers.get("rr")())
    service.add_real_server(RealServer("127.0.0.1", 80))
    return Engine(Config("lo", services=[service]))


def test_a_failing_step_is_counted_and_logged_and_the_loop_goes_on(caplog):
    engine = _engine()

    def netlink_gone() -> None:
        raise OSError(19, "No such device")

    with caplog.at_level(logging.ERROR, logger="pylvs"):
        engine.guarded("refreshing neighbours and routes", netlink_gone)
        engine.guarded("refreshing neighbours and routes", netlink_gone)
    assert engine.director.counters["host_errors"] == 2
    assert "refreshing neighbours and routes failed; the director goes on" in caplog.text
    assert "No such device" in caplog.text


def test_stop_still_ends_the_loop():
    def interrupted() -> None:
        raise Stop("SIGTERM")

    with pytest.raises(Stop):
        _engine().guarded("serving the control socket", interrupted)

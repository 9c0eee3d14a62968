"""pylvs.shell.logs: the three formats of standard error's lines, read back as a collector or
journald would, and the JOURNAL_STREAM check against a real file's device and inode."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime

from pylvs.shell import logs


def record(level: int, message: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("pylvs").makeRecord("pylvs", level, __file__, 1, message, args,
                                                 None, extra=extra or None)


def failed() -> logging.LogRecord:
    try:
        raise ValueError("no route")
    except ValueError:
        made = record(logging.ERROR, "step failed")
        made.exc_info = sys.exc_info()
        return made


def test_journal_lines_carry_syslogs_priority_and_no_timestamp():
    journal = logs.JournalFormatter()
    assert [journal.format(record(level, "x %d", 1)) for level in (
        logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)] == [
        "<2>x 1", "<3>x 1", "<4>x 1", "<6>x 1", "<7>x 1"]
    lines = journal.format(failed()).splitlines()
    assert lines[0] == "<3>step failed" and len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)  # a traceback stays an error
    assert lines[-1] == "<3>ValueError: no route"


def test_text_lines_have_an_rfc3339_timestamp_and_the_level_unless_info():
    text = logs.TextFormatter()
    stamp, rest = text.format(record(logging.INFO, "director up")).split(" ", 1)
    assert rest == "pylvs: director up"
    assert abs(datetime.fromisoformat(stamp).timestamp() - datetime.now().timestamp()) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp)
    assert text.format(record(logging.WARNING, "no MAC")).split(" ", 1)[1] == (
        "pylvs: warning: no MAC")


def test_json_is_one_object_a_line_with_the_calls_extra_fields():
    line = logs.JsonFormatter().format(record(logging.ERROR, "bad config: %s", "f: k: r",
                                              file="f", key="k", reason="r"))
    assert "\n" not in line
    found = json.loads(line)
    assert datetime.fromisoformat(found.pop("ts")).tzinfo is not None
    assert found == {"level": "error", "logger": "pylvs", "message": "bad config: f: k: r",
                     "pid": os.getpid(), "file": "f", "key": "k", "reason": "r"}
    crashed = json.loads(logs.JsonFormatter().format(failed()))
    assert crashed["message"] == "step failed"
    assert crashed["exception"].endswith("ValueError: no route")


def test_auto_is_journal_only_when_stderr_is_the_stream_journal_stream_names(tmp_path):
    with open(tmp_path / "stream", "w") as stream, open(tmp_path / "other", "w") as other:
        found = os.fstat(stream.fileno())
        named = {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}
        assert logs.under_journal(stream.fileno(), named)
        assert not logs.under_journal(other.fileno(), named)  # inherited, stderr elsewhere
        assert not logs.under_journal(stream.fileno(), {})
        assert not logs.under_journal(stream.fileno(), {"JOURNAL_STREAM": "8:x"})

"""Where pylvs's log lines go and how they look: standard error, in one of three formats.

- ``journal``: under systemd, journald reads standard error and stamps each line itself; a
  ``<N>`` prefix (sd-daemon(3)) gives it the syslog priority, so `journalctl -p warning`
  works. No timestamp, one prefix per line (a traceback's lines too, or journald would take
  them for info).
- ``text``: a person's terminal or a file: a timestamp, ``pylvs:``, the level when it is not
  info, the message.
- ``json``: one object per line for log collectors: ts (RFC 3339), level, logger, message,
  pid (a supervisor's workers log too), and whatever a call passes in ``extra``.

``auto`` picks ``journal`` when standard error is the stream systemd says it connected to
journald (JOURNAL_STREAM, systemd.exec(5): the variable is inherited by children whose
standard error may go elsewhere, so its device and inode are compared), else ``text``.
A module of its own: the formatters are the one thing here, shared by every command that
logs, and they are tested without a director.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime

FORMATS = ("auto", "text", "journal", "json")
JOURNAL_PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                      logging.INFO: 6, logging.DEBUG: 7}
"""syslog's levels (crit, err, warning, info, debug) for logging's."""
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
"""What every LogRecord has: anything else on a record came in a call's ``extra``."""


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (one between two takes the lower one's)."""
    return next((value for level, value in sorted(JOURNAL_PRIORITIES.items(), reverse=True)
                 if levelno >= level), 7)


def rfc3339(created: float) -> str:
    """A record's time, local, with its offset and milliseconds."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``2026-12-02T04:15:39.123+00:00 pylvs: warning: message``."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{rfc3339(record.created)} pylvs: {level}{_text(self, record)}"


class JournalFormatter(logging.Formatter):
    """``<4>message``: sd-daemon(3)'s priority prefix on every line, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in _text(self, record).splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        found = {"ts": rfc3339(record.created), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage(), "pid": record.process}
        if record.exc_info:
            found["exception"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in found:
                found[key] = value
        return json.dumps(found, default=str, ensure_ascii=False)


def _text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The message, and the traceback below it when there is one."""
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + formatter.formatException(record.exc_info)
    return text


def under_journal(stderr_fd: int = 2, environ: dict[str, str] | None = None) -> bool:
    """True when ``stderr_fd`` is the stream JOURNAL_STREAM ("DEVICE:INODE") names."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stderr_fd)
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def formatter(name: str) -> logging.Formatter:
    """The formatter of a --log-format value."""
    if name == "auto":
        name = "journal" if under_journal() else "text"
    return {"text": TextFormatter, "journal": JournalFormatter, "json": JsonFormatter}[name]()


def setup(name: str = "auto", verbose: bool = False) -> None:
    """Every record of the process to standard error in the format ``name``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(name))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler],
                        force=True)

"""The config file from disk: a pylvs TOML file, or a keepalived.conf (told apart by content, or
by ``--format``) with its ``include`` files read here, keepalived's way: a pattern is globbed
(braces too) relative to the including file's directory, matches in sorted order. Both give the
same Config; a keepalived.conf also gives the notes of what was not carried over. Without
``--interface`` or a vrrp_instance to name the director's interface, a keepalived.conf's is the
one this host routes the real servers through (pylvs.adm.check.choose_interface, in a note)."""

from __future__ import annotations

import glob
import os
import socket
import sys
from pathlib import Path

from pylvs.adm import config as config_mod
from pylvs.adm import keepalived, keepalived_syntax
from pylvs.adm.config import Config, ConfigError
from pylvs.shell import addresses

FORMATS = ("auto", "toml", "keepalived")


def read(path: str) -> str:
    try:
        return Path(path).read_text() if path != "-" else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(path, "-", f"cannot read: {reason}") from None


def load(path: str, fmt: str = "auto", interface: str = "") -> tuple[Config, list[str]]:
    """The config and the notes (empty for TOML); ConfigError (KeepalivedError, with the
    notes so far, for a keepalived.conf) when the file cannot run."""
    config, notes, _ = load_placed(path, fmt, interface)
    return config, notes


def load_placed(path: str, fmt: str = "auto", interface: str = ""
                ) -> tuple[Config, list[str], dict[str, str]]:
    """``load``'s, and where each config key came from in a keepalived.conf (``locate``)."""
    text = read(path)
    if (keepalived_syntax.detect_format(text) if fmt == "auto" else fmt) == "toml":
        if interface:
            raise ConfigError(path, "--interface", "is for a keepalived.conf; a TOML config "
                              "names its interface in [director]")
        return config_mod.parse(text, path), [], {}
    conversion, config = convert(text, path, interface)
    config.source_format, config.interface_option = "keepalived", interface
    return config, conversion.notes, conversion.where


def locate(key: str, where: dict[str, str]) -> str:
    """A config key as the keepalived line it came from (the key kept after it); a TOML
    config's (``where`` empty) as it is."""
    return _line_of(key, where)


def convert(text: str, path: str, interface: str = ""
            ) -> tuple[keepalived.Conversion, Config]:
    """keepalived.conf → the conversion and the Config it builds; an error the config's checks
    find names the keepalived line it came from."""
    conversion = keepalived.convert(text, path, interface=interface, include=include,
                                    config_id=socket.gethostname().split(".")[0],
                                    route=route_interface)
    try:
        return conversion, config_mod.build(conversion.data, path)
    except ConfigError as exc:
        raise keepalived.KeepalivedError(path, _line_of(exc.key, conversion.where), exc.reason,
                                         conversion.notes) from None


def route_interface(ip: str) -> str | None:
    """The interface this host routes ``ip`` through (rtnetlink, read only); None: no route."""
    try:
        return addresses.route(ip).interface
    except (OSError, ValueError):
        return None


def include(pattern: str, including: str) -> list[tuple[str, str]]:
    """keepalived's include: relative to the including file's directory, globbed with braces,
    sorted; a pattern that matches nothing includes nothing (as keepalived's plain include)."""
    base = os.path.dirname(including) if including not in ("-", "") else "."
    found: list[str] = []
    for each in keepalived_syntax.expand_braces(pattern):
        full = each if os.path.isabs(each) else os.path.join(base or ".", each)
        found += sorted(p for p in glob.glob(full) if os.path.isfile(p))
    return [(name, read(name)) for name in found]


def _line_of(key: str, where: dict[str, str]) -> str:
    """A config key (virtual_server[0].real_server[1].weight) as the keepalived line it came
    from, the key kept after it."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in where:
            return f"{where[prefix]} ({key})"
    return key

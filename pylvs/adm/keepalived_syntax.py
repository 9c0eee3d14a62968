"""keepalived.conf's syntax, as keepalived's lib/parser.c reads it: blocks of ``keyword
args... [{ ... }]``, comments from ``!`` or ``#`` outside quotes, ``@ID`` conditional lines and
``include`` (through a reader the caller passes: pattern and including file in; the matching
files' names and texts out, in glob order). pylvs.adm.keepalived turns the blocks into a pylvs
config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pylvs.adm.config import ConfigError

Include = Callable[[str, str], list[tuple[str, str]]]
"""(pattern, including file) → [(file, text)] of the files the pattern matches."""

MAX_INCLUDE_DEPTH = 32


@dataclass
class Block:
    keyword: str
    args: list[str]
    children: list[Block] = field(default_factory=list)
    line: int = 0
    source: str = ""

    @property
    def text(self) -> str:
        return " ".join([self.keyword, *self.args])


def detect_format(text: str) -> str:
    """"toml" or "keepalived", by the first line that is not a comment: TOML's start with a
    table header or ``key =``; keepalived's with a keyword and its arguments or ``{``."""
    for raw in text.splitlines():
        line = _decomment(raw.strip())
        if not line or line.startswith("@"):
            continue
        if line.startswith("[") or re.match(r'^[\w."\'-]+\s*=', line):
            return "toml"
        return "keepalived"
    return "toml"


_TOKEN = re.compile(r'"[^"]*"?|[{}]|[^\s{}"]+')


def _decomment(line: str) -> str:
    """lib/parser.c's decomment: ``!`` or ``#`` outside quotes ends the line; ``\\#`` and
    ``\\!`` outside quotes stand for the character."""
    out, quote, i = [], False, 0
    while i < len(line):
        char = line[i]
        if char == '"':
            quote = not quote
        elif char == "\\" and not quote and line[i + 1:i + 2] in ("#", "!"):
            out.append(line[i + 1])
            i += 2
            continue
        elif char in "#!" and not quote:
            break
        out.append(char)
        i += 1
    return "".join(out).strip()


def _conditional(line: str, config_id: str | None) -> str | None:
    """``@ID rest`` is read when ID is the config id, ``@^ID rest`` when it is not."""
    if not line.startswith("@"):
        return line
    negate = line.startswith("@^")
    word, *rest = line[2 if negate else 1:].split(None, 1)
    if not rest or not rest[0].strip():
        return None
    return rest[0].strip() if (word == config_id) != negate else None


def _lines(text: str, source: str, include: Include | None, config_id: str | None,
           depth: int = 0) -> Iterator[tuple[str, int, list[str]]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _conditional(raw.strip(), config_id)
        if line is None:
            continue
        line = _decomment(line)
        if not line:
            continue
        if line.startswith("$"):
            raise ConfigError(source, f"line {number}", "keepalived's $NAME definitions and "
                              "substitutions are not supported: write the values out")
        word, _, rest = line.partition(" ")
        if word in ("include", "includer", "includem", "includew", "includeb", "includea"):
            yield from _included(rest.strip(), source, number, include, config_id, depth)
            continue
        words = [t[1:-1] if t.startswith('"') and t.endswith('"') and len(t) > 1
                 else t.lstrip('"') for t in _TOKEN.findall(line)]
        yield source, number, words


def _included(pattern: str, source: str, number: int, include: Include | None,
              config_id: str | None, depth: int) -> Iterator[tuple[str, int, list[str]]]:
    if include is None:
        raise ConfigError(source, f"line {number}", f"include {pattern}: no file reader given")
    if depth >= MAX_INCLUDE_DEPTH:
        raise ConfigError(source, f"line {number}", f"include {pattern}: more than "
                          f"{MAX_INCLUDE_DEPTH} levels deep (an include loop?)")
    found = include(pattern, source)
    if not found:
        yield source, number, ["include", pattern]  # noted by the converter
    for name, text in found:
        yield from _lines(text, name, include, config_id, depth + 1)


def expand_braces(pattern: str) -> list[str]:
    """glob's GLOB_BRACE, as keepalived's include: ``a{b,c}d`` is ``abd`` and ``acd``."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    out: list[str] = []
    for part in match.group(1).split(","):
        out += expand_braces(pattern[:match.start()] + part + pattern[match.end():])
    return list(dict.fromkeys(out))


def parse_blocks(text: str, source: str = "keepalived.conf", include: Include | None = None,
                 config_id: str | None = None) -> list[Block]:
    """keepalived's syntax: ``keyword args... [{ ... }]``, with its comments, conditional
    lines and includes; a ``{`` or ``}`` may share a line with words."""
    root = Block("", [])
    stack = [root]
    for name, number, words in _lines(text, source, include, config_id):
        while words:
            if words[0] == "}":
                if len(stack) == 1:
                    raise ConfigError(name, f"line {number}", "'}' without a block to close")
                stack.pop()
                words = words[1:]
                continue
            end = next((i for i, w in enumerate(words) if w in ("{", "}")), len(words))
            head, opens = words[:end], words[end:end + 1] == ["{"]
            block = Block(head[0], head[1:], line=number, source=name) if head else None
            words = words[end + 1:] if opens else words[end:]
            if block is not None:
                stack[-1].children.append(block)
            if opens:
                stack.append(block or Block("", [], line=number, source=name))
    if len(stack) != 1:
        raise ConfigError(stack[-1].source, f"line {stack[-1].line}",
                          f"the block `{stack[-1].text}` is never closed")
    return root.children

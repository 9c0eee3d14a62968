"""keepalived.conf's syntax (pylvs.adm.keepalived_syntax), as keepalived's lib/parser.c reads
it: comments, quotes, braces on a line, conditional lines, brace globs, the format's detection."""

from __future__ import annotations

from pylvs.adm import keepalived_syntax as syntax


def test_comments_end_a_line_outside_quotes_only():
    blocks = syntax.parse_blocks('a "x # y ! z" # gone\nb \\#1 ! gone\nc { d e } f\n')
    assert [(b.keyword, b.args) for b in blocks] == [("a", ["x # y ! z"]), ("b", ["#1"]),
                                                     ("c", []), ("f", [])]
    assert [(d.keyword, d.args) for d in blocks[2].children] == [("d", ["e"])]
    assert [(b.keyword, b.args) for b in syntax.parse_blocks('a "" b\n')] == [
        ("a", ["", "b"])]  # an empty quoted word is a word, not a brace


def test_conditional_lines_follow_the_config_id():
    text = "@high x 1\n@^high y 2\n@low z 3\n"
    assert [b.keyword for b in syntax.parse_blocks(text, config_id="high")] == ["x"]
    assert [b.keyword for b in syntax.parse_blocks(text, config_id="other")] == ["y"]


def test_brace_globs_expand_as_glob_brace():
    assert syntax.expand_braces("a{b,c{d,e}}f") == ["abf", "acdf", "acef"]
    assert syntax.expand_braces("plain") == ["plain"]


def test_detect_format():
    assert syntax.detect_format("# c\n[director]\ninterface = 'x'\n") == "toml"
    assert syntax.detect_format("key = 1\n") == "toml"
    assert syntax.detect_format("! c\nglobal_defs {\n}\n") == "keepalived"
    assert syntax.detect_format("virtual_server 1.2.3.4 80 {\n") == "keepalived"

"""The fuzz corpus (fuzz/corpus/TARGET), replayed through its target on every test run: each
input found once stays a test. No atheris needed here."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
CASES = sorted((target, path) for target in TARGETS for path in (CORPUS / target).glob("*"))


def test_every_target_has_seeds():
    assert {target for target, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize("target,path", CASES, ids=[f"{t}/{p.name[:12]}" for t, p in CASES])
def test_the_corpus_input_is_refused_or_taken_never_a_crash(target, path):
    TARGETS[target](path.read_bytes())

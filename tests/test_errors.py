"""The bad-spec corpus: each `tests/errors/NAME.ns` fails with the message in `NAME.txt`.

Regenerate the expected messages with `pytest --update-golden` and review the diff: each must
point at the offending text and give a useful hint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nscompile.compiler.pipeline import front_end
from nscompile.errors import SpecError
from nscompile.lang.source import read_source

ERRORS = Path(__file__).resolve().parent / "errors"
SPECS = sorted(ERRORS.glob("*.ns"))


def test_the_corpus_is_there():
    assert len(SPECS) >= 25


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bad_spec(path: Path, golden) -> None:
    source = read_source(str(path))
    with pytest.raises(SpecError) as info:
        front_end(source, path.name)  # what `nscompile check` runs: check, then fold
    golden(path.with_suffix(".txt"), info.value.render(source) + "\n")

"""Shared test options: `pytest --update-golden` rewrites golden files instead of comparing.

Every test runs with `NSCOMPILE_VERIFY=1`: each compile checks the IR after lowering and after
every pass, in this process and in the commands the tests start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def verify_between_passes() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NSCOMPILE_VERIFY", "1")
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files from the current output (review the diff before committing)",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text with a golden file, or rewrite it under --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(path: Path, text: str) -> None:
        if update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if not update:
                pytest.fail(f"golden file {path} did not exist; written, review and rerun")
        assert text == path.read_text(encoding="utf-8"), f"differs from golden {path}"

    return check

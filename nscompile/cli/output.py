"""Writing a command's output: text or bytes to a file or stdout, or `--check` against the file."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from nscompile.files import write_atomic

OK, INPUT_ERROR = 0, 1


class UserError(Exception):
    """A problem with the user's input that is not about a spec's text (files, options)."""


def emit_text(text: str, output: str | None, check: bool, fix: str = "regenerate it") -> int:
    """Write `text` to `output` (stdout when None), or with `check` compare it with the file."""
    if check:
        if output is None:
            raise UserError("--check needs -o FILE: the file to compare with")
        path = Path(output)
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current == text:
            return OK
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{output} (on disk)",
            f"{output} (generated)",
        )
        sys.stdout.writelines(diff)
        reason = "is stale" if path.is_file() else "does not exist"
        print(f"nscompile: {output} {reason}; {fix}", file=sys.stderr)
        return INPUT_ERROR
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomic(output, text)
        except OSError as error:
            raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    return OK


def emit_bytes(data: bytes, output: str, check: bool) -> int:
    if check:
        path = Path(output)
        if path.is_file() and path.read_bytes() == data:
            return OK
        reason = "is stale" if path.is_file() else "does not exist"
        print(f"nscompile: {output} {reason}; regenerate it", file=sys.stderr)
        return INPUT_ERROR
    try:
        write_atomic(output, data)
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    return OK

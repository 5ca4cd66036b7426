"""Reading a spec file: bytes to text, with E003 for what is not a UTF-8 text file."""

from __future__ import annotations

from pathlib import Path

from nscompile.errors import Span, SpecError


def read_source(path: str) -> str:
    """Read a spec file as text.

    Raises:
        SpecError: E003 for a missing file, a directory, a binary or a non-UTF-8 file.
    """
    where = Path(path)
    if where.is_dir():
        raise SpecError("E003", f"'{path}' is a directory", None, "pass a .ns file")
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise SpecError("E003", f"no such file '{path}'", None, "check the path") from None
    except OSError as err:
        hint = "check that the file exists and is readable"
        raise SpecError("E003", f"cannot read '{path}': {err.strerror}", None, hint) from None
    if b"\0" in data:
        span = _byte_span(path, data, data.index(b"\0"))
        raise SpecError("E003", "this is a binary file", span, "a spec is a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        span = _byte_span(path, data, err.start)
        hint = "save the file as UTF-8"
        raise SpecError("E003", "the file is not valid UTF-8", span, hint) from None


def _byte_span(path: str, data: bytes, offset: int) -> Span:
    """The span of the byte at `offset`, its column counted in characters of its line."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return Span.point(path, data.count(b"\n", 0, offset) + 1, col)

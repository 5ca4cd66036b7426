"""Reading table files: CSV (streamed in chunks, header detected, cells typed per column) and
Parquet (through pyarrow). Every problem is an InputError naming the file, column and row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.table import Table

HEADER_SAMPLE = 100  # rows below the first that tell a header from data
CHUNK_ROWS = 16_384  # rows per chunk when a CSV is streamed (`iter_csv`)


def read_file(path: Path, text: frozenset[str]) -> Table:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"data file '{path}' {what}")
    if path.suffix.lower() == ".parquet":
        return _parquet(path, text)
    chunks = list(iter_csv(path, None, text))
    return chunks[0]


def _parquet(path: Path, text: frozenset[str] = frozenset()) -> Table:
    """A Parquet file: number and bool columns as numbers, string columns typed as a CSV's."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow", hint="pip install pyarrow") from None
    try:
        frame = pq.ParquetFile(path).read()
    except Exception as error:  # pyarrow raises several types for a corrupt file
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else "no details"
        raise InputError(f"'{path}' is not a readable Parquet file ({first})") from None
    columns = tuple(str(n) for n in frame.column_names)
    _check_names(columns, str(path))
    arrays = []
    for name, column in zip(columns, frame.columns, strict=True):
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values = [None if v is None else _decoded(v, name, path) for v in column.to_pylist()]
            arrays.append(_typed(name, _raw(values), str(path), 1, name in text))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            arrays.append(_typed(name, _raw(column.to_pylist()), str(path), 1, name in text))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.to_numpy(zero_copy_only=False)
            arrays.append(np.asarray(values, dtype=np.float64))  # a null is NaN: refused later
        else:
            raise InputError(
                f"column '{name}' of {path} holds {kind} values; nscompile reads numbers, "
                "booleans and text",
                hint="convert the column (a date to a number of days, say) or drop it",
            )
    return Table(str(path), columns, tuple(arrays))


def _raw(values: list[object]) -> list[str]:
    return ["" if v is None else str(v).strip() for v in values]


def _decoded(value: bytes, column: str, path: Path) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"column '{column}' of {path} holds bytes that are not UTF-8") from None


def iter_csv(
    path: Path, chunk_rows: int | None = CHUNK_ROWS, text: frozenset[str] = frozenset()
) -> Iterator[Table]:
    """A CSV file as Tables of at most `chunk_rows` rows each (None: one Table of all rows).

    The first row is the header unless it looks like data (`_is_header`; then the columns are
    c0, c1, ...). A UTF-8 byte-order mark is dropped. Each chunk's columns are typed on their own.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise InputError(f"cannot read '{path}': {error.strerror or error}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            first = _next_row(reader, path)
            if first is None:
                raise InputError(f"'{path}' is empty")
            first_lines = reader.line_num
            sample: list[list[str]] = []
            while len(sample) < HEADER_SAMPLE and (row := _next_row(reader, path)) is not None:
                sample.append(row)
            header = first if _is_header(first, sample) else None
            columns = (
                tuple(h.strip() for h in header)
                if header
                else tuple(f"c{i}" for i in range(len(first)))
            )
            _check_names(columns, str(path))
            pending = sample if header else [first, *sample]
            line = first_lines if header else 0
            emitted = False
            while True:
                row = _next_row(reader, path)
                if row is not None:
                    pending.append(row)
                while pending and (row is None or (chunk_rows and len(pending) >= chunk_rows)):
                    size = chunk_rows or len(pending)
                    yield typed_columns(str(path), columns, pending[:size], line + 1, text)
                    emitted = True
                    line += len(pending[:size])
                    pending = pending[size:]
                if row is None:
                    break
        except UnicodeDecodeError:
            raise InputError(f"'{path}' is not a UTF-8 text (CSV) file") from None
        if not emitted:
            raise InputError(f"'{path}' has a header but no rows")


def _is_header(first: list[str], sample: list[list[str]]) -> bool:
    """Whether the first row names the columns, judged against the rows below it.

    A row with a number in it is data (`95, 48, ..., van`: a KEEL file has no header). A row of
    words is a header when one of them does not occur in its column below (`colour` above
    `red, green`), and data when every word does (`red, France` above more such rows).
    """
    if any(is_number(cell.strip()) for cell in first):
        return False
    if not sample:
        return True
    width = len(first)
    below = [{row[c].strip() for row in sample if len(row) == width} for c in range(width)]
    return any(cell.strip() not in seen for cell, seen in zip(first, below, strict=True))


def _next_row(reader: Any, path: Path) -> list[str] | None:  # noqa: ANN401 (csv's reader type)
    """The next non-empty row, or None at the end; csv's own errors become InputErrors."""
    try:
        for row in reader:
            if row:
                return row
    except csv.Error as error:
        raise InputError(
            f"{path}:{reader.line_num}: not a readable CSV row ({error})",
            hint=f"a cell holds at most {csv.field_size_limit()} characters",
        ) from None
    return None


def typed_columns(
    name: str,
    columns: tuple[str, ...],
    rows: list[list[str]],
    first_line: int,
    text: frozenset[str] = frozenset(),
) -> Table:
    """Rows of CSV cells -> a Table: numbers where every cell of a column is one, else text.

    Columns named in `text` stay text whatever their cells look like (a run's text columns,
    where a chunk may hold only `1` and `2`). `first_line` is the file line of `rows[0]`.
    """
    width = len(columns)
    for r, row in enumerate(rows):
        if len(row) != width:
            raise InputError(
                f"{name}:{first_line + r}: {len(row)} fields where the first row has {width}"
            )
    cells = tuple(
        _typed(column, [row[c].strip() for row in rows], name, first_line, column in text)
        for c, column in enumerate(columns)
    )
    return Table(name, columns, cells)


def _typed(column: str, raw: list[str], source: str, first_line: int, text: bool) -> np.ndarray:
    """One column's cells: float64 numbers (an empty cell is NaN), or an object array of str."""
    if not text:
        numbers = _numbers(raw)
        if numbers is not None:
            return numbers
        _refuse_stray_text(raw, column, source, first_line)
    for r, cell in enumerate(raw):
        if not cell or (is_number(cell) and not math.isfinite(float(cell))):
            what = "a missing value" if not cell else f"the missing-value marker {shown(cell)}"
            raise InputError(
                f"column '{column}' of {source} has {what} in line {first_line + r}",
                hint="fill or drop the missing values first",
            )
        if "\x00" in cell:
            where = f"line {first_line + r}"
            raise InputError(f"column '{column}' of {source} has a NUL byte in {where}")
    return np.array(raw, dtype=object)


def _numbers(raw: list[str]) -> np.ndarray | None:
    """The cells as float64 (empty: NaN), or None when one is not a plain decimal number."""
    try:
        values = np.array([float(v) if v else math.nan for v in raw], dtype=np.float64)
    except ValueError:
        return None
    joined = "".join(raw)
    if ("_" in joined or not joined.isascii()) and not all(is_number(v) for v in raw if v):
        return None  # Python's float() also takes 1_000 and ١٢
    return values


def shown(cell: object) -> str:
    """A cell in a message: quoted, escaped (a newline stays on one line), at most 40 chars."""
    return repr(str(cell)[:40])


def _refuse_stray_text(raw: list[str], column: str, name: str, first_line: int) -> None:
    """A column of numbers with a few words in it is a typo or a missing-value marker, not a
    text column: refuse it at the first word rather than one-hot encode every number."""
    words = [r for r, v in enumerate(raw) if v and not is_number(v)]
    numbers = sum(1 for v in raw if v and is_number(v) and math.isfinite(float(v)))
    if numbers >= len(words):
        row = words[0]
        raise InputError(
            f"column '{column}' of {name} is numeric but for {shown(raw[row])} in line "
            f"{first_line + row}",
            hint="fix or drop that cell (an empty cell marks a missing value)",
        )


def _check_names(columns: tuple[str, ...], source: str) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise InputError(
                f"{source} has two columns named '{column}'",
                hint="rename one: a column is chosen by its name (--target)",
            )
        seen.add(column)


def is_number(cell: str) -> bool:
    """A plain decimal number (or nan/inf): Python's float() also takes `1_000` and `١٢`."""
    if "_" in cell or not cell.isascii():
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True

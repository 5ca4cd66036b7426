"""Checking and preparing the data of a search: shapes, finite values, task, scaling."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from nscompile.errors import InputError
from nscompile.lang.syntax import MAX_ORDER, MAX_RANK, TASK_CHOICES
from nscompile.learn.data import auto_task

MIN_ROWS = 10
# The chance that scale_features centres any column of a table whose columns are centred.
CENTRE_FAMILY_ERROR = 0.01


@dataclass(frozen=True)
class Prepared:
    """Checked data: standardised features, the target as trained on, and the task."""

    x: np.ndarray  # rows x D, standardised
    y: np.ndarray  # standardised float (regression) or class indices 0..C-1
    task: str
    outputs: int
    classes: np.ndarray | None


def check_params(max_order: object, rank: object, batch_size: object, epochs: object) -> None:
    """Raise InputError for hyper-parameters outside their bounds."""
    for name, value, low, high in (
        ("max_order", max_order, 1, MAX_ORDER),
        ("rank", rank, 1, MAX_RANK),
        ("batch_size", batch_size, 2, 1 << 20),
        ("epochs", epochs, 1, 1 << 20),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(f"{name} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise InputError(f"{name} must be in {low}..{high}, got {value}")


def prepare(X: object, y: object, task: str, batch_size: int) -> Prepared:
    """Validate (X, y) and return the standardised arrays and the task.

    Task "auto" is classification when every target value is an integer and there are at
    most 20 distinct values; otherwise regression.

    Raises:
        InputError: wrong shapes, NaN or infinite values (naming column and first row), a
        constant target, one class, or fewer rows than 10 or than half a batch.
    """
    X = _numeric(X, "X")
    y = _numeric(y, "y")
    if X.ndim != 2:
        raise InputError(f"X must be a 2-D table (rows x features), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"y must be one column, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if X.shape[1] < 1:
        raise InputError("X has no feature column")
    _finite(X, "X")
    _finite(y[:, None], "y")
    rows = X.shape[0]
    if rows < max(MIN_ROWS, batch_size // 2):
        raise InputError(
            f"only {rows} rows: a search needs at least {max(MIN_ROWS, batch_size // 2)}",
            hint="give more rows or a smaller batch_size",
        )
    if task not in TASK_CHOICES:
        raise InputError(f"unknown task '{task}'", hint=f"one of {', '.join(TASK_CHOICES)}")
    values = np.unique(y)
    if len(values) == 1:
        what = "one class" if task == "classification" else "a constant target"
        raise InputError(f"y has {what} (every value is {values[0]:g}): nothing to learn")
    if task == "auto":
        task = auto_task(values)
    x = scale_features(X)
    if task == "classification":
        classes, labels = np.unique(y, return_inverse=True)
        return Prepared(x, labels.astype(np.int64), task, len(classes), classes)
    return Prepared(x, (y - y.mean()) / y.std(), task, 1, None)


def centring_threshold(columns: int, family_error: float = CENTRE_FAMILY_ERROR) -> float:
    """The |mean| / (std / sqrt(rows)) above which a column counts as not centred.

    Bonferroni over the columns: a two-sided normal test at `family_error / columns` each, so
    the chance that *any* column of a centred table is shifted by chance stays at
    `family_error` whatever the width (a fixed 3-sigma test shifts one column or more of
    13% of the tables at D = 50).
    """
    return NormalDist().inv_cdf(1.0 - family_error / (2.0 * max(1, columns)))


def scale_features(X: np.ndarray) -> np.ndarray:
    """Divide every column by its std; subtract its mean only when that is significant.

    A shift changes polynomial structure (`(x + m)**2` has a linear term), so a column whose
    mean is within sampling noise of 0 (`|mean| <= t std / sqrt(rows)`, `t` from
    `centring_threshold`) is only scaled; other columns are fully standardised. Constant
    columns become 0.
    """
    mean, std = X.mean(0), X.std(0)
    limit = centring_threshold(X.shape[1])
    significant = np.abs(mean) > limit * std / np.sqrt(X.shape[0])
    centre = np.where(significant | (std == 0), mean, 0.0)
    return (X - centre) / np.where(std > 0, std, 1.0)


def _numeric(values: object, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} is not numeric: {error}") from None


def _finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    column = int(np.argmax(bad.any(axis=0)))
    row = int(np.argmax(bad[:, column]))
    what = "NaN" if np.isnan(values[row, column]) else "an infinite value"
    where = f"column {column}, first at row {row}" if name == "X" else f"row {row}"
    raise InputError(f"{name} has {what} in {where}", hint="drop or impute those rows")

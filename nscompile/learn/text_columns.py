"""Array-likes as tables: the estimators accept what the command line reads, text included.

A DataFrame or an object/str array whose columns are numbers or text becomes a `Table` (its
text columns then one-hot encoded by `nscompile.learn.encoding.Encoding`, as the command line does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nscompile.learn.table import Table


def text_table(X: Any) -> Table | None:  # noqa: ANN401 (array-like)
    """X as a Table when it has text columns (str cells that are not numbers), else None.

    A DataFrame's columns keep their names; an array's are c0, c1, ... . Cells of any other
    type are left to scikit-learn's own validation (which rejects them).
    """
    columns = getattr(X, "columns", None)
    if columns is not None and hasattr(X, "iloc"):
        names = tuple(str(c) for c in columns)
        array = X.to_numpy(dtype=object)
    else:
        try:
            array = np.asarray(X)
        except (TypeError, ValueError):
            return None
        if array.ndim != 2 or array.dtype.kind not in "OU":
            return None
        names = tuple(f"c{i}" for i in range(array.shape[1]))
    cells = []
    for i in range(array.shape[1]):
        column = array[:, i]
        numbers = [number(v) for v in column]
        if all(n is not None for n in numbers):
            cells.append(np.array(numbers, dtype=np.float64))
        elif all(n is not None or isinstance(v, str) for n, v in zip(numbers, column, strict=True)):
            cells.append(np.array([str(v) for v in column], dtype=object))
        else:
            return None
    if not any(c.dtype.kind == "O" for c in cells):
        return None
    return Table("X", names, tuple(cells))


def number(value: object) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.number):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

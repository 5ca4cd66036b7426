"""A table: named columns, float64 arrays for numbers and arrays of str for text.

Tables come from `nscompile.learn.data` (files and bundled datasets); every numeric cell is
checked (`check_cells`) before a model sees it. A table of images (`nscompile.learn.images`) says
its image shape in `image`: its first C*H*W columns are the pixels in channel-major order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nscompile.errors import InputError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # models run in float32: larger numbers are inf


@dataclass(frozen=True)
class Table:
    """Named columns: float64 arrays for numeric columns, arrays of str for text columns."""

    name: str
    columns: tuple[str, ...]
    cells: tuple[np.ndarray, ...]
    image: tuple[int, int, int] | None = None  # (C, H, W) of a table of images: columns p0, p1...

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
        """The table without column `name` (an image shape stays unless a pixel goes)."""
        index = self.columns.index(name)
        keep = [i for i in range(len(self.columns)) if i != index]
        image = self.image if self.image is None or index >= math.prod(self.image) else None
        return Table(
            self.name,
            tuple(self.columns[i] for i in keep),
            tuple(self.cells[i] for i in keep),
            image,
        )

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.name, self.columns, tuple(c[rows] for c in self.cells), self.image)


def numeric_table(name: str, columns: tuple[str, ...], values: np.ndarray) -> Table:
    """A Table from a rows x columns numeric array."""
    values = np.asarray(values, dtype=np.float64)
    return Table(name, columns, tuple(values[:, i] for i in range(values.shape[1])))


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

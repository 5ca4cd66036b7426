"""How a table's feature columns become a network's inputs: numbers as they are, text one-hot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.readers import is_number, shown
from nscompile.learn.table import Table, category_text

MAX_CATEGORIES = 100  # one-hot columns per text column: an ID or free text is refused, not exploded


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
        image = getattr(table, "image", None)
        if image is not None and math.prod(image) != len(self.columns):
            # pixel columns are found by name too: larger images would pass for their corner
            shape = " x ".join(str(n) for n in image)
            raise InputError(
                f"{table.name} holds images of {shape} ({math.prod(image)} pixels); the model "
                f"takes {len(self.columns)} inputs",
                hint="give it images of the size and channels it was trained on",
            )
        parts = []
        for name, categories in zip(self.columns, self.categories, strict=True):
            cells = table.column(name)
            if categories is None:
                if cells.dtype.kind != "f":
                    row = next(
                        (r for r, v in enumerate(cells.tolist()) if not is_number(str(v))), 0
                    )
                    raise InputError(
                        f"column '{name}' of {table.name} holds text ({shown(cells[row])}) in "
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
                    f"column '{name}' of {table.name} has the category {shown(text[row])} in "
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

"""Seeded row splits: train / validation / test for a run, train / validation for an estimator.

Both draw each group's rows (each class for classification, all rows for regression) in one
permutation from `numpy.random.default_rng(seed)` and cut it in the order test, validation,
train, keeping at least one training row per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nscompile.errors import InputError


@dataclass(frozen=True)
class Split:
    """Row indices of the three parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _parts(target: np.ndarray, task: str, seed: int, test: float, val: float) -> Split:
    """The three parts, any of them empty but train; per class for classification."""
    rng = np.random.default_rng(seed)
    groups = (
        [np.flatnonzero(target == c) for c in np.unique(target)]
        if task == "classification"
        else [np.arange(len(target))]
    )
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for rows in groups:
        rows = rng.permutation(rows)
        n_test = int(round(len(rows) * test))
        n_val = int(round(len(rows) * val))
        while len(rows) - n_test - n_val < 1 and n_test + n_val > 0:
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    return Split(*(np.sort(np.concatenate(parts[k])) for k in ("train", "val", "test")))


def split_rows(
    target: np.ndarray, task: str, seed: int, test: float = 0.2, val: float = 0.1
) -> Split:
    """A seeded train / validation / test split; per class (stratified) for classification.

    Raises InputError when the validation or test part would be empty.
    """
    split = _parts(target, task, seed, test, val)
    if len(split.val) == 0 or len(split.test) == 0:
        raise InputError(f"{len(target)} rows are too few for a train/validation/test split")
    return split


def validation_rows(
    target: np.ndarray, task: str, seed: int, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) without a test part, as the estimators hold out for
    early stopping; when no row is left for validation, the training rows are used for it."""
    split = _parts(target, task, seed, 0.0, fraction)
    return split.train, split.val if len(split.val) else split.train

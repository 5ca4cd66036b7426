"""What training fits before the network, and what a deployed model must apply the same way.

`Preprocess` = the table's `Encoding` (text columns one-hot) + the training split's `Scaler`
(standardised inputs; a standardised regression target) + the classes. A run directory keeps it
in `preprocess.json`; the run's `model.onnx` has it inside the graph (`deploy_onnx`), so both
take the rows a user has and answer in the target's own units.

Standardisation is computed in float32, `(float32(x) - float32(mean)) / float32(std)`, exactly
as the ONNX graph's Sub and Div compute it: the network sees bit-identical inputs in training
and when deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.data import Supervised
from nscompile.learn.encoding import Encoding
from nscompile.learn.table import FLOAT32_MAX, Table, category_text

FORMAT = 1


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on a training split (features; the target for regression)."""

    mean: np.ndarray
    std: np.ndarray
    target_mean: float = 0.0
    target_std: float = 1.0

    @staticmethod
    def fit(features: np.ndarray, target: np.ndarray, task: str, channels: int = 0) -> Scaler:
        """Per column; with `channels` (an image network's C), per channel: the columns are
        C blocks of pixels, each standardised by its channel's mean and std over every pixel
        (per pixel, a corner pixel that is dark in all but one training image would scale up
        by a thousand when it is not)."""
        if channels:
            rows = features.reshape(len(features), channels, -1)
            per_channel = rows.mean(axis=(0, 2)), rows.std(axis=(0, 2))
            mean, std = (np.repeat(v, rows.shape[2]) for v in per_channel)
        else:
            mean, std = features.mean(axis=0), features.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        if task == "regression":
            t_std = float(target.std())
            t_std = t_std if t_std > 1e-12 else 1.0  # as the features: rounding noise is not spread
            return Scaler(mean, std, float(target.mean()), t_std)
        return Scaler(mean, std)

    def features(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.mean.astype(np.float32), self.std.astype(np.float32)
        return (np.asarray(x, dtype=np.float32) - mean) / std

    def target(self, y: np.ndarray, task: str) -> np.ndarray:
        if task == "classification":
            return y.astype(np.int64)
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }


@dataclass(frozen=True)
class Preprocess:
    """Raw feature rows -> the network's standardised inputs; its outputs -> target units."""

    task: str
    target: str
    encoding: Encoding
    scaler: Scaler
    labels: tuple[str, ...] | None  # classification: class code -> its label

    @staticmethod
    def fit(data: Supervised, train_rows: np.ndarray, channels: int = 0) -> Preprocess:
        """Fitted on the training rows; `channels`: see `Scaler.fit`."""
        features, target = data.features[train_rows], data.target[train_rows]
        scaler = Scaler.fit(features, target, data.task, channels)
        _check_centred(data, scaler)
        return Preprocess(data.task, data.target_name, data.encoding, scaler, data.labels)

    def numeric(self, table: Table) -> np.ndarray:
        """The deployed graph's `input`: the numeric feature columns, float32, in order."""
        columns = [table.column(n) for n in self.encoding.numeric]
        if not columns:
            return np.empty((table.rows, 0), dtype=np.float32)
        return np.column_stack(columns).astype(np.float32)

    def text(self, table: Table) -> np.ndarray:
        """The deployed graph's `categories`: the text feature columns, as strings."""
        columns = [category_text(table.column(n)) for n in self.encoding.text]
        if not columns:
            return np.empty((table.rows, 0), dtype=object)
        out = np.empty((table.rows, len(columns)), dtype=object)  # object: str keeps a NUL
        for i, column in enumerate(columns):
            out[:, i] = column
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task": self.task,
            "target": self.target,
            **self.encoding.as_dict(),
            "standardise": {"mean": self.scaler.mean.tolist(), "std": self.scaler.std.tolist()},
            "target_scale": {"mean": self.scaler.target_mean, "std": self.scaler.target_std},
            "classes": list(self.labels) if self.labels is not None else None,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Preprocess:
        scaler = Scaler(
            np.asarray(data["standardise"]["mean"], dtype=np.float64),
            np.asarray(data["standardise"]["std"], dtype=np.float64),
            float(data["target_scale"]["mean"]),
            float(data["target_scale"]["std"]),
        )
        classes = data.get("classes")
        return Preprocess(
            str(data["task"]),
            str(data["target"]),
            Encoding.from_dict(data),
            scaler,
            tuple(str(c) for c in classes) if classes is not None else None,
        )


def _check_centred(data: Supervised, scaler: Scaler) -> None:
    """`x - mean` in float32 must stay finite: a column spanning more than float32's range
    (values near +-3.4e38 of both signs) would train on infinities."""
    if data.task == "regression":
        span = float(np.max(np.abs(data.target - scaler.target_mean)))
        if span > FLOAT32_MAX:
            raise InputError(
                f"the target '{data.target_name}' of {data.name} spans {span:.3g} around its "
                "mean, beyond float32's range",
                hint="rescale the target (for example its logarithm)",
            )
    span = np.max(np.abs(data.features - scaler.mean), axis=0) if len(data.features) else []
    for index, value in enumerate(span):
        if value > FLOAT32_MAX:
            raise InputError(
                f"input {index + 1} of {data.name} ({_input_name(data, index)}) spans "
                f"{value:.3g} around its mean, beyond float32's range",
                hint="rescale the column (for example its logarithm)",
            )


def _input_name(data: Supervised, index: int) -> str:
    """The column behind network input `index` (text columns count once per category)."""
    position = 0
    for name, categories in zip(data.encoding.columns, data.encoding.categories, strict=True):
        position += 1 if categories is None else len(categories)
        if index < position:
            return f"column '{name}'"
    return "a column"

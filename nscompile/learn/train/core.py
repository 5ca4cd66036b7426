"""The training protocol: splits, standardisation, metrics and one seed's training.

Protocol (NeuronSeek's public one): features standardised with the training split's statistics,
test 20% and validation 10% of the rows (stratified for classification, drawn with the seed),
Adam (lr 1e-3, weight decay 1e-5), batch 64, cosine decay over `epochs`, early stopping on the
validation loss (patience 20) with the best state restored. Regression targets are standardised
with the training split's mean and std too, so every MSE here is in units of the target's std.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nscompile.errors import InputError
from nscompile.files import write_atomic


@dataclass(frozen=True)
class Protocol:
    """Training settings; the defaults are the paper's public protocol."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 64
    patience: int = 20
    test: float = 0.2
    val: float = 0.1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Diverged(InputError):
    """The loss became NaN or infinite; the model holds the last good state."""

    def __init__(self, epoch: int, what: str) -> None:
        kept = "the last good checkpoint is kept" if epoch > 1 else "no epoch finished"
        super().__init__(
            f"training {what} diverged at epoch {epoch}: the loss became NaN or infinite; {kept}",
            hint="try a lower learning rate (--lr)",
        )
        self.epoch = epoch


@dataclass(frozen=True)
class Split:
    """Row indices of the three parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_rows(
    target: np.ndarray, task: str, seed: int, test: float = 0.2, val: float = 0.1
) -> Split:
    """A seeded split; per class (stratified) for classification."""
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
    split = Split(*(np.sort(np.concatenate(parts[k])) for k in ("train", "val", "test")))
    if len(split.val) == 0 or len(split.test) == 0:
        raise InputError(f"{len(target)} rows are too few for a train/validation/test split")
    return split


def metrics(task: str, outputs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Regression: loss (= mse) and r2; classification: loss (cross-entropy), accuracy, macro F1.

    `target` is already standardised (regression) or class codes (classification).
    """
    out = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        pred = out.reshape(len(out), -1)[:, 0]
        y = np.asarray(target, dtype=np.float64)
        mse = float(np.mean((pred - y) ** 2))
        var = float(np.var(y))
        return {"loss": mse, "mse": mse, "r2": 1.0 - mse / var if var > 0 else 0.0}
    y = np.asarray(target).astype(np.int64)
    shifted = out - out.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-np.mean(log_probs[np.arange(len(y)), y]))
    pred = out.argmax(axis=1)
    f1s = []
    for c in range(out.shape[1]):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        if tp + fp + fn > 0:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "loss": loss,
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
    }


def main_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "mse"


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


@dataclass
class SeedRun:
    """What training one model with one seed produced."""

    state: dict[str, torch.Tensor]
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int


EpochHook = Callable[[int], None]


def _save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def fit_seed(
    model: nn.Module,
    task: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    protocol: Protocol,
    seed: int,
    what: str = "",
    checkpoint: Path | None = None,
    on_epoch: EpochHook | None = None,
) -> SeedRun:
    """Train `model` (already initialised) under `protocol`; resume from `checkpoint` if it exists.

    The checkpoint is rewritten after every epoch; `on_epoch(epoch)` runs after it is saved, so
    an interruption there (KeyboardInterrupt) loses nothing. Raises Diverged on a NaN loss, with
    the model holding the best state so far and the checkpoint left at the last good epoch.
    """
    x_train, y_train = (torch.from_numpy(a) for a in train)
    x_val, y_val = val
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
        nn.functional.cross_entropy
        if task == "classification"
        else (lambda out, y: nn.functional.mse_loss(out[:, 0], y))
    )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=protocol.epochs)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_metric": []}
    best_loss, best_epoch, stale, start = math.inf, 0, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        history, best_state = saved["history"], saved["best_state"]
        best_loss, best_epoch, stale, start = (
            saved["best_loss"],
            saved["best_epoch"],
            saved["stale"],
            saved["epoch"],
        )
    epoch = start
    rows = len(x_train)
    for epoch in range(start, protocol.epochs):
        if stale >= protocol.patience:
            break
        model.train()
        order = torch.randperm(rows, generator=generator)
        total = 0.0
        for first in range(0, rows, protocol.batch_size):
            batch = order[first : first + protocol.batch_size]
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            if not torch.isfinite(loss):
                model.load_state_dict(best_state)
                raise Diverged(epoch + 1, what)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        schedule.step()
        scores = metrics(task, predict(model, x_val), y_val)
        if not math.isfinite(scores["loss"]):
            model.load_state_dict(best_state)
            raise Diverged(epoch + 1, what)
        history["train_loss"].append(total / rows)
        history["val_loss"].append(scores["loss"])
        history["val_metric"].append(scores[main_metric(task)])
        if scores["loss"] < best_loss:
            best_loss, best_epoch, stale = scores["loss"], epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if checkpoint is not None:
            _save(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "generator": generator.get_state(),
                    "history": history,
                    "best_state": best_state,
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "stale": stale,
                    "epoch": epoch + 1,
                },
            )
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.load_state_dict(best_state)
    return SeedRun(best_state, history, best_epoch, len(history["train_loss"]))


_ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


class MLP(nn.Module):
    """An MLP baseline with the same interface as a generated network.

    `activations` (one per hidden layer, default ReLU) are the spec network's, so that a
    baseline differs from the network it is compared with in its neurons only.
    """

    def __init__(
        self,
        inputs: int,
        hidden: list[int],
        outputs: int,
        task: str,
        activations: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.task, self.in_features, self.out_features = task, inputs, outputs
        names = list(activations) if activations is not None else ["relu"] * len(hidden)
        if len(names) != len(hidden):
            raise ValueError(f"{len(hidden)} hidden layers but {len(names)} activations")
        widths = [inputs, *hidden]
        layers: list[nn.Module] = []
        for a, b, name in zip(widths[:-1], widths[1:], names, strict=True):
            layers += [nn.Linear(a, b), _ACTIVATION_MODULES[name]()]
        layers.append(nn.Linear(widths[-1], outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def mlp_parameters(inputs: int, hidden: list[int], outputs: int) -> int:
    widths = [inputs, *hidden, outputs]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def matched_widths(inputs: int, hidden: list[int], outputs: int, target: int) -> list[int]:
    """`hidden` scaled by one factor so the MLP has about `target` parameters."""
    if not hidden:
        return []

    def widths(k: float) -> list[int]:
        return [max(1, round(w * k)) for w in hidden]

    low, high = 1e-4, 1e4
    for _ in range(100):
        mid = math.sqrt(low * high)
        if mlp_parameters(inputs, widths(mid), outputs) < target:
            low = mid
        else:
            high = mid
    candidates = [widths(low), widths(high)]
    return min(candidates, key=lambda w: abs(mlp_parameters(inputs, w, outputs) - target))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

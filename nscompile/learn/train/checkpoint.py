"""What one seed's training keeps between epochs, and its checkpoint file.

A checkpoint is rewritten after every epoch (`fit_seed`): the model, optimiser, schedule and
batch-order states and the `TrainingState`, so that a resumed run continues where it stopped
and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nscompile.errors import InputError
from nscompile.files import write_atomic


@dataclass
class TrainingState:
    """Where training stands: what a checkpoint keeps besides the torch states."""

    history: dict[str, list[float]]
    best_state: dict[str, torch.Tensor]
    best_loss: float = math.inf
    best_epoch: int = 0
    stale: int = 0  # epochs since the best validation loss
    epoch: int = 0  # epochs finished

    def record(self, model: nn.Module, train_loss: float, val_loss: float, metric: float) -> None:
        """One finished epoch: its losses, and the model's state if it is the best so far."""
        self.epoch += 1
        self.history["train_loss"].append(train_loss)
        self.history["val_loss"].append(val_loss)
        self.history["val_metric"].append(metric)
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = val_loss, self.epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1


@dataclass
class Optimiser:
    """The torch objects one seed's training steps with; their states go in the checkpoint."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # the batch order


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """`torch.save(payload)` to `path`, written atomically: an interruption leaves the old file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def save_checkpoint(path: Path, model: nn.Module, opt: Optimiser, progress: TrainingState) -> None:
    save_atomic(
        path,
        {
            "model": model.state_dict(),
            "optimizer": opt.optimizer.state_dict(),
            "schedule": opt.schedule.state_dict(),
            "generator": opt.generator.get_state(),
            "history": progress.history,
            "best_state": progress.best_state,
            "best_loss": progress.best_loss,
            "best_epoch": progress.best_epoch,
            "stale": progress.stale,
            "epoch": progress.epoch,
        },
    )


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def resume(saved: dict[str, Any], path: Path, model: nn.Module, opt: Optimiser) -> TrainingState:
    """Load a checkpoint (`load(path)`) into `model` and `opt`; the progress it recorded."""
    try:
        model.load_state_dict(saved["model"])
        opt.optimizer.load_state_dict(saved["optimizer"])
        opt.schedule.load_state_dict(saved["schedule"])
        opt.generator.set_state(saved["generator"])
    except (KeyError, RuntimeError, ValueError) as error:
        # A checkpoint of another network, or of this one as another nscompile laid it out
        # (the optimizer's state follows the module's parameters, which a version may fuse).
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else "no details"
        raise InputError(
            f"the checkpoint {path} does not fit this network ({first})",
            hint="run again without --resume to start over",
        ) from None
    return TrainingState(
        saved["history"],
        saved["best_state"],
        saved["best_loss"],
        saved["best_epoch"],
        saved["stale"],
        saved["epoch"],
    )

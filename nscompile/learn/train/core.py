"""The training protocol: metrics and one seed's training (splits: `split`).

Protocol (NeuronSeek's public one): features standardised with the training split's statistics,
test 20% and validation 10% of the rows (stratified for classification, drawn with the seed),
Adam (lr 1e-3, weight decay 1e-5), batch 64, cosine decay over `epochs`, early stopping on the
validation loss (patience 20) with the best state restored. Regression targets are standardised
with the training split's mean and std too, so every MSE here is in units of the target's std.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nscompile.compiler import ops
from nscompile.errors import InputError
from nscompile.learn.choices import MLP_BASELINES
from nscompile.learn.probabilities import log_softmax
from nscompile.learn.train import checkpoint as saved_state
from nscompile.learn.train.checkpoint import Optimiser, TrainingState, save_checkpoint
from nscompile.learn.train.distributed import Ranks

if TYPE_CHECKING:
    from nscompile.compiler.ir import NetworkIR


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
    #: Training images only (see `augment`): "auto" (= "crop"), "none", "crop", "crop+flip".
    augment: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def augment(x: torch.Tensor, shape: tuple[int, int, int], mode: str, generator) -> torch.Tensor:  # noqa: ANN001
    """A batch of image rows (pixels channel-major), each shifted at random: zero-padded by
    an eighth of its side (4 pixels at 28-32, 1 at 8) and cropped back, the standard random
    crop; with "crop+flip" also mirrored left-right with probability 1/2 (not the default:
    a mirrored digit is another symbol). Zero is the training mean, as the rows are
    standardised. "none" returns `x`."""
    if mode == "none":
        return x
    channels, height, width = shape
    n = x.shape[0]
    pad = max(1, round(min(height, width) / 8))
    padded = nn.functional.pad(x.reshape(n, channels, height, width), (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    rows = (dy + torch.arange(height))[:, :, None].to(x.device)  # n x H x 1
    cols = (dx + torch.arange(width))[:, None, :].to(x.device)  # n x 1 x W
    index = torch.arange(n, device=x.device)[:, None, None]
    out = padded[index, :, rows, cols].permute(0, 3, 1, 2)
    if mode == "crop+flip":
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(3), out)
    return out.reshape(n, -1)


class Diverged(InputError):
    """The loss became NaN or infinite; the model holds the last good state."""

    def __init__(self, epoch: int, what: str) -> None:
        kept = "the last good checkpoint is kept" if epoch > 1 else "no epoch finished"
        super().__init__(
            f"training {what} diverged at epoch {epoch}: the loss became NaN or infinite; {kept}",
            hint="try a lower learning rate (--lr)",
        )
        self.epoch = epoch


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
    log_probs = log_softmax(out)
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
    """The model's outputs for the rows `x`, on the device its parameters are on."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        return model(inputs).cpu().numpy()


def scores(
    model: nn.Module, task: str, x: np.ndarray, y: np.ndarray, ranks: Ranks | None = None
) -> dict[str, float]:
    """`metrics` of the model on (x, y); with several ranks each predicts its piece of the
    rows and every rank gets the metrics of all of them (`distributed`)."""
    ranks = ranks or Ranks()
    ranks.sync_buffers(model)
    lo, hi = ranks.bounds(len(x))
    return metrics(task, ranks.gather(predict(model, x[lo:hi]), len(x)), y)


@dataclass
class SeedRun:
    """What training one model with one seed produced."""

    state: dict[str, torch.Tensor]
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int


EpochHook = Callable[[int], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _loss_function(task: str, reduction: str = "mean") -> LossFn:
    if task == "classification":
        return lambda out, y: nn.functional.cross_entropy(out, y, reduction=reduction)
    return lambda out, y: nn.functional.mse_loss(out[:, 0], y, reduction=reduction)


def _train_epoch(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    task: str,
    opt: Optimiser,
    batch_size: int,
    mode: str = "none",
    ranks: Ranks | None = None,
) -> float | None:
    """One pass over the shuffled training rows; the mean loss, or None when it is not finite.

    The losses are summed as a float64 tensor and read once per epoch: no step waits for a
    Python number (on a GPU each `float(loss)` would wait for the device). A non-finite loss
    makes the sum non-finite, so the epoch that diverged is still the one reported. An image
    network's batches are augmented (`augment`, `mode`). With several ranks `model` is the
    DistributedDataParallel wrapper and each rank computes its piece of every batch
    (`distributed`: the gradient is still the batch's mean loss's).
    """
    ranks = ranks or Ranks()
    x_train, y_train = train
    rows = len(x_train)
    model.train()
    order = torch.randperm(rows, generator=opt.generator).to(x_train.device)
    total = torch.zeros((), dtype=torch.float64, device=x_train.device)
    inner = getattr(model, "module", model)
    shape = getattr(inner, "in_shape", None)  # an image network's (C, H, W)
    mean_loss = _loss_function(task)
    sum_loss = _loss_function(task, "sum")
    for first in range(0, rows, batch_size):
        batch = order[first : first + batch_size]
        inputs, targets = x_train[batch], y_train[batch]
        if shape is not None:
            inputs = augment(inputs, shape, mode, opt.generator)
        if ranks.world == 1:
            loss = mean_loss(model(inputs), targets)
            total += loss.detach().double() * len(batch)
        else:
            lo, hi = ranks.bounds(len(batch))
            # A rank with no row of a short last batch still joins the gradient average,
            # with one row weighted 0.
            empty = hi == lo
            piece = slice(0, 1) if empty else slice(lo, hi)
            part = sum_loss(model(inputs[piece]), targets[piece]) * (0.0 if empty else 1.0)
            loss = part * (ranks.world / len(batch))
            total += part.detach().double()
        opt.optimizer.zero_grad()
        loss.backward()
        opt.optimizer.step()
    opt.schedule.step()
    mean = float(ranks.sum(total)) / rows
    return mean if math.isfinite(mean) else None


def optimiser(model: nn.Module, protocol: Protocol, seed: int) -> Optimiser:
    """The protocol's Adam with cosine decay, and the batch order's generator seeded `seed`."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=protocol.epochs)
    return Optimiser(optimizer, schedule, torch.Generator().manual_seed(seed))


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
    ranks: Ranks | None = None,
) -> SeedRun:
    """Train `model` (already initialised) under `protocol`; resume from `checkpoint` if it exists.

    The checkpoint is rewritten after every epoch; `on_epoch(epoch)` runs after it is saved, so
    an interruption there (KeyboardInterrupt) loses nothing. Raises Diverged on a NaN loss, with
    the model holding the best state so far and the checkpoint left at the last good epoch.
    With several `ranks` (`distributed`) only rank 0 reads and writes the checkpoint.
    """
    ranks = ranks or Ranks()
    tensors = tuple(torch.from_numpy(part).to(ranks.device) for part in train)
    net = ranks.wrap(model)
    opt = optimiser(model, protocol, seed)
    saved = ranks.share(lambda: saved_state.load(checkpoint) if checkpoint else None)
    if saved is not None:
        assert checkpoint is not None
        progress = saved_state.resume(saved, checkpoint, model, opt)
    else:
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_metric": []}
        progress = TrainingState(history, copy.deepcopy(model.state_dict()))
    mode = "crop" if protocol.augment == "auto" else protocol.augment
    while progress.epoch < protocol.epochs and progress.stale < protocol.patience:
        train_loss = _train_epoch(
            net,
            tensors,
            task,
            opt,
            protocol.batch_size,
            mode,
            ranks,  # type: ignore[arg-type]
        )
        found = scores(model, task, *val, ranks) if train_loss is not None else None
        if found is None or not math.isfinite(found["loss"]):
            model.load_state_dict(progress.best_state)
            raise Diverged(progress.epoch + 1, what)
        progress.record(model, train_loss, found["loss"], found[main_metric(task)])
        if checkpoint is not None and ranks.main:
            save_checkpoint(checkpoint, model, opt, progress)
        if on_epoch is not None:
            on_epoch(progress.epoch)
    model.load_state_dict(progress.best_state)
    return SeedRun(
        progress.best_state,
        progress.history,
        progress.best_epoch,
        len(progress.history["train_loss"]),
    )


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
            # ops names the module (the compiler never imports torch); torch.nn has it.
            layers += [nn.Linear(a, b), getattr(nn, ops.ACTIVATIONS[name].module)()]
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


@dataclass(frozen=True)
class RunModels:
    """What a run trains, by key ("spec" and each baseline): how to build each, its widths."""

    factories: dict[str, Callable[[], nn.Module]]
    widths: dict[str, list[int]]
    activations: list[str]  # the spec network's hidden activations, the baselines' too


def run_models(
    module: ModuleType, net: NetworkIR, task: str, width: int, baselines: Sequence[str]
) -> RunModels:
    """The spec's network (from its generated `module`) and the baselines asked for: an MLP of
    the same hidden widths (`mlp`) or of about the same parameter count (`mlp-params`), with the
    network's activations. Seeds torch's global generator (0) to count the parameters."""
    outputs = net.out_features
    dense = [layer for layer in net.layers if hasattr(layer, "out_features")]
    hidden = [layer.out_features for layer in dense[:-1]]
    activations = [layer.activation for layer in dense[:-1]]
    if net.image is not None and set(MLP_BASELINES) & set(baselines):
        raise InputError(
            f"network '{net.name}' takes images: an MLP on its pixels is no baseline for it",
            hint="compare it with --baseline plain (the same convs, no neurons) and plain-params",
        )
    torch.manual_seed(0)
    spec_params = parameter_count(module.build(net.name))
    factories: dict[str, Callable[[], nn.Module]] = {"spec": lambda: module.build(net.name)}
    widths: dict[str, list[int]] = {"spec": hidden}
    if "mlp" in baselines:
        widths["mlp"] = hidden
    if "mlp-params" in baselines:
        widths["mlp-params"] = matched_widths(width, hidden, outputs, spec_params)
    for name in MLP_BASELINES:
        if name in baselines:
            factories[name] = lambda w=widths[name]: MLP(width, w, outputs, task, activations)
    return RunModels(factories, widths, activations)  # the image baselines: see train.plain

"""`NeuronSeek`: the structure search as a scikit-learn estimator."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch.nn import functional as F

from nscompile.learn.search import train
from nscompile.learn.search.inputs import check_params, prepare
from nscompile.learn.search.model import DualStream
from nscompile.learn.search.spec import spec_for

Progress = Callable[[int, int], None]


class NeuronSeek(BaseEstimator):
    """NeuronSeek-TD structure search: which pure and interaction orders a neuron needs.

    Args:
        max_order: K, the highest order searched (1..9).
        rank: R, the CP rank of the interaction terms (1..4096).
        epochs: stage-1 epochs (gated training).
        batch_size: stage-1 mini-batch size (batches are near-equal, never one row).
        lambda_max: the L0 penalty reached at `ramp_end`; relative to the task loss when
            `relative_penalty` (the penalty is then `lambda * loss.detach() * sum L0`, i.e.
            the gradient of `log(loss) + lambda * sum L0`: scale-free).
        threshold: stage-1 candidates are the terms whose expected L0 exceeds it.
        warmup: fraction of the epochs with open gates and no penalty.
        ramp_end: fraction of the epochs where lambda reaches lambda_max.
        lr: Adam learning rate of the weights (BatchNorm and bias too); gates use `gate_lr`.
        gate_lr: Adam learning rate of the gates' log alpha.
        relative_penalty: see `lambda_max`.
        prune: run stage 2 (refit and backward elimination on the validation loss).
        significance: stage 2 keeps a term when the validation loss without it is worse by
            more than this many sigmas of paired per-row tests (`train.worse_by`) and by more
            than the fraction `tolerance` of the best validation loss.
        refit_iters: L-BFGS iterations per stage-2 refit (a close call gets as many more, on
            both sides; see `train.prune`).
        validation_fraction: share of the rows held out for stage 2 and `val_metric`.
        hidden: the hidden widths of the network written into `spec_`. (64, 32) rather than
            the public code's (6, 3): on the validation splits of examples/paper/tabular.py it
            was better on 3 of 4 datasets, and (6, 3) under-fits (an MLP of that size reaches
            61% on vehicle, 80% at (64, 32)).
        seed: seed of the split, the initialisation and the gate samples.
        task: "auto", "regression" or "classification" (auto: integer targets with at most
            20 distinct values are classes).
        threads: torch CPU threads during `fit` (restored afterwards).

    Attributes (after `fit`): `structure_`, `spec_`, `history_`, `task_`, `seconds_`,
    `val_metric_` and `metric_name_` ("mse" on the standardised target, or "accuracy");
    `stage1_` (the structure of the gates alone: expected L0 above `threshold`),
    `prune_trace_` (stage 2's trials: term, validation loss, `train.worse_by` sigmas, kept)
    and `undecided_` (None, or why no structure beats a constant on the validation rows).
    """

    def __init__(
        self,
        max_order: int = 5,
        rank: int = 8,
        epochs: int = 40,
        batch_size: int = 128,
        lambda_max: float = 0.05,
        threshold: float = 0.5,
        warmup: float = 0.25,
        ramp_end: float = 0.75,
        lr: float = 0.01,
        gate_lr: float = 0.05,
        relative_penalty: bool = True,
        prune: bool = True,
        significance: float = 3.0,
        tolerance: float = 0.1,
        refit_iters: int = 300,
        validation_fraction: float = 0.2,
        hidden: tuple[int, ...] = (64, 32),
        seed: int = 0,
        task: str = "auto",
        threads: int = 1,
    ) -> None:
        self.max_order = max_order
        self.rank = rank
        self.epochs = epochs
        self.batch_size = batch_size
        self.lambda_max = lambda_max
        self.threshold = threshold
        self.warmup = warmup
        self.ramp_end = ramp_end
        self.lr = lr
        self.gate_lr = gate_lr
        self.relative_penalty = relative_penalty
        self.prune = prune
        self.significance = significance
        self.tolerance = tolerance
        self.refit_iters = refit_iters
        self.validation_fraction = validation_fraction
        self.hidden = hidden
        self.seed = seed
        self.task = task
        self.threads = threads

    def fit(self, X: object, y: object, progress: Progress | None = None) -> NeuronSeek:
        """Search the structure of (X, y); `progress(epoch_done, epochs)` after every epoch."""
        start = time.perf_counter()
        check_params(self.max_order, self.rank, self.batch_size, self.epochs)
        data = prepare(X, y, self.task, self.batch_size)
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.threads)))
        try:
            self._search(data, progress)
        finally:
            torch.set_num_threads(threads)
        self.task_ = data.task
        self.n_features_in_ = data.x.shape[1]
        self.spec_ = spec_for(
            self.structure_, data.x.shape[1], data.task, data.outputs, self.hidden, []
        )
        self.seconds_ = time.perf_counter() - start
        return self

    def _search(self, data, progress: Progress | None) -> None:
        torch.manual_seed(self.seed)
        rows = data.x.shape[0]
        order = np.random.default_rng(self.seed).permutation(rows)
        n_val = min(
            rows - max(2, self.batch_size // 2), max(2, int(rows * self.validation_fraction))
        )
        val, fit = order[:n_val], order[n_val:]
        x = torch.tensor(data.x, dtype=torch.float32)
        if data.task == "classification":
            y = torch.tensor(data.y, dtype=torch.long)
            loss_fn, metric = F.cross_entropy, "accuracy"
        else:
            y = torch.tensor(data.y, dtype=torch.float32)[:, None]
            loss_fn, metric = F.mse_loss, "mse"
        xt, yt, xv, yv = x[fit], y[fit], x[val], y[val]
        target = F.one_hot(yt, data.outputs).to(xt.dtype) if data.task == "classification" else yt
        model = DualStream(xt, data.outputs, self.max_order, self.rank, target)
        history: dict = {"loss": [], "gates": {n: [] for n in model.names}}

        def on_epoch(epoch: int, loss: float, gates: dict[str, float]) -> None:
            history["loss"].append(loss)
            for name, prob in gates.items():
                history["gates"][name].append(prob)
            if progress is not None:
                progress(epoch + 1, self.epochs)

        lrs = {"pure": self.lr, "cp": self.lr, "norm": self.lr, "gate": self.gate_lr}
        train.train_gated(
            model, xt, yt, loss_fn, epochs=self.epochs, batch_size=self.batch_size,
            lambda_max=self.lambda_max, lrs=lrs, warmup=self.warmup, ramp_end=self.ramp_end,
            relative_penalty=self.relative_penalty, on_epoch=on_epoch,
        )  # fmt: skip
        probs = model.keep_probabilities()
        candidates = [n for n, p in probs.items() if p > self.threshold]
        if not candidates:
            candidates = [max(probs, key=probs.__getitem__)]
        self.prune_trace_ = []
        if self.prune:
            model, keep, _ = train.prune(
                model, (xt, yt, xv, yv), loss_fn, candidates,
                significance=self.significance, tolerance=self.tolerance, iters=self.refit_iters,
                trace=self.prune_trace_,
            )  # fmt: skip
        else:
            keep = candidates
            model.mask.copy_(torch.tensor([float(n in keep) for n in model.names]))
            train.recalibrate(model, xt)
        model.eval()
        with torch.no_grad():
            out = model(xv, "open")
        if metric == "accuracy":
            value = float((out.argmax(1) == yv).double().mean())
        else:
            value = float(F.mse_loss(out, yv))
        history["val_metric"] = value
        self.history_ = history
        self.val_metric_, self.metric_name_ = value, metric
        self.candidates_ = candidates
        self.structure_ = _structure(keep, probs, self.rank)
        self.stage1_ = _structure(candidates, probs, self.rank)
        self.undecided_ = self._undecided(model, yt, xv, yv, data.outputs)

    def _undecided(self, model, yt, xv, yv, outputs: int) -> str | None:  # noqa: ANN001
        """Why the search cannot decide, or None: the found terms must beat a constant."""
        if not self.prune:
            return None
        if yt.dtype == torch.long:
            counts = torch.bincount(yt, minlength=outputs).double() + 0.5
            constant = counts.log().expand(xv.shape[0], outputs)
        else:
            constant = yt.mean(0, keepdim=True).expand(xv.shape[0], yt.shape[1])
        flat = train.row_scores(constant, yv)
        found = train.row_losses(model, xv, yv)
        if train.worse_by(flat, found) > self.significance:
            return None
        return (
            "no structure predicts the validation rows better than a constant: every order "
            "is equally good (or bad); the structure reported is a guess"
        )


def _structure(keep: list[str], probs: dict[str, float], rank: int) -> dict:
    def orders(stream: str) -> list[int]:
        return sorted(int(n.split("_")[1]) for n in keep if n.startswith(stream))

    def gates(stream: str) -> dict[int, float]:
        return {int(n.split("_")[1]): round(p, 4) for n, p in probs.items() if n.startswith(stream)}

    return {
        "pure": orders("pure"),
        "interact": orders("interact"),
        "rank": rank,
        "gates": {"pure": gates("pure"), "interact": gates("interact")},
    }


__all__ = ["NeuronSeek"]

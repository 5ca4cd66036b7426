"""Training of the search model: the gated search (stage 1) and the pruning refits (stage 2).

Stage 1 (`train_gated`): Adam with per-group learning rates and a per-step cosine decay to
1e-5, gradient clipping at norm 1, mini-batches of near-equal size (`n // batch_size`
batches, so no batch is ever smaller than `batch_size` or than the whole set: BatchNorm never
sees a single row). Schedule, as fractions of the epochs: [0, warmup) gates open (z = 1) and
lambda = 0; [warmup, ramp_end) gates sampled, lambda rises linearly to lambda_max; then holds.

Stage 2 (`refit`, `prune`): BatchNorm statistics are recomputed on the whole training set and
frozen, gates are fixed to 0/1, and the remaining model is fitted to convergence with L-BFGS
(deterministic and precise: a term explaining 1e-4 of the variance is visible). Candidates are
then tried for removal one at a time; see `prune`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nscompile.learn.search.model import DualStream

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_gated(
    model: DualStream,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    lambda_max: float,
    lrs: dict[str, float],
    warmup: float,
    ramp_end: float,
    relative_penalty: bool,
    on_epoch: Callable[[int, float, dict[str, float]], None],
) -> None:
    """Stage 1: train `model` with sampled gates and the L0 penalty schedule."""
    opt = torch.optim.Adam(model.parameter_groups(lrs))
    batches = max(1, x.shape[0] // batch_size)
    total = max(1, epochs * batches)
    base = [g["lr"] for g in opt.param_groups]
    step = 0
    for epoch in range(epochs):
        frac = epoch / max(1, epochs)
        if frac < warmup:
            lam, mode = 0.0, "open"
        else:
            lam = lambda_max * min(1.0, (frac - warmup) / max(1e-9, ramp_end - warmup))
            mode = "sample"
        model.train()
        losses = []
        for idx in torch.randperm(x.shape[0]).tensor_split(batches):
            scale = 0.5 * (1.0 + math.cos(math.pi * step / total))
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = 1e-5 + (lr - 1e-5) * scale
            task = loss_fn(model(x[idx], mode), y[idx])
            loss = task
            if lam > 0.0:
                weight = lam * (task.detach() if relative_penalty else 1.0)
                loss = task + weight * model.gates.expected_l0().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(task.detach()))
            step += 1
        on_epoch(epoch, sum(losses) / len(losses), model.keep_probabilities())


def recalibrate(model: DualStream, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the whole of `x`, then switch to eval."""
    model.train()
    saved = [norm.momentum for norm in model.norms]
    for norm in model.norms:
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        model.terms(x)
    for norm, momentum in zip(model.norms, saved, strict=True):
        norm.momentum = momentum
    model.eval()


def refit(model: DualStream, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, iters: int) -> None:
    """Fit the weights of `model`'s active terms (gates open, BatchNorm frozen) with L-BFGS."""
    recalibrate(model, x)
    # The weights only: a frozen BatchNorm's scale and shift repeat a term's own scale and the
    # bias, and every extra tensor costs L-BFGS a Python-level operation per step.
    params = [model.pure_w, model.factors, model.out_map, model.bias]
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=iters,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_change=1e-14,  # the default 1e-9 stopped fits above a weak term's worth
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x, "open"), y)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in params]
    model.hold_input(x)
    try:
        opt.step(closure)
    finally:
        model.hold_input(None)
    if not all(torch.isfinite(p).all() for p in params):  # diverged: keep the start
        with torch.no_grad():
            for p, start in zip(params, before, strict=True):
                p.copy_(start)


def row_scores(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-row score stage 2 judges by (float64): the squared error of a regression, the
    Brier score `sum_c (p_c - [c = y])**2` of a classification (class indices).

    Not the cross-entropy: on nearly separable classes L-BFGS drives the logits up, a few
    confidently wrong rows then carry a validation cross-entropy of 1-15, and its mean
    said the opposite of most rows. The Brier score is proper and bounded (0..2).
    """
    if y.dtype == torch.long:
        probs = torch.softmax(out.double(), dim=1)
        return ((probs - F.one_hot(y, out.shape[1]).double()) ** 2).sum(1)
    return ((out.double() - y.double()) ** 2).reshape(out.shape[0], -1).mean(1)


def row_losses(model: DualStream, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`row_scores` of `model` (gates open); a non-finite score counts as infinite."""
    model.eval()
    with torch.no_grad():
        out = row_scores(model(x, "open"), y)
    return torch.nan_to_num(out, nan=math.inf)


def worse_by(trial: torch.Tensor, reference: torch.Tensor) -> float:
    """How much worse `trial` is than `reference` on the same rows, in sigmas.

    Two paired tests of the per-row score differences, the larger z counting: Wilcoxon's
    signed-rank test and the mean difference over its standard error. Paired per row, so the
    noise the two models share cancels. Either alone failed: the differences are heavy-tailed
    where high powers are involved (without `x**4`, pure_v3's validation MSE grew 500-fold
    at only 3.0 standard errors of the mean; the ranks see it at 17 sigmas), and where noise
    dominates, the signs of the differences are mostly noise (at noise 0.1, D = 30, removing
    hybrid_v0's Int_2 cost 14% of the loss at 0.8 sigmas of the rank test). Positive: `trial`
    is worse; infinite when `trial` diverged, 0 when the two are identical.
    """
    diff = trial - reference
    if not torch.isfinite(diff).all():
        return math.inf
    diff = diff[diff != 0]
    m = diff.shape[0]
    if m == 0:
        return 0.0
    ranks = torch.empty(m, dtype=torch.float64)
    ranks[diff.abs().argsort()] = torch.arange(1, m + 1, dtype=torch.float64)
    positive = float(ranks[diff > 0].sum())
    rank_z = (positive - m * (m + 1) / 4.0) / math.sqrt(m * (m + 1) * (2 * m + 1) / 24.0)
    if m < 2 or float(diff.std()) == 0.0:
        return rank_z
    mean_z = float(diff.mean()) / (float(diff.std()) / math.sqrt(m))
    return max(rank_z, mean_z)


BORDERLINE = 2.0  # a kept term whose removal cost less than this factor is tried again


def prune(
    model: DualStream,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    loss_fn: LossFn,
    candidates: list[str],
    *,
    significance: float,
    tolerance: float,
    iters: int,
    trace: list[dict] | None = None,
) -> tuple[DualStream, list[str], float]:
    """Stage 2: backward elimination of the candidate terms on the validation loss.

    The candidates are refitted together. Then, interaction terms before pure ones and high
    orders before low ones (the more expensive and the more likely spurious first), each is
    removed, the rest refitted, and the removal is kept unless the
    validation loss gets worse than the best model's so far both significantly (paired tests
    over the validation rows beyond `significance` sigmas, `worse_by`) and by more
    than the fraction `tolerance` of that loss. Both thresholds follow the noise the
    validation rows show, not an absolute constant: the first is statistical significance,
    the second practical (a fit within 10% of the best is as good, given that L-BFGS leaves
    the fits a few percent above the noise floor). `trace` receives
    one record per trial. Returns the final model, its terms and validation loss.

    Every fit starts from `model`'s (stage-1) weights with the same L-BFGS budget. Warm
    starts from the previous refit gave each trial `iters` more iterations of fitting the
    noise than the model it was compared with: at D = 50 every removal of interact_v0 then
    looked 7% (4 standard errors) worse, and all nine terms were kept.

    Close calls. A removal that is refused while it cost less than `BORDERLINE` times the
    best loss is judged again after both models (the trial and the best) got `iters` more
    iterations each, from where they stopped: the same budget on both sides, so the
    decision is not the optimiser's imprecision. And the elimination is repeated over the
    terms so kept until a pass removes nothing: the first pass judged them against a model
    with every candidate, whose fit can be several times worse than the final one's (at
    D = 30 a spurious `interact_5` helped a model of nine terms fit `interact_4` and was
    kept; against the final model its removal costs nothing). A term whose removal cost
    more than `BORDERLINE` is tried again only when the best model has since become more
    than `BORDERLINE` times better (a first fit of every candidate can fail outright: at
    D = 30 one reached 0.2 where the final model reaches 1e-4, and every removal judged
    against it looked cheap or costly by chance); otherwise, with fewer other terms and
    about the same best model, its removal can only look worse.
    """
    x, y, xv, yv = data
    keep = [name for name in model.names if name in candidates]

    def fitted(terms: list[str]) -> DualStream:
        trial = copy.deepcopy(model)
        trial.mask.copy_(torch.tensor([float(n in terms) for n in model.names]))
        refit(trial, x, y, loss_fn, iters)
        return trial

    def judged(losses: torch.Tensor, reference: torch.Tensor) -> tuple[float, bool]:
        z = worse_by(losses, reference)
        return z, bool(z <= significance or losses.mean() <= reference.mean() * (1.0 + tolerance))

    reference: tuple[DualStream, torch.Tensor] | None = None  # the best, refined

    def refined(trial: DualStream) -> tuple[float, bool]:
        nonlocal reference
        trial = copy.deepcopy(trial)
        refit(trial, x, y, loss_fn, iters)
        if reference is None or reference[0] is not best_model:  # once per best model
            further = copy.deepcopy(best_model)
            refit(further, x, y, loss_fn, iters)
            reference = (best_model, row_losses(further, xv, yv))
        return judged(row_losses(trial, xv, yv), reference[1])

    current = best_model = fitted(keep)
    best = row_losses(current, xv, yv)
    order = sorted(keep, key=lambda n: (n.startswith("pure"), -int(n.rsplit("_", 1)[1])))
    tried, passes = order, 0
    while tried:
        passes += 1
        removals, kept = 0, []  # kept: (name, ratio, best loss then, removals before)
        for name in tried:
            if len(keep) == 1:
                break
            trial = fitted([n for n in keep if n != name])
            losses = row_losses(trial, xv, yv)
            z, accepted = judged(losses, best)
            ratio = float(losses.mean() / best.mean()) if float(best.mean()) > 0 else math.inf
            close = not accepted and ratio < BORDERLINE
            if close:
                z, accepted = refined(trial)
            if trace is not None:
                trace.append({"drop": name, "val": float(losses.mean()), "best": float(best.mean()),
                              "z": z, "accepted": accepted, "pass": passes,
                              "refined": close})  # fmt: skip
            if accepted:
                current, removals = trial, removals + 1
                keep.remove(name)
                if losses.mean() < best.mean():
                    best, best_model = losses, trial
            else:
                kept.append((name, ratio, float(best.mean()), removals))
        now = float(best.mean())
        # Judged before a later removal, and either a close call or against a best model
        # that has since become much better: tried again.
        tried = [
            name
            for name, ratio, then, before in kept
            if before < removals and (ratio < BORDERLINE or then > BORDERLINE * now)
        ]
        tried = tried if passes < 3 else []
    return current, keep, float(row_losses(current, xv, yv).mean())

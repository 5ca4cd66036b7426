"""The 15 synthetic structure-recovery formulas of NeuronSeek's paper.

Each formula is a sum of *pure* terms `S_k = sum_d x_d**k` and *interaction* terms
`Int_k = prod_{m=1..k} (X w_m)` (fresh `w_m ~ N(0, I/D)` for every term), with
coefficients `c ~ +-U(1, 3)` and `c* ~ +-U(0.5, 3)` or fixed numbers, over
`X ~ N(0, I_D)`. Noise is added, then `y` is standardised.

The noise is relative: its std is `noise` (default 0.01) times the std of the noiseless
signal, so noise 0.1 leaves 1% of the target's variance unexplainable at any D. (The public
code adds an absolute `0.01 * N(0, 1)`: since the signal's std grows with D, that noise
fades as D grows, and at D = 10 it is 0.1-0.4% of the signal.)

`classes=C` turns the target into a classification one: `y` becomes the class 0..C-1 of the
noisy value's quantile (C equal-frequency bins; C = 2 splits at the median).

    >>> X, y, truth = generate("hybrid_v1", dims=10, rows=2500, seed=0)
    >>> truth
    {'pure': [1], 'interact': [2]}

NumPy only: the benchmark and the data loader can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nscompile.errors import InputError

# A coefficient: a fixed number, "c" (+-U(1, 3)) or "c*" (+-U(0.5, 3)).
Coefficient = float | str


@dataclass(frozen=True)
class Formula:
    """One benchmark formula: its pure and interaction terms as (coefficient, order) pairs."""

    name: str
    pure: tuple[tuple[Coefficient, int], ...] = ()
    interact: tuple[tuple[Coefficient, int], ...] = ()

    @property
    def truth(self) -> dict[str, list[int]]:
        """The orders a search should find: `{"pure": [...], "interact": [...]}`."""
        return {
            "pure": sorted({k for _, k in self.pure}),
            "interact": sorted({k for _, k in self.interact}),
        }

    def describe(self) -> str:
        """The formula as text, e.g. `c*S_2 + c*Int_2`."""
        parts = [f"{_coef_text(c)}*S_{k}" for c, k in self.pure]
        parts += [f"{_coef_text(c)}*Int_{k}" for c, k in self.interact]
        return " + ".join(parts)


def _coef_text(coefficient: Coefficient) -> str:
    return coefficient if isinstance(coefficient, str) else f"{coefficient:g}"


_TABLE = (
    Formula("pure_v0", pure=(("c", 2),)),
    Formula("pure_v1", pure=(("c", 3),)),
    Formula("pure_v2", pure=((10.0, 1), (0.5, 2))),
    Formula("pure_v3", pure=((5.0, 2), (0.5, 4))),
    Formula("pure_v4", pure=(("c", 5),)),
    Formula("interact_v0", interact=(("c", 2),)),
    Formula("interact_v1", interact=(("c", 2), ("c*", 3))),
    Formula("interact_v2", interact=((8.0, 2), (0.5, 3))),
    Formula("interact_v3", interact=(("c", 2), ("c*", 4))),
    Formula("interact_v4", interact=(("c", 4),)),
    Formula("hybrid_v0", pure=(("c", 2),), interact=(("c", 2),)),
    Formula("hybrid_v1", pure=(("c", 1),), interact=(("c", 2),)),
    Formula("hybrid_v2", pure=((5.0, 3),), interact=((0.5, 2),)),
    Formula("hybrid_v3", pure=((0.5, 2),), interact=((5.0, 3),)),
    Formula("hybrid_v4", pure=(("c", 2),), interact=(("c", 3),)),
)

FORMULAS: dict[str, Formula] = {f.name: f for f in _TABLE}
NOISE = 0.01
MAX_NOISE = 10.0
MAX_CLASSES = 20


def generate(
    name: str,
    dims: int = 10,
    rows: int = 2500,
    seed: int = 0,
    *,
    noise: float = NOISE,
    classes: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    """Draw one data set of formula `name`.

    Args:
        name: one of `FORMULAS` (`pure_v0` ... `hybrid_v4`).
        dims: the input width D (>= 1).
        rows: the number of rows N (>= 2).
        seed: the random seed; the same arguments always give the same data.
        noise: the noise's std relative to the signal's (0..10).
        classes: 0 for a regression target; 2..20 for that many quantile classes.

    Returns:
        `(X, y, truth)`: X float64 (rows x dims); y float64 standardised (mean 0, std 1), or
        the class indices 0..classes-1 as float64; truth `{"pure": [...], "interact": [...]}`
        with sorted orders.

    Raises:
        InputError: for an unknown name, a non-positive size, a noise outside 0..10, or a
        class count outside 2..20 (or more classes than rows).
    """
    formula = FORMULAS.get(name)
    if formula is None:
        raise InputError(
            f"unknown synthetic formula '{name}'", hint=f"known: {', '.join(FORMULAS)}"
        )
    if dims < 1 or rows < 2:
        raise InputError(f"synthetic data needs dims >= 1 and rows >= 2, got {dims} x {rows}")
    if not 0.0 <= noise <= MAX_NOISE:  # also refuses NaN
        raise InputError(f"synthetic noise must be in 0..{MAX_NOISE:g}, got {noise}")
    if classes and not 2 <= classes <= min(MAX_CLASSES, rows):
        raise InputError(
            f"synthetic classes must be 2..{min(MAX_CLASSES, rows)} (or 0: regression), "
            f"got {classes}"
        )
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, dims))
    y = np.zeros(rows)
    for coefficient, k in formula.pure:
        y += _draw(coefficient, rng) * np.sum(X**k, axis=1)
    for coefficient, k in formula.interact:
        c = _draw(coefficient, rng)
        w = rng.normal(0.0, 1.0 / np.sqrt(dims), size=(dims, k))
        y += c * np.prod(X @ w, axis=1)
    y = y + noise * y.std() * rng.standard_normal(rows)
    if classes:
        edges = np.quantile(y, np.arange(1, classes) / classes)
        return X, np.searchsorted(edges, y, side="right").astype(np.float64), formula.truth
    y = (y - y.mean()) / y.std()
    return X, y, formula.truth


def _draw(coefficient: Coefficient, rng: np.random.Generator) -> float:
    if not isinstance(coefficient, str):
        return float(coefficient)
    low = 1.0 if coefficient == "c" else 0.5
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return sign * rng.uniform(low, 3.0)

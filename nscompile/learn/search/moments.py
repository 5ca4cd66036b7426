"""Starting directions for the CP factors from the data's Hermite moments.

A CP interaction term learns k projections whose product matches the target. From random
factors the gradient towards a true direction shrinks like D**-(k-1)/2 (every other factor's
overlap with the truth is ~1/sqrt(D)), so at D = 50 the weak order-3 and order-4 terms of the
synthetic benchmark were never found. For standardised inputs the k-th Hermite moment of the
target, `T_k = E[r H_k(x)]`, is the k-th-degree part of the target as a symmetric tensor (for
`Int_k = prod_m (x w_m)` it is the symmetrised `w_1 (x) ... (x) w_k`), and its leading
directions are found by the tensor power method without ever forming the tensor:
`T_k(v, ..., v) = E[r He_k(x v)]` for a unit vector v, and `v <- grad / |grad|`.

`r` is the residual of the target after a least-squares fit of the pure terms, one column
per output; with several outputs a direction maximises the sum over outputs of
`T_k(v, ..., v)**2`. Each new direction is kept orthogonal to the ones found before. These are
only starting points: the factors are perturbed around them and trained as before.
"""

from __future__ import annotations

import math

import torch

POWER_STEPS = 25
RESTARTS = 3


def pure_residual(powers: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`target` (rows x C) minus its least-squares fit on a bias and `powers` (rows x P)."""
    design = torch.cat([torch.ones(powers.shape[0], 1, dtype=powers.dtype), powers], dim=1)
    coef = torch.linalg.lstsq(design.double(), target.double()).solution
    return (target.double() - design.double() @ coef).to(powers.dtype)


def hermite_form(proj: torch.Tensor, norm2: torch.Tensor, order: int) -> torch.Tensor:
    """`H_k(x)[v, ..., v]` from `proj = x v` and `norm2 = v v`: the He_k polynomial made
    homogeneous, `sum_j (-1)**j k! / (j! (k - 2j)! 2**j) (x v)**(k - 2j) (v v)**j`."""
    out = torch.zeros_like(proj)
    for j in range(order // 2 + 1):
        coef = (-1) ** j * math.factorial(order)
        coef /= math.factorial(j) * math.factorial(order - 2 * j) * 2**j
        out = out + coef * proj ** (order - 2 * j) * norm2**j
    return out


def sequential_directions(
    x: torch.Tensor,
    target: torch.Tensor,
    powers: torch.Tensor,
    orders: list[int],
    count: int,
    generator: torch.Generator,
) -> dict[int, torch.Tensor]:
    """Every interaction order's `count` directions, lowest order first, each from the
    residual left by the pure terms and the lower orders' fits.

    After an order's directions are found, the target is fitted by least squares on
    `(x v)**k` of those directions and that fit is subtracted: a strong `8 Int_2` would
    otherwise bury the third moment of a weak `0.5 Int_3` in its own sampling noise.
    """
    residual = pure_residual(powers, target)
    out = {}
    for k in orders:
        dirs = directions(x, residual, k, count, generator)
        out[k] = dirs
        features = (x @ dirs) ** k
        features = (features - features.mean(0)) / features.std(0).clamp_min(1e-6)
        residual = pure_residual(features, residual)
    return out


def directions(
    x: torch.Tensor, residual: torch.Tensor, order: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` orthonormal directions (D x count) that carry the most of `T_k`, k = `order`."""
    dims = x.shape[1]
    found: list[torch.Tensor] = []
    for _ in range(min(count, dims)):
        best, best_value = None, -1.0
        for _ in range(RESTARTS):
            v = _orthogonal(torch.randn(dims, generator=generator, dtype=x.dtype), found)
            for _ in range(POWER_STEPS):
                v = v.detach().requires_grad_(True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(_objective(x, residual, v, order), v)
                step = _orthogonal(grad.detach(), found)
                if not torch.isfinite(step).all() or float(step.norm()) == 0.0:
                    break
                v = step
            v = v.detach()
            value = float(_objective(x, residual, v, order))
            if value > best_value:
                best, best_value = v, value
        found.append(best)
    while len(found) < count:  # more directions asked than dimensions: random ones
        found.append(torch.nn.functional.normalize(torch.randn(dims, generator=generator), dim=0))
    return torch.stack(found, dim=1)


def _objective(x: torch.Tensor, residual: torch.Tensor, v: torch.Tensor, order: int):  # noqa: ANN202
    form = hermite_form(x @ v, v @ v, order)
    moments = (residual * form[:, None]).mean(0)
    return (moments**2).sum()


def _orthogonal(v: torch.Tensor, found: list[torch.Tensor]) -> torch.Tensor:
    for u in found:
        v = v - (v @ u) * u
    norm = v.norm()
    return v / norm if float(norm) > 0.0 else v

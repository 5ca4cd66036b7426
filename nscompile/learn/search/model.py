"""The dual-stream search model: gated pure and interaction terms of every order.

For k = 1..K the pure term is `BN(std(x**k) W_k)` (`std` standardises every column of
`x**k` with the training data's mean and std, fixed before training, so x**5 neither
explodes nor vanishes). For k = 2..K the interaction term is `BN(std(prod_m (x U_{k,m})) A_k)`:
a *shared* CP basis of rank R (each `U_{k,m}` is D x R, drawn N(0, 1/D) so every projection
of standardised x has unit variance at any D), the rank-R products standardised by their
empirical std at initialisation, then an output map `A_k` (R x C). This is the
`cp(x, k)` term of the language (README, The language), so the search fits exactly the
function the spec will compute, and it costs R(kD + C) weights instead of the public code's
kDRC. Interaction order 1 would be `(x U) A`, a linear map identical to pure order 1, so it
is folded into it (never built).

Every term has its own BatchNorm and one hard-concrete gate shared by the C outputs; a
bias is added. `mask` switches terms off (used by the pruning refits).
"""

from __future__ import annotations

import torch
from torch import nn

from nscompile.learn.search import moments
from nscompile.learn.search.gates import HardConcreteGates


class DualStream(nn.Module):
    """Gated dual-stream polynomial model.

    Args:
        x: standardised training inputs (rows x D), used to fix the feature scales.
        outputs: C, the number of outputs (1 for regression, classes for classification).
        max_order: K, the highest order of both streams.
        rank: R, the CP rank of the interaction terms.
        target: the training target as rows x C floats (a regression target, or the one-hot
            classes), or None; when given, the CP factors start near the leading directions
            of the target's Hermite moments (`moments`) instead of at random.
    """

    def __init__(
        self,
        x: torch.Tensor,
        outputs: int,
        max_order: int,
        rank: int,
        target: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        dims = x.shape[1]
        self.max_order = max_order
        self.rank = rank
        self.pure_orders = list(range(1, max_order + 1))
        self.interact_orders = list(range(2, max_order + 1))
        self.names = [f"pure_{k}" for k in self.pure_orders]
        self.names += [f"interact_{k}" for k in self.interact_orders]
        powers = self._powers(x)
        self.register_buffer("pow_mean", powers.mean(0))
        self.register_buffer("pow_std", powers.std(0).clamp_min(1e-6))
        self.pure_w = nn.Parameter(torch.randn(max_order, dims, outputs) / dims**0.5)
        factors = sum(self.interact_orders)
        self.factors = nn.Parameter(torch.randn(factors, dims, rank) / dims**0.5)
        if target is not None and self.interact_orders:
            with torch.no_grad():
                self._start_from_moments(x, target, powers)
        self.out_map = nn.Parameter(torch.randn(len(self.interact_orders), rank, outputs))
        self.register_buffer("prod_std", torch.ones(len(self.interact_orders), rank))
        with torch.no_grad():
            if self.interact_orders:  # max_order 1: no interaction, nothing to scale
                every = list(range(len(self.interact_orders)))
                self.prod_std.copy_(self._products(x, every).std(0).clamp_min(1e-6))
            self.out_map /= rank**0.5
        self.norms = nn.ModuleList(nn.BatchNorm1d(outputs) for _ in self.names)
        self.gates = HardConcreteGates(len(self.names))
        self.bias = nn.Parameter(torch.zeros(outputs))
        self.register_buffer("mask", torch.ones(len(self.names)))
        self._held: tuple | None = None  # see hold_input

    def _start_from_moments(self, x: torch.Tensor, target: torch.Tensor, powers) -> None:  # noqa: ANN001
        """Every order's k factors: the moment directions, each copy perturbed by 30%."""
        flat = powers.reshape(powers.shape[0], -1)
        flat = (flat - flat.mean(0)) / flat.std(0).clamp_min(1e-6)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
        found = moments.sequential_directions(
            x, target - target.mean(0), flat, self.interact_orders, self.rank, generator
        )
        start = 0
        for k in self.interact_orders:
            dirs = found[k].to(x.dtype)
            for m in range(start, start + k):
                self.factors[m] = dirs + 0.3 * self.factors[m]
            start += k

    def _powers(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x**k for k in range(1, self.max_order + 1)], dim=1)

    def _products(self, x: torch.Tensor, inter: list[int]) -> torch.Tensor:
        """(rows, len(inter), R): the rank-R products of the interaction orders at the
        indices `inter` (into `interact_orders`)."""
        rows, sizes = [], []
        for j in inter:
            k, begin = self.interact_orders[j], sum(self.interact_orders[:j])
            rows += range(begin, begin + k)
            sizes.append(k)
        # One matrix product for every factor: (n, D) @ (D, M R), not a batched einsum.
        chosen = self.factors[rows]
        proj = (x @ chosen.permute(1, 0, 2).reshape(x.shape[1], -1)).view(x.shape[0], -1, self.rank)
        return torch.stack([_product(p) for p in proj.split(sizes, dim=1)], dim=1)

    def _raw(self, x: torch.Tensor, active: list[int]) -> torch.Tensor:
        """(rows, len(active), C): the terms at the indices `active`, before BatchNorm."""
        parts = []
        pure = [i for i in active if i < self.max_order]
        if pure:
            powers = self._standard_powers(x, pure)  # (len(pure), n, D)
            parts.append(torch.bmm(powers, self.pure_w[pure]).transpose(0, 1))
        inter = [i - self.max_order for i in active if i >= self.max_order]
        if inter:
            prods = self._products(x, inter) / self.prod_std[inter]
            parts.append(torch.einsum("nkr,krc->nkc", prods, self.out_map[inter]))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _standard_powers(self, x: torch.Tensor, pure: list[int]) -> torch.Tensor:
        """(len(pure), rows, D): the standardised powers `x**(i + 1)` for i in `pure`."""
        powers = torch.stack([x ** (i + 1) for i in pure])
        return (powers - self.pow_mean[pure, None]) / self.pow_std[pure, None]

    def _flat_powers(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, K D): every standardised power of `x`, order-major; from `hold_input`'s
        cache when `x` is the tensor held (a refit evaluates the same rows hundreds of
        times, and the powers were a third of each evaluation)."""
        held = self._held
        if held is not None and held[0] is x and held[1] == x._version:
            return held[2]
        every = list(range(self.max_order))
        return self._standard_powers(x, every).transpose(0, 1).reshape(x.shape[0], -1)

    def hold_input(self, x: torch.Tensor | None) -> None:
        """Cache the standardised powers of `x` (None: drop the cache). The cache is never
        copied, saved or used for another tensor, nor for `x` once it was modified."""
        self._held = None
        if x is not None:
            with torch.no_grad():
                self._held = (x, x._version, self._flat_powers(x).contiguous())

    def terms(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, terms, C): every term after its BatchNorm, before its gate."""
        raw = self._raw(x, list(range(len(self.names))))
        return torch.stack([norm(raw[:, i]) for i, norm in enumerate(self.norms)], dim=1)

    def forward(self, x: torch.Tensor, gate_mode: str = "eval") -> torch.Tensor:
        """Outputs (rows x C); `gate_mode` is "sample", "eval" or "open" (every gate 1)."""
        if gate_mode == "sample":
            z = self.gates.sample()
        elif gate_mode == "eval":
            z = self.gates.deterministic()
        else:
            z = torch.ones_like(self.gates.log_alpha)
        z = z * self.mask
        if self.training:  # stage 1: every term, each BatchNorm with its batch statistics
            return self.bias + torch.einsum("ntc,t->nc", self.terms(x), z)
        active = [i for i, on in enumerate(self.mask.tolist()) if on]
        if not active:
            return self.bias.expand(x.shape[0], -1)
        return self._frozen_sum(x, active, z)

    def _frozen_sum(self, x: torch.Tensor, active: list[int], z: torch.Tensor) -> torch.Tensor:
        """`bias + sum_t z_t BN_t(term_t)` with frozen BatchNorms, as two matrix products.

        A frozen BatchNorm is an affine map per term, so the gated sum folds the norms'
        scales into the weights: the pure terms are one product of the standardised powers
        (rows x K D, the powers of inactive terms meet zero weights) and the interaction
        terms one of the active orders' products (rows x active R). The same function as
        `bias + sum_t z_t terms(x)[:, t]` in eval mode; per term, the batched products were
        half of every refit evaluation (matrix-vector products at C = 1). The pruning refits
        are L-BFGS on small tensors, bound by the operations per evaluation: only the active
        interaction orders are computed.
        """
        norms = list(self.norms)
        mean = torch.stack([n.running_mean for n in norms])
        var = torch.stack([n.running_var for n in norms])
        weight = torch.stack([n.weight for n in norms])
        shift = torch.stack([n.bias for n in norms])
        scale = weight / torch.sqrt(var + norms[0].eps)
        gain = scale * z[:, None]  # (terms, C); zero where the mask is
        out = self.bias + ((shift - mean * scale) * z[:, None]).sum(0)
        k, outputs = self.max_order, self.bias.shape[0]
        if any(i < k for i in active):
            powers = self._flat_powers(x)  # (rows, K D)
            out = out + powers @ (self.pure_w * gain[:k, None, :]).reshape(-1, outputs)
        inter = [i - k for i in active if i >= k]
        if inter:
            prods = self._products(x, inter) / self.prod_std[inter]  # (rows, len, R)
            maps = self.out_map[inter] * gain[[k + j for j in inter]][:, None, :]
            out = out + prods.reshape(x.shape[0], -1) @ maps.reshape(-1, outputs)
        return out

    def keep_probabilities(self) -> dict[str, float]:
        """Expected L0 of every gate, by term name (`pure_k`, `interact_k`)."""
        probs = self.gates.expected_l0().detach().tolist()
        return dict(zip(self.names, probs, strict=True))

    def parameter_groups(self, lrs: dict[str, float]) -> list[dict]:
        """Adam groups: pure weights, CP factors and map, BatchNorm + bias, gates."""
        norm_params = [p for norm in self.norms for p in norm.parameters()]
        return [
            {"params": [self.pure_w], "lr": lrs["pure"], "weight_decay": 1e-5},
            {"params": [self.factors, self.out_map], "lr": lrs["cp"], "weight_decay": 1e-6},
            {"params": [*norm_params, self.bias], "lr": lrs["norm"], "weight_decay": 0.0},
            {"params": [self.gates.log_alpha], "lr": lrs["gate"], "weight_decay": 0.0},
        ]


def _product(proj: torch.Tensor) -> torch.Tensor:
    """The product over dim 1 as a chain of multiplications: `prod`'s backward checks its
    input for zeros on every call, which made it the costliest step of a refit."""
    out = proj[:, 0]
    for m in range(1, proj.shape[1]):
        out = out * proj[:, m]
    return out

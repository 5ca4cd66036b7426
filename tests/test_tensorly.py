"""The `cp(x, k)` term means what tensorly's CP format says: the generated layer's output equals
the CP tensor of its factors (`tensorly.cp_to_tensor`) contracted k times with the input.

tensorly is the reference for the CP machinery here and only here (the search fits its own CP
model in torch, and the compiler never builds the D**k tensor: that is the point of CP). It runs
inside `tl.backend_context("numpy")`, so tensorly's global backend is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorly as tl
import torch
from helpers import compile_and_import, relative_error

SPEC = """
neuron cp_only {{
    rank {rank}
    y = cp({arg}, {order})
}}
network net {{
    input {width}
    dense {units} cp_only
    task regression
}}
"""


def _reference(x: np.ndarray, factors: list[np.ndarray], out_map: np.ndarray) -> np.ndarray:
    """sum over the D**k entries of T_o, the CP tensor of unit o, times x_i1 * ... * x_ik."""
    rows = []
    for o in range(out_map.shape[1]):
        tensor = tl.cp_to_tensor((out_map[:, o], factors))  # D x ... x D, k axes
        per_row = []
        for h in x:
            value = tensor
            for _ in factors:
                value = np.tensordot(h, value, axes=(0, 0))  # contract one axis with the input
            per_row.append(float(value))
        rows.append(per_row)
    return np.asarray(rows).T


@pytest.mark.parametrize(
    ("order", "rank", "arg"),
    [(2, 3, "x"), (3, 4, "x"), (4, 2, "x"), (3, 5, "x**2"), (2, 3, "sin(x)")],
)
def test_cp_term_is_tensorlys_cp_tensor_contracted_with_the_input(
    order: int, rank: int, arg: str, tmp_path: Path
) -> None:
    width, units = 4, 3
    spec = SPEC.format(rank=rank, arg=arg, order=order, width=width, units=units)
    _, module = compile_and_import(spec)
    torch.manual_seed(order * 10 + rank)
    layer = module.CpOnlyLayer(width, units)
    x = torch.randn(6, width, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        actual = layer.double()(x).numpy()
    state = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    factors = [state[f"cp{order}_u{m}"] for m in range(1, order + 1)]  # D x R each
    assert set(state) == {f"cp{order}_u{m}" for m in range(1, order + 1)} | {f"cp{order}_a"}
    h = {"x": x.numpy(), "x**2": x.numpy() ** 2, "sin(x)": np.sin(x.numpy())}[arg]
    before = tl.get_backend()
    with tl.backend_context("numpy"):
        expected = _reference(h, factors, state[f"cp{order}_a"])
    assert tl.get_backend() == before
    assert np.abs(expected).max() > 1e-3  # not a vacuous comparison of two zeros
    assert relative_error(actual, expected) < 1e-10

"""Random image networks: the checker's shapes are the shapes torch and onnxruntime compute.

Each case draws an input size and a stack of convs (kernel, stride, padding), pools and blocks
from a fixed seed. A spec the checker accepts must build, run, and give the same output in the
generated module and in onnxruntime; one it refuses must be refused with an image-layer code at
a span inside the source, and then torch itself must fail on that stack (the checker refuses
exactly what cannot run).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import import_source, relative_error
from torch.nn import functional as F

from nscompile.compiler.pipeline import compile_text, to_onnx, to_torch
from nscompile.errors import SpecError

NEURON = "neuron q { rank 2  y = <w1, x> * <w2, x> + cp(x, 2) + b }\n"


def _draw(rng: np.random.Generator) -> tuple[str, list[tuple]]:
    """A random network text and its layers as (kind, kernel, stride, padding)."""
    side = int(rng.integers(1, 12))
    lines, layers = [f"input 2 x {side} x {side}"], []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.choice(["conv", "maxpool", "avgpool", "block"])
        kernel, stride = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        if kind == "conv":
            padding = int(rng.integers(0, 3))
            lines.append(f"conv 3 q kernel={kernel} stride={stride} padding={padding}")
        elif kind == "block":
            kernel, padding = 3, 1
            lines.append(f"block 3 q stride={stride}")
        else:
            padding = int(rng.integers(0, kernel // 2 + 1))
            lines.append(f"{kind} {kernel} stride={stride} padding={padding}")
        layers.append((str(kind), kernel, stride, padding))
    lines += ["flatten", "dense 2"]
    return NEURON + "network n {\n    " + "\n    ".join(lines) + "\n}\n", [(side,), *layers]


def _torch_runs(layers: list[tuple]) -> bool:
    """Whether plain torch ops accept this stack of kernels, strides and paddings."""
    (side,), *stack = layers
    x = torch.zeros(1, 2, side, side)
    try:
        for kind, kernel, stride, padding in stack:
            if kind in ("conv", "block"):
                x = F.conv2d(x, torch.zeros(3, x.shape[1], kernel, kernel), None, stride, padding)
            elif kind == "maxpool":
                x = F.max_pool2d(x, kernel, stride, padding)
            else:
                x = F.avg_pool2d(x, kernel, stride, padding)
    except RuntimeError:
        return False
    return x.numel() > 0


@pytest.mark.parametrize("seed", range(40))
def test_random_image_networks(seed):
    text, layers = _draw(np.random.default_rng(seed))
    try:
        compiled = compile_text(text, "random.ns")
    except SpecError as error:
        assert error.code in ("E187",), text
        assert 1 <= error.span.line <= text.count("\n"), text
        assert not _torch_runs(layers), f"refused, but torch runs it:\n{text}"
        return
    assert _torch_runs(layers), text
    network = compiled.optimized.networks[0]
    torch.manual_seed(seed)
    model = import_source(to_torch(compiled)).build().eval()
    x = torch.randn(3, *network.image)
    with torch.no_grad():
        expected = model(x).numpy()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    session = ort.InferenceSession(to_onnx(compiled, network, weights).SerializeToString())
    (actual,) = session.run(None, {"input": x.numpy()})
    assert actual.shape == expected.shape == (3, 2)
    assert relative_error(actual, expected) < 1e-5, text

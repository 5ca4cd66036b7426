"""The zoo of published neuron types (`examples/zoo/`): each spec computes its paper's formula.

Each reference below is written from the paper's formula in NumPy, not from the IR: the
weights of the generated layer (its state dict, random values) are mapped to the paper's
symbols by name (the spec's `b` is the state dict's `bias`), and the first layer's output must
equal the formula in float64. The whole
network is then checked as every spec is: the IR evaluator and onnxruntime against torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import compile_and_import, relative_error

from nscompile.compiler.interpret import evaluate_network
from nscompile.compiler.pipeline import select_network, to_onnx

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"
Params = dict[str, np.ndarray]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _fan(p: Params, x: np.ndarray) -> np.ndarray:
    # (w_r . x + b_r)(w_g . x + b_g) + w_b . (x o x) + c, one row of W per unit
    return (x @ p["wr"].T + p["br"]) * (x @ p["wg"].T + p["bg"]) + (x * x) @ p["wb"].T + p["c"]


def _qres(p: Params, x: np.ndarray) -> np.ndarray:
    w1x = x @ p["w1"].T  # (W1 x) o (W2 x) + W1 x + b
    return w1x * (x @ p["w2"].T) + w1x + p["bias"]


def _pisigma(p: Params, x: np.ndarray) -> np.ndarray:
    sums = [x @ p[f"w{j}"].T + p[f"t{j}"] for j in (1, 2, 3)]  # prod_j (w_j . x + theta_j)
    return sums[0] * sums[1] * sums[2]


def _ccp(p: Params, x: np.ndarray) -> np.ndarray:
    state = x @ p["u1"].T  # x_1 = U_1^T z
    for n in (2, 3):  # x_n = (U_n^T z) * x_{n-1} + x_{n-1}
        state = (x @ p[f"u{n}"].T) * state + state
    return state


def _kervolution(p: Params, x: np.ndarray) -> np.ndarray:
    return (x @ p["w"].T + p["cp0"]) ** 3  # (x^T w + c_p)^3


def _glu(p: Params, x: np.ndarray) -> np.ndarray:
    return (x @ p["w"].T + p["bias"]) * _sigmoid(x @ p["v"].T + p["c"])


def _swiglu(p: Params, x: np.ndarray) -> np.ndarray:
    z = x @ p["w"].T
    return z * _sigmoid(z) * (x @ p["v"].T)


def _reglu(p: Params, x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, x @ p["w"].T) * (x @ p["v"].T)


def _bilinear(p: Params, x: np.ndarray) -> np.ndarray:
    return (x @ p["w"].T) * (x @ p["v"].T)


def _perceptron(p: Params, x: np.ndarray) -> np.ndarray:
    return x @ p["w"].T + p["bias"]


def _volterra(p: Params, x: np.ndarray) -> np.ndarray:
    # sum_i w_i x_i + sum_i sum_{j >= i} w_ij x_i x_j, with the paper's w_ij (j >= i) mapped
    # from the layer's W: W_ij + W_ji off the diagonal, W_ii on it
    out = x @ p["w"].T
    d = x.shape[1]
    for o in range(len(p["w"])):
        W = p["W"][o]
        for i in range(d):
            for j in range(i, d):
                w_ij = W[i, i] if i == j else W[i, j] + W[j, i]
                out[:, o] += w_ij * x[:, i] * x[:, j]
    return out


def _kervolution_gaussian(p: Params, x: np.ndarray) -> np.ndarray:
    # exp(-gamma_g ||x - w||^2), gamma_g = 0.05
    return np.exp(-0.05 * np.array([[np.sum((row - w) ** 2) for w in p["w"]] for row in x]))


def _rbf(p: Params, x: np.ndarray) -> np.ndarray:
    # exp(-||x - c_o||^2 / (2 sigma_o^2)), beta_o = 1 / (2 sigma_o^2)
    sigma2 = 1.0 / (2.0 * p["beta"])
    dist = np.array([[np.sum((row - c) ** 2) for c in p["c"]] for row in x])
    return np.exp(-dist / (2.0 * sigma2))


REFERENCES: dict[str, Callable[[Params, np.ndarray], np.ndarray]] = {
    "fan2018": _fan,
    "qres2021": _qres,
    "pisigma1991": _pisigma,
    "pinet_ccp2020": _ccp,
    "kervolution2019": _kervolution,
    "glu2017": _glu,
    "swiglu2020": _swiglu,
    "reglu2020": _reglu,
    "bilinear2020": _bilinear,
    "perceptron1958": _perceptron,
    "zoumpourlis2017": _volterra,
    "kervolution_gaussian2019": _kervolution_gaussian,
    "rbf1988": _rbf,
}


def test_the_zoo_has_ten_types_each_with_its_paper() -> None:
    specs = sorted(p.stem for p in ZOO.glob("*.ns"))
    assert specs == sorted(REFERENCES) and len(specs) >= 10
    for name in specs:
        head = (ZOO / f"{name}.ns").read_text().split("\nneuron ")[0]
        assert head.startswith("# ") and any(str(y) in head for y in range(1900, 2030))


def _model(name: str):  # noqa: ANN202
    compiled, module = compile_and_import((ZOO / f"{name}.ns").read_text(), f"{name}.ns")
    network = select_network(compiled, None)
    torch.manual_seed(0)
    model = module.build(network.name).double()
    generator = torch.Generator().manual_seed(1)
    state = {
        k: torch.randn(v.shape, generator=generator, dtype=torch.float64) * 0.5
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(state)
    return compiled, network, model.eval()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_the_layer_computes_the_papers_formula(name: str) -> None:
    _, _, model = _model(name)
    x = np.random.default_rng(2).normal(size=(7, 8))
    params = {
        key.split(".", 1)[1]: value.numpy()
        for key, value in model.state_dict().items()
        if key.startswith("layer1.")
    }
    with torch.no_grad():
        actual = model.layer1(torch.from_numpy(x)).numpy()
    assert relative_error(actual, REFERENCES[name](params, x)) < 1e-12


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_ir_evaluation_and_onnxruntime_equal_torch(name: str) -> None:
    compiled, network, model = _model(name)
    x = np.random.default_rng(3).normal(size=(6, 8))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for program in (compiled.lowered, compiled.optimized):
        out = evaluate_network(program, program.networks[0], x, state)
        assert relative_error(out, expected) < 1e-10
    arrays = {k: v.astype(np.float32) for k, v in state.items()}
    proto = to_onnx(compiled, network, arrays)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.astype(np.float32)})[0]
    assert relative_error(out, expected) < 1e-5


CONV = """
neuron fan {
    scalar br, bg
    y = (<wr, x> + br) * (<wg, x> + bg) + <wb, x**2> + b
}
neuron paf {
    scalar a1 = 1, a2 = 0.5
    z = <w, x> + b
    y = a1 * z + a2 * z**2
}
network images {
    input 2 x 6 x 6
    conv 4 fan relu bn
    conv 3 paf bn=terms
    globalpool
    dense 2
    task classification
}
"""


def test_scalars_and_intermediates_in_conv_layers() -> None:
    """Per-unit scalars are per-channel in a conv layer; an intermediate is one map, used
    twice; `bn=terms` normalises the terms that hold it. torch = IR = onnxruntime."""
    compiled, module = compile_and_import(CONV)
    network = select_network(compiled, None)
    torch.manual_seed(0)
    model = module.build(network.name).double()
    assert model.layer2.a1.shape == (3,) and float(model.layer2.a1.detach()[0]) == 1.0
    assert {"bn_a1", "bn_a2"} <= {n for n, _ in model.layer2.named_children()}
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator, dtype=torch.float64) + 0.5)
    model.eval()
    x = torch.randn(3, 2, 6, 6, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for program in (compiled.lowered, compiled.optimized):
        out = evaluate_network(program, program.networks[0], x.numpy(), state)
        assert relative_error(out, expected) < 1e-10
    proto = to_onnx(compiled, network, {k: v.astype(np.float32) for k, v in state.items()})
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy().astype(np.float32)})[0]
    assert relative_error(out, expected) < 1e-5


def test_fmt_keeps_scalars_and_intermediates() -> None:
    from nscompile.lang.parser import parse
    from nscompile.lang.unparse import unparse

    spec = parse(CONV)
    text = unparse(spec)
    assert "scalar a1 = 1, a2 = 0.5" in text and "    z = <w, x> + b" in text
    assert parse(text) == spec


@pytest.mark.parametrize(
    ("body", "code"),
    [("z = <w, x> y = z - z + <v, x>", "E137"), ("z = <w, x> y = z * 0 + <v, x>", "E137")],
)
def test_an_intermediate_that_cancels_is_an_error(body: str, code: str) -> None:
    from nscompile.compiler.pipeline import compile_text
    from nscompile.errors import SpecError

    with pytest.raises(SpecError) as caught:
        compile_text(f"neuron n {{ {body} }}", "n.ns")
    assert caught.value.code == code and "simplifies to zero" in caught.value.message


def test_per_term_batchnorm_skips_terms_that_do_not_vary_with_the_input() -> None:
    """`bn=terms` normalises a term of an intermediate only if the term varies with the input:
    a per-channel constant (`c`, or `z * a` with `z = a`) has no batch statistics."""
    text = (
        "neuron n { scalar a, c z = a y = <w, x> + z * a + c }\n"
        "network net { input 2 x 5 x 5 conv 3 n bn=terms globalpool dense 2 }"
    )
    _, module = compile_and_import(text)
    model = module.build("net")
    assert [n for n, _ in model.layer1.named_children()] == ["bn_w"]
    out = model(torch.randn(4, 2, 5, 5))
    assert out.shape == (4, 2) and bool(torch.isfinite(out).all())

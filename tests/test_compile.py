"""The generated PyTorch module means what the spec says: parity, determinism, idempotence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import compile_and_import, layer_parity, relative_error

from nscompile.compiler.interpret import evaluate_network
from nscompile.compiler.passes import PASSES, optimize, optimize_neuron
from nscompile.compiler.pipeline import compile_file, to_torch
from nscompile.lang.naming import class_name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ns"))
GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(params=EXAMPLES, ids=lambda p: p.stem)
def example(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"quadratic", "td", "tnlearn", "deep"}


def test_layers_match_unoptimised_ir(example: Path, tmp_path: Path) -> None:
    compiled, module = compile_and_import(example.read_text(), example.name)
    for neuron in compiled.lowered.neurons:
        layer_cls = getattr(module, class_name(neuron.name, "Layer"))
        for seed, (d, o, batch) in enumerate([(7, 5, 33), (1, 1, 1), (16, 9, 257)]):
            error = layer_parity(layer_cls, neuron, d, o, batch, seed)
            assert error < 1e-5, f"{neuron.name} D={d} O={o}: relative error {error:.2e}"


def test_networks_match_ir(example: Path, tmp_path: Path) -> None:
    compiled, module = compile_and_import(example.read_text(), example.name)
    for network in compiled.lowered.networks:
        torch.manual_seed(0)
        model = module.build(network.name)
        x = torch.randn(64, network.input_width)
        with torch.no_grad():
            actual = model(x).numpy()
        state = {k: v.double().numpy() for k, v in model.state_dict().items()}
        expected = evaluate_network(compiled.lowered, network, x.double().numpy(), state)
        assert relative_error(actual, expected) < 1e-5
        assert actual.shape == (64, network.layers[-1].out_features)


def test_gradients_flow_to_every_parameter(example: Path, tmp_path: Path) -> None:
    _, module = compile_and_import(example.read_text(), example.name)
    model = module.build()
    model(torch.randn(32, model.in_features)).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_initial_outputs_have_moderate_scale(example: Path, tmp_path: Path) -> None:
    """Variance-preserving initialisation: no layer blows up or vanishes on N(0, 1) inputs."""
    compiled, module = compile_and_import(example.read_text(), example.name)
    torch.manual_seed(0)
    for neuron in compiled.lowered.neurons:
        layer = getattr(module, class_name(neuron.name, "Layer"))(64, 64)
        with torch.no_grad():
            std = layer(torch.randn(4096, 64)).std().item()
        assert 0.1 < std < 10, f"{neuron.name}: output std {std:.3g}"


def test_passes_keep_the_ir_valid_and_are_idempotent(example: Path) -> None:
    compiled = compile_file(str(example))
    for neuron in compiled.lowered.neurons:
        ir = neuron
        for _, run in PASSES:
            ir = run(ir)
            ir.verify()
        assert optimize_neuron(ir).dump() == ir.dump()
    twice = optimize(compiled.optimized)
    assert twice.dump() == compiled.optimized.dump()


def test_td_layer_is_four_gemms_with_the_cp_factors_fused() -> None:
    """Fusion: one GEMM for all five CP factors of x; then, up to 512 rows, one GEMM for the
    whole output sum over `[x | x**2 | products]`, and on more rows the two pure maps and the
    stacked CP terms accumulated into the sum (`_accumulate`). Every weight is stored where the
    GEMMs read it: no parameter is concatenated per call."""
    compiled = compile_file(str(ROOT / "examples" / "td.ns"))
    source = to_torch(compiled)
    forward = source.split("def forward")[1].split("class ")[0]
    small, large = forward.split("if x.shape[0] <= 512:")[1].split("# More rows:")
    assert "t0 = x @ self._fused1\n" in forward
    assert "#   _fused1 = [cp2_u1 | cp2_u2 | cp3_u1 | cp3_u2 | cp3_u3]" in source
    assert "#   _fused0 = [w1.T; w2.T; cp2_a; cp3_a]" in source
    assert "torch.cat([self." not in forward
    assert (
        "torch.addmm(self.bias, torch.cat([x, x**2, t0_0 * t0_1, t0_2 * t0_3 * t0_4], dim=1), "
        "self._fused0)" in small
    )
    assert large.count("@") + large.count("_accumulate(") == 3, large
    assert (
        "_accumulate((x @ self._fused0[:self.in_features]).add_(self.bias), x**2, "
        "self._fused0[self.in_features:2*self.in_features])" in large
    )


def test_golden_files(example: Path, golden) -> None:
    compiled = compile_file(str(example))
    directory = GOLDEN / example.stem
    golden(
        directory / "ir.txt",
        "# lowered\n" + compiled.lowered.dump() + "\n# optimised\n" + compiled.optimized.dump(),
    )
    golden(directory / "model.py.txt", to_torch(compiled))


def test_generated_source_is_byte_identical_across_processes(tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"model{seed}.py"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "nscompile", str(ROOT / "examples" / "deep.ns"), "-o", str(out)],
            check=True,
            env=env,
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_generated_source_passes_ruff(tmp_path: Path) -> None:
    paths = []
    for example_path in EXAMPLES:
        path = tmp_path / f"{example_path.stem}_model.py"
        path.write_text(to_torch(compile_file(str(example_path))))
        paths.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--select",
            "E,F,W,B",
            "--ignore",
            "E501",
            *paths,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_module_imports_only_torch_and_math(example: Path) -> None:
    source = to_torch(compile_file(str(example)))
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import math", "import torch", "from torch import nn"]
    assert "sha256 " in source.splitlines()[0]


def test_float64_and_float32_agree_on_deep_network(tmp_path: Path) -> None:
    _, module = compile_and_import((ROOT / "examples" / "deep.ns").read_text())
    model = module.build()
    x = torch.randn(128, model.in_features)
    with torch.no_grad():
        single = model(x).numpy()
        double = model.double()(x.double()).numpy()
    assert relative_error(single, double) < 1e-5
    assert np.isfinite(single).all()


def test_suspicious_but_allowed_names_stay_attributes(tmp_path: Path, capfd) -> None:
    """Names like os or system are plain attribute names: importing the module runs nothing."""
    text = (
        "neuron os {\n    y = <system, x> + <popen, sin(x)> * <eval_me, x> + b\n}\n"
        "network sys_net {\n    input 3\n    dense 4 os\n}\n"
    )
    compiled, module = compile_and_import(text)
    model = module.build()
    assert {name for name, _ in model.named_parameters()} == {
        "layer1.system",
        "layer1.popen",
        "layer1.eval_me",
        "layer1.bias",
    }
    assert capfd.readouterr() == ("", "")
    source = to_torch(compiled)
    assert "import os" not in source and "system(" not in source

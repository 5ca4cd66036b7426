"""`nscompile bench`: figures that mean something, missing comparisons skipped with a reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import term_gradients

from nscompile.bench.conv import conv_sites
from nscompile.bench.run import run_bench
from nscompile.bench.settings import MAX_BATCH, Settings, parse_batches
from nscompile.bench.tnlearn_notation import tnlearn_formula
from nscompile.cli.main import main
from nscompile.compiler.flops import conv_forward_flops, forward_flops
from nscompile.compiler.pipeline import compile_file, compile_text, to_torch, to_torch_unfused
from nscompile.errors import InputError
from nscompile.learn.loader import load_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ns"))
TD = ROOT / "examples" / "td.ns"
# aot_eager: the torch.compile peer's code path without inductor's C++ compile (seconds each).
QUICK = Settings(
    batches=(1, 8),
    reps=1,
    warmup=1,
    min_rep_s=0.0,
    max_inner=1,
    compile_reps=1,
    conv_batches=(2,),
    torch_compile="aot_eager",
)


def _modules(example: Path, tmp_path: Path) -> tuple[object, object]:
    compiled = compile_file(str(example))
    (tmp_path / "gen.py").write_text(to_torch(compiled))
    (tmp_path / "ref.py").write_text(to_torch_unfused(compiled))
    return load_file(tmp_path / "gen.py"), load_file(tmp_path / "ref.py")


# The generated forward takes one form up to 512 rows and another above: both are checked.
@pytest.mark.parametrize("rows", [32, 600])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_unfused_reference_is_the_same_function_written_term_by_term(
    example: Path, rows: int, tmp_path: Path
) -> None:
    generated, unfused = _modules(example, tmp_path)
    torch.manual_seed(0)
    model = generated.build()
    reference = unfused.build()
    reference.load_state_dict(model.state_dict())  # same parameter names and shapes
    x = torch.randn(rows, model.in_features, dtype=torch.float64, requires_grad=True)
    model, reference = model.double(), reference.double()
    want, got = reference(x), model(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # The generated layers accumulate sums in place (`addmm_`, `add_`): gradients must not care.
    mine = torch.autograd.grad(got.square().sum(), [x, *model.parameters()])
    theirs = torch.autograd.grad(want.square().sum(), [x, *reference.parameters()])
    torch.testing.assert_close(mine[0], theirs[0], rtol=1e-10, atol=1e-10)
    # Per term: the generated layers store fused parameters; their gradients cut into terms.
    mine_terms, theirs_terms = (
        term_gradients(model, mine[1:]),
        term_gradients(reference, theirs[1:]),
    )
    assert list(mine_terms) == list(theirs_terms)
    for key, b in theirs_terms.items():
        torch.testing.assert_close(mine_terms[key], b, rtol=1e-10, atol=1e-10, msg=key)
    source = to_torch_unfused(compile_file(str(example)))
    assert "torch.cat" not in source and ".split(" not in source and "addmm" not in source


def test_flop_count_of_the_td_layer() -> None:
    """x@U (5 factors of rank 8), x@W1, x**2 and x**2@W2, the products, their output map, sums."""
    neuron = compile_file(str(TD)).optimized.neurons[0]
    b, d, o = 3, 7, 5
    gemms = 2 * b * d * 40 + 2 * b * d * o * 2 + 2 * b * 16 * o
    elementwise = b * d + b * 8 + 2 * b * 8  # x**2, the order-2 and order-3 products
    adds = 3 * b * o  # the four-term sum
    assert forward_flops(neuron, b, d, o) == gemms + elementwise + adds


def test_tnlearn_formulas() -> None:
    spec = compile_file(str(TD)).spec
    formula, _ = tnlearn_formula(spec.neurons["td"])
    assert formula == "<w1, x> + <w2, x**2> + <w3, x>*<w4, x> + <w5, x>*<w6, x>*<w7, x>"
    text = "neuron g { y = sigmoid(<wg, x>) * <wv, x> + b }\n"
    formula, reason = tnlearn_formula(compile_text(text).spec.neurons["g"])
    assert formula is None and "sigmoid" in reason
    text = "neuron n { y = 0.5 * <w1, sin(x)> - <w2, tanh(x)> }\n"
    formula, _ = tnlearn_formula(compile_text(text).spec.neurons["n"])
    assert formula == "0.5*<w1, sin(x)> - <w2, tanh(x)>"


def test_report_of_the_td_example(tmp_path: Path) -> None:
    report = run_bench(str(TD), QUICK, log=lambda _: None)
    json.dumps(report)  # JSON-ready
    assert report["network"] == "td_net"
    assert {"spec_to_ir", "ir_to_torch", "ir_to_onnx"} <= set(report["compile"])
    assert all(report["compile"][k] > 0 for k in ("spec_to_ir", "ir_to_torch", "ir_to_onnx"))
    assert [(x["in_features"], x["out_features"]) for x in report["layers"]] == [(5, 64), (64, 32)]
    layer = report["layers"][1]
    assert layer["parity_max_relative_difference"] < 1e-5
    assert layer["parameters"]["generated"] == layer["parameters"]["unfused"]
    assert layer["parameters"]["nn.Linear"]["count"] == 64 * 32 + 32
    assert all(v > 0 for v in layer["peak_memory"]["bytes"].values())
    passes = {(r["batch"], r["pass"]) for r in layer["runs"]}
    assert passes == {(b, p) for b in (1, 8) for p in ("forward", "forward+backward")}
    forward = next(r for r in layer["runs"] if r["pass"] == "forward")["seconds"]
    assert {"generated", "unfused", "nn.Linear", "onnxruntime-cpu"} <= set(forward)
    assert all(np.isfinite(v) and v > 0 for v in forward.values())
    names = {t["target"] for t in report["targets"]}
    assert any("vs unfused" in n for n in names) and any("FLOP" in n for n in names)
    # Operators per call: a plain linear layer is one forward operator (addmm); the generated
    # layer, which stores its fused weights, runs fewer than the unfused one.
    for run in layer["runs"]:
        kernels = run["kernels"]
        assert set(kernels) == {"generated", "unfused", "nn.Linear"}
        assert kernels["generated"] < kernels["unfused"]
        if run["pass"] == "forward":
            assert kernels["nn.Linear"] == 1


def test_count_kernels_skips_views() -> None:
    from nscompile.bench.timing import count_kernels

    x, w = torch.randn(4, 6), torch.randn(3, 12)
    assert count_kernels(lambda: x.T[:, :2].split(1, dim=1)) == 0
    assert count_kernels(lambda: torch.cat([x, x * x], dim=1) @ w.T) == 3  # mul, cat, mm


def test_missing_tnlearn_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tnlearn", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "tnlearn.modules.TNlinear", None)
    report = run_bench(str(TD), QUICK, log=lambda _: None)
    layer = report["layers"][0]
    assert "not installed" in layer["skipped"]["tnlearn"]
    assert all("tnlearn" not in r["seconds"] for r in layer["runs"])
    target = next(t for t in report["targets"] if "tnlearn" in t["target"])
    assert (
        target["met"] is None and target["value"] is None and "not installed" in target["skipped"]
    )


def test_cli_table_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run(
        [
            sys.executable, "-m", "nscompile", "bench", str(ROOT / "examples" / "quadratic.ns"),
            "--batch", "1,4", "--reps", "1", "--json", str(out), "--plot", str(png),
            "--torch-compile", "aot_eager",
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "compile" in result.stdout and "layer1" in result.stdout and "targets" in result.stdout
    assert "x)" in result.stdout  # ratios against the generated layer
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] == torch.__version__
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--batch", "1,x"], "not a comma-separated list"),
        (["--batch", "0"], "between 1 and"),
        (["--batch", ""], "not a comma-separated list"),
    ],
)
def test_bad_options_exit_1(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", str(TD), *args, "--json", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cuda_where_there_is_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # on any machine
    assert main(["bench", str(TD), "--device", "cuda"]) == 1
    assert "CUDA was asked for" in capsys.readouterr().err


def test_parse_batches() -> None:
    assert parse_batches("4096, 1,256,1") == (1, 256, 4096)
    with pytest.raises(InputError):
        parse_batches(str(MAX_BATCH + 1))


def test_spec_without_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "n.ns"
    spec.write_text("neuron n { y = <w, x> + b }\n")
    assert main(["bench", str(spec)]) == 1
    assert "no network" in capsys.readouterr().err


def test_bench_all_script_writes_one_report(tmp_path: Path) -> None:
    """examples/bench_all.sh over a directory of specs (here: a copy holding one example)."""
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(ROOT / "examples" / "bench_all.sh", examples)
    shutil.copy(ROOT / "examples" / "quadratic.ns", examples)
    out = tmp_path / "report"
    result = subprocess.run(
        [
            "bash", str(examples / "bench_all.sh"), str(out), "--batch", "2", "--reps", "1",
            "--torch-compile", "off",
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "quadratic.json",
        "quadratic.png",
        "report.txt",
    ]
    assert "nscompile bench" in (out / "report.txt").read_text()
    assert json.loads((out / "quadratic.json").read_text())["network"] == "quadratic_net"


def test_network_without_neuron_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "plain.ns"
    spec.write_text(
        "neuron n { y = <w, x> + b }\n"
        "network a { input 4 dense 8 relu dense 1 task regression }\n"
        "network b { input 4 dense 8 n relu dense 1 task regression }\n"
    )
    assert main(["bench", str(spec), "--batch", "2", "--reps", "1"]) == 1  # which network?
    assert "choose one with --network" in capsys.readouterr().err
    assert main(["bench", str(spec), "--network", "a", "--batch", "2", "--reps", "1"]) == 0
    assert "has no neuron layer" in capsys.readouterr().out


@pytest.mark.parametrize("rows", [16, 600])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_layers_train_under_autocast(example: Path, rows: int, tmp_path: Path) -> None:
    """In-place accumulation must not break mixed precision (autocast lowers the products)."""
    generated, _ = _modules(example, tmp_path)
    torch.manual_seed(0)
    model = generated.build()
    x = torch.randn(rows, model.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
        low.float().square().mean().backward()
    assert low.dtype == torch.bfloat16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        full = model(x)
    error = (low.detach().float() - full).abs().max()
    assert float(error) <= 0.05 * float(full.abs().max())


# ------------------------------------------------------------------------------ conv layers

CONV_BENCH = ROOT / "examples" / "bench" / "conv.ns"
TINY_IMAGES = """
neuron td {
    rank 2
    y = <w1, x> + <w2, x**2> + cp(x, 2) + b
}
network tiny {
    input 3 x 8 x 8
    conv 4 td relu bn
    conv 4 td relu          # the same neuron, widths and input size as layer1: benched once
    block 6 td stride=2
    globalpool
    dense 2
    task classification
}
"""
PEERS = ("generated", "unfused", "torch.compile", "nn.Conv2d")


def test_conv_bench_spec_is_not_a_golden_example() -> None:
    assert CONV_BENCH.exists() and CONV_BENCH not in EXAMPLES  # examples/*.ns only


def test_conv_sites_follow_the_shapes_through_strides_and_blocks() -> None:
    network = compile_text(TINY_IMAGES).optimized.networks[0]
    sites = [
        (s.key, s.in_channels, s.out_channels, s.stride, s.height, s.out_hw)
        for s in conv_sites(network)
    ]
    assert sites == [
        ("layer1", 3, 4, 1, 8, (8, 8)),
        ("layer2", 4, 4, 1, 8, (8, 8)),
        ("layer3.conv1", 4, 6, 2, 8, (4, 4)),
        ("layer3.conv2", 6, 6, 1, 4, (4, 4)),
    ]
    # layer1 and layer2 differ in their input channels; a repeated layer is benched once
    twice = TINY_IMAGES.replace("block 6 td stride=2", "conv 4 td relu")
    keys = [s.key for s in conv_sites(compile_text(twice).optimized.networks[0])]
    assert keys == ["layer1", "layer2"]


def test_conv_flop_count_of_the_td_layer() -> None:
    """Per output position: two 3x3 convs 64 -> 64 (x, x**2), the 1x1 conv to 5 x 8 factor
    channels, the 3x3 conv of the 16 product channels, x**2, the products, the sum, the bias."""
    neuron = compile_file(str(CONV_BENCH)).optimized.conv_neurons[0]
    p, c, o, k = 10, 64, 64, 3
    convs = 2 * (2 * p * c * k * k * o) + 2 * p * c * 40 + 2 * p * 16 * k * k * o
    elementwise = p * c + p * 8 + 2 * p * 8
    got = conv_forward_flops(neuron, p, p, c, o, k)
    assert convs + elementwise <= got <= convs + elementwise + 4 * p * o  # + sum and bias


def test_report_of_an_image_network(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.ns"
    spec.write_text(TINY_IMAGES)
    report = run_bench(str(spec), QUICK, log=lambda _: None)
    json.loads(json.dumps(report))  # JSON-ready
    convs = [x for x in report["layers"] if x.get("kind") == "conv"]
    assert [x["layer"] for x in convs] == ["layer1", "layer2", "layer3.conv1", "layer3.conv2"]
    for layer in convs:
        assert layer["parity_max_relative_difference"] < 1e-5
        assert layer["torch_compile_max_relative_difference"] < 1e-5
        assert set(layer["parameters"]) == {"generated", "unfused", "nn.Conv2d"}
        assert set(PEERS) <= set(layer["peak_memory"]["bytes"])
        assert all(v > 0 for v in layer["peak_memory"]["bytes"].values())
        assert (
            layer["forward_flops_per_sample"]["generated"]
            > layer["forward_flops_per_sample"]["nn.Conv2d"]
        )
        assert {(r["batch"], r["pass"]) for r in layer["runs"]} == {
            (2, "forward"),
            (2, "forward+backward"),
        }
        for run in layer["runs"]:
            assert set(PEERS) <= set(run["seconds"])
            assert all(np.isfinite(v) and v > 0 for v in run["seconds"].values())
            assert run["compile_seconds"]["torch.compile"] > 0
            assert run["flop_predicted_s"] > 0
            assert "torch.compile" not in run["kernels"]
    names = [t["target"] for t in report["targets"]]
    for peer in ("vs unfused", "FLOP-predicted", "vs torch.compile"):
        assert any("layer3.conv1" in n and peer in n for n in names)
    # the dense layers gain the torch.compile peer too
    dense = [x for x in report["layers"] if x.get("kind") != "conv"]
    assert all("torch.compile" in r["seconds"] for x in dense for r in x["runs"])


def test_failing_torch_compile_is_skipped_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InductorError: no working C compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **_: Broken())
    spec = tmp_path / "tiny.ns"
    spec.write_text(TINY_IMAGES)
    report = run_bench(str(spec), QUICK, log=lambda _: None)
    layer = next(x for x in report["layers"] if x.get("kind") == "conv")
    assert "no working C compiler" in layer["skipped"]["torch.compile"]
    assert all("torch.compile" not in r["seconds"] for r in layer["runs"])
    target = next(t for t in report["targets"] if "vs torch.compile" in t["target"])
    assert target["met"] is None and "C compiler" in target["skipped"]


def test_cli_on_an_image_network(tmp_path: Path) -> None:
    spec, out = tmp_path / "tiny.ns", tmp_path / "bench.json"
    spec.write_text(TINY_IMAGES)
    result = subprocess.run(
        [
            sys.executable, "-m", "nscompile", "bench", str(spec), "--batch", "2", "--reps", "1",
            "--torch-compile", "aot_eager", "--json", str(out),
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for text in (
        "layer3.conv2",
        "torch.compile",
        "nn.Conv2d",
        "FLOP-predicted",
        "kept for backward",
    ):
        assert text in result.stdout
    report = json.loads(out.read_text())
    assert report["settings"]["conv_batches"] == [2]
    assert any(x.get("kind") == "conv" for x in report["layers"])

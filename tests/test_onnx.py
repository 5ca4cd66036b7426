"""The ONNX graph means what the generated PyTorch module means, on onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.printer
import pytest
import torch
from helpers import compile_and_import, relative_error
from safetensors_file import write_safetensors

from nscompile.compiler.emit_onnx import IR_VERSION, OPSET
from nscompile.compiler.pipeline import compile_text, select_network, to_onnx, to_torch
from nscompile.errors import InputError
from nscompile.learn.runtime import Session
from nscompile.learn.weights import initial_state, load_state

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ns"))
GOLDEN = ROOT / "tests" / "golden"


def export(text: str, tmp_path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """Compile `text`, write the ONNX model with the module's seeded weights; return both."""
    compiled, module = compile_and_import(text)
    network = select_network(compiled, None)
    torch.manual_seed(seed)
    model = module.build(network.name)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(compiled, network, weights).SerializeToString())
    return path, model


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("batch", [1, 1000])
def test_onnxruntime_matches_torch(example: Path, batch: int, tmp_path: Path) -> None:
    path, model = export(example.read_text(), tmp_path)
    session = Session(path, provider="cpu")
    x = torch.randn(batch, session.input_width, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model.double()(x.double()).numpy()
    actual = session.run(x.numpy())
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) < 1e-5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_model_is_pinned_checked_and_described(example: Path, tmp_path: Path) -> None:
    path, _ = export(example.read_text(), tmp_path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["nscompile.spec"] == "spec.ns" and "y = " in meta["nscompile.formula"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_graph_text(example: Path, golden) -> None:
    """The graph as text, weights left out (their values are not the point of the diff)."""
    compiled = compile_text(example.read_text(), example.name)
    network = select_network(compiled, None)
    weights = initial_state(to_torch(compiled), network.name, seed=0)
    model = to_onnx(compiled, network, weights)
    for tensor in model.graph.initializer:
        if "." in tensor.name:  # a weight, not a constant of the graph
            tensor.ClearField("raw_data")
    golden(GOLDEN / example.stem / "model.onnx.txt", onnx.printer.to_text(model) + "\n")


def test_graph_size_does_not_grow_with_width(tmp_path: Path) -> None:
    spec = (
        "neuron td {{ rank 4  y = <w1, x> + cp(x, 2) + b }}\n"
        "network n {{ input 6  dense {w} td relu  dense 1 }}\n"
    )
    sizes = []
    for width in (4, 512):
        compiled = compile_text(spec.format(w=width))
        network = select_network(compiled, None)
        weights = initial_state(to_torch(compiled), network.name, seed=0)
        sizes.append(len(to_onnx(compiled, network, weights).graph.node))
    assert sizes[0] == sizes[1]


def test_emission_is_deterministic() -> None:
    text = (ROOT / "examples" / "td.ns").read_text()
    blobs = []
    for _ in range(2):
        compiled = compile_text(text, "td.ns")
        network = select_network(compiled, None)
        weights = initial_state(to_torch(compiled), network.name, seed=3)
        blobs.append(to_onnx(compiled, network, weights).SerializeToString())
    assert blobs[0] == blobs[1]


def test_cuda_request_fails_loudly_without_cuda(tmp_path: Path) -> None:
    path, _ = export((ROOT / "examples" / "td.ns").read_text(), tmp_path)
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: covered by the GPU check script")
    with pytest.raises(InputError, match="no CUDA provider"):
        Session(path, provider="cuda")
    assert Session(path, provider="auto").providers == ["CPUExecutionProvider"]


def test_nan_inputs_are_an_error(tmp_path: Path) -> None:
    path, _ = export((ROOT / "examples" / "td.ns").read_text(), tmp_path)
    session = Session(path)
    data = np.zeros((3, session.input_width), np.float32)
    data[1, 2] = np.nan
    with pytest.raises(InputError, match="row 2"):
        session.run(data)
    with pytest.raises(InputError, match="rows of 5 values"):
        session.run(np.zeros((3, 4)))


# --- the command line, with bad input -------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nscompile", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture
def td_state(tmp_path: Path) -> Path:
    compiled, module = compile_and_import((ROOT / "examples" / "td.ns").read_text())
    path = tmp_path / "state.pt"
    torch.manual_seed(1)
    torch.save(module.build().state_dict(), path)
    return path


def test_cli_exports_with_weights_and_runs(tmp_path: Path, td_state: Path) -> None:
    td = str(ROOT / "examples" / "td.ns")
    result = cli(td, "--onnx", "m.onnx", "--weights", str(td_state), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.savetxt(tmp_path / "data.csv", np.random.default_rng(0).normal(size=(20, 5)), delimiter=",")
    run = cli("run", "m.onnx", "data.csv", "-o", "pred.csv", "--provider", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "class,prob_0,prob_1" and len(lines) == 21
    state = load_state(str(td_state))
    assert set(state) == {
        p.name for p in onnx.load(str(tmp_path / "m.onnx")).graph.initializer if "." in p.name
    }


def _tamper(path: Path, change: str) -> Path:
    state = torch.load(path, weights_only=True)
    if change == "missing":
        state.pop("layer1.w1")
    elif change == "extra":
        state["layer9.w"] = torch.zeros(2)
    elif change == "shape":
        state["layer1.w1"] = torch.zeros(3, 3)
    else:
        state = [1, 2, 3]
    out = path.with_name(f"{change}.pt")
    torch.save(state, out)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "lack tensor 'layer1.w1' (shape (64, 5))"),
        ("extra", "tensor 'layer9.w'"),
        ("shape", "'layer1.w1' has shape (3, 3); the spec needs (64, 5)"),
        ("list", "not a state dict"),
    ],
)
def test_bad_weights_are_named(tmp_path: Path, td_state: Path, change: str, message: str) -> None:
    bad = _tamper(td_state, change)
    result = cli(
        str(ROOT / "examples" / "td.ns"), "--onnx", "m.onnx", "--weights", str(bad), cwd=tmp_path
    )
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_not_a_weights_file(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    result = cli(
        str(ROOT / "examples" / "td.ns"), "--onnx", "m.onnx", "--weights", "junk.pt", cwd=tmp_path
    )
    assert result.returncode == 1 and "not a PyTorch state dict" in result.stderr


def test_safetensors_weights_match_torch_save(tmp_path: Path, td_state: Path) -> None:
    state = load_state(str(td_state))
    file = write_safetensors(tmp_path / "state.safetensors", state)
    read = load_state(str(file))
    assert read.keys() == state.keys()
    assert all(read[k].dtype == np.float32 and np.array_equal(read[k], state[k]) for k in state)
    td = str(ROOT / "examples" / "td.ns")
    for name, weights in (("pt.onnx", td_state), ("st.onnx", file)):
        result = cli(td, "--onnx", name, "--weights", str(weights), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "pt.onnx").read_bytes() == (tmp_path / "st.onnx").read_bytes()


def test_safetensors_dtypes_are_read_as_float32(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0], [0.25, 3.0]])
    arrays = {"f64": values, "f16": values.astype(np.float16), "i64": np.arange(3)}
    # BF16 is the upper half of a float32: 1.5 is 0x3FC0, -2.0 is 0xC000.
    arrays["bf16"] = np.array([0x3FC0, 0xC000], dtype=np.uint16)
    file = write_safetensors(tmp_path / "w.safetensors", arrays, codes={"bf16": "BF16"})
    read = load_state(str(file))
    assert all(a.dtype == np.float32 for a in read.values())
    assert np.array_equal(read["f64"], values) and np.array_equal(read["f16"], values)
    assert read["i64"].tolist() == [0, 1, 2] and read["bf16"].tolist() == [1.5, -2.0]


def _corrupt(path: Path, kind: str) -> Path:
    good = write_safetensors(path, {"w": np.zeros((2, 3), np.float32)}).read_bytes()
    size = int.from_bytes(good[:8], "little")
    header, body = good[8 : 8 + size], good[8 + size :]
    if kind == "short":
        data = good[:5]
    elif kind == "length":
        data = (10**9).to_bytes(8, "little") + header + body
    elif kind == "json":
        data = good[:8] + b"{" * size + body
    elif kind == "dtype":
        header = header.replace(b'"F32"', b'"F8_E5M2"')
        data = len(header).to_bytes(8, "little") + header + body
    else:  # 2 x 3 float32 values take 24 bytes, not 20
        data = good[:8] + header.replace(b"24]", b"20]") + body
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("short", "shorter than its 8-byte header length"),
        ("length", "exceeds the file"),
        ("json", "not a readable safetensors file"),
        ("dtype", "has dtype F8_E5M2, which nscompile does not read"),
        ("offsets", "data_offsets that do not fit"),
    ],
)
def test_bad_safetensors_files_are_named(tmp_path: Path, kind: str, message: str) -> None:
    file = _corrupt(tmp_path / "w.safetensors", kind)
    with pytest.raises(InputError, match=message):
        load_state(str(file))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("1,2,3\n4,5,6\n", "has 3 columns; the model takes 5 inputs"),
        ("a,b,c,d,e\n1,2,,4,5\n", "column 'c'"),
        ("a,b,c,d,e\n1,2,x,4,5\n", "column 'c' of data.csv is text ('x'), not numbers"),
    ],
    ids=["columns", "nan", "text"],
)
def test_run_rejects_bad_data(tmp_path: Path, data: str, message: str) -> None:
    assert cli(str(ROOT / "examples" / "td.ns"), "--onnx", "m.onnx", cwd=tmp_path).returncode == 0
    (tmp_path / "data.csv").write_text(data)
    result = cli("run", "m.onnx", "data.csv", "-o", "pred.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pred.csv").exists()


def test_run_rejects_a_corrupt_model(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    (tmp_path / "data.csv").write_text("1,2\n")
    result = cli("run", "bad.onnx", "data.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a valid ONNX model" in result.stderr and "Traceback" not in result.stderr

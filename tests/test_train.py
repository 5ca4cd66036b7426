"""`nscompile train`, `eval` and `fit`, and the trainer behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nscompile.cli.main import main
from nscompile.compiler.pipeline import front_end
from nscompile.errors import InputError
from nscompile.lang.unparse import unparse
from nscompile.learn.data import load_table, supervised
from nscompile.learn.train import Diverged, Protocol, train_run
from nscompile.learn.train.core import matched_widths, mlp_parameters
from nscompile.learn.train.split import split_rows

SPEC = """
neuron td {
    rank 4
    y = <w1, x> + <w2, x**2> + cp(x, 2) + b
}
network net {
    input 4
    dense 8 td relu
    dense 3
    task classification
}
"""
OTHER = SPEC.replace("dense 8 td", "dense 6 td")
FILES = {"model.py", "weights.pt", "model.onnx", "preprocess.json", "metrics.json", "curves.png"}


@pytest.fixture(scope="module")
def iris():  # noqa: ANN201
    return supervised(load_table("sklearn:iris"), None, "auto")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI training run with both baselines and two seeds, shared by the tests below."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "iris.ns").write_text(SPEC)
    code = main(
        [
            "train",
            str(folder / "iris.ns"),
            "sklearn:iris",
            "-o",
            str(folder / "run"),
            "--epochs",
            "4",
            "--seeds",
            "2",
            "--baseline",
            "mlp",
            "--baseline",
            "mlp-params",
        ]
    )
    assert code == 0
    return folder


def test_train_writes_the_five_files(cli_run: Path) -> None:
    run = cli_run / "run"
    assert {p.name for p in run.iterdir()} == FILES
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "class TdLayer" in (run / "model.py").read_text()
    assert not list(cli_run.glob(".run.*"))  # the working directory was renamed away


def test_metrics_json_fields(cli_run: Path) -> None:
    metrics = json.loads((cli_run / "run" / "metrics.json").read_text())
    assert len(metrics["spec"]["sha256"]) == 64
    assert metrics["data"]["name"] == "sklearn:iris"
    assert metrics["split"] == {"train": 105, "val": 15, "test": 30}
    assert metrics["seeds"] == [0, 1] and metrics["weights_seed"] == 0
    spec = metrics["models"]["spec"]
    assert len(spec["per_seed"]) == 2
    for record in spec["per_seed"]:
        assert set(record) >= {"train", "val", "test", "epochs_run", "seconds", "best_epoch"}
        assert set(record["test"]) == {"loss", "accuracy", "macro_f1"}
        assert record["epochs_run"] == 4
    assert set(spec["mean"]["test"]) == set(spec["std"]["test"]) == {"loss", "accuracy", "macro_f1"}
    assert metrics["parameters"] == spec["parameters"] == 163
    assert metrics["models"]["mlp"]["hidden"] == [8]
    assert metrics["models"]["mlp"]["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    matched = metrics["models"]["mlp-params"]["parameters"]
    assert abs(matched - 163) <= 0.1 * 163


def _scores(line: str) -> dict[str, float]:
    """`onnxruntime: accuracy 0.9667, loss 0.1234` -> {"accuracy": 0.9667, "loss": 0.1234}."""
    pairs = (part.split() for part in line.split(":", 1)[1].split(","))
    return {name: float(value) for name, value in pairs}


def test_eval_agrees_with_torch(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(cli_run / "run"), "sklearn:iris"]) == 0
    out = capsys.readouterr().out
    onnx_line = next(line for line in out.splitlines() if line.startswith("onnxruntime:"))
    torch_line = next(line for line in out.splitlines() if line.startswith("torch:"))
    # Not the printed text: onnxruntime and torch compute in float32 in different orders, and a
    # loss 1e-6 apart may round to different 4th decimals. One unit of that decimal is the slack.
    ours, theirs = _scores(onnx_line), _scores(torch_line)
    assert ours.keys() == theirs.keys()
    assert all(abs(ours[k] - theirs[k]) <= 1e-4 + 1e-9 for k in ours), (onnx_line, torch_line)
    diff = float(out.rsplit("relative difference of the outputs", 1)[1])
    assert diff < 1e-4


def test_a_foreign_run_dir_is_refused(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli_run / "other.ns").write_text(OTHER)
    args = ["train", str(cli_run / "other.ns"), "sklearn:iris", "-o", str(cli_run / "run")]
    assert main([*args, "--epochs", "1"]) == 1
    assert "is a run of another spec" in capsys.readouterr().err
    foreign = cli_run / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    args[4] = str(foreign)
    assert main([*args, "--epochs", "1"]) == 1
    assert "not a training run" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"


def test_width_mismatch_names_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.ns").write_text(SPEC.replace("input 4", "input 5"))
    code = main(["train", str(tmp_path / "w.ns"), "sklearn:iris", "-o", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err
    assert "takes 5 inputs" in err and "sklearn:iris gives 4" in err and "input 4" in err
    assert not (tmp_path / "r").exists()


def test_resume_after_an_interruption_loses_nothing(tmp_path: Path, iris) -> None:  # noqa: ANN001
    protocol = Protocol(epochs=5)
    whole = train_run(SPEC, "iris.ns", iris, tmp_path / "whole", seeds=(0, 1), protocol=protocol)

    def interrupt(model: str, seed: int, epoch: int) -> None:
        if seed == 1 and epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(
            SPEC, "iris.ns", iris, tmp_path / "r", seeds=(0, 1), protocol=protocol, hook=interrupt
        )
    assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="an interrupted run"):
        train_run(SPEC, "iris.ns", iris, tmp_path / "r", seeds=(0, 1), protocol=protocol)
    epochs: list[tuple[int, int]] = []
    resumed = train_run(
        SPEC,
        "iris.ns",
        iris,
        tmp_path / "r",
        seeds=(0, 1),
        protocol=protocol,
        resume=True,
        hook=lambda model, seed, epoch: epochs.append((seed, epoch)),
    )
    assert epochs == [(1, 4), (1, 5)]  # seed 0 was finished, seed 1 continued from epoch 3
    for a, b in zip(
        whole.metrics["models"]["spec"]["per_seed"],
        resumed.metrics["models"]["spec"]["per_seed"],
        strict=True,
    ):
        for part in ("train", "val", "test"):
            assert a[part] == pytest.approx(b[part], rel=1e-5)
    assert {p.name for p in (tmp_path / "r").iterdir()} == FILES - {"curves.png"}


def test_divergence_stops_and_says_so(tmp_path: Path, iris) -> None:  # noqa: ANN001
    with pytest.raises(Diverged) as caught:
        train_run(SPEC, "iris.ns", iris, tmp_path / "r", protocol=Protocol(epochs=5, lr=1e30))
    message = caught.value.render()
    assert "epoch" in message and "lower learning rate" in message
    assert not (tmp_path / "r").exists()  # no half-written run
    assert (tmp_path / ".r.partial" / ".checkpoints").is_dir()  # kept for inspection


def test_stratified_split_and_matched_widths() -> None:
    target = np.repeat([0.0, 1.0, 2.0], [50, 30, 20])
    split = split_rows(target, "classification", seed=3)
    assert split.sizes() == {"train": 70, "val": 10, "test": 20}
    assert sorted(np.bincount(target[split.test].astype(int))) == [4, 6, 10]
    widths = matched_widths(10, [64, 32], 2, 20_000)
    assert abs(mlp_parameters(10, widths, 2) - 20_000) < 300


def test_fit_searches_trains_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "fit"
    args = ["fit", "sklearn:iris", "-o", str(run), "--epochs", "3", "--search-epochs", "3"]
    assert main([*args, "--baseline", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "structure: pure" in out and "onnxruntime vs torch" in out and "mlp" in out
    assert {p.name for p in run.iterdir()} == FILES | {"spec.ns"}
    spec = front_end((run / "spec.ns").read_text())
    assert "<w1, x>" in unparse(spec)  # a written spec always keeps the linear term


def test_fit_max_order_bounds_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "fit"
    args = ["fit", "sklearn:iris", "-o", str(run), "--epochs", "2", "--search-epochs", "2"]
    assert main([*args, "--max-order", "1"]) == 0
    assert "structure: pure [1], interact []" in capsys.readouterr().out
    assert main([*args, "--max-order", "0", "--overwrite"]) == 2  # usage error, nothing run


def test_baselines_take_the_spec_networks_activations(tmp_path: Path, iris) -> None:  # noqa: ANN001
    spec = SPEC.replace("dense 8 td relu", "dense 8 td tanh")
    result = train_run(
        spec, "tanh.ns", iris, tmp_path / "run", seeds=(0,), protocol=Protocol(epochs=1),
        baselines=("mlp",),
    )  # fmt: skip
    models = result.metrics["models"]
    assert models["spec"]["activations"] == models["mlp"]["activations"] == ["tanh"]


def test_written_networks_use_tanh_between_layers() -> None:
    from nscompile.learn.search.spec import spec_for

    spec = spec_for({"pure": [2], "interact": [], "rank": 8}, 4, "regression", 1, (8, 4), [])
    text = unparse(spec)
    assert "dense 8 td tanh" in text and "dense 4 td tanh" in text
    assert "<w1, x>" in text and "pure order 1 added" in text

"""What a run deploys: model.onnx takes raw rows and answers in the target's units.

`nscompile run RUN/model.onnx DATA` on the run's own data must reproduce the run's recorded
test metric on its test rows, for classification and regression, with numeric and text columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nscompile.cli.main import main
from nscompile.learn.data import load_table, supervised
from nscompile.learn.deploy import load_run
from nscompile.learn.train.split import split_rows


def spec(inputs: int, outputs: int, task: str) -> str:
    return f"""
neuron td {{
    rank 4
    y = <w1, x> + <w2, x**2> + cp(x, 2) + b
}}
network net {{
    input {inputs}
    dense 8 td relu
    dense {outputs}
    task {task}
}}
"""


def train(folder: Path, text: str, data: str, *extra: str) -> Path:
    (folder / "net.ns").write_text(text)
    run = folder / "run"
    args = ["train", str(folder / "net.ns"), data, "-o", str(run), "--epochs", "6", *extra]
    assert main(args) == 0
    return run


def predictions(folder: Path, run: Path, data: str) -> list[dict[str, str]]:
    out = folder / "p.csv"
    assert main(["run", str(run / "model.onnx"), data, "-o", str(out)]) == 0
    with out.open(newline="") as handle:
        return list(csv.DictReader(handle))


def recorded_test(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["models"]["spec"]["per_seed"][0]["test"]


def test_classification_run_reproduces_its_test_accuracy(tmp_path: Path) -> None:
    run = train(tmp_path, spec(4, 3, "classification"), "sklearn:iris")
    rows = predictions(tmp_path, run, "sklearn:iris")
    data = supervised(load_table("sklearn:iris"), None)
    test = split_rows(data.target, "classification", 0).test
    predicted = np.array([float(r["class"]) for r in rows])[test]
    truth = load_table("sklearn:iris").column("target")[test]
    assert np.mean(predicted == truth) == recorded_test(run)["accuracy"]
    probs = np.array([[float(r[f"prob_{c}"]) for c in "012"] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The same model in torch, from the run directory: the same classes.
    labels = load_run(run).predict("sklearn:iris")
    assert [str(v) for v in labels] == [r["class"] for r in rows]


def test_regression_run_answers_in_the_targets_units(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run = train(tmp_path, spec(10, 1, "regression"), "sklearn:diabetes")
    rows = predictions(tmp_path, run, "sklearn:diabetes")
    y = load_table("sklearn:diabetes").column("target")
    test = split_rows(y, "regression", 0).test
    prediction = np.array([float(r["prediction"]) for r in rows])
    assert 25 < prediction.mean() < 350  # diabetes progression units, not standardised ones
    pre = json.loads((run / "preprocess.json").read_text())["target_scale"]
    standardised = (prediction[test] - y[test]) / pre["std"]
    mse = float(np.mean(standardised**2))
    # float32 outputs written with 7 significant digits, against a float64 recorded metric.
    assert mse == pytest.approx(recorded_test(run)["mse"], rel=1e-5)
    capsys.readouterr()
    assert main(["eval", str(run), "sklearn:diabetes", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert (
        f"mse {recorded_test(run)['mse']:.4f}" in out and "88 rows of the run's test split" in out
    )


COLOURS = ("red", "green", "blue")


def text_table(path: Path, rows: int, seed: int, target: bool = True, colour: str = "") -> None:
    rng = np.random.default_rng(seed)
    lines = ["size,colour,weight" + (",answer" if target else "")]
    for i in range(rows):
        c = colour or COLOURS[i % 3]
        size, weight = rng.normal(), rng.normal() * 50 + 100
        answer = "yes" if size + (c == "red") + 0.01 * (weight - 100) > 0.5 else "no"
        lines.append(f"{size:.4f},{c},{weight:.3f}" + (f",{answer}" if target else ""))
    path.write_text("\n".join(lines) + "\n")


def test_text_columns_go_in_unchanged(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    data = tmp_path / "shop.csv"
    text_table(data, 300, 0)
    # size, 3 colour indicators, weight: the network takes 5 inputs; the labels are yes/no.
    run = train(tmp_path, spec(5, 2, "classification"), str(data))
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["columns"][1] == {
        "name": "colour",
        "kind": "one-hot",
        "categories": ["blue", "green", "red"],
    }
    assert pre["classes"] == ["no", "yes"]
    rows = predictions(tmp_path, run, str(data))
    assert {r["class"] for r in rows} <= {"no", "yes"} and "prob_yes" in rows[0]
    table = load_table(str(data))
    test = split_rows(supervised(table, None).target, "classification", 0).test
    truth = table.column("answer")[test]
    accuracy = np.mean(np.array([r["class"] for r in rows], dtype=object)[test] == truth)
    assert accuracy == recorded_test(run)["accuracy"]
    # New rows without the target column; columns are found by name.
    fresh = tmp_path / "fresh.csv"
    text_table(fresh, 7, 1, target=False)
    assert len(predictions(tmp_path, run, str(fresh))) == 7
    assert list(load_run(run).predict(str(fresh))) == [
        r["class"] for r in predictions(tmp_path, run, str(fresh))
    ]
    # A colour training never saw: a clear error, no predictions file.
    unseen = tmp_path / "unseen.csv"
    text_table(unseen, 3, 2, target=False, colour="purple")
    capsys.readouterr()
    assert main(["run", str(run / "model.onnx"), str(unseen), "-o", str(tmp_path / "u.csv")]) == 1
    err = capsys.readouterr().err
    assert "category 'purple' in data row 1, which training did not see" in err
    assert "known categories: blue, green, red" in err
    assert not (tmp_path / "u.csv").exists()
    assert main(["eval", str(run), str(data), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {recorded_test(run)['accuracy']:.4f}" in out


def test_deployed_graph_names_its_preprocessing(tmp_path: Path) -> None:
    import onnx

    run = train(tmp_path, spec(4, 3, "classification"), "sklearn:iris")
    model = onnx.load(str(run / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["nscompile.preprocess"])["standardise"]["mean"][0] == pytest.approx(
        5.84, abs=0.1
    )
    assert [o.name for o in model.graph.output] == ["label", "probabilities", "logits"]
    assert [i.name for i in model.graph.input] == ["input"]


def test_bare_compile_has_no_preprocessing(tmp_path: Path) -> None:
    import onnx

    (tmp_path / "net.ns").write_text(spec(4, 3, "classification"))
    assert main([str(tmp_path / "net.ns"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert "nscompile.preprocess" not in {p.key for p in model.metadata_props}
    assert [o.name for o in model.graph.output] == ["output"]


def test_run_streams_in_chunks_with_the_same_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # noqa: ANN001
) -> None:
    import nscompile.learn.data

    data = tmp_path / "shop.csv"
    text_table(data, 60, 0)
    run = train(tmp_path, spec(5, 2, "classification"), str(data))
    whole = (tmp_path / "whole.csv", tmp_path / "chunked.csv")
    assert main(["run", str(run / "model.onnx"), str(data), "-o", str(whole[0])]) == 0
    monkeypatch.setattr(nscompile.learn.data.iter_tables, "__defaults__", (7, frozenset()))
    assert main(["run", str(run / "model.onnx"), str(data), "-o", str(whole[1])]) == 0
    assert whole[0].read_text() == whole[1].read_text()
    assert len(whole[0].read_text().splitlines()) == 61
    # A bad cell in a later chunk names its row in the whole file.
    lines = data.read_text().splitlines()
    lines[50] = lines[50].replace(lines[50].split(",")[0], "", 1)
    data.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["run", str(run / "model.onnx"), str(data), "-o", str(whole[1])]) == 1
    assert "column 'size' of" in (err := capsys.readouterr().err) and "data row 50" in err


def test_number_like_categories_stay_categories(tmp_path: Path) -> None:
    """A text column whose categories look like numbers ('1' for blue) is read as text when
    the run's model is used, even in a file (or chunk) where every cell is a number."""
    data = tmp_path / "codes.csv"
    text_table(data, 120, 0)
    data.write_text(data.read_text().replace(",blue,", ",1,"))
    run = train(tmp_path, spec(5, 2, "classification"), str(data))
    blue = tmp_path / "blue.csv"
    lines = data.read_text().splitlines()
    blue.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ",1," in ln][:3]) + "\n")
    rows = predictions(tmp_path, run, str(blue))
    torch_probs = load_run(run).predict_proba(load_table(str(blue), text=("colour",)))
    onnx_probs = np.array([[float(r["prob_no"]), float(r["prob_yes"])] for r in rows])
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=1e-4, atol=1e-6)
    assert main(["eval", str(run), str(blue)]) == 0


def test_eval_refuses_a_wrong_target(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    data = tmp_path / "shop.csv"
    text_table(data, 60, 0)
    run = train(tmp_path, spec(5, 2, "classification"), str(data))
    capsys.readouterr()
    assert main(["eval", str(run), str(data), "--target", "size"]) == 1
    assert "'size' is one of the run's input columns" in capsys.readouterr().err
    (run / "weights.pt").unlink()
    assert main(["eval", str(run), str(data)]) == 1
    assert "is damaged" in capsys.readouterr().err


def test_data_beyond_float32_fails_before_the_run_directory_exists(tmp_path: Path) -> None:
    rows = "\n".join(f"{3.3e38 if i % 2 else -3.3e38},{i % 3},{i * 0.5}" for i in range(40))
    (tmp_path / "huge.csv").write_text("a,b,y\n" + rows + "\n")
    (tmp_path / "net.ns").write_text(spec(2, 1, "regression"))
    args = ["train", str(tmp_path / "net.ns"), str(tmp_path / "huge.csv"), "-o"]
    assert main([*args, str(tmp_path / "run"), "--epochs", "2"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.csv", "net.ns"]

"""A run directory as a user deploys it: raw rows in, answers in the target's own units.

    >>> from nscompile.learn.deploy import load_run
    >>> model = load_run("runs/phoneme")
    >>> model.predict("new_rows.csv")            # labels (classification) or values
    >>> model.predict_proba(table)               # class probabilities
    >>> model.module                             # torch: encoded raw features -> answer

Both engines apply the run's `Preprocess` the same way: onnxruntime inside `model.onnx`
(`deploy_onnx`), torch in `DeployedModule` around the generated network. `RunModel.answers`
gives the deployed graph's outputs by name (label, probabilities, logits / prediction), as
`Session.answers` does with onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nscompile.errors import InputError
from nscompile.learn.data import load_table
from nscompile.learn.loader import load_file
from nscompile.learn.preprocess import Preprocess
from nscompile.learn.runtime import Session
from nscompile.learn.table import Table, label_text
from nscompile.learn.train import metrics
from nscompile.learn.train.split import split_rows

PREPROCESS_FILE = "preprocess.json"
#: The largest relative difference between onnxruntime's and torch's outputs (`Evaluation`'s
#: `difference`) at which a run's two engines still agree.
AGREEMENT = 1e-4


class DeployedModule(nn.Module):
    """The trained network with its standardisation: encoded raw features -> the answer.

    The input is the encoding's matrix (`Encoding.encode`: the numeric columns as they are, a
    0/1 indicator per category of a text column); with numeric columns only, that is the raw
    feature rows. `forward` returns class probabilities or predictions in the target's units;
    `logits` the network's raw output.
    """

    def __init__(self, network: nn.Module, pre: Preprocess) -> None:
        super().__init__()
        self.network = network
        self.task = pre.task
        scaler = pre.scaler
        self.register_buffer("mean", torch.tensor(scaler.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(scaler.std, dtype=torch.float32))
        target = [scaler.target_mean, scaler.target_std]
        self.register_buffer("target_scale", torch.tensor(target, dtype=torch.float32))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)

    def answer(self, logits: torch.Tensor) -> torch.Tensor:
        """The network's output -> probabilities, or values in the target's units."""
        if self.task == "classification":
            return torch.softmax(logits, dim=1)
        return logits * self.target_scale[1] + self.target_scale[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.answer(self.logits(x))


def read_preprocess(run_dir: Path) -> Preprocess:
    path = run_dir / PREPROCESS_FILE
    try:
        return Preprocess.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{run_dir} has no readable {PREPROCESS_FILE}",
            hint="it was written by an older nscompile: train it again",
        ) from None


class RunModel:
    """A run directory's trained network (model.py + weights.pt) and its preprocessing."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.recorded = json.loads((self.run_dir / "metrics.json").read_text("utf-8"))
            network_name = self.recorded["spec"]["network"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(
                f"{self.run_dir} is not a training run (no readable metrics.json)",
                hint="make one with `nscompile train SPEC DATA -o RUN_DIR`",
            ) from None
        self.preprocess = read_preprocess(self.run_dir)
        try:
            network = load_file(self.run_dir / "model.py").build(network_name)
            state = torch.load(self.run_dir / "weights.pt", weights_only=True)
        except OSError as error:
            raise InputError(
                f"{self.run_dir} is damaged: {error.strerror or error} ({error.filename})",
                hint="train it again",
            ) from None
        network.load_state_dict(state)
        self.module = DeployedModule(network, self.preprocess).eval()

    def answers(self, table: Table, first_row: int = 1) -> dict[str, np.ndarray]:
        """The deployed graph's outputs, by name, computed with torch."""
        encoded = self.preprocess.encoding.encode(table, first_row)
        x = torch.from_numpy(encoded.astype(np.float32))
        with torch.no_grad():
            logits = self.module.logits(x)
            answer = self.module.answer(logits).numpy()
        if self.preprocess.task == "regression":
            return {"prediction": answer}
        return _classes(self.preprocess, logits.numpy(), answer)

    def predict(self, data: str | Table) -> np.ndarray:
        """Labels (as text) or predictions (rows) for a table or a data source's rows."""
        out = self.answers(_table(data))
        return out["label"] if "label" in out else out["prediction"][:, 0]

    def predict_proba(self, data: str | Table) -> np.ndarray:
        out = self.answers(_table(data))
        if "probabilities" not in out:
            raise InputError("predict_proba is for classification runs")
        return out["probabilities"]


def _table(data: str | Table) -> Table:
    return data if isinstance(data, Table) else load_table(data)


def _classes(pre: Preprocess, logits: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    assert pre.labels is not None
    labels = np.array(pre.labels, dtype=object)[np.argmax(logits, axis=1)]
    return {"label": labels, "probabilities": probs, "logits": logits}


def load_run(run_dir: str | Path) -> RunModel:
    """The run in `run_dir`, ready to predict with torch."""
    return RunModel(run_dir)


@dataclass(frozen=True)
class Evaluation:
    """A run's deployed model scored on data by both engines."""

    rows: int
    target: str
    onnx: dict[str, float]
    torch: dict[str, float]
    difference: float  # max |onnxruntime - torch| over max(max |torch|, 1), logits or values


def evaluate(
    model: RunModel, table: Table, target: str | None = None, split: str = "all"
) -> Evaluation:
    """Score the run's model.onnx (onnxruntime) and its torch twin on the rows of `table`.

    `split` picks the rows of the run's own split (the weights seed's), which needs the data
    the run was trained on: `test` reproduces the run's recorded test metric. Metrics follow
    `nscompile.learn.train.metrics`: classification on the class codes, regression in units of the
    training split's target std (as metrics.json records them), plus `rmse` in the target's
    own units.
    """
    pre = model.preprocess
    name = pre.target if target is None else target
    if name in pre.encoding.columns:
        raise InputError(
            f"'{name}' is one of the run's input columns, not a target",
            hint=f"the run was trained to predict '{pre.target}'",
        )
    y = table.column(name)
    if pre.task == "regression" and y.dtype.kind != "f":
        raise InputError(
            f"the target '{name}' of {table.name} is text; the run predicts numbers",
            hint=f"the run was trained to predict '{pre.target}'",
        )
    codes = _codes(pre, y, name) if pre.task == "classification" else None
    if split != "all":
        table, y, codes = _split(model.recorded, table, y, codes, split)
    session = Session(model.run_dir / "model.onnx", provider="cpu")
    engines = {"onnx": session.answers(table), "torch": model.answers(table)}
    key = "logits" if pre.task == "classification" else "prediction"
    reference = engines["torch"][key]
    scale = max(float(np.max(np.abs(reference))), 1.0) if len(y) else 1.0
    diff = float(np.max(np.abs(engines["onnx"][key] - reference))) / scale if len(y) else 0.0
    scores = {k: _score(pre, out, y, codes) for k, out in engines.items()}
    return Evaluation(len(y), name, scores["onnx"], scores["torch"], diff)


def check_agreement(difference: float) -> None:
    """Raise InputError when onnxruntime and torch disagree by more than `AGREEMENT`."""
    if difference > AGREEMENT:
        raise InputError(f"onnxruntime and torch disagree by {difference:.3g}")


def _codes(pre: Preprocess, y: np.ndarray, name: str) -> np.ndarray:
    assert pre.labels is not None
    index = {label: i for i, label in enumerate(pre.labels)}
    text = label_text(y)
    unknown = [v for v in text if v not in index]
    if unknown:
        raise InputError(
            f"the target '{name}' has the class '{unknown[0][:40]}', which the run did not see",
            hint=f"the run's classes: {', '.join(pre.labels)}",
        )
    return np.array([index[v] for v in text], dtype=np.int64)


def _split(recorded: dict, table: Table, y: np.ndarray, codes: np.ndarray | None, part: str):  # noqa: ANN202
    """The rows of the run's own `part`, recomputed from its seed and protocol."""
    if recorded["data"]["rows"] != len(y):
        raise InputError(
            f"the run was trained on {recorded['data']['rows']} rows of "
            f"{recorded['data']['name']}; this data has {len(y)}",
            hint="--split needs the data the run was trained on (or use --split all)",
        )
    protocol = recorded["protocol"]
    task = recorded["data"]["task"]
    target = codes.astype(np.float64) if codes is not None else y
    rows = getattr(
        split_rows(target, task, recorded["weights_seed"], protocol["test"], protocol["val"]),
        part,
    )
    return table.take(rows), y[rows], None if codes is None else codes[rows]


def _score(
    pre: Preprocess, out: dict[str, np.ndarray], y: np.ndarray, codes: np.ndarray | None
) -> dict[str, float]:
    if codes is not None:
        return metrics("classification", out["logits"], codes)
    scale = pre.scaler
    prediction = out["prediction"].astype(np.float64)
    standardised = (prediction - scale.target_mean) / scale.target_std
    result = metrics("regression", standardised, (y - scale.target_mean) / scale.target_std)
    result["rmse"] = float(np.sqrt(np.mean((prediction[:, 0] - y) ** 2)))
    return result

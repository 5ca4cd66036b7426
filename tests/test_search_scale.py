"""The search's parts that keep it exact beyond D = 10: centring, moments, the stage-2 test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nscompile.errors import InputError
from nscompile.learn.search import NeuronSeek, moments, search, train
from nscompile.learn.search.inputs import centring_threshold, scale_features
from nscompile.learn.search.model import DualStream
from nscompile.learn.synthetic import generate


def test_noise_is_relative_to_the_signal() -> None:
    clean = generate("pure_v1", dims=30, rows=4000, seed=2, noise=0.0)[1]
    for level in (0.1, 0.3):
        noisy = generate("pure_v1", dims=30, rows=4000, seed=2, noise=level)[1]
        # both standardised: the clean part explains 1 / (1 + level**2) of the variance
        explained = np.corrcoef(clean, noisy)[0, 1] ** 2
        assert explained == pytest.approx(1.0 / (1.0 + level**2), abs=0.01)


def test_classes_are_equal_frequency_quantiles() -> None:
    X, y, truth = generate("hybrid_v1", dims=5, rows=900, seed=0, classes=3)
    assert truth == {"pure": [1], "interact": [2]}
    assert sorted(np.unique(y)) == [0.0, 1.0, 2.0]
    assert np.bincount(y.astype(int)).tolist() == [300, 300, 300]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"noise": -0.1}, "noise"), ({"noise": float("nan")}, "noise"), ({"classes": 1}, "classes")],
)
def test_bad_synthetic_options(kwargs: dict, words: str) -> None:
    with pytest.raises(InputError, match=words):
        generate("pure_v0", rows=50, **kwargs)


def test_centring_threshold_grows_with_the_width() -> None:
    limits = [centring_threshold(d) for d in (1, 10, 50, 100)]
    assert limits == sorted(limits) and limits[1] > 3.0 and limits[2] > 3.6


def test_a_chance_mean_is_not_centred_at_d50_but_a_real_one_is() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 50))
    X[:, 7] = (X[:, 7] - X[:, 7].mean()) / X[:, 7].std() + 3.2 / np.sqrt(3000)  # z = 3.2:
    # "significant" for a 3-sigma test per column, chance for Bonferroni over 50 columns
    X[:, 9] += 1.0  # a real offset
    scaled = scale_features(X)
    assert abs(scaled[:, 7].mean()) > 0.03  # left uncentred: x**k keeps its orders
    assert abs(scaled[:, 9].mean()) < 1e-9


def test_worse_by_is_a_paired_rank_test() -> None:
    rng = np.random.default_rng(1)
    base = torch.tensor(rng.exponential(size=400))
    assert train.worse_by(base, base) == 0.0
    noise = torch.tensor(rng.normal(0, 1e-3, 400))
    assert abs(train.worse_by(base + noise, base)) < 3.0
    assert train.worse_by(base * 1.05, base) > 10.0  # every row a little worse: decisive
    heavy = base.clone()
    heavy[0] += 1e6  # one huge row does not outvote the others
    assert abs(train.worse_by(heavy + noise, base + noise)) < 3.0
    assert train.worse_by(base + torch.inf, base) == float("inf")


def test_moment_directions_find_an_interaction_at_d40() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 40))
    w = rng.standard_normal((40, 2)) / np.sqrt(40)
    y = np.prod(X @ w, axis=1) + 0.5 * np.sum(X**3, axis=1) / 40
    x = torch.tensor(X, dtype=torch.float32)
    target = torch.tensor(y - y.mean(), dtype=torch.float32)[:, None]
    powers = torch.stack([x**k for k in (1, 2, 3)], 1).reshape(3000, -1)
    powers = (powers - powers.mean(0)) / powers.std(0)
    found = moments.sequential_directions(
        x, target, powers, [2, 3], 4, torch.Generator().manual_seed(0)
    )
    span, _ = np.linalg.qr(w)
    overlap = np.linalg.norm(span.T @ found[2].numpy(), axis=0)
    assert sorted(overlap)[-2:] == pytest.approx([1.0, 1.0], abs=0.05)  # random: ~0.22
    assert torch.allclose(found[3].T @ found[3], torch.eye(4), atol=1e-4)  # orthonormal


@pytest.mark.parametrize("mode", ["open", "eval"])
@pytest.mark.parametrize("held", [False, True])
def test_masked_forward_equals_the_full_terms(mode: str, held: bool) -> None:
    # The frozen forward folds the BatchNorms into two matrix products and may read the
    # powers from the refit's cache: it must stay the sum of the gated terms.
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    model = DualStream(x, 2, 4, 3, torch.randn(200, 2))
    train.recalibrate(model, x)
    with torch.no_grad():
        for norm in model.norms:
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
        model.gates.log_alpha.uniform_(-1.0, 1.0)
    model.mask[1] = 0.0
    model.mask[5] = 0.0
    model.hold_input(x if held else None)
    with torch.no_grad():
        masked = model(x, mode)
        gates = model.gates.deterministic() if mode == "eval" else torch.ones(len(model.names))
        full = model.bias + torch.einsum("ntc,t->nc", model.terms(x), gates * model.mask)
    model.hold_input(None)
    assert torch.allclose(masked, full, atol=1e-5)


def test_a_held_input_is_not_used_for_other_rows() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 4)
    model = DualStream(x, 1, 3, 2)
    train.recalibrate(model, x)
    other = torch.randn(50, 4)
    with torch.no_grad():
        expected = model(other, "open")
        model.hold_input(x)
        assert torch.equal(model(other, "open"), expected)
        x.mul_(2.0)  # modified in place: the cache is stale and must not be used
        changed = model(x, "open")
        model.hold_input(None)
        assert torch.equal(changed, model(x, "open"))


def test_pure_noise_is_reported_undecided() -> None:
    rng = np.random.default_rng(5)
    result = search(rng.standard_normal((300, 3)), rng.standard_normal(300), seeds=(0,),
                    max_order=2, rank=2, epochs=3, refit_iters=20)  # fmt: skip
    assert result.undecided and "constant" in result.undecided
    neuron = next(iter(result.spec.neurons.values()))
    assert "undecided" in "\n".join(neuron.comments.leading)


def test_search_reports_stage1_and_the_prune_trace() -> None:
    X, y, _ = generate("interact_v0", dims=5, rows=600, seed=0)
    est = NeuronSeek(max_order=3, rank=4, epochs=5, refit_iters=40).fit(X, y)
    assert est.undecided_ is None
    assert set(est.stage1_["pure"]) | set(est.structure_["pure"]) <= {1, 2, 3}
    assert est.prune_trace_ and {"drop", "val", "z", "accepted"} <= set(est.prune_trace_[0])


def test_cli_summary_has_the_stage_counts(tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "nscompile", "search", "synthetic:hybrid_v1", "--dims", "4",
           "--rows", "300", "--max-order", "2", "--rank", "2", "--epochs", "3", "--noise", "0.1",
           "--classes", "2", "--summary", str(summary), "-o", str(tmp_path / "s.ns")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(summary.read_text())
    assert report["task"] == "classification"
    assert len(report["stage1_per_seed"]) == 1 and 0 <= report["stage2_changed"] <= 1
    assert "undecided" in report


def test_cli_refuses_bad_noise(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "nscompile", "search", "synthetic:pure_v0", "--noise", "-1",
           "-o", str(tmp_path / "s.ns")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "noise" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.ns").exists()


def test_recovery_benchmark_writes_json_and_a_scaling_table(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "examples" / "paper" / "synthetic_recovery.py"
    report = tmp_path / "d6.json"
    cmd = [sys.executable, str(script), "--quick", "--formulas", "interact_v0", "--dims", "6",
           "--rows", "600", "--noise", "0.1", "--json", str(report)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["setting"] == {"dims": 6, "rows": 600, "noise": 0.1, "classes": 0, "data_seed": 0}
    row = data["rows"][0]
    assert row["verdict"] in ("PERFECT", "NOISY", "MISSING") and "stage1_verdict" in row
    table = subprocess.run([sys.executable, str(script), "--table", str(report)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert table.returncode == 0
    assert "| 6 | 600 | 0.1 | regression |" in table.stdout


def test_prune_tries_again_what_a_failed_first_fit_kept(monkeypatch) -> None:
    # The first fit of every candidate failed (0.2 where the true term alone reaches 1e-3):
    # judged against it, removing the spurious interact_2 looked 2.5x worse. Once the best
    # model is 200x better, the second pass removes it; the true interact_3 stays.
    x = torch.randn(40, 3)
    model = DualStream(x, 1, 3, 2)
    rows = 1.0 + 0.1 * torch.rand(100, dtype=torch.float64)

    def loss(active: frozenset) -> float:
        if "interact_3" not in active:
            return 1.0
        if active == frozenset(model.names):
            return 0.2
        if active == frozenset(model.names) - {"interact_2"}:
            return 0.5
        return 1e-3 * (1.0 + 0.01 * len(active))

    def row_losses(trial, xv, yv):  # noqa: ANN001, ANN202
        return (
            loss(frozenset(n for n, on in zip(trial.names, trial.mask, strict=True) if on)) * rows
        )

    monkeypatch.setattr(train, "refit", lambda *args, **kwargs: None)
    monkeypatch.setattr(train, "row_losses", row_losses)
    trace: list[dict] = []
    _, keep, _ = train.prune(model, (x, None, x, None), None, list(model.names),
                             significance=3.0, tolerance=0.1, iters=1, trace=trace)  # fmt: skip
    assert keep == ["interact_3"]
    assert [(t["drop"], t["pass"], t["accepted"]) for t in trace if t["pass"] == 2] == [
        ("interact_3", 2, False),
        ("interact_2", 2, True),
    ]

"""The structure search and the synthetic benchmark's generator; fast (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from nscompile.errors import InputError
from nscompile.lang.check import check
from nscompile.lang.parser import parse
from nscompile.lang.unparse import unparse
from nscompile.learn.search import NeuronSeek, SearchResult, search
from nscompile.learn.search.gates import BETA, GAMMA, ZETA, HardConcreteGates
from nscompile.learn.synthetic import FORMULAS, generate

TINY = {"epochs": 3, "batch_size": 64, "refit_iters": 10, "max_order": 3, "rank": 2}


def roundtrip_checks(spec) -> None:
    text = unparse(spec)
    assert check(parse(text, "found.ns"), "found.ns") is not None


# --- synthetic generator ---------------------------------------------------------------


def test_there_are_fifteen_formulas() -> None:
    assert len(FORMULAS) == 15
    assert {n.rsplit("_", 1)[0] for n in FORMULAS} == {"pure", "interact", "hybrid"}


def test_generate_shapes_and_standardised_target() -> None:
    X, y, truth = generate("hybrid_v3", dims=7, rows=300, seed=1)
    assert X.shape == (300, 7) and y.shape == (300,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert abs(y.mean()) < 1e-9 and abs(y.std() - 1.0) < 1e-9
    assert truth == {"pure": [2], "interact": [3]}


def test_generate_is_deterministic_and_seeded() -> None:
    a = generate("interact_v1", rows=50, seed=3)
    b = generate("interact_v1", rows=50, seed=3)
    c = generate("interact_v1", rows=50, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_generate_pure_formula_is_a_power_sum() -> None:
    X, y, _ = generate("pure_v1", rows=400, seed=0)
    s3 = np.sum(X**3, axis=1)
    assert abs(np.corrcoef(s3, y)[0, 1]) > 0.999


@pytest.mark.parametrize(
    ("name", "truth"),
    [
        ("pure_v2", {"pure": [1, 2], "interact": []}),
        ("interact_v3", {"pure": [], "interact": [2, 4]}),
        ("hybrid_v1", {"pure": [1], "interact": [2]}),
    ],
)
def test_truths(name: str, truth: dict) -> None:
    assert generate(name, rows=20)[2] == truth


def test_unknown_formula_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as info:
        generate("pure_v9")
    assert "pure_v0" in (info.value.hint or "")


# --- gates ---------------------------------------------------------------------------------


def test_gate_expected_l0_at_init() -> None:
    gates = HardConcreteGates(4)
    expected = 1.0 / (1.0 + math.exp(-(math.log(9.0) - BETA * math.log(-GAMMA / ZETA))))
    assert torch.allclose(gates.expected_l0(), torch.full((4,), expected))
    assert 0.95 < expected < 1.0  # keep probability 0.9 plus the stretch


def test_gate_values_are_in_the_unit_interval() -> None:
    gates = HardConcreteGates(1000)
    with torch.no_grad():
        gates.log_alpha.uniform_(-6.0, 6.0)
    with torch.no_grad():
        draws = (gates.sample(), gates.deterministic())
    for z in draws:
        assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    assert (
        float(gates.sample().detach().min()) == 0.0 and float(gates.sample().detach().max()) == 1.0
    )


# --- the estimator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    X, y, _ = generate("hybrid_v1", dims=4, rows=130, seed=0)
    return X, y


def test_tiny_fit_gives_a_structure_and_a_checked_spec(small) -> None:
    est = NeuronSeek(**TINY).fit(*small)
    assert est is not None and est.task_ == "regression"
    s = est.structure_
    assert set(s) == {"pure", "interact", "rank", "gates"} and s["rank"] == 2
    assert s["pure"] == sorted(s["pure"]) and s["pure"] + s["interact"]
    assert set(s["gates"]["pure"]) == {1, 2, 3} and set(s["gates"]["interact"]) == {2, 3}
    assert len(est.history_["loss"]) == 3 and len(est.history_["gates"]["pure_1"]) == 3
    assert math.isfinite(est.history_["val_metric"]) and est.seconds_ > 0
    roundtrip_checks(est.spec_)
    assert est.spec_.networks["net"].input_width == 4


def test_a_last_batch_of_one_row_does_not_crash(small) -> None:
    X, y = small
    NeuronSeek(**{**TINY, "batch_size": 16, "validation_fraction": 0.2}).fit(X[:121], y[:121])
    NeuronSeek(**{**TINY, "batch_size": 8}).fit(X[:11], y[:11])


def test_classification_is_detected_and_uses_class_logits() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(float) + (X[:, 2] > 1)
    est = NeuronSeek(**TINY).fit(X, y)
    assert est.task_ == "classification" and 0.0 <= est.val_metric_ <= 1.0
    assert est.spec_.networks["net"].layers[-1].width == 3
    roundtrip_checks(est.spec_)


def test_sklearn_clone_and_params() -> None:
    est = NeuronSeek(max_order=3, rank=4, seed=7)
    params = est.get_params()
    assert params["max_order"] == 3 and params["rank"] == 4 and params["seed"] == 7
    other = clone(est).set_params(rank=5)
    assert other.rank == 5 and est.rank == 4


INF = np.c_[np.ones(20), np.r_[np.ones(5), np.inf, np.ones(14)]]
RAND = np.random.default_rng(0).random((20, 2))


@pytest.mark.parametrize(
    ("X", "y", "params", "words"),
    [
        (np.ones(20), np.arange(20.0), {}, "2-D"),
        (np.ones((20, 2)), np.arange(19.0), {}, "rows"),
        (np.where(np.eye(20, 3) > 0, np.nan, 1.0), np.arange(20.0), {}, "column 0, first at row 0"),
        (INF, np.arange(20.0), {}, "column 1, first at row 5"),
        (RAND, np.full(20, 3.0), {}, "constant"),
        (RAND, np.ones(20), {"task": "classification"}, "one class"),
        (np.ones((5, 2)), np.arange(5.0), {}, "at least"),
        (np.ones((20, 2)), np.arange(20.0), {"max_order": 10}, "max_order"),
        (np.ones((20, 2)), np.arange(20.0), {"max_order": 0}, "max_order"),
        (np.ones((20, 2)), np.arange(20.0), {"rank": 5000}, "rank"),
    ],
)  # fmt: skip
def test_bad_inputs_raise_input_error(X, y, params, words) -> None:
    with pytest.raises(InputError) as info:
        NeuronSeek(**{**TINY, "batch_size": 16, **params}).fit(X, y)
    assert words in info.value.message


# --- multi-seed search and recovery --------------------------------------------------------


def test_multi_seed_search_reports_majority_and_provenance(small) -> None:
    calls = []
    result = search(*small, seeds=(0, 1), name="toy", progress=lambda *a: calls.append(a), **TINY)
    assert isinstance(result, SearchResult) and len(result.per_seed) == 2
    assert result.agreement in (0.5, 1.0)
    assert calls[-1] == (3, 3, 1) and len(calls) == 6
    text = unparse(result.spec)
    assert "# data: toy" in text and "agreement" in text and "seeds: 0, 1" in text
    roundtrip_checks(result.spec)


def test_easy_formula_is_recovered_exactly() -> None:
    X, y, truth = generate("interact_v0", dims=6, rows=600, seed=0)
    est = NeuronSeek(max_order=3, rank=4, epochs=8, batch_size=128, refit_iters=60).fit(X, y)
    assert {"pure": est.structure_["pure"], "interact": est.structure_["interact"]} == truth

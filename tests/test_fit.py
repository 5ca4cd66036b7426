"""The fit workflow's steps (`nscompile.learn.fit`) and the splits they share with training runs."""

from __future__ import annotations

import numpy as np
import pytest

from nscompile.errors import InputError
from nscompile.learn.deploy import AGREEMENT, check_agreement
from nscompile.learn.fit import NetworkChoice, network_spec
from nscompile.learn.train.split import split_rows, validation_rows

QUADRATIC = "neuron q {\n    y = <w1, x> + <w2, x**2> + b\n}\n"
OWN = (
    QUADRATIC
    + "network mine {\n    input 4\n    dense 5 q relu\n    dense 3\n    task classification\n}\n"
)


def test_validation_rows_are_stratified_and_fall_back_to_the_training_rows() -> None:
    y = np.array([0] * 10 + [1] * 20)
    train, val = validation_rows(y, "classification", seed=0, fraction=0.1)
    assert sorted(np.concatenate([train, val])) == list(range(30))
    assert (y[val] == 0).sum() == 1 and (y[val] == 1).sum() == 2
    train, val = validation_rows(y, "classification", seed=0, fraction=0.0)
    assert np.array_equal(train, val) and len(train) == 30
    train, val = validation_rows(np.array([0.5, 1.5]), "regression", seed=0, fraction=0.9)
    assert len(train) == 1 and len(val) == 1  # at least one training row


def test_the_run_split_and_the_validation_split_draw_alike() -> None:
    # With no test part, a run's split would hold out exactly the estimators' validation rows.
    y = np.arange(40, dtype=np.float64)
    train, val = validation_rows(y, "regression", seed=3, fraction=0.25)
    split = split_rows(y, "regression", seed=3, test=0.25, val=0.25)
    assert len(val) == len(split.test) == 10 and np.array_equal(val, split.test)
    assert not set(train) & set(val)


def test_network_spec_uses_the_spec_network_when_it_fits() -> None:
    assert network_spec(OWN, "<s>", NetworkChoice("classification", 4, 3, None, (7,))) == (
        OWN,
        "mine",
    )
    text, name = network_spec(OWN, "<s>", NetworkChoice("classification", 6, 3, None, (7,)))
    assert name == "net" and "input 6" in text and "dense 7 q relu" in text
    with pytest.raises(ValueError, match="no neuron 'other'"):
        network_spec(OWN, "<s>", NetworkChoice("regression", 4, 1, "other", (7,)))
    with pytest.raises(ValueError, match="error"):
        network_spec("neuron {", "<s>", NetworkChoice("regression", 4, 1, None, (7,)))


def test_check_agreement() -> None:
    check_agreement(AGREEMENT)
    with pytest.raises(InputError, match="disagree by 0.001"):
        check_agreement(1e-3)

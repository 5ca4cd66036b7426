"""scikit-learn estimators that compile a spec, train its network and predict.

    >>> from nscompile import TaskNetClassifier
    >>> clf = TaskNetClassifier(spec="examples/td.ns", hidden=(16,), epochs=50).fit(X, y)
    >>> clf.predict_proba(X[:3]), clf.score(X, y), clf.spec_

Text columns (str cells in a DataFrame or an object array) are one-hot encoded as the command
line does (`nscompile.learn.encoding.Encoding`, kept as `encoding_`); a category `fit` did not
see is a ValueError in `predict`. `fit` standardises X, builds the network for X's width (the spec's
own network when its input width and head fit the data, otherwise `neuron` + `hidden` + a
linear head), compiles it with the project's compiler, imports the generated module and trains
it with the project's trainer: the fit workflow `nscompile fit` shares (`nscompile.learn.fit`;
Adam with weight decay 1e-5, cosine decay, early stopping on an internal validation split, best
state restored). Regression targets are standardised for training and mapped back in `predict`.

The fitted estimator pickles: it keeps the generated source and the trained weights as arrays
and rebuilds the torch module on first use after unpickling (a dynamically imported class does
not pickle).

scikit-learn checks that are expected to fail (`expected_failed_checks(estimator)` gives them
to `check_estimator` / `parametrize_with_checks`): see `EXPECTED_FAILED_CHECKS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets

from nscompile.learn.estimator_base import TaskNetBase
from nscompile.learn.probabilities import log_softmax, softmax

# Checks of scikit-learn 1.9's `check_estimator` that fail in the small, fast configuration the
# tests use (hidden=(4,), epochs=3: about 15 optimiser steps); none fails for a structural reason.
# Both pass with hidden=(16,), epochs=20, lr=1e-2 (tests/test_estimators.py runs them so).
# check_regressors_train also fails with the default parameters: on its 200-row dataset the
# validation loss (20 rows) is lowest at epoch 2, so early stopping keeps an underfitted state
# (training R2 0.16; 0.95 with validation_fraction=0).
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "classification": {
        "check_classifiers_train": "needs training accuracy > 0.83 on make_blobs; a tiny "
        "network trained for a few epochs does not get there (passes with more training)",
    },
    "regression": {
        "check_regressors_train": "needs training R2 > 0.5; a tiny network trained for a few "
        "epochs, or one early-stopped on 20 validation rows, does not get there (passes with "
        "more training)",
    },
}


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The checks `estimator` is expected to fail in a small configuration, with reasons.

    For `check_estimator(est, expected_failed_checks=expected_failed_checks(est))` and
    `parametrize_with_checks([...], expected_failed_checks=expected_failed_checks)`.
    """
    return dict(EXPECTED_FAILED_CHECKS.get(getattr(estimator, "_task", ""), {}))


class TaskNetClassifier(ClassifierMixin, TaskNetBase):
    """A task-driven network classifier compiled from a spec (scikit-learn compatible).

    Args:
        spec: a path to a .ns file, spec text, or a `nscompile.lang.syntax.Spec`; None means
            `DEFAULT_NEURON` (pure orders 1 and 2). Ignored when `search=True`.
        hidden: hidden layer widths of the network built from a neuron (when the spec has no
            network that fits the data, or with `search=True`).
        search: run the structure search (`nscompile.learn.search.search`) on the training data in
            `fit` and build the network from the neuron it finds.
        neuron: the spec's neuron to build the network from (default: the first). Giving it
            always builds `neuron` + `hidden`, even if the spec has a network that fits.
        epochs, lr, batch_size, patience: the training protocol (Adam with weight decay 1e-5,
            cosine decay over `epochs`, early stopping after `patience` epochs without a
            better validation loss, best state restored).
        validation_fraction: share of the rows (per class) held out for early stopping;
            with 0 (or too few rows) the training loss is used.
        random_state: seed of the split, the initialisation and the batch order.
        search_params: `NeuronSeek` parameters for the search (`seeds` too).

    Attributes: `classes_`, `n_features_in_`, `spec_` (the spec text compiled), `network_`
    (its network's name), `module_source_` (generated PyTorch source), `state_dict_` (trained
    weights as arrays), `model_` (the torch module), `x_mean_`, `x_std_`, `history_`,
    `best_epoch_`, `n_epochs_`, and `search_result_` with `search=True`.

    scikit-learn checks expected to fail: `EXPECTED_FAILED_CHECKS` (module level).
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> TaskNetClassifier:
        X, y = self._validate_fit(X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"the classifier needs at least 2 classes in y; got 1 class ({self.classes_[0]!r})"
            )
        self._fit(X, codes.astype(np.int64), len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(self._outputs(X))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return log_softmax(self._outputs(X))

    def predict(self, X: Any) -> np.ndarray:
        codes = self._outputs(X).argmax(axis=1)
        return self.classes_[codes]


class TaskNetRegressor(RegressorMixin, TaskNetBase):
    """A task-driven network regressor compiled from a spec (scikit-learn compatible).

    Parameters and attributes as `TaskNetClassifier` (no `classes_`; `y_mean_` and `y_std_`
    standardise the target for training). One target column.

    scikit-learn 1.9 `check_estimator`: every check passes except `check_regressors_train`: it
    needs a training R2 above 0.5; a few epochs of a tiny network (hidden=(4,), epochs=3) do
    not reach it, and neither do the defaults, whose early stopping on 20 validation rows of
    its 200-row dataset keeps the epoch-2 state (R2 0.16; 0.95 with validation_fraction=0).
    It passes with hidden=(16,), epochs=20, lr=1e-2. `expected_failed_checks(est)` gives it
    (with the reason) to `check_estimator` and `parametrize_with_checks`.
    `check_array_api_input` is skipped by scikit-learn itself unless SCIPY_ARRAY_API is set.
    """

    _task = "regression"

    def fit(self, X: Any, y: Any) -> TaskNetRegressor:
        X, y = self._validate_fit(X, y, y_numeric=True)
        scaler = self._fit(X, y, 1)
        self.y_mean_, self.y_std_ = scaler.target_mean, scaler.target_std
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self._outputs(X)[:, 0] * self.y_std_ + self.y_mean_

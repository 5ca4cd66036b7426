"""What the two estimators share: parameters, the spec, fitting, prediction and pickling.

`TaskNetClassifier` and `TaskNetRegressor` (`nscompile.learn.estimators`) add the task's own
target handling; the fit itself is `nscompile.learn.fit.fit_network`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from nscompile.errors import InputError, SpecError
from nscompile.lang import syntax
from nscompile.lang.unparse import unparse
from nscompile.learn.encoding import Encoding
from nscompile.learn.fit import NetworkChoice, fit_network, search_spec
from nscompile.learn.loader import load_source, spec_source
from nscompile.learn.preprocess import Scaler
from nscompile.learn.table import Table
from nscompile.learn.text_columns import text_table
from nscompile.learn.train.core import Protocol

# Used when `spec=None` and `search=False`: pure orders 1 and 2.
DEFAULT_NEURON = "neuron td {\n    y = <w1, x> + <w2, x**2> + b\n}\n"


def _spec_text(spec: object) -> tuple[str, str]:
    """`spec` (None, a path, spec text or a Spec AST) -> (text, file name for messages)."""
    if spec is None:
        return DEFAULT_NEURON, "<default>"
    return spec_source(spec)  # type: ignore[arg-type]  (ValueError for any other type)


def _seed(random_state: object) -> int:
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state) % (2**31 - 1)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


class TaskNetBase(BaseEstimator):
    """Shared parameters, fitting and prediction; see TaskNetClassifier and TaskNetRegressor."""

    _task = ""

    def __init__(
        self,
        spec: object = None,
        hidden: Sequence[int] = (64, 32),
        search: bool = False,
        neuron: str | None = None,
        epochs: int = 100,
        lr: float = 1e-3,
        batch_size: int = 64,
        patience: int = 20,
        validation_fraction: float = 0.1,
        random_state: object = 0,
        search_params: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.hidden = hidden
        self.search = search
        self.neuron = neuron
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.search_params = search_params

    # -- parameters and spec ---------------------------------------------------------------

    def _check_params(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.validation_fraction, int | float)) or not (
            0 <= self.validation_fraction < 1
        ):
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        hidden = list(self.hidden) if isinstance(self.hidden, Sequence) else None
        if hidden is None or not all(
            isinstance(w, int | np.integer) and not isinstance(w, bool) and w >= 1 for w in hidden
        ):
            raise ValueError(f"hidden must be a sequence of positive integers, got {self.hidden!r}")
        if self.search_params is not None and not isinstance(self.search_params, dict):
            raise ValueError(f"search_params must be a dict, got {self.search_params!r}")

    def _searched_spec(self, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[str, str]:
        params = dict(self.search_params or {})
        seeds = params.pop("seeds", (seed,))
        params.setdefault("batch_size", max(2, min(128, 2 * len(X))))
        params.pop("task", None)  # the estimator's own
        try:
            result = search_spec(
                X, y, self._task, seeds, "TaskNet fit", params, show_progress=False
            )
        except (InputError, SpecError) as error:
            raise ValueError(f"structure search: {error}") from error
        self.search_result_ = result
        neurons = syntax.Spec(tuple(result.spec.neurons.values()))
        return unparse(neurons), "<search>"

    # -- fit -------------------------------------------------------------------------------

    def _fit(self, X: np.ndarray, target: np.ndarray, outputs: int) -> Scaler:
        """Train on `X` and `target` (class codes, or the regression target in its units); the
        standardisation, fitted on every row (the validation rows are for early stopping)."""
        self._check_params()
        seed = _seed(self.random_state)
        scaler = Scaler.fit(X, target, self._task)
        self.x_mean_, self.x_std_ = scaler.mean, scaler.std
        xs, ys = scaler.features(X), scaler.target(target, self._task)
        if self.search:
            text, file = self._searched_spec(xs, ys, seed)
        else:
            try:
                text, file = _spec_text(self.spec)
            except SpecError as error:
                raise ValueError(error.render()) from error
        choice = NetworkChoice(
            self._task, X.shape[1], outputs, self.neuron, tuple(int(w) for w in self.hidden)
        )
        protocol = Protocol(
            epochs=int(self.epochs),
            lr=float(self.lr),
            batch_size=int(self.batch_size),
            patience=int(self.patience),
        )
        try:
            fitted = fit_network(
                text, file, choice, (xs, ys), protocol, seed, float(self.validation_fraction)
            )
        except InputError as error:  # Diverged: NaN loss
            raise ValueError(f"{error.message} ({error.hint})") from error
        self.spec_ = fitted.spec
        self.network_ = fitted.network
        self.module_source_ = fitted.source
        self.state_dict_ = {k: v.detach().cpu().numpy().copy() for k, v in fitted.run.state.items()}
        self.history_ = fitted.run.history
        self.best_epoch_ = fitted.run.best_epoch
        self.n_epochs_ = fitted.run.epochs_run
        self._model = fitted.model
        return scaler

    # -- the torch module ------------------------------------------------------------------

    @property
    def model_(self) -> torch.nn.Module:
        """The trained torch module (rebuilt from `module_source_` and `state_dict_` after
        unpickling)."""
        if "_model" not in self.__dict__:
            if "state_dict_" not in self.__dict__:
                raise NotFittedError(f"this {type(self).__name__} is not fitted yet")
            model = load_source(self.module_source_).build(self.network_)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in self.state_dict_.items()})
            model.eval()
            self._model = model
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        state.pop("_model", None)
        return state

    def _validate_fit(self, X: Any, y: Any, **options: Any) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN401
        """(X as numbers, y); text columns are one-hot encoded (`encoding_`, as the CLI does)."""
        table = text_table(X)
        self.encoding_ = None if table is None else Encoding.fit(table)
        if table is None:
            return validate_data(self, X, y, dtype=np.float64, **options)
        encoded, y = validate_data(self, self._encode(table), y, dtype=np.float64, **options)
        self.n_features_in_ = len(table.columns)
        if hasattr(X, "iloc"):
            self.feature_names_in_ = np.array(table.columns, dtype=object)
        return encoded, y

    def _encode(self, table: Table) -> np.ndarray:
        try:
            return self.encoding_.encode(table)
        except InputError as error:
            raise ValueError(
                f"{error.message} ({error.hint})" if error.hint else error.message
            ) from None

    def _inputs(self, X: Any) -> np.ndarray:  # noqa: ANN401
        if getattr(self, "encoding_", None) is None:
            return validate_data(self, X, reset=False, dtype=np.float64)
        table = text_table(X)
        if table is None:  # every cell a number: the text columns hold number-like categories
            array = np.asarray(X, dtype=object)
            names = tuple(f"c{i}" for i in range(array.shape[1]))
            names = tuple(str(c) for c in X.columns) if hasattr(X, "iloc") else names
            cells = tuple(array[:, i].astype(np.float64) for i in range(len(names)))
            table = Table("X", names, cells)
        if len(table.columns) != self.n_features_in_:
            raise ValueError(
                f"X has {len(table.columns)} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return self._encode(table)

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "state_dict_")
        X = self._inputs(X)
        xs = Scaler(self.x_mean_, self.x_std_).features(X)
        model = self.model_
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(xs))).numpy().astype(np.float64)

    def __sklearn_tags__(self):  # noqa: ANN204 (sklearn's Tags)
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags

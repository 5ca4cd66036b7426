"""onnxruntime sessions that say which device they really run on.

onnxruntime-gpu falls back to the CPU silently when CUDA libraries are missing; only
`session.get_providers()` tells the truth, so that is what is checked.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.preprocess import Preprocess
from nscompile.learn.table import Table

PROVIDERS = ("auto", "cpu", "cuda")
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class Session:
    """An ONNX model ready to run: `Session(path, provider="auto").run(array)`."""

    def __init__(
        self,
        path: str | Path,
        provider: str = "auto",
        verbose: bool = False,
        threads: int | None = None,
        spinning: bool = True,
    ) -> None:
        """Open `path`; `threads` sets onnxruntime's intra-op threads (default: its own choice).

        `spinning=False` stops idle intra-op threads from spin-waiting after each run: slightly
        slower calls, but other work on the same cores (torch, in a benchmark) is not starved.
        """
        self._session = _open(Path(path), provider, verbose, threads, spinning)
        if provider == "cuda" and self.providers[0] != CUDA:
            raise InputError(
                "onnxruntime-gpu is installed but could not load CUDA; it would run on the CPU",
                hint="check that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed "
                "(run with --verbose to see onnxruntime's own messages)",
            )
        self.inputs = {i.name: (i.type, i.shape) for i in self._session.get_inputs()}
        self.output_names = [o.name for o in self._session.get_outputs()]
        for name, (_, shape) in self.inputs.items():
            if len(shape) != 2 or not isinstance(shape[1], int):
                raise InputError(
                    f"'{path}' takes input '{name}' of shape {shape}; "
                    "nscompile runs (batch, features) models"
                )
        self.input_name = next(iter(self.inputs))
        self.input_width = int(self.inputs["input"][1][1]) if "input" in self.inputs else 0
        self.output_name = self.output_names[0]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.preprocess = _preprocess(self.metadata, path)

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, in priority order."""
        return list(self._session.get_providers())

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == CUDA else "cpu"

    def run(self, array: np.ndarray) -> np.ndarray:
        """Predict for a (rows x input_width) array with a network's model (one input, one
        output); NaN inputs are an error, not NaN outputs."""
        if self.preprocess is not None:
            raise InputError("this is a run's deployed model: give it feeds (`run_feeds`)")
        return self.run_feeds({self.input_name: array})[self.output_name]

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output for `feeds` (input name -> rows); float inputs must be finite."""
        data = {}
        for name, (kind, shape) in self.inputs.items():
            if name not in feeds:
                raise InputError(f"the model needs its input '{name}'")
            text = kind == "tensor(string)"
            value = np.asarray(feeds[name], dtype=object if text else np.float32)
            if value.ndim != 2 or value.shape[1] != shape[1]:
                raise InputError(
                    f"the input '{name}' has shape {value.shape}; "
                    f"the model takes rows of {shape[1]} values"
                )
            if not text and not np.isfinite(value).all():
                row = int(np.argwhere(~np.isfinite(value))[0][0])
                raise InputError(f"the input has NaN or infinite values (first in row {row + 1})")
            data[name] = value
        results = self._session.run(self.output_names, data)
        if any(r.dtype.kind == "f" and not np.isfinite(r).all() for r in results):
            warnings.warn(
                "the model produced NaN or infinite outputs", RuntimeWarning, stacklevel=2
            )
        return dict(zip(self.output_names, results, strict=True))

    def answers(self, table: Table, first_row: int = 1) -> dict[str, np.ndarray]:
        """A run's deployed model's outputs for the rows of `table` (columns found by name).

        Text where numbers are due and categories training did not see are errors here (the
        graph alone would give such a row all-zero indicators).
        """
        pre = self.preprocess
        if pre is None:
            raise InputError("this ONNX model is a network's bare model, not a run's")
        pre.encoding.encode(table, first_row)
        feeds = {}
        if "input" in self.inputs:
            feeds["input"] = pre.numeric(table)
        if "categories" in self.inputs:
            feeds["categories"] = pre.text(table)
        return self.run_feeds(feeds)


def _open(path: Path, provider: str, verbose: bool, threads: int | None, spinning: bool) -> Any:
    """An onnxruntime InferenceSession of `path` on the providers `provider` asks for."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(
            "running ONNX models needs onnxruntime",
            hint="pip install 'nscompile[cpu]' (or 'nscompile[gpu]' on an NVIDIA machine)",
        ) from None
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider '{provider}'", hint=f"one of {', '.join(PROVIDERS)}")
    if not path.is_file():
        raise InputError(f"no model file '{path}'")
    options = ort.SessionOptions()
    options.log_severity_level = 0 if verbose else 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not verbose:
        ort.set_default_logger_severity(3)
    available = ort.get_available_providers()
    if provider == "cuda" and CUDA not in available:
        raise InputError(
            "CUDA was asked for, but this onnxruntime has no CUDA provider "
            f"(it has {', '.join(available)})",
            hint="install nscompile[gpu] (onnxruntime-gpu) instead of nscompile[cpu]",
        )
    wanted = [CPU] if provider == "cpu" else ([CUDA, CPU] if CUDA in available else [CPU])
    try:
        return ort.InferenceSession(str(path), options, providers=wanted)
    except Exception as error:  # onnxruntime raises its own types for corrupt files
        first = str(error).strip().splitlines()[0][:300]
        raise InputError(f"'{path}' is not a valid ONNX model ({first})") from None


def _preprocess(metadata: dict[str, str], path: str | Path) -> Preprocess | None:
    """The preprocessing a run's deployed model carries (None for a network's bare model)."""
    text = metadata.get("nscompile.preprocess")
    if text is None:
        return None
    try:
        return Preprocess.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        raise InputError(f"'{path}' has unreadable nscompile.preprocess metadata") from None

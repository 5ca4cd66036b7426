"""onnxruntime sessions that say which device they really run on.

onnxruntime-gpu falls back to the CPU silently when CUDA libraries are missing; only
`session.get_providers()` tells the truth, so that is what is checked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from nscompile.errors import InputError

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
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(
                "running ONNX models needs onnxruntime",
                hint="pip install 'nscompile[cpu]' (or 'nscompile[gpu]' on an NVIDIA machine)",
            ) from None

        if provider not in PROVIDERS:
            raise InputError(
                f"unknown provider '{provider}'", hint=f"one of {', '.join(PROVIDERS)}"
            )
        if not Path(path).is_file():
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
        wanted = [CPU] if provider == "cpu" else ([CUDA, CPU] if CUDA in available else [CPU])
        if provider == "cuda" and CUDA not in available:
            raise InputError(
                "CUDA was asked for, but this onnxruntime has no CUDA provider "
                f"(it has {', '.join(available)})",
                hint="install nscompile[gpu] (onnxruntime-gpu) instead of nscompile[cpu]",
            )
        try:
            self._session = ort.InferenceSession(str(path), options, providers=wanted)
        except Exception as error:  # onnxruntime raises its own types for corrupt files
            first = str(error).strip().splitlines()[0][:300]
            raise InputError(f"'{path}' is not a valid ONNX model ({first})") from None
        if provider == "cuda" and self.providers[0] != CUDA:
            raise InputError(
                "onnxruntime-gpu is installed but could not load CUDA; it would run on the CPU",
                hint="check that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed "
                "(run with --verbose to see onnxruntime's own messages)",
            )
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 2 or not isinstance(shape[1], int):
            raise InputError(
                f"'{path}' takes input of shape {shape}; nscompile runs (batch, features) models"
            )
        self.input_width = shape[1]
        self.output_name = outputs[0].name
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, in priority order."""
        return list(self._session.get_providers())

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == CUDA else "cpu"

    def run(self, array: np.ndarray) -> np.ndarray:
        """Predict for a (rows x input_width) array; NaN inputs are an error, not NaN outputs."""
        data = np.asarray(array, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.input_width:
            raise InputError(
                f"the input has shape {data.shape}; "
                f"the model takes rows of {self.input_width} values"
            )
        if not np.isfinite(data).all():
            row = int(np.argwhere(~np.isfinite(data))[0][0])
            raise InputError(f"the input has NaN or infinite values (first in row {row + 1})")
        (result,) = self._session.run([self.output_name], {self.input_name: data})
        if not np.isfinite(result).all():
            warnings.warn(
                "the model produced NaN or infinite outputs", RuntimeWarning, stacklevel=2
            )
        return result

"""Class logits -> probabilities, in NumPy: the one softmax outside torch and the ONNX graph.

torch code calls `torch.softmax` and the deployed graph has an ONNX `Softmax` node; everything
that holds NumPy logits (metrics, the estimators, `nscompile run` on a bare network) uses these.
Both subtract each row's largest logit first, so no `exp` overflows.
"""

from __future__ import annotations

import numpy as np


def _shifted(logits: np.ndarray) -> np.ndarray:
    return logits - logits.max(axis=1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Rows of logits (n x classes) -> rows of probabilities summing to 1, same dtype."""
    exp = np.exp(_shifted(logits))
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Rows of logits (n x classes) -> log-probabilities, exact where the probability is tiny."""
    shifted = _shifted(logits)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

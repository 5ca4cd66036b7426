"""The one NumPy softmax (`nscompile.learn.probabilities`) against torch's."""

from __future__ import annotations

import numpy as np
import torch

from nscompile.learn.probabilities import log_softmax, softmax


def test_softmax_and_log_softmax_match_torch_without_overflow() -> None:
    logits = np.random.default_rng(0).normal(scale=30.0, size=(50, 4))
    logits[0] = [1000.0, -1000.0, 0.0, 999.0]  # exp would overflow without the shift
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        log_softmax(logits), torch.log_softmax(torch.from_numpy(logits), dim=1).numpy(), rtol=1e-12
    )
    assert softmax(logits.astype(np.float32)).dtype == np.float32

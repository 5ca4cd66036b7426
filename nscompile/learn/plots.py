"""Figures written as PNG files with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nscompile.errors import InputError
from nscompile.files import write_atomic


def _pyplot():  # noqa: ANN202
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib", hint="pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: str | Path, dpi: int = 110) -> None:  # noqa: ANN001 (a Figure)
    """Lay `figure` out, write it to `path` as a PNG atomically, and close it."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(figure)
    write_atomic(path, buffer.getvalue())


def require_matplotlib() -> None:
    """Raise InputError now if --plot could not be honoured later."""
    _pyplot()


def plot_search(
    path: str, loss: Sequence[float], gates: Mapping[str, Sequence[float]], title: str
) -> None:
    """Training loss and every gate's keep probability per epoch, side by side."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(range(1, len(loss) + 1), loss)
    left.set(xlabel="epoch", ylabel="training loss", title="loss", yscale="log")
    for name in sorted(gates):
        right.plot(range(1, len(gates[name]) + 1), gates[name], label=name)
    right.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    right.set(xlabel="epoch", ylabel="keep probability", title="gates", ylim=(-0.02, 1.02))
    right.legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    save_png(figure, path)


def plot_bench(path: str, layers: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]]) -> None:
    """Per layer, milliseconds of each contender (log scale), forward and forward+backward bars."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(layers), figsize=(5.5 * len(layers), 4), squeeze=False)
    for axis, (title, times) in zip(axes[0], layers, strict=True):
        names = list(times)
        passes = sorted({p for t in times.values() for p in t})
        width = 0.8 / max(1, len(passes))
        for offset, name in enumerate(passes):
            values = [times[n].get(name, float("nan")) * 1e3 for n in names]
            positions = [i + (offset - (len(passes) - 1) / 2) * width for i in range(len(names))]
            axis.bar(positions, values, width, label=name)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axis.set(ylabel="ms per call (median)", title=title, yscale="log")
        axis.legend(fontsize=7)
    save_png(figure, path)


def plot_curves(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Loss (train and validation) and the validation metric per epoch, for every model."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, history in payload["curves"].items():
        epochs = range(1, len(history["train_loss"]) + 1)
        (line,) = left.plot(epochs, history["train_loss"], label=f"{key} train")
        left.plot(epochs, history["val_loss"], "--", color=line.get_color(), label=f"{key} val")
        right.plot(epochs, history["val_metric"], color=line.get_color(), label=key)
    metric = "accuracy" if payload["task"] == "classification" else "MSE (standardised)"
    left.set(xlabel="epoch", ylabel="loss", title="loss", yscale="log")
    right.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    save_png(figure, path, dpi=100)

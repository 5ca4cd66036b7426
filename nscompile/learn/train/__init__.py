"""Training generated networks under the paper's protocol; see `core` and `run`.

    >>> from nscompile.learn.train import Protocol, train_run
    >>> train_run(spec_text, "td.ns", data, "runs/td", seeds=(0, 1, 2), baselines=("mlp",))

Nothing here imports the structure search.
"""

from nscompile.learn.train.core import Diverged, Protocol, metrics
from nscompile.learn.train.run import BASELINES, RunResult, train_run

__all__ = ["BASELINES", "Diverged", "Protocol", "RunResult", "metrics", "train_run"]
